#include "common/core/limits.h"

#include <algorithm>

namespace edgefleet {

std::string FitText(std::string text, size_t max_bytes) {
  text.erase(std::remove(text.begin(), text.end(), '\0'), text.end());
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  // Back off continuation bytes (10xxxxxx) so a multi-byte character is not split.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return text;
}

}  // namespace edgefleet
