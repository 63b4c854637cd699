#include "cli/parsers.h"

#include <charconv>
#include <limits>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/npy.h"

namespace edgefleet::cli {

absl::StatusOr<v1::Tensor> ParseTensorValue(std::string_view in) {
  absl::string_view text(in.data(), in.size());
  size_t eq = text.find('=');
  if (eq != absl::string_view::npos && eq > 0 && text.substr(eq + 1, 1) == "@") {
    const std::string path(text.substr(eq + 2));
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", text, "': no file after '@' (NAME=@FILE.npy)"));
    }
    absl::StatusOr<NpyArray> array = ReadNpyFile(path);
    if (!array.ok()) {
      return absl::Status(array.status().code(), absl::StrCat("tensor '", text.substr(0, eq),
                                                              "': ", array.status().message()));
    }
    if (array->shape.empty() || array->data.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", text.substr(0, eq), "': '", path,
                       "' holds no tensor (a scalar or an empty array)"));
    }
    v1::Tensor tensor;
    tensor.set_name(std::string(text.substr(0, eq)));
    tensor.mutable_shape()->Add(array->shape.begin(), array->shape.end());
    tensor.mutable_data()->Add(array->data.begin(), array->data.end());
    return tensor;
  }
  size_t colon = eq == absl::string_view::npos ? eq : text.find(':', eq);
  if (eq == absl::string_view::npos || eq == 0 || colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", text, "' is not NAME=SHAPE:V,V,... (e.g. x=1x2:0.5,1)"));
  }
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", text, "': ", why));
  };
  absl::StatusOr<std::vector<int64_t>> dims =
      ParseTensorShape(std::string_view(text.data() + eq + 1, colon - eq - 1), false);
  if (!dims.ok()) return bad(dims.status().message());
  int64_t count = 1;
  for (int64_t d : *dims) {
    if (count > std::numeric_limits<int32_t>::max() / d) return bad("shape is too large");
    count *= d;
  }
  v1::Tensor tensor;
  tensor.set_name(std::string(text.substr(0, eq)));
  for (int64_t d : *dims) tensor.add_shape(d);
  absl::string_view values = text.substr(colon + 1);
  if (!values.empty()) {
    for (absl::string_view v : absl::StrSplit(values, ',')) {
      float f = 0;
      if (!absl::SimpleAtof(v, &f)) return bad(absl::StrCat("'", v, "' is not a number"));
      tensor.add_data(f);
    }
  }
  if (tensor.data_size() != count) {
    return bad(absl::StrCat("shape needs ", count, " values, got ", tensor.data_size()));
  }
  return tensor;
}

absl::StatusOr<std::string> ParseSha256Hex(std::string_view in) {
  absl::string_view text(in.data(), in.size());
  if (text.size() != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 must be 64 hex digits, got ", text.size(), " characters"));
  }
  for (char c : text) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat("sha256 '", text, "' is not hex"));
    }
  }
  return absl::HexStringToBytes(text);
}

absl::StatusOr<Labels> ParseLabelItems(const std::vector<std::string>& items) {
  Labels out;
  for (const std::string& item : items) {
    absl::StatusOr<Labels> parsed = ParseLabelSelector(item);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label '", item, "': ", parsed.status().message()));
    }
    if (parsed->empty()) return absl::InvalidArgumentError("empty label");
    for (auto& [k, v] : *parsed) out[k] = v;
  }
  return out;
}

std::string FormatShape(const google::protobuf::RepeatedField<int64_t>& shape) {
  if (shape.empty()) return "scalar";
  return absl::StrJoin(shape, "x", [](std::string* out, int64_t d) {
    absl::StrAppend(out, d < 0 ? std::string("?") : std::to_string(d));
  });
}

}  // namespace edgefleet::cli
