#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "server/artifacts/artifact_store.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const char* what) {
  return absl::InternalError(absl::StrCat("artifact store: ", what, ": ", std::strerror(errno)));
}

// A full disk is the operator's to fix, not an internal error: RESOURCE_EXHAUSTED naming the
// cause and the place. Other errors stay internal.
absl::Status WriteErrno(const char* what, const fs::path& root) {
  if (errno == ENOSPC || errno == EDQUOT) {
    return absl::ResourceExhaustedError(
        absl::StrCat("artifact store is full: ", what, ": ", std::strerror(errno), " in ",
                     root.string(), " (nothing was stored; free space or grow the volume)"));
  }
  return Errno(what);
}

class FileWriter final : public ArtifactWriter {
 public:
  // Takes ownership of `fd`, an open, flock'ed descriptor of `tmp_path`.
  FileWriter(int fd, fs::path tmp_path, fs::path root, uint64_t max_bytes)
      : fd_(fd), tmp_path_(std::move(tmp_path)), root_(std::move(root)), max_bytes_(max_bytes) {}
  ~FileWriter() override {
    if (!committed_) {
      std::error_code ignored;
      fs::remove(tmp_path_, ignored);
    }
    ::close(fd_);  // releases the lock
  }

  absl::Status Append(std::string_view data) override {
    if (size_ + data.size() > max_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("artifact exceeds the limit of ", max_bytes_, " bytes"));
    }
    for (size_t done = 0; done < data.size();) {
      ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return WriteErrno("write failed", root_);
      done += static_cast<size_t>(n);
    }
    hash_.Update(data);
    size_ += data.size();
    return absl::OkStatus();
  }

  absl::StatusOr<ArtifactInfo> CommitIf(const StagedCheck& check) override {
    if (committed_) return absl::FailedPreconditionError("artifact store: committed twice");
    // Durable before it becomes visible under its digest.
    if (::fsync(fd_) != 0) return WriteErrno("flush failed", root_);
    ArtifactInfo info{hash_.Finish(), size_};
    if (check) {
      if (absl::Status s = check(info, tmp_path_.string()); !s.ok()) return s;
    }
    std::string hex = crypto::ToHex(info.sha256);
    fs::path final_path = root_ / "sha256" / hex.substr(0, 2) / hex;
    std::error_code ec;
    fs::create_directories(final_path.parent_path(), ec);
    fs::rename(tmp_path_, final_path, ec);
    if (ec) return absl::InternalError(absl::StrCat("artifact store: ", ec.message()));
    committed_ = true;
    return info;
  }

 private:
  int fd_;
  fs::path tmp_path_;
  fs::path root_;
  uint64_t max_bytes_;
  crypto::Sha256 hash_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

class FileReader final : public ArtifactReader {
 public:
  FileReader(const fs::path& path, uint64_t size) : in_(path, std::ios::binary), size_(size) {}
  bool ok() const { return in_.good(); }
  uint64_t size_bytes() const override { return size_; }

  absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t max_bytes) override {
    if (offset >= size_) return std::string();
    std::string buffer(std::min<uint64_t>(max_bytes, size_ - offset), '\0');
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (static_cast<size_t>(in_.gcount()) != buffer.size()) {
      return absl::DataLossError("artifact store: short read");
    }
    return buffer;
  }

 private:
  std::ifstream in_;
  uint64_t size_;
};

class FilesystemArtifactStore final : public ArtifactStore {
 public:
  explicit FilesystemArtifactStore(fs::path root) : root_(std::move(root)) {}

  absl::StatusOr<std::unique_ptr<ArtifactWriter>> BeginUpload(uint64_t max_bytes) override {
    std::error_code ec;
    fs::create_directories(root_ / "tmp", ec);
    if (ec) return absl::InternalError(absl::StrCat("artifact store: ", ec.message()));
    fs::path path = root_ / "tmp" / absl::StrCat("upload-", crypto::ToHex(crypto::RandomBytes(8)));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return WriteErrno("cannot create upload file", root_);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      absl::Status error = Errno("cannot lock upload file");
      ::close(fd);
      fs::remove(path, ec);
      return error;
    }
    return std::make_unique<FileWriter>(fd, std::move(path), root_, max_bytes);
  }

  absl::StatusOr<size_t> RemoveAbandonedUploads() override {
    std::error_code ec;
    fs::directory_iterator it(root_ / "tmp", ec);
    if (ec == std::errc::no_such_file_or_directory) return 0;
    if (ec) return absl::InternalError(absl::StrCat("artifact store: ", ec.message()));
    size_t removed = 0;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      const fs::path path = it->path();
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      // A live writer holds the lock; only files nobody holds are leftovers.
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::unlink(path.c_str()) == 0) ++removed;
      ::close(fd);
    }
    if (ec) return absl::InternalError(absl::StrCat("artifact store: ", ec.message()));
    return removed;
  }

  absl::StatusOr<std::unique_ptr<ArtifactReader>> Open(std::string_view sha256) override {
    auto path = LocalPath(sha256);
    if (!path.ok()) return path.status();
    std::error_code ec;
    uint64_t size = fs::file_size(*path, ec);
    if (ec) return absl::NotFoundError(absl::StrCat("artifact ", *path, " vanished"));
    auto reader = std::make_unique<FileReader>(*path, size);
    if (!reader->ok()) return absl::InternalError(absl::StrCat("artifact ", *path, " unreadable"));
    return reader;
  }

  absl::StatusOr<std::string> LocalPath(std::string_view sha256) override {
    if (sha256.size() != 32) return absl::InvalidArgumentError("artifact digest must be 32 bytes");
    std::string hex = crypto::ToHex(sha256);
    fs::path path = root_ / "sha256" / hex.substr(0, 2) / hex;
    if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("artifact ", hex, " not found"));
    return path.string();
  }

  absl::Status Remove(std::string_view sha256) override {
    auto path = LocalPath(sha256);
    if (!path.ok()) return path.status();
    std::error_code ec;
    if (!fs::remove(*path, ec) && ec) {
      return absl::InternalError(
          absl::StrCat("artifact store: remove ", *path, ": ", ec.message()));
    }
    return absl::OkStatus();
  }

 private:
  fs::path root_;
};

}  // namespace

std::unique_ptr<ArtifactStore> MakeFilesystemArtifactStore(const std::string& root) {
  return std::make_unique<FilesystemArtifactStore>(root);
}

}  // namespace edgefleet::server
