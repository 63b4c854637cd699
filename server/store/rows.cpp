#include "server/store/internal/rows.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/core/bounded_cache.h"
#include "server/store/internal/json.h"

namespace edgefleet::server::internal {

absl::StatusOr<v1::Device> DeviceFromRow(const pqxx::row& row) {
  v1::Device device;
  device.set_device_id(row[0].as<std::string>());
  device.set_status(FromDb<v1::DeviceStatus>(row[1].as<std::string>(), "DEVICE_STATUS_"));
  absl::StatusOr<Labels> labels = LabelsFromJson(row[2].as<std::string>());
  if (!labels.ok()) return labels.status();
  device.mutable_labels()->insert(labels->begin(), labels->end());
  *device.mutable_first_seen() = UnixToTimestamp(row[3].as<int64_t>());
  *device.mutable_last_seen() = UnixToTimestamp(row[4].as<int64_t>());
  if (!row[5].is_null()) {
    if (absl::Status s = MessageFromJson(row[5].as<std::string>(), device.mutable_inventory());
        !s.ok()) {
      return s;
    }
  }
  return device;
}

namespace {

// A version's tensor specs and labels, parsed from their JSON. Every check-in reads its desired
// versions' rows, and protobuf's JSON parser was about 6% of the server's CPU at a few hundred
// check-ins a second for specs that never change once a version is pushed: they are parsed once
// per distinct text (at most 1,024 texts kept).
absl::StatusOr<std::shared_ptr<const v1::ModelVersion>> ParsedSpecs(absl::string_view inputs,
                                                                    absl::string_view outputs,
                                                                    absl::string_view labels) {
  static auto* cache = new BoundedCache<std::string, std::shared_ptr<const v1::ModelVersion>>(1024);
  std::string key = absl::StrCat("{\"inputs\":", inputs, ",\"outputs\":", outputs, "}");
  const size_t json_size = key.size();
  absl::StrAppend(&key, "\n", labels);
  if (auto cached = cache->Find(key)) return *cached;
  auto parsed = std::make_shared<v1::ModelVersion>();
  // inputs/outputs are stored as the JSON arrays of the message's own fields.
  if (absl::Status s = MessageFromJson(absl::string_view(key).substr(0, json_size), parsed.get());
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Labels> parsed_labels = LabelsFromJson(labels);
  if (!parsed_labels.ok()) return parsed_labels.status();
  parsed->mutable_labels()->insert(parsed_labels->begin(), parsed_labels->end());
  cache->Put(std::move(key), parsed);
  return parsed;
}

}  // namespace

absl::StatusOr<v1::ModelVersion> ModelVersionFromRow(const pqxx::row& row) {
  auto text = [&row](int column) {
    return absl::string_view(row[column].c_str(), row[column].size());
  };
  auto specs = ParsedSpecs(text(5), text(6), text(7));
  if (!specs.ok()) return specs.status();
  v1::ModelVersion mv = **specs;
  mv.set_model_name(row[0].as<std::string>());
  mv.set_version(row[1].as<std::string>());
  mv.set_format(FromDb<v1::ModelFormat>(row[2].as<std::string>(), "MODEL_FORMAT_"));
  mv.set_artifact_sha256(pqxx::binarystring(row[3]).str());
  mv.set_size_bytes(row[4].as<uint64_t>());
  mv.set_metadata_version(row[8].as<uint64_t>());
  *mv.mutable_created_at() = UnixToTimestamp(row[9].as<int64_t>());
  return mv;
}

}  // namespace edgefleet::server::internal
