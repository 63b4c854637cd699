#include "server/rollout/membership.h"

#include <algorithm>
#include <map>
#include <queue>
#include <tuple>

#include "common/crypto/sha256.h"

namespace edgefleet::server::rollout {
namespace {

struct Group {
  std::string hw;
  int64_t size = 0;                                          // matching devices with this hw value
  int64_t chosen = 0;                                        // assigned or picked so far
  std::vector<std::pair<uint64_t, std::string>> unassigned;  // (rank, id), best last
};

}  // namespace

uint64_t MembershipRank(std::string_view rollout_key, std::string_view device_id) {
  crypto::Sha256 hash;
  hash.Update(rollout_key);
  hash.Update(std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" must differ
  hash.Update(device_id);
  const std::string digest = hash.Finish();
  uint64_t rank = 0;
  for (size_t i = 0; i < 8; ++i) rank = (rank << 8) | static_cast<unsigned char>(digest[i]);
  return rank;
}

std::vector<std::string> PickNewMembers(std::string_view rollout_key,
                                        const std::vector<MatchingDevice>& devices,
                                        uint64_t target) {
  std::map<std::string, Group> groups;
  uint64_t assigned = 0;
  for (const MatchingDevice& device : devices) {
    Group& group = groups[device.hw];
    group.hw = device.hw;
    ++group.size;
    if (device.assigned) {
      ++group.chosen;
      ++assigned;
    } else {
      group.unassigned.emplace_back(MembershipRank(rollout_key, device.device_id),
                                    device.device_id);
    }
  }
  target = std::min<uint64_t>(target, devices.size());
  if (target <= assigned) return {};
  const int64_t total = static_cast<int64_t>(devices.size());
  const int64_t goal = static_cast<int64_t>(target);

  // Which group gets the next pick: one with none chosen yet, then the one furthest below its
  // share goal * size / total (compared as goal * size - chosen * total, exact in integers), then
  // the larger group, then the lower hw value.
  auto key = [&](const Group* g) {
    return std::make_tuple(g->chosen == 0, goal * g->size - g->chosen * total, g->size,
                           std::string_view(g->hw));
  };
  auto less_urgent = [&](const Group* a, const Group* b) {
    auto ka = key(a);
    auto kb = key(b);
    if (std::get<0>(ka) != std::get<0>(kb)) return std::get<0>(kb);
    if (std::get<1>(ka) != std::get<1>(kb)) return std::get<1>(ka) < std::get<1>(kb);
    if (std::get<2>(ka) != std::get<2>(kb)) return std::get<2>(ka) < std::get<2>(kb);
    return std::get<3>(ka) > std::get<3>(kb);
  };
  std::priority_queue<Group*, std::vector<Group*>, decltype(less_urgent)> queue(less_urgent);
  for (auto& [hw, group] : groups) {
    // Lowest rank (then id) last, so picking is a pop_back.
    std::sort(group.unassigned.begin(), group.unassigned.end(),
              [](const auto& a, const auto& b) { return b < a; });
    if (!group.unassigned.empty()) queue.push(&group);
  }

  std::vector<std::string> picked;
  picked.reserve(target - assigned);
  while (picked.size() < target - assigned && !queue.empty()) {
    Group* group = queue.top();
    queue.pop();
    picked.push_back(std::move(group->unassigned.back().second));
    group->unassigned.pop_back();
    ++group->chosen;
    if (!group->unassigned.empty()) queue.push(group);
  }
  return picked;
}

std::optional<size_t> WaveForLateDevice(v1::RolloutState state, size_t current_wave,
                                        size_t wave_count) {
  if (wave_count == 0) return std::nullopt;
  switch (state) {
    case v1::ROLLOUT_STATE_RUNNING:
      return std::min(current_wave, wave_count - 1);
    case v1::ROLLOUT_STATE_SUCCEEDED:
      return wave_count - 1;
    default:
      return std::nullopt;
  }
}

}  // namespace edgefleet::server::rollout
