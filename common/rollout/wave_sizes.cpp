#include "common/rollout/wave_sizes.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edgefleet::rollout {

absl::StatusOr<std::vector<v1::WaveSpec>> ParseWaveSizes(std::string_view text) {
  std::vector<v1::WaveSpec> specs;
  const absl::string_view all(text.data(), text.size());
  if (absl::StripAsciiWhitespace(all).empty()) return specs;
  for (absl::string_view item : absl::StrSplit(all, ',')) {
    item = absl::StripAsciiWhitespace(item);
    const std::string where = absl::StrCat("waves item ", specs.size() + 1, " '", item, "'");
    v1::WaveSpec spec;
    if (absl::ConsumeSuffix(&item, "%")) {
      double percent = 0;
      if (!absl::SimpleAtod(item, &percent)) {
        return absl::InvalidArgumentError(absl::StrCat(where, " is not a percentage"));
      }
      if (percent == 0) {
        // Zero would read as "unset" in the WaveSpec.
        return absl::InvalidArgumentError(absl::StrCat(where, " must be above 0%"));
      }
      spec.set_percent(percent);
    } else {
      uint64_t count = 0;
      if (!absl::SimpleAtoi(item, &count) || count == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " is neither a percentage (10%) nor a device count (5)"));
      }
      spec.set_device_count(count);
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace edgefleet::rollout
