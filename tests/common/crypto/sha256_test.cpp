#include "common/crypto/sha256.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <string>

#include "common/crypto/random.h"

namespace edgefleet::crypto {
namespace {

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/sha256_test_XXXXXX";
  const char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

TEST(Sha256Test, KnownVectors) {
  // FIPS 180-2 / NIST examples.
  EXPECT_EQ(ToHex(Sha256Bytes("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(Sha256Bytes("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(Sha256Bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Bytes("abc").size(), kSha256Size);
}

TEST(Sha256Test, StreamingMatchesOneShotAtEverySplit) {
  const std::string message = RandomBytes(300);
  const std::string expected = Sha256Bytes(message);
  for (size_t split = 0; split <= message.size(); ++split) {
    Sha256 hasher;
    hasher.Update(std::string_view(message).substr(0, split));
    hasher.Update(std::string_view(message).substr(split));
    ASSERT_EQ(hasher.Finish(), expected) << "split at " << split;
  }
}

TEST(Sha256Test, FinishResetsAndMovedHasherKeepsState) {
  Sha256 hasher;
  hasher.Update("a");
  Sha256 moved = std::move(hasher);
  moved.Update("bc");
  EXPECT_EQ(moved.Finish(), Sha256Bytes("abc"));
  // After Finish the hasher starts over, so it can hash the next artifact.
  EXPECT_EQ(moved.Finish(), Sha256Bytes(""));
}

TEST(Sha256Test, FileDigestMatchesBytesAndMissingFileIsNotFound) {
  const std::string dir = MakeTempDir();
  const std::string path = dir + "/artifact.bin";
  const std::string content = RandomBytes(200 * 1024 + 17);  // several read chunks
  {
    std::ofstream out(path, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  absl::StatusOr<std::string> digest = Sha256File(path);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Bytes(content));

  absl::StatusOr<std::string> missing = Sha256File(dir + "/missing.bin");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(HexTest, RoundTripsEveryByteValue) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  const std::string hex = ToHex(all);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(hex.size() - 4), "feff");
  absl::StatusOr<std::string> back = FromHex(hex);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, all);
  // Uppercase input is accepted too (digests pasted from other tools).
  absl::StatusOr<std::string> upper = FromHex("ABcd");
  ASSERT_TRUE(upper.ok());
  EXPECT_EQ(*upper, "\xab\xcd");
}

TEST(HexTest, RejectsOddLengthAndNonHexCharacters) {
  EXPECT_EQ(FromHex("abc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromHex("zz").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromHex("0g").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromHex(" 0").status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> empty = FromHex("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(RandomTest, TokensAreUrlSafeUnpaddedAndDistinct) {
  const std::string a = RandomToken(32);
  const std::string b = RandomToken(32);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 43u);  // ceil(32 * 4 / 3) without '=' padding
  for (const std::string& token : {a, b}) {
    for (char c : token) {
      EXPECT_TRUE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_')
          << "unexpected character '" << c << "' in " << token;
    }
  }
}

TEST(RandomTest, RandomBytesHaveRequestedLengthAndDiffer) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  const std::string a = RandomBytes(32);
  const std::string b = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace edgefleet::crypto
