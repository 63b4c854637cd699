// The delta engine end to end: bsdiff40 and match-zstd round trips, byte compatibility with
// Debian's bsdiff/bspatch, refusal of damaged and hostile patches, atomic file output, auto.
#include "common/delta/delta.h"

#include <bzlib.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta_files.h"
#include "common/delta/internal/match_estimate.h"
#include "common/delta/internal/match_zstd.h"
#include "common/delta/internal/matcher.h"
#include "tests/common/delta/test_weights.h"

namespace edgefleet::delta {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// Model-like data: repeated records with small numeric drift, so matches are plentiful.
std::string StructuredBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    const uint32_t v = rng() % 64;
    out.append("weight:");
    out.append(std::to_string(v));
    out.push_back(static_cast<char>(rng() % 4));
  }
  out.resize(n);
  return out;
}

std::string ScatterEdits(std::string data, size_t edits, uint32_t seed) {
  std::mt19937 rng(seed);
  for (size_t i = 0; i < edits && !data.empty(); ++i) {
    data[rng() % data.size()] = static_cast<char>(rng());
  }
  return data;
}

struct Pair {
  std::string name;
  std::string old_data;
  std::string new_data;
};

std::vector<Pair> GeneratedPairs() {
  const std::string base = StructuredBytes(64 << 10, 1);
  const std::string big = StructuredBytes(1 << 20, 2);
  std::vector<Pair> pairs = {
      {"random", RandomBytes(20000, 3), RandomBytes(25000, 4)},
      {"empty old", "", StructuredBytes(5000, 5)},
      {"empty new", base, ""},
      {"both empty", "", ""},
      {"identical", base, base},
      {"appended", base, base + StructuredBytes(3000, 6)},
      {"prepended", base, RandomBytes(777, 7) + base},
      {"scattered edits", base, ScatterEdits(base, 200, 8)},
      {"one byte", "a", "b"},
      {"1 MB structured with edits and a move", big,
       ScatterEdits(big.substr(500000) + big.substr(0, 500000), 2000, 9)},
  };
  return pairs;
}

absl::StatusOr<std::string> ApplyToString(std::string_view old_data, std::string_view patch,
                                          const ApplyOptions& options = {}) {
  StringSink out;
  if (absl::Status s = Apply(old_data, patch, out, options); !s.ok()) return s;
  return std::move(out.data());
}

std::string MakePatch(std::string_view old_data, std::string_view new_data, Codec codec,
                      const DiffOptions& options = {}) {
  StringSink patch;
  absl::StatusOr<DiffResult> result = Diff(old_data, new_data, codec, patch, options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (result.ok()) {
    EXPECT_EQ(result->codec, codec);
    EXPECT_EQ(result->patch_size_bytes, patch.data().size());
  }
  return patch.data();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "delta_test.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream f(path, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int RunShell(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

// A BSDIFF40 file assembled by hand, for hostile control values the encoder never writes.
std::string Bz2(const std::string& data) {
  std::string out(data.size() + data.size() / 100 + 700, '\0');
  unsigned out_len = static_cast<unsigned>(out.size());
  EXPECT_EQ(BZ2_bzBuffToBuffCompress(out.data(), &out_len, const_cast<char*>(data.data()),
                                     static_cast<unsigned>(data.size()), 9, 0, 0),
            BZ_OK);
  out.resize(out_len);
  return out;
}

std::string OffT(int64_t x) {
  std::string out(8, '\0');
  uint64_t y = x < 0 ? uint64_t{0} - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
  for (int i = 0; i < 8; ++i, y >>= 8) out[i] = static_cast<char>(y & 0xff);
  if (x < 0) out[7] = static_cast<char>(out[7] | 0x80);
  return out;
}

std::string HandMadeBsdiff(const std::vector<std::array<int64_t, 3>>& triples,
                           const std::string& diff, const std::string& extra, int64_t new_size) {
  std::string ctrl;
  for (const auto& t : triples) ctrl += OffT(t[0]) + OffT(t[1]) + OffT(t[2]);
  const std::string c = Bz2(ctrl), d = Bz2(diff), e = Bz2(extra);
  return "BSDIFF40" + OffT(static_cast<int64_t>(c.size())) + OffT(static_cast<int64_t>(d.size())) +
         OffT(new_size) + c + d + e;
}

TEST(DeltaCodecNames, ParseAndNameRoundTrip) {
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd, Codec::kTensor, Codec::kAuto}) {
    absl::StatusOr<Codec> parsed = ParseCodec(CodecName(codec));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, codec);
  }
  EXPECT_EQ(CodecName(Codec::kMatchZstd), "match-zstd");
  absl::StatusOr<Codec> bad = ParseCodec("xdelta");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("xdelta"));
}

