// Why: after the tensor codec, `auto` used to try the matchers whenever the tensor patch was not
// clearly small. A matcher costs a suffix sort of old and, on bytes it cannot match, a search of
// the suffix array at every byte of new: on a 28 MB model whose classifier (93% of the bytes) was
// retrained it ran out of auto's 60 s budget and found nothing.
//
// What it estimates: a matcher can only beat the tensor patch on bytes the tensor codec pays for
// that also occur in old where the tensor codec does not look (moved, duplicated or re-laid-out
// content). Bytes equal to the old bytes the tensor codec aligns them with cost it almost
// nothing, and a residual it already codes with match-zstd has been matched. So: sample windows
// of new, keep the costly ones (neither of those), and look them up in old; a residual window
// counts only where it occurs outside the old structure that seeds the residual coder's zstd
// window (that coder copies from there already). If fewer than 1 in 200 looked-up windows are
// found, skipping the matchers gives up at most about that share of the tensor patch (the found
// bytes are all a matcher could copy; on the rest it does no better than the tensor codec's
// planes), and saves their whole running time.
#include "common/delta/internal/match_estimate.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>
#include <vector>

#include "common/delta/internal/codecs.h"

namespace edgefleet::delta::internal {
namespace {

// A window this long occurring in old is a copy a matcher would take (bsdiff40 switches to a new
// match only when it beats the current offset by 8 bytes); random bytes never repeat at this
// length in files of any size we handle.
constexpr size_t kWindowBytes = 16;
// Positions drawn over new (stratified: one per equal slice, at a seeded random offset). Checking
// one against its aligned old bytes is a 16-byte compare.
constexpr size_t kDraws = 65536;
// Costly windows looked up in old (a uniform subset when there are more): the share found is
// then known to within about +-0.2% around the 0.5% threshold.
constexpr size_t kMaxLookups = 8192;
// Matching can pay when at least 1 in this many looked-up windows is found in old.
constexpr uint64_t kFoundOneIn = 200;
// A bitmap over hashes filters old's positions before the sorted lookup: 2^21 bits (256 KiB),
// under 0.4% false hits with kMaxLookups windows.
constexpr int kFilterBits = 21;

uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

uint64_t WindowHash(const char* p) {
  uint64_t h = Load64(p) * 0x9e3779b97f4a7c15ULL ^ std::rotl(Load64(p + 8), 29);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 29);
}

// splitmix64: the draws' offsets within their slices.
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

enum class Coding {
  kCheap,     // equal to the old bytes its region is aligned with, or in a matched residual
  kRegion,    // in a region, and different from its aligned old bytes (or it has none)
  kResidual,  // in a residual coded with old structure as its zstd prefix
};

// How the tensor codec codes the window at `pos` (compared with its aligned old bytes up to the
// region's end).
Coding HowTensorCodecCodes(std::string_view old_data, std::string_view new_data,
                           const TensorAlignment& alignment, uint64_t pos) {
  const auto& regions = alignment.regions;
  auto it = std::upper_bound(
      regions.begin(), regions.end(), pos,
      [](uint64_t p, const TensorAlignment::Region& r) { return p < r.new_offset; });
  if (it == regions.begin() || pos >= std::prev(it)->new_offset + std::prev(it)->length) {
    return alignment.residual_matched ? Coding::kCheap : Coding::kResidual;
  }
  const TensorAlignment::Region& r = *std::prev(it);
  if (!r.old_offset) return Coding::kRegion;  // coded without a reference
  const uint64_t len = std::min<uint64_t>(kWindowBytes, r.new_offset + r.length - pos);
  const bool equal = std::memcmp(new_data.data() + pos,
                                 old_data.data() + *r.old_offset + (pos - r.new_offset), len) == 0;
  return equal ? Coding::kCheap : Coding::kRegion;
}

}  // namespace

