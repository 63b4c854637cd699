#include "server/patches/patch_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta.h"

namespace edgefleet::server {
namespace {

// Streams a patch straight into the artifact store.
class ArtifactSink final : public delta::ByteSink {
 public:
  explicit ArtifactSink(ArtifactWriter& writer) : writer_(writer) {}
  absl::Status Write(std::string_view data) override { return writer_.Append(data); }

 private:
  ArtifactWriter& writer_;
};

}  // namespace

PatchService::PatchService(Transactor& db, PatchStore& repo, ArtifactStore& artifacts,
                           ServerMetrics& metrics, PatchServiceOptions options)
    : db_(db),
      repo_(repo),
      artifacts_(artifacts),
      metrics_(metrics),
      options_(options),
      owner_(options.owner.empty() ? absl::StrCat("patches-", crypto::ToHex(crypto::RandomBytes(6)))
                                   : options.owner) {}

PatchService::~PatchService() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& worker : workers_) worker.join();
  if (renewer_.joinable()) renewer_.join();
}

absl::Status PatchService::Start() {
  std::lock_guard lock(mu_);
  if (!workers_.empty()) return absl::OkStatus();
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers_.emplace_back([this] { Work(); });
  renewer_ = std::thread([this] { RenewLeases(); });
  Logger("patches")->info("patch workers started owner={} workers={} lease_seconds={}", owner_,
                          workers_.size(), options_.lease.count());
  return absl::OkStatus();
}

absl::Status PatchService::Request(const std::string& from_sha256, const std::string& to_sha256) {
  if (from_sha256 == to_sha256) return absl::OkStatus();
  auto queued = db_.Transact("queue patch",
                             [&](Tx& tx) { return repo_.Enqueue(tx, from_sha256, to_sha256); });
  if (!queued.ok()) return queued.status();
  if (*queued) {
    std::lock_guard lock(mu_);
    ++wake_seq_;
    cv_.notify_all();  // the lease renewer waits on it too
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::PatchOffer>> PatchService::Offer(const std::string& from_sha256,
                                                                  const std::string& to_sha256,
                                                                  uint64_t to_size_bytes,
                                                                  uint32_t decoder_version) {
  auto record = repo_.Find(from_sha256, to_sha256);
  if (!record.ok()) return record.status();
  if (!*record) {
    if (auto s = Request(from_sha256, to_sha256); !s.ok()) return s;
    return std::optional<v1::PatchOffer>();
  }
  const PatchRecord& r = **record;
  if (r.state != PatchRecord::State::kReady || r.size_bytes >= to_size_bytes) {
    return std::optional<v1::PatchOffer>();
  }
  // Tensor patches are written in this build's format; an older agent would download one, fail
  // to decode it and fetch the full artifact as well, so it is sent the full artifact at once.
  if (r.codec == delta::CodecName(delta::Codec::kTensor) &&
      decoder_version < delta::kDecoderFormatVersion) {
    return std::optional<v1::PatchOffer>();
  }
  v1::PatchOffer offer;
  offer.set_from_artifact_sha256(from_sha256);
  offer.set_patch_sha256(r.patch_sha256);
  offer.set_patch_size_bytes(r.size_bytes);
  offer.set_codec(r.codec);
  return std::optional<v1::PatchOffer>(std::move(offer));
}

void PatchService::WaitIdle() {
  std::unique_lock lock(mu_);
  const uint64_t target = ++wake_seq_;
  cv_.notify_all();
  idle_cv_.wait(lock, [&] { return busy_ == 0 && quiet_seq_ >= target; });
}

void PatchService::Work() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const uint64_t seq = wake_seq_;
    // Counted busy while claiming too: a claim that finds nothing because this one holds the
    // row lock must not let WaitIdle return before this one computes.
    ++busy_;
    lock.unlock();
    auto claim = db_.Transact("claim patch", [&](Tx& tx) {
      return repo_.Claim(tx, owner_, options_.lease, options_.max_attempts);
    });
    if (claim.ok() && claim->has_value()) {
      const std::pair<std::string, std::string> pair((*claim)->from_sha256, (*claim)->to_sha256);
      lock.lock();
      in_flight_.insert(pair);
      lock.unlock();
      Compute(**claim);
      lock.lock();
      in_flight_.erase(pair);
      --busy_;
      idle_cv_.notify_all();
      continue;  // there may be more
    }
    if (!claim.ok()) Logger("patches")->warn("cannot claim a patch: {}", claim.status().ToString());
    lock.lock();
    --busy_;
    if (claim.ok()) quiet_seq_ = std::max(quiet_seq_, seq);
    idle_cv_.notify_all();
    cv_.wait_for(lock, options_.poll_interval, [&] { return stopping_ || wake_seq_ != seq; });
  }
}

