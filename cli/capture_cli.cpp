#include "cli/capture_cli.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/text_output.h"
#include "common/core/files.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDefaultBytesPerDay = 10 * 1024 * 1024;

absl::Status BadCaptureFlag(const std::string& flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::StatusOr<double> ParseRate(const std::string& flag, const std::string& text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !(v >= 0 && v <= 1)) {
    return BadCaptureFlag(flag, absl::StrCat("want a fraction from 0 to 1, not '", text, "'"));
  }
  return v;
}

std::string JsonShape(const google::protobuf::RepeatedField<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// The ids index.jsonl already lists.
std::set<std::string> IndexedIds(const fs::path& index) {
  std::set<std::string> ids;
  std::ifstream in(index);
  std::string line;
  constexpr std::string_view kKey = "{\"id\":\"";
  while (std::getline(in, line)) {
    if (line.rfind(kKey, 0) != 0) continue;
    const size_t end = line.find('"', kKey.size());
    if (end != std::string::npos) ids.insert(line.substr(kKey.size(), end - kKey.size()));
  }
  return ids;
}

// {"top_index": i, "top_score": s} of the first output (a classifier's answer), or null.
std::string OutputSummary(const v1::CaptureRecord& record) {
  if (record.outputs().empty() || record.outputs(0).data().empty()) return "null";
  const auto& data = record.outputs(0).data();
  const auto top = std::max_element(data.begin(), data.end());
  return absl::StrCat("{\"name\":", JsonString(record.outputs(0).name()),
                      ",\"top_index\":", top - data.begin(), ",\"top_score\":", *top, "}");
}

}  // namespace

const std::set<std::string> kCaptureFlags = {"capture-sample-rate",       "capture-random",
                                             "capture-confidence-below",  "capture-out-of-range",
                                             "capture-max-bytes-per-day", "capture-upload-window"};

absl::StatusOr<std::optional<v1::CaptureSpec>> CaptureSpecFromFlags(const ParsedArgs& args) {
  bool any = false;
  for (const std::string& flag : kCaptureFlags) any = any || args.Has(flag);
  if (!any) return std::optional<v1::CaptureSpec>();
  v1::CaptureSpec spec;
  spec.set_enabled(true);
  spec.set_max_bytes_per_day(kDefaultBytesPerDay);
  if (auto v = args.Get("capture-sample-rate")) {
    auto rate = ParseRate("capture-sample-rate", *v);
    if (!rate.ok()) return rate.status();
    spec.set_sample_rate(*rate);
  }
  if (auto v = args.Get("capture-random")) {
    auto rate = ParseRate("capture-random", *v);
    if (!rate.ok()) return rate.status();
    spec.set_random_rate(*rate);
  }
  if (auto v = args.Get("capture-confidence-below")) {
    double threshold = 0;
    if (!absl::SimpleAtod(*v, &threshold)) {
      return BadCaptureFlag("capture-confidence-below", absl::StrCat("not a number: '", *v, "'"));
    }
    spec.set_confidence_below(threshold);
  }
  spec.set_out_of_range(args.Has("capture-out-of-range"));
  if (auto v = args.Get("capture-max-bytes-per-day")) {
    uint64_t bytes = 0;
    if (!absl::SimpleAtoi(*v, &bytes) || bytes == 0) {
      return BadCaptureFlag("capture-max-bytes-per-day",
                            absl::StrCat("want a positive number of bytes, not '", *v, "'"));
    }
    spec.set_max_bytes_per_day(bytes);
  }
  if (auto v = args.Get("capture-upload-window")) {
    std::vector<std::string> hours = absl::StrSplit(*v, '-');
    uint32_t start = 0;
    uint32_t end = 0;
    if (hours.size() != 2 || !absl::SimpleAtoi(hours[0], &start) ||
        !absl::SimpleAtoi(hours[1], &end) || start > 23 || end > 24) {
      return BadCaptureFlag("capture-upload-window",
                            absl::StrCat("want START-END hours of the local day (0-23, 0-24), "
                                         "e.g. 1-5 or 22-5, not '",
                                         *v, "'"));
    }
    spec.set_upload_start_hour(start);
    spec.set_upload_end_hour(end);
  }
  return std::optional<v1::CaptureSpec>(spec);
}

std::string NpyBytes(const std::vector<int64_t>& shape, const std::vector<float>& values) {
  std::string dims;
  for (int64_t d : shape) absl::StrAppend(&dims, d, ",");
  if (shape.size() > 1) dims.pop_back();  // (2, 3) but (4,)
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", dims, "), }");
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and ended by a
  // newline to a multiple of 64 bytes.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  static_assert(sizeof(float) == 4);
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  return out;
}

std::string TriggerName(v1::CaptureTrigger trigger) {
  std::string name = v1::CaptureTrigger_Name(trigger);
  constexpr std::string_view kPrefix = "CAPTURE_TRIGGER_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

absl::StatusOr<ExportResult> ExportCaptures(AdminClient& admin, v1::ListCapturesRequest filter,
                                            const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const fs::path index_path = fs::path(dir) / "index.jsonl";
  const std::set<std::string> done = IndexedIds(index_path);
  std::ofstream index(index_path, std::ios::app);
  if (!index) return absl::InternalError(absl::StrCat("cannot write ", index_path.string()));
  ExportResult result;
  filter.set_page_size(1000);
  while (true) {
    auto page = admin.ListCaptures(filter);
    if (!page.ok()) return page.status();
    for (const v1::CaptureInfo& info : page->captures()) {
      if (done.contains(info.capture_id())) {
        ++result.skipped;
        continue;
      }
      v1::GetCaptureRequest get;
      get.set_capture_id(info.capture_id());
      auto capture = admin.GetCapture(get);
      if (!capture.ok()) return capture.status();
      const v1::CaptureRecord& record = capture->record();
      std::vector<std::string> files, names, shapes;
      for (const auto* list : {&record.inputs(), &record.outputs()}) {
        const bool output = list == &record.outputs();
        for (int k = 0; k < list->size(); ++k) {
          const v1::Tensor& t = (*list)[k];
          const std::string file =
              absl::StrCat(info.capture_id(), output ? "_output" : "_input", k, ".npy");
          const std::string bytes =
              NpyBytes({t.shape().begin(), t.shape().end()}, {t.data().begin(), t.data().end()});
          if (auto s = WriteFileAtomically((fs::path(dir) / file).string(), bytes, false);
              !s.ok()) {
            return s;
          }
          files.push_back(JsonString(file));
          names.push_back(JsonString(t.name()));
          shapes.push_back(JsonShape(t.shape()));
        }
      }
      index << "{\"id\":" << JsonString(info.capture_id())
            << ",\"device\":" << JsonString(info.device_id())
            << ",\"model\":" << JsonString(info.model_name())
            << ",\"version\":" << JsonString(info.version()) << ",\"captured_at\":"
            << JsonString(google::protobuf::util::TimeUtil::ToString(info.captured_at()))
            << ",\"trigger\":" << JsonString(TriggerName(info.trigger()))
            << ",\"inputs\":" << record.inputs_size() << ",\"files\":[" << absl::StrJoin(files, ",")
            << "],\"names\":[" << absl::StrJoin(names, ",") << "],\"shapes\":["
            << absl::StrJoin(shapes, ",") << "],\"output_summary\":" << OutputSummary(record)
            << "}\n";
      index.flush();
      if (!index) return absl::InternalError(absl::StrCat("cannot write ", index_path.string()));
      ++result.written;
    }
    if (page->next_page_token().empty()) break;
    filter.set_page_token(page->next_page_token());
  }
  return result;
}

}  // namespace edgefleet::cli
