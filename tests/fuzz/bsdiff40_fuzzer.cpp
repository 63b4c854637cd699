// libFuzzer target: Apply on arbitrary bytes (seeded with valid bsdiff40 patches) must fail cleanly
// or succeed, never crash, leak or hit undefined behaviour.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)edgefleet::delta::fuzz::RunBsdiff40(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
