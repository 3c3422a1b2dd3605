# Writes OUT, a C++ source that holds the file IN as the string slm::server::kChatPage, so the
# web page is part of the binary (no files served from disk). Run by a custom command at build
# time, so an edit to the page rebuilds it.
file(READ "${IN}" content)
string(FIND "${content}" ")slmpage\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string terminator )slmpage\"")
endif()
file(WRITE "${OUT}" "// Generated from ${IN} by cmake/embed_page.cmake: do not edit.\n#include \"server.h\"\nnamespace slm::server {\nconst char* const kChatPage = R\"slmpage(${content})slmpage\";\n}  // namespace slm::server\n")
