#include "server/capture/capture_service.h"

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "common/core/names.h"
#include "common/crypto/sha256.h"
#include "server/store/paging.h"

namespace edgefleet::server::capture {
namespace {

constexpr int64_t kDaySeconds = 24 * 3600;

absl::Status CheckTensors(const char* what,
                          const google::protobuf::RepeatedPtrField<v1::Tensor>& tensors) {
  for (const v1::Tensor& t : tensors) {
    if (t.name().empty()) return absl::InvalidArgumentError(absl::StrCat(what, " without a name"));
    uint64_t elements = 1;
    for (int64_t d : t.shape()) {
      if (d < 0 || (d > 0 && elements > (uint64_t{1} << 40) / static_cast<uint64_t>(d))) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, " '", t.name(), "' has a bad dimension ", d));
      }
      elements *= static_cast<uint64_t>(d);
    }
    if (elements != static_cast<uint64_t>(t.data_size())) {
      return absl::InvalidArgumentError(absl::StrCat(what, " '", t.name(), "' has ", t.data_size(),
                                                     " values for a shape of ", elements));
    }
  }
  return absl::OkStatus();
}

int64_t DayStart(int64_t unix_seconds) {
  const int64_t day =
      unix_seconds >= 0 ? unix_seconds / kDaySeconds : (unix_seconds + 1) / kDaySeconds - 1;
  return day * kDaySeconds;
}

}  // namespace

v1::CaptureInfo DescribeRecord(const v1::CaptureRecord& record) {
  v1::CaptureInfo info;
  info.set_model_name(record.model_name());
  info.set_version(record.version());
  *info.mutable_captured_at() = record.captured_at();
  info.set_trigger(record.trigger());
  for (const auto* list : {&record.inputs(), &record.outputs()}) {
    for (const v1::Tensor& t : *list) {
      v1::CapturedTensorInfo* tensor = info.add_tensors();
      tensor->set_name(t.name());
      *tensor->mutable_shape() = t.shape();
      tensor->set_output(list == &record.outputs());
    }
  }
  return info;
}

absl::Status CheckRecord(const v1::CaptureRecord& record) {
  if (auto s = ValidateModelName(record.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(record.version()); !s.ok()) return s;
  if (record.trigger() == v1::CAPTURE_TRIGGER_UNSPECIFIED ||
      !v1::CaptureTrigger_IsValid(record.trigger())) {
    return absl::InvalidArgumentError("the capture names no trigger");
  }
  if (!record.has_captured_at() || record.captured_at().seconds() <= 0) {
    return absl::InvalidArgumentError("the capture has no captured_at");
  }
  if (record.inputs().empty()) return absl::InvalidArgumentError("the capture has no inputs");
  if (auto s = CheckTensors("input", record.inputs()); !s.ok()) return s;
  return CheckTensors("output", record.outputs());
}

CaptureService::CaptureService(Transactor& db, CaptureStore& store, ArtifactStore& blobs,
                               const Clock& clock, ServerMetrics& metrics, CaptureOptions options)
    : db_(db), store_(store), blobs_(blobs), clock_(clock), metrics_(metrics), options_(options) {}

absl::StatusOr<v1::UploadCaptureResponse> CaptureService::Ingest(
    const std::string& device_id, const v1::UploadCaptureRequest& request) {
  if (request.stream_id() == 0 && !request.captures().empty()) {
    return absl::InvalidArgumentError("an upload of captures needs its stream_id");
  }
  v1::UploadCaptureResponse response;
  for (const v1::CaptureUpload& upload : request.captures()) {
    auto refusal = Store(device_id, request.stream_id(), upload);
    if (!refusal.ok()) return refusal.status();
    if (refusal->reason.empty()) {
      response.add_accepted_sequences(upload.sequence());
    } else {
      v1::CaptureRejection* rejected = response.add_rejected();
      rejected->set_sequence(upload.sequence());
      rejected->set_reason(refusal->reason);
      Logger("capture")->warn("capture refused device={} sequence={} reason={}", device_id,
                              upload.sequence(), EscapeForLog(refusal->reason));
    }
    metrics_.captures.Add({{"result", refusal->result}}).Increment();
  }
  return response;
}

absl::StatusOr<CaptureService::Refusal> CaptureService::Store(const std::string& device_id,
                                                              uint64_t stream_id,
                                                              const v1::CaptureUpload& upload) {
  const std::string& bytes = upload.record();
  if (bytes.size() > options_.max_capture_bytes) {
    return Refusal{"oversize", absl::StrCat("capture of ", bytes.size(),
                                            " bytes is over the server's limit of ",
                                            options_.max_capture_bytes, " bytes")};
  }
  v1::CaptureRecord record;
  if (bytes.empty() || !record.ParseFromString(bytes)) {
    return Refusal{"malformed", "the capture is not a CaptureRecord"};
  }
  if (auto s = CheckRecord(record); !s.ok()) return Refusal{"malformed", std::string(s.message())};
  const int64_t now = ToUnixSeconds(clock_.Now());
  const int64_t captured = record.captured_at().seconds();
  if (captured > now + options_.max_clock_skew.count()) {
    return Refusal{"malformed",
                   absl::StrCat("the capture is from the future (", FormatUnixTime(captured), ")")};
  }
  v1::CaptureInfo info = DescribeRecord(record);
  info.set_sha256(crypto::Sha256Bytes(bytes));
  info.set_size_bytes(bytes.size());
  const int64_t day = DayStart(captured);

  // What the checks decide, in the transaction that stores (and, first, before the payload is
  // written, in a read-only one: a refused capture writes nothing anywhere).
  enum class Verdict { kStore, kDuplicate, kRefused };
  Refusal refusal;
  auto check = [&](Tx& tx) -> absl::StatusOr<Verdict> {
    auto existing = store_.FindByKey(tx, device_id, stream_id, upload.sequence());
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) return Verdict::kDuplicate;
    auto cap = store_.DailyCap(tx, device_id, record.model_name(), record.version());
    if (!cap.ok()) return cap.status();
    if (!cap->has_value()) {
      refusal = {"not_requested",
                 absl::StrCat("no release asks device ", device_id, " to capture model ",
                              record.model_name(), " version ", record.version())};
      return Verdict::kRefused;
    }
    auto used = store_.BytesOnDay(tx, device_id, day);
    if (!used.ok()) return used.status();
    if (*used + bytes.size() > **cap) {
      refusal = {"over_cap",
                 absl::StrCat("capture of ", bytes.size(), " bytes is over the daily cap of ",
                              **cap, " bytes (", *used, " bytes stored for ",
                              FormatUnixTime(day).substr(0, 10), ")")};
      return Verdict::kRefused;
    }
    return Verdict::kStore;
  };
  auto verdict = db_.Transact("check a capture", check);
  if (!verdict.ok()) return verdict.status();
  if (*verdict == Verdict::kDuplicate) return Refusal{"duplicate", ""};
  if (*verdict == Verdict::kRefused) return refusal;

  // Content-addressed and idempotent: a retry, or the same bytes from elsewhere, lands on the
  // same blob. Written before the index row, so a row never names a missing payload.
  auto writer = blobs_.BeginUpload(bytes.size());
  if (!writer.ok()) return writer.status();
  if (auto s = (*writer)->Append(bytes); !s.ok()) return s;
  auto blob = (*writer)->Commit();
  if (!blob.ok()) return blob.status();

  auto stored = db_.Transact("store a capture", [&](Tx& tx) -> absl::StatusOr<Verdict> {
    if (auto s = store_.LockDevice(tx, device_id); !s.ok()) return s;
    auto again = check(tx);  // another upload of this device may have come first
    if (!again.ok() || *again != Verdict::kStore) return again;
    auto id = store_.Insert(tx, device_id, stream_id, upload.sequence(), info, now);
    if (!id.ok()) return id.status();
    return Verdict::kStore;
  });
  if (!stored.ok()) return stored.status();
  if (*stored == Verdict::kDuplicate) return Refusal{"duplicate", ""};
  if (*stored == Verdict::kRefused) return refusal;
  metrics_.capture_bytes.Add({}).Increment(static_cast<double>(bytes.size()));
  return Refusal{"stored", ""};
}