TEST(DeltaRoundTrip, Bsdiff40RebuildsEveryGeneratedPair) {
  for (const Pair& pair : GeneratedPairs()) {
    SCOPED_TRACE(pair.name);
    const std::string patch = MakePatch(pair.old_data, pair.new_data, Codec::kBsdiff40);
    absl::StatusOr<std::string> rebuilt = ApplyToString(pair.old_data, patch);
    ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
    EXPECT_TRUE(*rebuilt == pair.new_data);
  }
}

TEST(DeltaRoundTrip, MatchZstdRebuildsEveryGeneratedPair) {
  for (const Pair& pair : GeneratedPairs()) {
    SCOPED_TRACE(pair.name);
    const std::string patch = MakePatch(pair.old_data, pair.new_data, Codec::kMatchZstd);
    absl::StatusOr<std::string> rebuilt = ApplyToString(pair.old_data, patch);
    ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
    EXPECT_TRUE(*rebuilt == pair.new_data);
  }
}

TEST(DeltaRoundTrip, SmallEditsGiveSmallPatches) {
  const std::string old_data = RandomBytes(1 << 20, 10);
  const std::string new_data = ScatterEdits(old_data, 50, 11);
  const std::string zstd_patch = MakePatch(old_data, new_data, Codec::kMatchZstd);
  const std::string bsdiff_patch = MakePatch(old_data, new_data, Codec::kBsdiff40);
  // 50 changed bytes out of a MiB of incompressible data: a few KB at most, not ~1 MB.
  EXPECT_LT(zstd_patch.size(), 4000u);
  EXPECT_LT(bsdiff_patch.size(), 8000u);
}

TEST(DeltaDebianInterop, OurBsdiff40IsByteIdenticalToDebianBsdiff) {
  TempDir dir;
  for (const Pair& pair : GeneratedPairs()) {
    // Debian's bsdiff cannot mmap empty files; it refuses them.
    if (pair.old_data.empty() || pair.new_data.empty()) continue;
    SCOPED_TRACE(pair.name);
    WriteFile(dir.File("old"), pair.old_data);
    WriteFile(dir.File("new"), pair.new_data);
    ASSERT_EQ(RunShell("/usr/bin/bsdiff " + dir.File("old") + " " + dir.File("new") + " " +
                       dir.File("debian.patch")),
              0);
    const std::string ours = MakePatch(pair.old_data, pair.new_data, Codec::kBsdiff40);
    EXPECT_TRUE(ours == ReadFile(dir.File("debian.patch")));
  }
}

TEST(DeltaDebianInterop, DebianBspatchAppliesOurPatches) {
  TempDir dir;
  for (const Pair& pair : GeneratedPairs()) {
    SCOPED_TRACE(pair.name);
    WriteFile(dir.File("old"), pair.old_data);
    WriteFile(dir.File("ours.patch"), MakePatch(pair.old_data, pair.new_data, Codec::kBsdiff40));
    ASSERT_EQ(RunShell("/usr/bin/bspatch " + dir.File("old") + " " + dir.File("out") + " " +
                       dir.File("ours.patch")),
              0);
    EXPECT_TRUE(ReadFile(dir.File("out")) == pair.new_data);
  }
}

TEST(DeltaDebianInterop, WeApplyDebianBsdiffPatches) {
  TempDir dir;
  for (const Pair& pair : GeneratedPairs()) {
    // Debian's bsdiff cannot mmap empty files; it refuses them.
    if (pair.old_data.empty() || pair.new_data.empty()) continue;
    SCOPED_TRACE(pair.name);
    WriteFile(dir.File("old"), pair.old_data);
    WriteFile(dir.File("new"), pair.new_data);
    ASSERT_EQ(RunShell("/usr/bin/bsdiff " + dir.File("old") + " " + dir.File("new") + " " +
                       dir.File("debian.patch")),
              0);
    absl::Status s = ApplyFiles(dir.File("old"), dir.File("debian.patch"), dir.File("out"));
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_TRUE(ReadFile(dir.File("out")) == pair.new_data);
  }
}

