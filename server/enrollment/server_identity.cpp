#include "server/enrollment/server_identity.h"

#include <chrono>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/core/files.h"
#include "common/crypto/certificate_authority.h"
#include "common/crypto/signer.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;

constexpr auto kCaValidity = hours(24 * 365 * 10);
constexpr auto kServerCertValidity = hours(24 * 365);
constexpr int64_t kRenewBeforeSeconds = 7 * 24 * 3600;

// Loads both halves of a key pair, or neither; one without the other is an operator error.
absl::StatusOr<bool> LoadPair(const fs::path& public_path, const fs::path& private_path,
                              std::string* public_pem, std::string* private_pem) {
  auto public_file = ReadFile(public_path.string());
  auto private_file = ReadFile(private_path.string());
  const bool has_public = public_file.ok();
  const bool has_private = private_file.ok();
  if (has_public) *public_pem = *std::move(public_file);
  if (has_private) *private_pem = *std::move(private_file);
  if (has_public != has_private) {
    return absl::FailedPreconditionError(absl::StrCat("only one of ", public_path.string(), " and ",
                                                      private_path.string(), " exists"));
  }
  return has_public;
}

}  // namespace

absl::StatusOr<ServerIdentity> LoadOrCreateServerIdentity(const std::string& data_dir,
                                                          const std::vector<std::string>& tls_hosts,
                                                          int64_t now_unix) {
  fs::path dir = fs::path(data_dir) / "keys";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  ServerIdentity id;

  auto has_ca =
      LoadPair(dir / "ca.pem", dir / "ca.key", &id.ca_certificate_pem, &id.ca_private_key_pem);
  if (!has_ca.ok()) return has_ca.status();
  if (!*has_ca) {
    auto ca = crypto::CreateSelfSignedCa("edgefleet device CA", kCaValidity, now_unix);
    if (!ca.ok()) return ca.status();
    id.ca_certificate_pem = ca->certificate_pem;
    id.ca_private_key_pem = ca->private_key_pem;
    if (auto s = WriteFileAtomically((dir / "ca.key").string(), id.ca_private_key_pem, true);
        !s.ok())
      return s;
    if (auto s = WriteFileAtomically((dir / "ca.pem").string(), id.ca_certificate_pem, false);
        !s.ok())
      return s;
    id.created = true;
  }

  auto has_release = LoadPair(dir / "release.pub", dir / "release.key", &id.release_public_key_pem,
                              &id.release_private_key_pem);
  if (!has_release.ok()) return has_release.status();
  if (!*has_release) {
    auto keys = crypto::GenerateEd25519KeyPair();
    if (!keys.ok()) return keys.status();
    id.release_private_key_pem = keys->private_key_pem;
    id.release_public_key_pem = keys->public_key_pem;
    if (auto s =
            WriteFileAtomically((dir / "release.key").string(), id.release_private_key_pem, true);
        !s.ok())
      return s;
    if (auto s =
            WriteFileAtomically((dir / "release.pub").string(), id.release_public_key_pem, false);
        !s.ok())
      return s;
    id.created = true;
  }

  auto has_server = LoadPair(dir / "server.pem", dir / "server.key", &id.server_certificate_pem,
                             &id.server_private_key_pem);
  if (!has_server.ok()) return has_server.status();
  bool issue = !*has_server;
  if (!issue) {
    auto info = crypto::ParseCertificate(id.server_certificate_pem);
    issue =
        !info.ok() || info->not_after_unix - now_unix < kRenewBeforeSeconds ||
        !crypto::VerifyIssuedBy(id.server_certificate_pem, id.ca_certificate_pem, now_unix).ok();
  }
  if (issue) {
    auto ca = crypto::CertificateAuthority::Load(id.ca_certificate_pem, id.ca_private_key_pem);
    if (!ca.ok()) return ca.status();
    auto cert =
        (*ca)->IssueServerCertificate("edgefleet-server", tls_hosts, kServerCertValidity, now_unix);
    if (!cert.ok()) return cert.status();
    id.server_certificate_pem = cert->certificate_pem;
    id.server_private_key_pem = cert->private_key_pem;
    if (auto s =
            WriteFileAtomically((dir / "server.key").string(), id.server_private_key_pem, true);
        !s.ok())
      return s;
    if (auto s =
            WriteFileAtomically((dir / "server.pem").string(), id.server_certificate_pem, false);
        !s.ok())
      return s;
    id.created = true;
  }
  return id;
}

}  // namespace edgefleet::server
