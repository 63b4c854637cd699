// SHA-256 hashing and hex encoding for artifact digests, key ids and manifest checks.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet::crypto {

inline constexpr size_t kSha256Size = 32;

// Streaming SHA-256, so large artifacts can be hashed as their bytes arrive.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // Returns the raw 32-byte digest and resets the hasher so it can be reused.
  std::string Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Raw 32-byte digest of `data`.
std::string Sha256Bytes(std::string_view data);

// Raw 32-byte digest of the file at `path`, read in bounded chunks.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// Lowercase hex encoding of arbitrary bytes.
std::string ToHex(std::string_view bytes);

// Decodes hex (either case); InvalidArgument on odd length or a non-hex character.
absl::StatusOr<std::string> FromHex(std::string_view hex);

}  // namespace edgefleet::crypto