TEST(DeltaDamage, TruncatedPatchesAreRefusedAtEveryCut) {
  const std::string old_data = StructuredBytes(40000, 12);
  const std::string new_data = ScatterEdits(old_data + RandomBytes(2000, 13), 30, 14);
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    SCOPED_TRACE(CodecName(codec));
    const std::string patch = MakePatch(old_data, new_data, codec);
    for (size_t cut = 0; cut < patch.size(); cut += (cut < 200 ? 1 : 7)) {
      absl::StatusOr<std::string> out = ApplyToString(old_data, patch.substr(0, cut));
      EXPECT_FALSE(out.ok()) << "cut at " << cut << " of " << patch.size();
    }
  }
}

TEST(DeltaDamage, FlippedBytesAreRefused) {
  const std::string old_data = StructuredBytes(20000, 15);
  const std::string new_data = ScatterEdits(old_data + RandomBytes(500, 16), 20, 17);
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    SCOPED_TRACE(CodecName(codec));
    const std::string patch = MakePatch(old_data, new_data, codec);
    for (size_t i = 0; i < patch.size(); ++i) {
      std::string damaged = patch;
      damaged[i] = static_cast<char>(damaged[i] ^ 0xff);
      absl::StatusOr<std::string> out = ApplyToString(old_data, damaged);
      // bsdiff40 has no digest of its own; bzip2's CRCs and the strict stream checks catch
      // these flips. The container's SHA-256 catches anything at all.
      EXPECT_FALSE(out.ok() && *out != new_data) << "flip at " << i << " went unnoticed";
      if (codec == Codec::kMatchZstd) {
        EXPECT_FALSE(out.ok()) << "flip at " << i;
      }
    }
  }
}

TEST(DeltaDamage, GarbageEmptyAndAbsurdHeadersAreRefused) {
  const std::string old_data = StructuredBytes(10000, 18);
  EXPECT_EQ(ApplyToString(old_data, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ApplyToString(old_data, RandomBytes(5000, 19)).status().message()),
              HasSubstr("not a delta patch"));
  EXPECT_FALSE(ApplyToString(old_data, "BSDIFF40").ok());

  // bsdiff40 declaring 2^62 bytes of output, or blocks longer than the patch.
  std::string bs = MakePatch(old_data, old_data, Codec::kBsdiff40);
  std::string huge = bs;
  huge.replace(24, 8, OffT(int64_t{1} << 62));
  absl::Status s = ApplyToString(old_data, huge).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("over the limit"));
  std::string long_ctrl = bs;
  long_ctrl.replace(8, 8, OffT(int64_t{1} << 40));
  EXPECT_THAT(std::string(ApplyToString(old_data, long_ctrl).status().message()),
              HasSubstr("truncated"));
  std::string negative = bs;
  negative.replace(16, 8, OffT(-5));
  EXPECT_THAT(std::string(ApplyToString(old_data, negative).status().message()),
              HasSubstr("negative"));

  // Container declaring 2^60 bytes of output: refused before any decoding.
  std::string ef = MakePatch(old_data, old_data, Codec::kMatchZstd);
  std::string ef_huge = ef;
  ef_huge.replace(20, 8, std::string("\0\0\0\0\0\0\0\x10", 8));
  s = ApplyToString(old_data, ef_huge).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  std::string bad_version = ef;
  bad_version[8] = 2;
  EXPECT_THAT(std::string(ApplyToString(old_data, bad_version).status().message()),
              HasSubstr("version 2"));
  std::string bad_codec = ef;
  bad_codec[9] = 77;
  EXPECT_THAT(std::string(ApplyToString(old_data, bad_codec).status().message()),
              HasSubstr("unknown codec"));
  // match-zstd frame lengths that do not add up to the payload.
  std::string bad_frames = ef;
  bad_frames.replace(92, 8, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8));
  EXPECT_THAT(std::string(ApplyToString(old_data, bad_frames).status().message()),
              HasSubstr("declares frames"));
}