MatchingEstimate EstimateMatching(std::string_view old_data, std::string_view new_data) {
  MatchingEstimate estimate;
  // Nothing of kWindowBytes can be copied from an old file shorter than that, and a new file that
  // short is not worth judging: leave the decision to the matchers.
  if (old_data.size() < kWindowBytes || new_data.size() < kWindowBytes) return estimate;
  const TensorAlignment alignment = AlignTensors(old_data, new_data);
  // Nothing aligned (not ONNX and not the same length): the tensor codec's whole patch is then
  // its residual coder, itself a matcher, and this estimate has nothing to compare with.
  if (alignment.regions.empty()) return estimate;

  const uint64_t starts = new_data.size() - kWindowBytes + 1;
  const uint64_t draws = std::min<uint64_t>(kDraws, starts);
  uint64_t state = 0x5eed;
  std::vector<uint64_t> costly;   // positions in new
  std::vector<bool> in_residual;  // per costly position
  // Slice i is [floor(i * starts / draws), floor((i + 1) * starts / draws)), computed as
  // i * q + floor(i * r / draws) so that nothing overflows.
  const uint64_t q = starts / draws;
  const uint64_t r = starts % draws;
  auto slice_start = [&](uint64_t i) { return i * q + i * r / draws; };
  for (uint64_t i = 0; i < draws; ++i) {
    const uint64_t lo = slice_start(i);
    const uint64_t hi = slice_start(i + 1);
    const uint64_t pos = lo + NextRandom(state) % std::max<uint64_t>(hi - lo, 1);
    ++estimate.sampled;
    const Coding coding = HowTensorCodecCodes(old_data, new_data, alignment, pos);
    if (coding != Coding::kCheap) {
      costly.push_back(pos);
      in_residual.push_back(coding == Coding::kResidual);
    }
  }
  estimate.costly = costly.size();
  if (costly.empty()) {
    estimate.can_pay = false;  // the tensor patch is (almost) all it takes
    return estimate;
  }

  // Every k-th costly window, so that at most kMaxLookups are looked up.
  const size_t stride = (costly.size() + kMaxLookups - 1) / kMaxLookups;
  struct Lookup {
    uint64_t hash;
    uint64_t pos = 0;  // in new
    bool residual = false;
    bool operator<(const Lookup& o) const { return hash < o.hash; }
  };
  std::vector<Lookup> lookups;  // sorted by hash
  std::vector<uint64_t> filter(size_t{1} << (kFilterBits - 6), 0);
  constexpr uint64_t kFilterMask = (uint64_t{1} << kFilterBits) - 1;
  for (size_t i = 0; i < costly.size(); i += stride) {
    const uint64_t h = WindowHash(new_data.data() + costly[i]);
    lookups.push_back({.hash = h, .pos = costly[i], .residual = in_residual[i]});
    filter[(h & kFilterMask) >> 6] |= uint64_t{1} << (h & 63);
  }
  std::stable_sort(lookups.begin(), lookups.end());
  estimate.looked_up = lookups.size();
  std::vector<bool> found(lookups.size(), false);
  const uint64_t needed = (lookups.size() + kFoundOneIn - 1) / kFoundOneIn;

  // One pass over old; it stops as soon as enough windows are found for matching to pay.
  const char* old_bytes = old_data.data();
  const uint64_t old_starts = old_data.size() - kWindowBytes + 1;
  const auto& prefix = alignment.prefix;
  size_t next_prefix = 0;  // the first prefix range that ends after `o`
  for (uint64_t o = 0; o < old_starts && estimate.found < needed; ++o) {
    const uint64_t h = WindowHash(old_bytes + o);
    if ((filter[(h & kFilterMask) >> 6] >> (h & 63) & 1) == 0) continue;
    while (next_prefix < prefix.size() &&
           prefix[next_prefix].first + prefix[next_prefix].second <= o) {
      ++next_prefix;
    }
    const bool in_prefix = next_prefix < prefix.size() && prefix[next_prefix].first <= o;
    auto it = std::lower_bound(lookups.begin(), lookups.end(), Lookup{.hash = h});
    for (; it != lookups.end() && it->hash == h; ++it) {
      const size_t index = static_cast<size_t>(it - lookups.begin());
      if (!found[index] && !(it->residual && in_prefix) &&
          std::memcmp(old_bytes + o, new_data.data() + it->pos, kWindowBytes) == 0) {
        found[index] = true;
        ++estimate.found;
      }
    }
  }
  // `found` counts up to the decision: the scan stops once matching can pay.
  estimate.can_pay = estimate.found >= needed;
  return estimate;
}

}  // namespace edgefleet::delta::internal