void PatchService::RenewLeases() {
  const auto every =
      std::max<std::chrono::milliseconds>(options_.lease / 3, std::chrono::seconds(1));
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, every, [this] { return stopping_; })) {
    const auto pairs = in_flight_;
    lock.unlock();
    for (const auto& pair : pairs) {
      // Named, not a structured binding: clang 14 (the sanitizer builds) cannot capture one.
      const std::string& from = pair.first;
      const std::string& to = pair.second;
      auto held = db_.Transact("renew patch lease", [&](Tx& tx) {
        return repo_.Renew(tx, from, to, owner_, options_.lease);
      });
      if (!held.ok()) {
        Logger("patches")->warn("cannot renew a patch lease from={} to={}: {}",
                                crypto::ToHex(from).substr(0, 12), crypto::ToHex(to).substr(0, 12),
                                held.status().ToString());
      } else if (!*held) {
        Logger("patches")->warn(
            "lost the lease of a patch computation from={} to={}: another replica took it over",
            crypto::ToHex(from).substr(0, 12), crypto::ToHex(to).substr(0, 12));
      }
    }
    lock.lock();
  }
}

void PatchService::Compute(const PatchClaim& claim) {
  auto log = Logger("patches");
  const std::string& from_sha256 = claim.from_sha256;
  const std::string& to_sha256 = claim.to_sha256;
  const auto start = std::chrono::steady_clock::now();
  PatchRecord record{from_sha256, to_sha256, PatchRecord::State::kFailed, "", "", 0, 0, ""};
  auto outcome = [&]() -> absl::Status {
    auto old_path = artifacts_.LocalPath(from_sha256);
    if (!old_path.ok()) return old_path.status();
    auto new_path = artifacts_.LocalPath(to_sha256);
    if (!new_path.ok()) return new_path.status();
    auto old_file = delta::MappedFile::Open(*old_path);
    if (!old_file.ok()) return old_file.status();
    auto new_file = delta::MappedFile::Open(*new_path);
    if (!new_file.ok()) return new_file.status();
    auto writer = artifacts_.BeginUpload(std::max<uint64_t>(new_file->get()->data().size(), 1) * 2);
    if (!writer.ok()) return writer.status();
    ArtifactSink sink(**writer);
    delta::DiffOptions options;
    options.time_budget = options_.time_budget;
    auto diff =
        delta::Diff((*old_file)->data(), (*new_file)->data(), delta::Codec::kAuto, sink, options);
    if (!diff.ok()) return diff.status();
    record.codec = std::string(delta::CodecName(diff->codec));
    if (diff->full_is_smaller || diff->patch_size_bytes >= (*new_file)->data().size()) {
      record.state = PatchRecord::State::kNotSmaller;
      return absl::OkStatus();  // the uncommitted upload is discarded
    }
    auto stored = (*writer)->Commit();
    if (!stored.ok()) return stored.status();
    record.state = PatchRecord::State::kReady;
    record.patch_sha256 = stored->sha256;
    record.size_bytes = stored->size_bytes;
    return absl::OkStatus();
  }();
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  record.compute_seconds = elapsed.count();
  if (!outcome.ok()) record.detail = std::string(outcome.message());
  const char* result = record.state == PatchRecord::State::kReady        ? "ready"
                       : record.state == PatchRecord::State::kNotSmaller ? "not_smaller"
                                                                         : "failed";
  metrics_.patch_compute_seconds.Add({}).Observe(record.compute_seconds);
  auto recorded =
      db_.Transact("record patch", [&](Tx& tx) { return repo_.Finish(tx, record, owner_); });
  if (!recorded.ok()) {
    // The lease runs out and another replica (or this one) computes the pair again.
    log->error("cannot record patch: {}", recorded.status().ToString());
    return;
  }
  if (!*recorded) {
    log->warn("patch computed but not recorded from={} to={}: the lease passed to another replica",
              crypto::ToHex(from_sha256).substr(0, 12), crypto::ToHex(to_sha256).substr(0, 12));
    return;
  }
  metrics_.patches_computed.Add({{"result", result}}).Increment();
  log->info(
      "patch computed from={} to={} result={} codec={} size_bytes={} seconds={:.3f} attempt={} {}",
      crypto::ToHex(from_sha256).substr(0, 12), crypto::ToHex(to_sha256).substr(0, 12), result,
      record.codec, record.size_bytes, record.compute_seconds, claim.attempts, record.detail);
}

}  // namespace edgefleet::server