absl::StatusOr<v1::ListCapturesResponse> CaptureService::List(
    const v1::ListCapturesRequest& request) {
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model_name: ", s.message()));
  }
  if (!request.version().empty()) {
    if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  }
  auto page = ReadPageRequest("ListCaptures", request.page_size(), request.page_token());
  if (!page.ok()) return page.status();
  CaptureFilter filter{request.model_name(), request.version(), std::nullopt};
  if (request.has_since()) filter.since_unix = request.since().seconds();
  auto captures = store_.ListPage(filter, *page);
  if (!captures.ok()) return captures.status();
  v1::ListCapturesResponse response;
  for (auto& c : captures->items) *response.add_captures() = std::move(c);
  response.set_next_page_token(NextPageToken("ListCaptures", captures->next_after));
  return response;
}

absl::StatusOr<v1::GetCaptureResponse> CaptureService::Get(const v1::GetCaptureRequest& request) {
  if (request.capture_id().empty()) return absl::InvalidArgumentError("capture_id is required");
  auto info = store_.Get(request.capture_id());
  if (!info.ok()) return info.status();
  auto reader = blobs_.Open(info->sha256());
  if (!reader.ok()) {
    return absl::DataLossError(absl::StrCat("capture ", request.capture_id(),
                                            ": payload missing: ", reader.status().message()));
  }
  std::string bytes;
  while (bytes.size() < (*reader)->size_bytes()) {
    auto chunk = (*reader)->ReadAt(bytes.size(), 1 << 20);
    if (!chunk.ok()) return chunk.status();
    if (chunk->empty()) break;
    bytes += *chunk;
  }
  v1::GetCaptureResponse response;
  if (crypto::Sha256Bytes(bytes) != info->sha256() ||
      !response.mutable_record()->ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("capture ", request.capture_id(),
                                            ": stored payload does not match its digest"));
  }
  *response.mutable_info() = *std::move(info);
  return response;
}

absl::Status CaptureService::Maintain() {
  const int64_t before =
      ToUnixSeconds(clock_.Now()) -
      std::chrono::duration_cast<std::chrono::seconds>(options_.retention).count();
  auto unreferenced =
      db_.Transact("delete old captures", [&](Tx& tx) { return store_.DeleteBefore(tx, before); });
  if (!unreferenced.ok()) return unreferenced.status();
  for (const std::string& sha : *unreferenced) {
    if (auto s = blobs_.Remove(sha); !s.ok() && !absl::IsNotFound(s)) return s;
  }
  if (!unreferenced->empty()) {
    Logger("capture")->info("captures past the retention removed payloads={}",
                            unreferenced->size());
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::server::capture
