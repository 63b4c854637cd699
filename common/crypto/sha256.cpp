#include "common/crypto/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace edgefleet::crypto {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// SHA-256 failing means OpenSSL itself is broken (allocation failure); nothing can continue.
void CheckOk(int rc) {
  if (rc != 1) std::abort();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

struct Sha256::Impl {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx{EVP_MD_CTX_new()};
  Impl() {
    if (ctx == nullptr) std::abort();
    CheckOk(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr));
  }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::string_view data) {
  CheckOk(EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()));
}

std::string Sha256::Finish() {
  std::string digest(kSha256Size, '\0');
  unsigned int len = 0;
  CheckOk(
      EVP_DigestFinal_ex(impl_->ctx.get(), reinterpret_cast<unsigned char*>(digest.data()), &len));
  CheckOk(EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr));
  return digest;
}

std::string Sha256Bytes(std::string_view data) {
  Sha256 hasher;
  hasher.Update(data);
  return hasher.Finish();
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    int err = errno;
    std::string message = absl::StrCat("sha256 of '", path, "': ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  Sha256 hasher;
  std::string buffer(64 * 1024, '\0');
  while (true) {
    size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0) hasher.Update(std::string_view(buffer.data(), n));
    if (n < buffer.size()) break;
  }
  if (std::ferror(file.get())) {
    return absl::DataLossError(absl::StrCat("sha256 of '", path, "': read error"));
  }
  return hasher.Finish();
}

std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

absl::StatusOr<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hex string has odd length ", hex.size()));
  }
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]);
    int lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid hex character at offset ", hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

}  // namespace edgefleet::crypto
