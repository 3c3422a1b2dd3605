// Tests that ctest runs once per instruction-set level (CMakeLists.txt sets SLM_FORCE_ISA for
// them) skip, loudly, on a CPU that lacks the level asked for, rather than fail: the level is
// a property of the machine, not of the code under test.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "kernels/isa.h"

#define SLM_REQUIRE_FORCED_ISA()                                                              \
  if (const char* forced_ = std::getenv("SLM_FORCE_ISA"); forced_ && *forced_) {              \
    ::slm::kern::Isa isa_{};                                                                  \
    if (::slm::kern::parse_isa(forced_, &isa_) && !::slm::kern::isa_supported(isa_)) {        \
      std::cerr << "\n*** SKIPPING: SLM_FORCE_ISA=" << forced_                               \
                << " but this CPU or build lacks it ***\n";                                  \
      GTEST_SKIP() << "SLM_FORCE_ISA=" << forced_ << " unsupported here";                    \
    }                                                                                         \
  }
