#include "agent/state/identity_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/core/files.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;

std::string Next(const fs::path& file) { return file.string() + ".next"; }

// Makes the directory's entries (a rename) durable.
absl::Status SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", dir.string(), ": ", std::strerror(errno)));
  }
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("fsync ", dir.string()));
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", from, ": ", ec.message()));
  return SyncDirectory(to.parent_path());
}

}  // namespace

absl::Status ReplaceIdentity(const std::string& state_dir, const std::string& key_pem,
                             const std::string& certificate_pem) {
  const fs::path key = fs::path(state_dir) / kKeyFile;
  const fs::path cert = fs::path(state_dir) / kCertificateFile;
  if (auto s = WriteFileAtomically(Next(key), key_pem, /*secret=*/true); !s.ok()) return s;
  if (auto s = SyncDirectory(state_dir); !s.ok()) return s;
  if (auto s = WriteFileAtomically(Next(cert), certificate_pem, false); !s.ok()) return s;
  if (auto s = SyncDirectory(state_dir); !s.ok()) return s;
  return RecoverIdentity(state_dir);
}

absl::Status RecoverIdentity(const std::string& state_dir) {
  const fs::path key = fs::path(state_dir) / kKeyFile;
  const fs::path cert = fs::path(state_dir) / kCertificateFile;
  std::error_code ec;
  if (fs::exists(Next(cert), ec)) {
    // Committed: key.pem.next is already key.pem when a crash came after its rename.
    if (fs::exists(Next(key), ec)) {
      if (auto s = Rename(Next(key), key); !s.ok()) return s;
    }
    return Rename(Next(cert), cert);
  }
  if (fs::exists(Next(key), ec)) {
    fs::remove(Next(key), ec);
    if (ec) return absl::InternalError(absl::StrCat("remove ", Next(key), ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::agent
