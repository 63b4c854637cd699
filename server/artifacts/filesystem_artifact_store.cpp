#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "server/artifacts/artifact_store.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;

class FileWriter final : public ArtifactWriter {
 public:
  FileWriter(fs::path tmp_path, fs::path root, uint64_t max_bytes)
      : tmp_path_(std::move(tmp_path)),
        root_(std::move(root)),
        max_bytes_(max_bytes),
        out_(tmp_path_, std::ios::binary | std::ios::trunc) {}
  ~FileWriter() override {
    if (!committed_) {
      std::error_code ignored;
      fs::remove(tmp_path_, ignored);
    }
  }

  bool ok() const { return out_.good(); }

  absl::Status Append(std::string_view data) override {
    if (size_ + data.size() > max_bytes_) {
      return absl::OutOfRangeError(
          absl::StrCat("artifact exceeds the limit of ", max_bytes_, " bytes"));
    }
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out_) return absl::InternalError("artifact store: write failed");
    hash_.Update(data);
    size_ += data.size();
    return absl::OkStatus();
  }

  absl::StatusOr<ArtifactInfo> Commit() override {
    out_.flush();
    out_.close();
    if (!out_) return absl::InternalError("artifact store: flush failed");
    {
      // Durable before it becomes visible under its digest.
      int fd = ::open(tmp_path_.c_str(), O_RDONLY);
      if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
      }
    }
    ArtifactInfo info{hash_.Finish(), size_};
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
  fs::path tmp_path_;
  fs::path root_;
  uint64_t max_bytes_;
  std::ofstream out_;
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
    auto writer = std::make_unique<FileWriter>(
        root_ / "tmp" / absl::StrCat("upload-", crypto::ToHex(crypto::RandomBytes(8))), root_,
        max_bytes);
    if (!writer->ok()) return absl::InternalError("artifact store: cannot create upload file");
    return writer;
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

 private:
  fs::path root_;
};

}  // namespace

std::unique_ptr<ArtifactStore> MakeFilesystemArtifactStore(const std::string& root) {
  return std::make_unique<FilesystemArtifactStore>(root);
}

}  // namespace edgefleet::server
