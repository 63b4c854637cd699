#include "common/delta/internal/matcher.h"

#include <divsufsort.h>
#include <divsufsort64.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace edgefleet::delta::internal {
namespace {

constexpr size_t kChunkBytes = size_t{64} << 10;

// A non-null pointer for empty inputs: memcmp and friends must never see nullptr.
const uint8_t* Bytes(std::string_view data) {
  static const uint8_t kEmpty = 0;
  return data.empty() ? &kEmpty : reinterpret_cast<const uint8_t*>(data.data());
}

int64_t MatchLen(const uint8_t* a, int64_t a_size, const uint8_t* b, int64_t b_size) {
  const int64_t n = std::min(a_size, b_size);
  int64_t i = 0;
  // Word-at-a-time first: the result is the same as bsdiff's byte loop, only faster.
  while (i + 8 <= n) {
    uint64_t x;
    uint64_t y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    if (x != y) break;
    i += 8;
  }
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

// The suffix array with bsdiff's layout: index 0 holds the empty suffix (old_size), then the
// sorted non-empty suffixes as libdivsufsort returns them. Index is int32_t below 2 GiB (half
// the memory), int64_t above.
template <typename Index>
absl::StatusOr<std::vector<Index>> BuildSuffixArray(const uint8_t* old, int64_t old_size) {
  std::vector<Index> sa(static_cast<size_t>(old_size) + 1);
  sa[0] = static_cast<Index>(old_size);
  int rc;
  if constexpr (sizeof(Index) == 4) {
    rc = divsufsort(old, sa.data() + 1, static_cast<saidx_t>(old_size));
  } else {
    rc = divsufsort64(old, sa.data() + 1, static_cast<saidx64_t>(old_size));
  }
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("suffix sorting ", old_size, " bytes failed (", rc, ")"));
  }
  return sa;
}

template <typename Index>
class Matcher {
 public:
  Matcher(const uint8_t* old, int64_t old_size, const std::vector<Index>& sa)
      : old_(old), old_size_(old_size), sa_(sa) {}

  // bsdiff's search(): binary search over the suffix array for the longest match of `nw`.
  int64_t Search(const uint8_t* nw, int64_t new_size, int64_t* pos) const {
    int64_t st = 0;
    int64_t en = old_size_;
    while (en - st >= 2) {
      const int64_t x = st + (en - st) / 2;
      const int64_t sx = sa_[x];
      if (std::memcmp(old_ + sx, nw, std::min(old_size_ - sx, new_size)) < 0) {
        st = x;
      } else {
        en = x;
      }
    }
    const int64_t ss = sa_[st];
    const int64_t se = sa_[en];
    const int64_t x = MatchLen(old_ + ss, old_size_ - ss, nw, new_size);
    const int64_t y = MatchLen(old_ + se, old_size_ - se, nw, new_size);
    if (x > y) {
      *pos = ss;
      return x;
    }
    *pos = se;
    return y;
  }

 private:
  const uint8_t* old_;
  int64_t old_size_;
  const std::vector<Index>& sa_;
};

