#include "common/capture/capture_spec.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgefleet::capture {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("capture.", field, " ", what));
}

}  // namespace

absl::Status ValidateCaptureSpec(const v1::CaptureSpec& spec) {
  if (!spec.enabled()) {
    v1::CaptureSpec off;
    if (spec.ByteSizeLong() != off.ByteSizeLong()) {
      return absl::InvalidArgumentError(
          "capture settings are given but capture.enabled is false (set it to ask for capture)");
    }
    return absl::OkStatus();
  }
  if (!std::isfinite(spec.sample_rate()) || spec.sample_rate() < 0 || spec.sample_rate() > 1) {
    return Bad("sample_rate", absl::StrCat(spec.sample_rate(), " is not in (0, 1] (0 means 1)"));
  }
  if (!std::isfinite(spec.random_rate()) || spec.random_rate() < 0 || spec.random_rate() > 1) {
    return Bad("random_rate", absl::StrCat(spec.random_rate(), " is not in [0, 1]"));
  }
  if (spec.has_confidence_below() && !std::isfinite(spec.confidence_below())) {
    return Bad("confidence_below", "must be a finite number");
  }
  if (spec.random_rate() == 0 && !spec.has_confidence_below() && !spec.out_of_range()) {
    return absl::InvalidArgumentError(
        "capture needs a trigger: random_rate > 0, confidence_below or out_of_range");
  }
  if (spec.max_bytes_per_day() < kMinBytesPerDay || spec.max_bytes_per_day() > kMaxBytesPerDay) {
    return Bad("max_bytes_per_day", absl::StrCat(spec.max_bytes_per_day(), " is not between ",
                                                 kMinBytesPerDay, " and ", kMaxBytesPerDay));
  }
  if (spec.upload_start_hour() > 23) {
    return Bad("upload_start_hour", absl::StrCat(spec.upload_start_hour(), " is not in 0-23"));
  }
  if (spec.upload_end_hour() > 24) {
    return Bad("upload_end_hour", absl::StrCat(spec.upload_end_hour(), " is not in 0-24"));
  }
  return absl::OkStatus();
}

bool InUploadWindow(uint32_t start_hour, uint32_t end_hour, int local_hour) {
  const int start = static_cast<int>(start_hour % 24);
  const int end = static_cast<int>(end_hour % 24);
  if (start == end) return true;
  if (start < end) return local_hour >= start && local_hour < end;
  return local_hour >= start || local_hour < end;  // wraps midnight
}

}  // namespace edgefleet::capture
