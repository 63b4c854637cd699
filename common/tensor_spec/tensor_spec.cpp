#include "common/tensor_spec/tensor_spec.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace edgefleet {

absl::StatusOr<std::vector<int64_t>> ParseTensorShape(std::string_view in, bool allow_dynamic) {
  absl::string_view text(in.data(), in.size());
  if (text.empty()) return absl::InvalidArgumentError("empty shape");
  std::vector<int64_t> dims;
  for (absl::string_view part : absl::StrSplit(text, 'x')) {
    int64_t dim = 0;
    if (allow_dynamic && (part == "?" || part == "-1")) {
      dims.push_back(-1);
      continue;
    }
    if (!absl::SimpleAtoi(part, &dim) || dim <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad dimension '", part, "' in shape '", text, "'"));
    }
    dims.push_back(dim);
  }
  return dims;
}

absl::StatusOr<v1::TensorSpec> ParseTensorSpec(std::string_view in) {
  absl::string_view text(in.data(), in.size());
  size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor spec '", text, "' is not NAME:SHAPE (e.g. input:1x4)"));
  }
  absl::string_view shape = text.substr(colon + 1);
  absl::StatusOr<std::vector<int64_t>> dims =
      ParseTensorShape(std::string_view(shape.data(), shape.size()), true);
  if (!dims.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor spec '", text, "': ", dims.status().message()));
  }
  v1::TensorSpec spec;
  spec.set_name(std::string(text.substr(0, colon)));
  for (int64_t d : *dims) spec.add_shape(d);
  return spec;
}

}  // namespace edgefleet