// The main loop of bsdiff 4.3's bsdiff.c, variable for variable, so that our patches are the
// ones Debian's bsdiff writes.
template <typename Index>
absl::StatusOr<std::vector<MatchStep>> Run(const uint8_t* old, int64_t oldsize, const uint8_t* nw,
                                           int64_t newsize,
                                           std::chrono::steady_clock::time_point deadline) {
  absl::StatusOr<std::vector<Index>> sa = BuildSuffixArray<Index>(old, oldsize);
  if (!sa.ok()) return sa.status();
  const Matcher<Index> matcher(old, oldsize, *sa);
  std::vector<MatchStep> steps;

  int64_t scan = 0, len = 0, pos = 0;
  int64_t lastscan = 0, lastpos = 0, lastoffset = 0;
  uint64_t searches = 0;
  while (scan < newsize) {
    int64_t oldscore = 0;
    int64_t scsc;
    for (scsc = scan += len; scan < newsize; scan++) {
      if ((++searches & 0xfff) == 0 && std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError("matching ran out of its time budget");
      }
      len = matcher.Search(nw + scan, newsize - scan, &pos);
      for (; scsc < scan + len; scsc++) {
        const int64_t o = scsc + lastoffset;
        if (o >= 0 && o < oldsize && old[o] == nw[scsc]) oldscore++;
      }
      if ((len == oldscore && len != 0) || len > oldscore + 8) break;
      const int64_t o = scan + lastoffset;
      if (o >= 0 && o < oldsize && old[o] == nw[scan]) oldscore--;
    }

    if (len != oldscore || scan == newsize) {
      int64_t s = 0, sf = 0, lenf = 0;
      for (int64_t i = 0; lastscan + i < scan && lastpos + i < oldsize;) {
        if (old[lastpos + i] == nw[lastscan + i]) s++;
        i++;
        if (s * 2 - i > sf * 2 - lenf) {
          sf = s;
          lenf = i;
        }
      }

      int64_t lenb = 0;
      if (scan < newsize) {
        int64_t sb = 0;
        s = 0;
        for (int64_t i = 1; scan >= lastscan + i && pos >= i; i++) {
          if (old[pos - i] == nw[scan - i]) s++;
          if (s * 2 - i > sb * 2 - lenb) {
            sb = s;
            lenb = i;
          }
        }
      }

      if (lastscan + lenf > scan - lenb) {
        const int64_t overlap = (lastscan + lenf) - (scan - lenb);
        int64_t ss = 0, lens = 0;
        s = 0;
        for (int64_t i = 0; i < overlap; i++) {
          if (nw[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i]) s++;
          if (nw[scan - lenb + i] == old[pos - lenb + i]) s--;
          if (s > ss) {
            ss = s;
            lens = i + 1;
          }
        }
        lenf += lens - overlap;
        lenb -= lens;
      }

      steps.push_back(MatchStep{
          .diff_len = static_cast<uint64_t>(lenf),
          .extra_len = static_cast<uint64_t>((scan - lenb) - (lastscan + lenf)),
          .seek = (pos - lenb) - (lastpos + lenf),
      });

      lastscan = scan - lenb;
      lastpos = pos - lenb;
      lastoffset = pos - scan;
    }
  }
  return steps;
}

}  // namespace

absl::StatusOr<std::vector<MatchStep>> ComputeMatchSteps(
    std::string_view old_data, std::string_view new_data,
    std::chrono::steady_clock::time_point deadline) {
  constexpr uint64_t kMax = uint64_t{std::numeric_limits<int64_t>::max()} / 2;
  if (old_data.size() > kMax || new_data.size() > kMax) {
    return absl::InvalidArgumentError("input too large to diff");
  }
  const auto old_size = static_cast<int64_t>(old_data.size());
  const auto new_size = static_cast<int64_t>(new_data.size());
  if (old_size < std::numeric_limits<int32_t>::max()) {
    return Run<int32_t>(Bytes(old_data), old_size, Bytes(new_data), new_size, deadline);
  }
  return Run<int64_t>(Bytes(old_data), old_size, Bytes(new_data), new_size, deadline);
}

absl::Status ForEachDiffChunk(std::string_view old_data, std::string_view new_data,
                              const std::vector<MatchStep>& steps,
                              absl::FunctionRef<absl::Status(std::string_view)> diff) {
  const uint8_t* old = Bytes(old_data);
  const uint8_t* nw = Bytes(new_data);
  std::string buffer(kChunkBytes, '\0');
  uint64_t new_pos = 0;
  int64_t old_pos = 0;
  for (const MatchStep& step : steps) {
    for (uint64_t done = 0; done < step.diff_len;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, step.diff_len - done));
      for (size_t i = 0; i < n; ++i) {
        buffer[i] = static_cast<char>(nw[new_pos + done + i] - old[old_pos + done + i]);
      }
      if (absl::Status s = diff(std::string_view(buffer.data(), n)); !s.ok()) return s;
      done += n;
    }
    new_pos += step.diff_len + step.extra_len;
    old_pos += static_cast<int64_t>(step.diff_len) + step.seek;
  }
  return absl::OkStatus();
}

absl::Status ForEachExtraChunk(std::string_view new_data, const std::vector<MatchStep>& steps,
                               absl::FunctionRef<absl::Status(std::string_view)> extra) {
  uint64_t new_pos = 0;
  for (const MatchStep& step : steps) {
    new_pos += step.diff_len;
    for (uint64_t done = 0; done < step.extra_len;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, step.extra_len - done));
      if (absl::Status s = extra(new_data.substr(new_pos + done, n)); !s.ok()) return s;
      done += n;
    }
    new_pos += step.extra_len;
  }
  return absl::OkStatus();
}

uint64_t TotalDiffBytes(const std::vector<MatchStep>& steps) {
  uint64_t total = 0;
  for (const MatchStep& step : steps) total += step.diff_len;
  return total;
}

uint64_t TotalExtraBytes(const std::vector<MatchStep>& steps) {
  uint64_t total = 0;
  for (const MatchStep& step : steps) total += step.extra_len;
  return total;
}

}  // namespace edgefleet::delta::internal