TEST(DeltaDamage, HostileBsdiffControlStepsAreRefused) {
  const std::string old_data = "0123456789";
  const std::string ten(10, '\0');
  struct Case {
    std::string name;
    std::string patch;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"diff past old", HandMadeBsdiff({{{20, 0, 0}}}, std::string(20, '\0'), "", 20), "outside"},
      {"negative diff length", HandMadeBsdiff({{{-1, 0, 0}}}, "", "", 10), "negative"},
      {"seek before old", HandMadeBsdiff({{{5, 0, -6}}, {{5, 0, 0}}}, ten, "", 10), "seeks"},
      {"seek past old", HandMadeBsdiff({{{5, 0, 6}}, {{5, 0, 0}}}, ten, "", 10), "seeks"},
      {"output past declared size", HandMadeBsdiff({{{10, 5, 0}}}, ten, "abcde", 10), "past"},
      {"endless empty steps",
       HandMadeBsdiff(std::vector<std::array<int64_t, 3>>(100, {0, 0, 0}), "", "", 10),
       "more control steps"},
      {"control stream too short", HandMadeBsdiff({{{5, 0, 0}}}, ten, "", 10), "ends early"},
      {"leftover extra bytes", HandMadeBsdiff({{{10, 0, 0}}}, ten, "zz", 10), "past the declared"},
      {"seek overflow", HandMadeBsdiff({{{5, 0, INT64_MAX}}, {{5, 0, 0}}}, ten, "", 10), "seeks"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::string> out = ApplyToString(old_data, c.patch);
    ASSERT_FALSE(out.ok());
    EXPECT_THAT(std::string(out.status().message()), HasSubstr(c.expect));
  }
  // The same machinery accepts a well-formed hand-made patch.
  absl::StatusOr<std::string> ok = ApplyToString(
      old_data, HandMadeBsdiff({{{4, 2, 3}}, {{3, 0, 0}}}, std::string(7, '\x01'), "xy", 9));
  // "0123" + 1, "xy", seek from old offset 4 to 7, "789" + 1.
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "1234xy89:");
}

TEST(DeltaDamage, WrongBaseFileIsRefusedClearly) {
  const std::string old_data = StructuredBytes(30000, 20);
  const std::string new_data = ScatterEdits(old_data, 10, 21);
  const std::string patch = MakePatch(old_data, new_data, Codec::kMatchZstd);
  absl::Status s = ApplyToString(ScatterEdits(old_data, 1, 22), patch).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("patch was made for a different base file"));
  EXPECT_EQ(ApplyToString(old_data + "x", patch).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(DeltaDamage, OutputDigestMismatchIsDataLoss) {
  const std::string old_data = StructuredBytes(30000, 23);
  const std::string new_data = ScatterEdits(old_data, 10, 24);
  std::string patch = MakePatch(old_data, new_data, Codec::kMatchZstd);
  patch[60] = static_cast<char>(patch[60] ^ 1);  // first byte of the new file's SHA-256
  absl::Status s = ApplyToString(old_data, patch).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("sha256"));
}

TEST(DeltaApplyOptions, ExpectedNewSizeMismatchAndCapAreRefused) {
  const std::string old_data = StructuredBytes(30000, 25);
  const std::string new_data = old_data + "tail";
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    SCOPED_TRACE(CodecName(codec));
    const std::string patch = MakePatch(old_data, new_data, codec);
    absl::StatusOr<std::string> wrong =
        ApplyToString(old_data, patch, {.expected_new_size_bytes = new_data.size() + 1});
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("expected"));
    EXPECT_FALSE(ApplyToString(old_data, patch, {.max_new_size_bytes = 1000}).ok());
    EXPECT_TRUE(ApplyToString(old_data, patch, {.expected_new_size_bytes = new_data.size()}).ok());
  }
}

TEST(DeltaInspect, ReportsCodecSizesAndDigests) {
  const std::string old_data = StructuredBytes(30000, 26);
  const std::string new_data = ScatterEdits(old_data, 10, 27) + "more";
  const std::string ef = MakePatch(old_data, new_data, Codec::kMatchZstd);
  absl::StatusOr<PatchInfo> info = Inspect(ef);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->codec, Codec::kMatchZstd);
  EXPECT_EQ(info->old_size_bytes, old_data.size());
  EXPECT_EQ(info->new_size_bytes, new_data.size());
  EXPECT_EQ(info->old_sha256, crypto::Sha256Bytes(old_data));
  EXPECT_EQ(info->new_sha256, crypto::Sha256Bytes(new_data));
  EXPECT_EQ(info->patch_size_bytes, ef.size());

  const std::string bs = MakePatch(old_data, new_data, Codec::kBsdiff40);
  info = Inspect(bs);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->codec, Codec::kBsdiff40);
  EXPECT_EQ(info->new_size_bytes, new_data.size());
  EXPECT_TRUE(info->old_sha256.empty());
  EXPECT_FALSE(Inspect("garbage").ok());
}

