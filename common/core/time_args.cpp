#include "common/core/time_args.h"

#include <charconv>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace edgefleet {

absl::StatusOr<uint64_t> ParseDurationSeconds(std::string_view in) {
  absl::string_view text(in.data(), in.size());
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("bad duration '", text, "' (use seconds or a number with s, m, h or d)"));
  };
  if (text.empty()) return bad();
  uint64_t unit = 1;
  switch (text.back()) {
    case 's':
      text.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      text.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      text.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      text.remove_suffix(1);
      break;
    default:
      break;
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n == 0) {
    return bad();
  }
  if (n > std::numeric_limits<uint64_t>::max() / unit) return bad();
  return n * unit;
}

absl::StatusOr<Clock::TimePoint> ParseTimeArg(std::string_view in, Clock::TimePoint now) {
  const std::string text(in);
  if (text == "now") return now;
  // An age needs its unit ("-90" could be anything); an RFC 3339 time has a 'T' and colons.
  const bool has_unit =
      !text.empty() && std::string_view("smhd").find(text.back()) != std::string_view::npos;
  const bool has_digit_start = !text.empty() && text[0] >= '0' && text[0] <= '9';
  if (has_unit && (text[0] == '-' || (has_digit_start && text.find('T') == std::string::npos &&
                                      text.find(':') == std::string::npos))) {
    auto age = ParseDurationSeconds(text[0] == '-' ? text.substr(1) : text);
    // Ages beyond ten years are typos, not queries.
    constexpr uint64_t kMaxAge = 10ull * 366 * 86400;
    if (age.ok() && *age <= kMaxAge) return now - std::chrono::seconds(*age);
  }
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad time '", text, "' (use RFC 3339 like 2026-12-01T10:00:00Z, now, or an age like -2h)"));
  }
  return absl::ToChronoTime(t);
}

}  // namespace edgefleet
