#include "cli/npy.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edgefleet::cli {
namespace {

constexpr absl::string_view kMagic = "\x93NUMPY";
// A sample is read into memory; beyond this many values it is refused rather than allocated.
constexpr uint64_t kMaxValues = uint64_t{1} << 28;

absl::Status Bad(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("not a usable .npy sample: ", why));
}

uint64_t LittleEndian(absl::string_view b) {
  uint64_t v = 0;
  for (size_t i = b.size(); i-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}

// The value of `key` in the header's Python dict literal, up to the next top-level comma.
absl::StatusOr<absl::string_view> DictValue(absl::string_view header, absl::string_view key) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t at = header.find(quoted);
  if (at == absl::string_view::npos) return Bad(absl::StrCat("its header has no ", quoted));
  at = header.find(':', at + quoted.size());
  if (at == absl::string_view::npos) return Bad("its header is malformed");
  absl::string_view rest = header.substr(at + 1);
  int depth = 0;
  size_t end = 0;
  for (; end < rest.size(); ++end) {
    const char ch = rest[end];
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if ((ch == ',' && depth == 0) || ch == '}') break;
  }
  return absl::StripAsciiWhitespace(rest.substr(0, end));
}

template <typename T>
void Convert(absl::string_view raw, std::vector<float>& out) {
  out.resize(raw.size() / sizeof(T));
  for (size_t i = 0; i < out.size(); ++i) {
    T v;
    std::memcpy(&v, raw.data() + i * sizeof(T), sizeof(T));
    out[i] = static_cast<float>(v);
  }
}

template <typename I8, typename I16, typename I32, typename I64>
void ConvertInteger(size_t size, absl::string_view raw, std::vector<float>& out) {
  switch (size) {
    case 1:
      return Convert<I8>(raw, out);
    case 2:
      return Convert<I16>(raw, out);
    case 4:
      return Convert<I32>(raw, out);
    default:
      return Convert<I64>(raw, out);
  }
}

}  // namespace

absl::StatusOr<NpyArray> ParseNpy(std::string_view raw) {
  const absl::string_view bytes(raw.data(), raw.size());
  static_assert(std::endian::native == std::endian::little,
                "the .npy reader assumes little endian");
  if (bytes.substr(0, kMagic.size()) != kMagic || bytes.size() < 10) return Bad("bad magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  const size_t len_bytes = major == 1 ? 2 : 4;
  if (major < 1 || major > 3) return Bad(absl::StrCat("format version ", major, " is unknown"));
  if (bytes.size() < 8 + len_bytes) return Bad("truncated header");
  const uint64_t header_len = LittleEndian(bytes.substr(8, len_bytes));
  if (bytes.size() < 8 + len_bytes + header_len) return Bad("truncated header");
  const absl::string_view header = bytes.substr(8 + len_bytes, header_len);
  const absl::string_view data = bytes.substr(8 + len_bytes + header_len);

  auto fortran = DictValue(header, "fortran_order");
  if (!fortran.ok()) return fortran.status();
  if (*fortran == "True") {
    return Bad("the array is in Fortran order; save it in C order (numpy.ascontiguousarray)");
  }
  if (*fortran != "False") return Bad("its fortran_order is neither True nor False");
  auto descr = DictValue(header, "descr");
  if (!descr.ok()) return descr.status();
  NpyArray array;
  array.dtype = std::string(absl::StripSuffix(absl::StripPrefix(*descr, "'"), "'"));
  auto shape = DictValue(header, "shape");
  if (!shape.ok()) return shape.status();
  absl::string_view dims = absl::StripSuffix(absl::StripPrefix(*shape, "("), ")");
  uint64_t count = 1;
  for (absl::string_view d : absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(d), &n) || n < 0) {
      return Bad(absl::StrCat("its shape ", *shape, " is not a tuple of sizes"));
    }
    array.shape.push_back(n);
    if (n != 0 && count > kMaxValues / static_cast<uint64_t>(n)) {
      return Bad(absl::StrCat("it holds more than ", kMaxValues, " values"));
    }
    count *= static_cast<uint64_t>(n);
  }
  const std::string& t = array.dtype;
  size_t size = 0;
  if (t.size() == 3 && (t[0] == '<' || t[0] == '|')) {
    if (!absl::SimpleAtoi(t.substr(2), &size)) size = 0;
  }
  const char kind = t.size() == 3 ? t[1] : '?';
  const bool known =
      (kind == 'f' && (size == 4 || size == 8)) ||
      ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8));
  if (!known) {
    return Bad(absl::StrCat("its dtype '", t,
                            "' is not little-endian float32, float64 or an integer type"));
  }
  if (data.size() != count * size) {
    return Bad(absl::StrCat("its data has ", data.size(), " bytes; shape ", *shape, " of '", t,
                            "' needs ", count * size));
  }
  if (kind == 'f') {
    size == 4 ? Convert<float>(data, array.data) : Convert<double>(data, array.data);
  } else if (kind == 'i') {
    ConvertInteger<int8_t, int16_t, int32_t, int64_t>(size, data, array.data);
  } else {
    ConvertInteger<uint8_t, uint16_t, uint32_t, uint64_t>(size, data, array.data);
  }
  return array;
}

absl::StatusOr<NpyArray> ReadNpyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  auto array = ParseNpy(bytes.str());
  if (!array.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': ", array.status().message()));
  }
  return array;
}

}  // namespace edgefleet::cli
