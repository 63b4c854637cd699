// libFuzzer target for one entry point of input_targets.h, chosen at build time
// (EDGEFLEET_FUZZ_ENTRY, e.g. RunManifest): a refusal is fine; a crash, leak, undefined behaviour
// or broken invariant (Require) is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/input_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)edgefleet::fuzz::EDGEFLEET_FUZZ_ENTRY(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