TEST(DeltaAuto, NeverLargerThanTheCompressedFullFile) {
  const std::string old_data = StructuredBytes(200000, 28);
  const std::string new_data = ScatterEdits(old_data, 100, 29) + StructuredBytes(5000, 30);
  StringSink patch;
  absl::StatusOr<DiffResult> result = Diff(old_data, new_data, Codec::kAuto, patch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NE(result->codec, Codec::kAuto);
  EXPECT_FALSE(result->full_is_smaller);
  EXPECT_EQ(result->patch_size_bytes, patch.data().size());
  absl::StatusOr<uint64_t> full = internal::ZstdCompressedSize(new_data, 19);
  ASSERT_TRUE(full.ok());
  EXPECT_LE(patch.data().size(), *full);
  absl::StatusOr<std::string> rebuilt = ApplyToString(old_data, patch.data());
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_TRUE(*rebuilt == new_data);
  // Never worse than either codec it tried (bsdiff40 is tried: inputs are small).
  EXPECT_LE(patch.data().size(), MakePatch(old_data, new_data, Codec::kMatchZstd).size());
  EXPECT_LE(patch.data().size(), MakePatch(old_data, new_data, Codec::kBsdiff40).size());
}

TEST(DeltaAuto, ReportsFullIsSmallerForUnrelatedData) {
  StringSink patch;
  absl::StatusOr<DiffResult> result =
      Diff(RandomBytes(50000, 31), RandomBytes(50000, 32), Codec::kAuto, patch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->full_is_smaller);
  EXPECT_EQ(result->patch_size_bytes, 0u);
  EXPECT_TRUE(patch.data().empty());
}

TEST(DeltaAuto, SpentBudgetStillCompletesTheFirstWorkingCandidate) {
  const std::string old_data = StructuredBytes(100000, 38);
  const std::string new_data = ScatterEdits(old_data, 30, 39);
  StringSink patch;
  // No budget: the first candidate that works (tensor, or match-zstd if tensor declines a
  // non-ONNX input) must still complete, and bsdiff40, tried last, must not run.
  absl::StatusOr<DiffResult> result =
      Diff(old_data, new_data, Codec::kAuto, patch, {.time_budget = std::chrono::milliseconds(0)});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NE(result->codec, Codec::kBsdiff40);
  EXPECT_TRUE(patch.data() == MakePatch(old_data, new_data, result->codec));
  absl::StatusOr<std::string> rebuilt = ApplyToString(old_data, patch.data());
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_TRUE(*rebuilt == new_data);
  // With time to spare, auto can only do as well or better.
  StringSink unhurried;
  ASSERT_TRUE(Diff(old_data, new_data, Codec::kAuto, unhurried).ok());
  EXPECT_LE(unhurried.data().size(), patch.data().size());
}

// Raw weight files of the same length, which the tensor codec aligns by offset: a file whose
// last 15/16 were retrained (every weight moved by half the weights' spread: nothing to copy
// from old), and the same file with its 4 KiB rows in reverse order (everything is in old, none
// of it where the tensor codec looks).
std::string OldWeights() { return internal::Bytes(internal::Weights(1 << 18, 41)); }

std::string Retrained(const std::string& old_data) {
  std::vector<float> w(old_data.size() / sizeof(float));
  std::memcpy(w.data(), old_data.data(), old_data.size());
  const std::vector<float> noise = internal::Weights(w.size(), 42, 0.025f);
  for (size_t i = w.size() / 16; i < w.size(); ++i) w[i] += noise[i];
  return internal::Bytes(w);
}

std::string RowsReversed(const std::string& old_data) {
  constexpr size_t kRow = 4096;
  std::string out;
  for (size_t end = old_data.size(); end > 0; end -= kRow) out.append(old_data, end - kRow, kRow);
  return out;
}

// auto's result and patch, checked to rebuild `new_data`.
std::pair<DiffResult, std::string> AutoPatch(std::string_view old_data, std::string_view new_data) {
  StringSink patch;
  absl::StatusOr<DiffResult> result = Diff(old_data, new_data, Codec::kAuto, patch);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {};
  absl::StatusOr<std::string> rebuilt = ApplyToString(old_data, patch.data());
  EXPECT_TRUE(rebuilt.ok() && *rebuilt == new_data) << "auto's patch does not rebuild new";
  return {*std::move(result), std::move(patch.data())};
}

TEST(DeltaAuto, MatchingEstimateTellsRetrainedFromMovedWeights) {
  const std::string old_data = OldWeights();
  const internal::MatchingEstimate retrained =
      internal::EstimateMatching(old_data, Retrained(old_data));
  EXPECT_GT(retrained.costly, retrained.sampled * 9 / 10) << "15/16 of the weights changed";
  EXPECT_GT(retrained.looked_up, 1000u);
  EXPECT_EQ(retrained.found, 0u) << "retrained weights occur nowhere in old";
  EXPECT_FALSE(retrained.can_pay);

  const internal::MatchingEstimate moved =
      internal::EstimateMatching(old_data, RowsReversed(old_data));
  EXPECT_GT(moved.costly, moved.sampled * 9 / 10);
  EXPECT_GT(moved.found, 0u);
  EXPECT_TRUE(moved.can_pay);

  // Different lengths, not ONNX: nothing is aligned, the tensor codec's patch is its residual
  // coder (a matcher), and the matchers keep their turn.
  const internal::MatchingEstimate unaligned =
      internal::EstimateMatching(old_data, old_data.substr(4096));
  EXPECT_EQ(unaligned.sampled, 0u);
  EXPECT_TRUE(unaligned.can_pay);

  const internal::MatchingEstimate same = internal::EstimateMatching(old_data, old_data);
  EXPECT_EQ(same.costly, 0u) << "aligned and equal: the tensor codec codes it for nothing";
  EXPECT_FALSE(same.can_pay);
}

TEST(DeltaAuto, SkipsTheMatchersWhenTheEstimateSaysTheyCannotPay) {
  const std::string old_data = OldWeights();
  const std::string new_data = Retrained(old_data);
  const auto [result, patch] = AutoPatch(old_data, new_data);
  EXPECT_EQ(result.codec, Codec::kTensor);
  EXPECT_THAT(result.tried, ::testing::ElementsAre(Codec::kTensor))
      << "match-zstd and bsdiff40 must not run";
  // The tensor patch is not small next to the whole file (so the shortcut for aligned ONNX
  // models does not apply), and what the skipped matcher would have made is no smaller.
  absl::StatusOr<uint64_t> full = internal::ZstdCompressedSize(new_data, 3);
  ASSERT_TRUE(full.ok());
  EXPECT_GT(patch.size(), *full / 2);
  EXPECT_TRUE(patch == MakePatch(old_data, new_data, Codec::kTensor));
  EXPECT_GE(MakePatch(old_data, new_data, Codec::kMatchZstd).size(), patch.size());
}

TEST(DeltaAuto, RunsTheMatchersWhenTheEstimateSaysTheyCanPay) {
  const std::string old_data = OldWeights();
  const std::string new_data = RowsReversed(old_data);
  const auto [result, patch] = AutoPatch(old_data, new_data);
  EXPECT_THAT(result.tried,
              ::testing::ElementsAre(Codec::kTensor, Codec::kMatchZstd, Codec::kBsdiff40));
  EXPECT_NE(result.codec, Codec::kTensor);
  EXPECT_LT(patch.size() * 10, MakePatch(old_data, new_data, Codec::kTensor).size())
      << "every row is in old: matching makes the patch tiny";
}

// A few edits: the tensor patch is small, every candidate runs, and the patch is a byte-matching
// one every agent decodes (the tensor codec's is no smaller).
TEST(DeltaAuto, KeepsEveryCandidateWhenTheTensorPatchIsSmall) {
  std::mt19937 rng(5);
  std::string old_data(1 << 20, '\0');
  for (char& c : old_data) c = static_cast<char>(rng());
  std::string new_data = old_data;
  for (int block = 0; block < 4; ++block) {
    const size_t at = rng() % (new_data.size() - 100);
    for (size_t i = 0; i < 80; ++i) new_data[at + i] = static_cast<char>(rng());
  }
  const auto [result, patch] = AutoPatch(old_data, new_data);
  EXPECT_THAT(result.tried,
              ::testing::ElementsAre(Codec::kTensor, Codec::kMatchZstd, Codec::kBsdiff40));
  EXPECT_NE(result.codec, Codec::kTensor);
  EXPECT_LT(patch.size(), 4096u) << "four 80-byte edits";
}

TEST(DeltaFiles, DiffApplyInspectThroughFiles) {
  TempDir dir;
  const std::string old_data = StructuredBytes(100000, 33);
  const std::string new_data = ScatterEdits(old_data, 40, 34);
  WriteFile(dir.File("old.onnx"), old_data);
  WriteFile(dir.File("new.onnx"), new_data);
  absl::StatusOr<DiffResult> result =
      DiffFiles(dir.File("old.onnx"), dir.File("new.onnx"), dir.File("p.delta"), Codec::kMatchZstd);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(fs::file_size(dir.File("p.delta")), result->patch_size_bytes);
  absl::StatusOr<PatchInfo> info = InspectFile(dir.File("p.delta"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->new_size_bytes, new_data.size());
  ASSERT_TRUE(ApplyFiles(dir.File("old.onnx"), dir.File("p.delta"), dir.File("out.onnx"),
                         {.expected_new_size_bytes = new_data.size()})
                  .ok());
  EXPECT_TRUE(ReadFile(dir.File("out.onnx")) == new_data);
  // Only the four files: no temporaries left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 4);
  // Errors name the path.
  absl::Status missing = ApplyFiles(dir.File("nope"), dir.File("p.delta"), dir.File("x"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr(dir.File("nope")));
}

// The base is read a piece at a time (OldSource): a base that cannot be read, or stops being
// readable partway, fails the apply with that reason and nothing reaches the output past it.
class FailingOldSource final : public OldSource {
 public:
  FailingOldSource(std::string_view data, uint64_t fail_at) : data_(data), fail_at_(fail_at) {}
  uint64_t size() const override { return data_.size(); }
  absl::StatusOr<std::string_view> Read(uint64_t offset, size_t length) override {
    EXPECT_LE(length, kMaxReadBytes);
    EXPECT_LE(offset + length, data_.size());
    if (offset + length > fail_at_) return absl::UnavailableError("disk went away");
    return data_.substr(offset, length);
  }

 private:
  std::string_view data_;
  uint64_t fail_at_;
};

TEST(DeltaApply, BaseReadErrorsStopTheApplyWithTheirReason) {
  const std::string old_data = StructuredBytes(300000, 38);
  const std::string new_data = ScatterEdits(old_data, 40, 39);
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    SCOPED_TRACE(CodecName(codec));
    const std::string patch = MakePatch(old_data, new_data, codec);
    FailingOldSource whole(old_data, old_data.size());
    StringSink out;
    ASSERT_TRUE(Apply(whole, patch, out).ok());
    EXPECT_TRUE(out.data() == new_data);
    // Failing halfway: bsdiff40 reads the base only as it applies; the container hashes it first.
    FailingOldSource halfway(old_data, old_data.size() / 2);
    StringSink cut;
    const absl::Status s = Apply(halfway, patch, cut);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(s.message()), HasSubstr("disk went away"));
    EXPECT_LT(cut.data().size(), new_data.size());
  }
}

TEST(DeltaFiles, ABaseThatIsNotARegularFileIsRefused) {
  TempDir dir;
  const std::string old_data = StructuredBytes(10000, 40);
  WriteFile(dir.File("p.delta"),
            MakePatch(old_data, ScatterEdits(old_data, 4, 41), Codec::kBsdiff40));
  fs::create_directory(dir.File("base"));
  const absl::Status s = ApplyFiles(dir.File("base"), dir.File("p.delta"), dir.File("out"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a regular file"));
  EXPECT_FALSE(fs::exists(dir.File("out")));
}

TEST(DeltaFiles, FailedApplyLeavesNoOutputFile) {
  TempDir dir;
  const std::string old_data = StructuredBytes(100000, 35);
  const std::string new_data = ScatterEdits(old_data, 40, 36);
  WriteFile(dir.File("old"), old_data);
  for (Codec codec : {Codec::kBsdiff40, Codec::kMatchZstd}) {
    SCOPED_TRACE(CodecName(codec));
    const std::string patch = MakePatch(old_data, new_data, codec);
    // Damage late in the patch, so that output is already streaming when the error hits.
    std::string damaged = patch;
    damaged[damaged.size() - 20] = static_cast<char>(damaged[damaged.size() - 20] ^ 0x55);
    WriteFile(dir.File("damaged.patch"), damaged);
    WriteFile(dir.File("short.patch"), patch.substr(0, patch.size() - 30));
    for (const char* name : {"damaged.patch", "short.patch"}) {
      absl::Status s = ApplyFiles(dir.File("old"), dir.File(name), dir.File("out"));
      EXPECT_FALSE(s.ok()) << name;
      EXPECT_THAT(std::string(s.message()), HasSubstr(dir.File(name)));
      EXPECT_FALSE(fs::exists(dir.File("out"))) << name;
    }
    // Wrong base through files: same guarantee.
    WriteFile(dir.File("good.patch"), patch);
    WriteFile(dir.File("other"), ScatterEdits(old_data, 5, 37));
    if (codec == Codec::kMatchZstd) {
      EXPECT_FALSE(ApplyFiles(dir.File("other"), dir.File("good.patch"), dir.File("out")).ok());
      EXPECT_FALSE(fs::exists(dir.File("out")));
    }
  }
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr(".tmp-")));
  }
}

