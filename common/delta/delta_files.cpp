#include "common/delta/delta_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace edgefleet::delta {
namespace {

constexpr size_t kWriteBufferBytes = size_t{64} << 10;

absl::Status ErrnoError(int err, std::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(absl::string_view(what.data(), what.size()), " '",
                                             path, "': ", std::strerror(err)));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status Annotate(const absl::Status& s, std::string_view what) {
  return absl::Status(s.code(),
                      absl::StrCat(absl::string_view(what.data(), what.size()), ": ", s.message()));
}

}  // namespace

FileSink::FileSink(std::string path, std::string temp_path, int fd)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {
  buffer_.reserve(kWriteBufferBytes);
}

absl::StatusOr<std::unique_ptr<FileSink>> FileSink::Create(const std::string& path) {
  std::string temp = path + ".tmp-XXXXXX";
  std::vector<char> name(temp.begin(), temp.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "create a temporary for", path);
  // mkostemp creates 0600; outputs are models and patches, not secrets.
  ::fchmod(fd, 0644);
  return std::unique_ptr<FileSink>(new FileSink(path, std::string(name.data()), fd));
}

FileSink::~FileSink() { Discard(); }

void FileSink::Discard() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
  }
}

absl::Status FileSink::WriteAll(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write", temp_path_);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FileSink::Flush() {
  absl::Status s = WriteAll(buffer_);
  buffer_.clear();
  return s;
}

absl::Status FileSink::Write(std::string_view data) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("'", path_, "' is closed"));
  bytes_written_ += data.size();
  if (buffer_.size() + data.size() > kWriteBufferBytes) {
    if (absl::Status s = Flush(); !s.ok()) return s;
  }
  if (data.size() >= kWriteBufferBytes) return WriteAll(data);
  buffer_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::Status FileSink::Commit() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("'", path_, "' is closed"));
  absl::Status s = Flush();
  if (s.ok() && ::fsync(fd_) != 0) s = ErrnoError(errno, "fsync", temp_path_);
  if (s.ok()) {
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) s = ErrnoError(errno, "close", temp_path_);
  }
  if (s.ok() && ::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    s = ErrnoError(errno, "rename to", path_);
  }
  if (!s.ok()) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    return s;
  }
  // The rename is durable only once the directory entry is.
  const std::string dir = DirectoryOf(path_);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<DiffResult> DiffFiles(const std::string& old_path, const std::string& new_path,
                                     const std::string& patch_path, Codec codec,
                                     const DiffOptions& options) {
  absl::StatusOr<std::unique_ptr<MappedFile>> old_file = MappedFile::Open(old_path);
  if (!old_file.ok()) return old_file.status();
  absl::StatusOr<std::unique_ptr<MappedFile>> new_file = MappedFile::Open(new_path);
  if (!new_file.ok()) return new_file.status();
  absl::StatusOr<std::unique_ptr<FileSink>> sink = FileSink::Create(patch_path);
  if (!sink.ok()) return sink.status();
  absl::StatusOr<DiffResult> result =
      Diff((*old_file)->data(), (*new_file)->data(), codec, **sink, options);
  if (!result.ok()) {
    return Annotate(result.status(), absl::StrCat("diff '", old_path, "' -> '", new_path, "'"));
  }
  if (result->full_is_smaller) return result;  // the sink discards its empty temporary
  if (absl::Status s = (*sink)->Commit(); !s.ok()) return s;
  return result;
}

namespace {

// Forwards output and, every 256 KiB of it, releases the pages of the mapped patch already read:
// apply's resident set then stays a small window whatever the patch size.
class PageReleasingSink final : public ByteSink {
 public:
  PageReleasingSink(ByteSink& out, const MappedFile& patch) : out_(out), patch_(patch) {}
  absl::Status Write(std::string_view data) override {
    since_release_ += data.size();
    if (since_release_ >= kReleaseEveryBytes) {
      patch_.ReleasePages();
      since_release_ = 0;
    }
    return out_.Write(data);
  }

 private:
  static constexpr uint64_t kReleaseEveryBytes = 256 << 10;
  ByteSink& out_;
  const MappedFile& patch_;
  uint64_t since_release_ = 0;
};

}  // namespace

absl::Status ApplyFiles(const std::string& old_path, const std::string& patch_path,
                        const std::string& out_path, const ApplyOptions& options) {
  absl::StatusOr<std::unique_ptr<OldSource>> old_file = OpenOldFile(old_path);
  if (!old_file.ok()) return old_file.status();
  absl::StatusOr<std::unique_ptr<MappedFile>> patch = MappedFile::Open(patch_path);
  if (!patch.ok()) return patch.status();
  absl::StatusOr<std::unique_ptr<FileSink>> sink = FileSink::Create(out_path);
  if (!sink.ok()) return sink.status();
  PageReleasingSink releasing(**sink, **patch);
  if (absl::Status s = Apply(**old_file, (*patch)->data(), releasing, options); !s.ok()) {
    return Annotate(s, absl::StrCat("apply '", patch_path, "' to '", old_path, "'"));
  }
  return (*sink)->Commit();
}

absl::StatusOr<PatchInfo> InspectFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> patch = MappedFile::Open(path);
  if (!patch.ok()) return patch.status();
  absl::StatusOr<PatchInfo> info = Inspect((*patch)->data());
  if (!info.ok()) return Annotate(info.status(), absl::StrCat("inspect '", path, "'"));
  return info;
}

}  // namespace edgefleet::delta
