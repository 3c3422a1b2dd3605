#include "tokenizer/vocab.h"

namespace slm::tok {

int32_t Vocab::build_index(int32_t* first) {
  size_t cap = 16;
  while (cap < tokens.size() * 2) cap *= 2;
  index_.assign(cap, 0);
  mask_ = cap - 1;
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& text = tokens[id].text;
    const uint64_t h = std::hash<std::string_view>{}(text);
    for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
      const uint64_t e = index_[i];
      if (e == 0) {
        index_[i] = (h & ~uint64_t{0xFFFFFFFFu}) | (id + 1);
        break;
      }
      const auto other = static_cast<int32_t>((e & 0xFFFFFFFFu) - 1);
      if ((e >> 32) == (h >> 32) && tokens[other].text == text) {
        *first = other;
        return static_cast<int32_t>(id);
      }
    }
  }
  return -1;
}

}  // namespace slm::tok