TEST(DeltaFiles, FileSinkIsAtomic) {
  TempDir dir;
  const std::string target = dir.File("artifact");
  WriteFile(target, "previous version");
  {
    absl::StatusOr<std::unique_ptr<FileSink>> sink = FileSink::Create(target);
    ASSERT_TRUE(sink.ok()) << sink.status();
    ASSERT_TRUE((*sink)->Write(std::string(3 << 20, 'n')).ok());
    EXPECT_TRUE(fs::exists((*sink)->temp_path()));
    // Destroyed without Commit(): the previous file stays and the temporary goes.
  }
  EXPECT_EQ(ReadFile(target), "previous version");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  absl::StatusOr<std::unique_ptr<FileSink>> sink = FileSink::Create(target);
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Write("new ").ok());
  ASSERT_TRUE((*sink)->Write("version").ok());
  EXPECT_EQ(ReadFile(target), "previous version");
  ASSERT_TRUE((*sink)->Commit().ok());
  EXPECT_EQ(ReadFile(target), "new version");
  EXPECT_EQ((*sink)->bytes_written(), 11u);
  EXPECT_FALSE(FileSink::Create(dir.File("no/such/dir/x")).ok());
}

TEST(DeltaFiles, MappedFileHandlesEmptyAndMissingFiles) {
  TempDir dir;
  WriteFile(dir.File("empty"), "");
  absl::StatusOr<std::unique_ptr<MappedFile>> empty = MappedFile::Open(dir.File("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->data().empty());
  WriteFile(dir.File("data"), "hello");
  absl::StatusOr<std::unique_ptr<MappedFile>> data = MappedFile::Open(dir.File("data"));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ((*data)->data(), "hello");
  absl::StatusOr<std::unique_ptr<MappedFile>> missing = MappedFile::Open(dir.File("missing"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir.File("missing")));
  EXPECT_FALSE(MappedFile::Open(dir.path().string()).ok());
}

}  // namespace
}  // namespace edgefleet::delta

namespace edgefleet::delta {
namespace {

// The time budget is a bound: a matcher past its deadline stops instead of running on.
TEST(MatcherDeadlineTest, MatchingStopsOnceItsDeadlineHasPassed) {
  std::string old_data(1 << 16, '\0'), new_data(1 << 16, '\0');
  uint32_t x = 12345;
  for (size_t i = 0; i < old_data.size(); ++i) {
    x = x * 1103515245 + 12345;
    old_data[i] = static_cast<char>(x >> 24);
    new_data[i] = static_cast<char>(x >> 16);
  }
  auto steps = internal::ComputeMatchSteps(
      old_data, new_data, std::chrono::steady_clock::now() - std::chrono::seconds(1));
  EXPECT_EQ(steps.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(internal::ComputeMatchSteps(old_data, new_data).ok());
}

}  // namespace
}  // namespace edgefleet::delta
