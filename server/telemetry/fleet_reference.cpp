#include "server/telemetry/fleet_reference.h"

#include <vector>

#include "common/core/logging.h"
#include "common/crypto/sha256.h"
#include "common/telemetry/reference_profile.h"

namespace edgefleet::server::telemetry {

absl::StatusOr<int> FleetReferences::MakeDue() {
  struct Made {
    std::string model, version;
    v1::ReferenceProfile profile;
  };
  auto made = db_.Transact(
      "make fleet reference profiles", [&](Tx& tx) -> absl::StatusOr<std::vector<Made>> {
        std::vector<Made> out;
        auto claimed = store_.ClaimFleetWork(tx);
        if (!claimed.ok()) return claimed.status();
        if (!*claimed) return out;
        auto versions = store_.VersionsAwaitingReference(tx);
        if (!versions.ok()) return versions.status();
        for (const v1::ModelVersion& v : *versions) {
          const v1::ReferenceProfile binning = edgefleet::telemetry::DefaultProfile(v);
          // Windows of agents that bin otherwise (none, or an older profile) are passed over;
          // reading a few times K keeps one pass bounded.
          auto windows = store_.FirstWindows(tx, v.model_name(), v.version(), 4 * windows_needed_);
          if (!windows.ok()) return windows.status();
          std::vector<v1::TelemetryWindow> chosen;
          for (v1::TelemetryWindow& w : *windows) {
            if (chosen.size() == windows_needed_) break;
            if (w.request_count() > 0 && w.profile_sha256() == binning.profile_sha256()) {
              chosen.push_back(std::move(w));
            }
          }
          if (chosen.size() < windows_needed_) continue;
          v1::ReferenceProfile profile = edgefleet::telemetry::MergeWindows(binning, chosen);
          auto stored = store_.Insert(tx, v.model_name(), v.version(), profile);
          if (!stored.ok()) return stored.status();
          if (*stored) out.push_back(Made{v.model_name(), v.version(), std::move(profile)});
        }
        return out;
      });
  if (!made.ok()) return made.status();
  for (const Made& m : *made) {
    Logger("telemetry")
        ->info("fleet reference made model={} version={} windows={} samples={} sha256={}",
               EscapeForLog(m.model), EscapeForLog(m.version), m.profile.windows(),
               m.profile.samples(), crypto::ToHex(m.profile.profile_sha256()));
  }
  return static_cast<int>(made->size());
}

}  // namespace edgefleet::server::telemetry
