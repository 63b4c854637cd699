// The two ways the engine reads whole files: mapped (diff inputs, the patch being applied) and
// through pread (the base being patched; see OldSource for why).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/delta/delta.h"

namespace edgefleet::delta {
namespace {

absl::Status ErrnoError(int err, std::string_view what, const std::string& path) {
  const std::string message = absl::StrCat(absl::string_view(what.data(), what.size()), " '", path,
                                           "': ", std::strerror(err));
  return err == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
}

struct OpenedFile {
  int fd;
  uint64_t size;
};

// Opens `path` for reading; anything but a regular file is refused.
absl::StatusOr<OpenedFile> OpenRegularFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError(err, "stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  return OpenedFile{fd, static_cast<uint64_t>(st.st_size)};
}

// The base file read with pread through one buffer of OldSource::kMaxReadBytes. Decoders walk
// the base mostly forwards in smaller pieces, so most reads are served from the buffer.
class FileOldSource final : public OldSource {
 public:
  FileOldSource(std::string path, OpenedFile file)
      : path_(std::move(path)), fd_(file.fd), size_(file.size) {}
  ~FileOldSource() override { ::close(fd_); }
  FileOldSource(const FileOldSource&) = delete;
  FileOldSource& operator=(const FileOldSource&) = delete;

  uint64_t size() const override { return size_; }

  absl::StatusOr<std::string_view> Read(uint64_t offset, size_t length) override {
    if (offset < buffer_offset_ || offset + length > buffer_offset_ + buffer_length_) {
      if (buffer_.empty()) buffer_.resize(kMaxReadBytes);
      const size_t want =
          static_cast<size_t>(std::min<uint64_t>(kMaxReadBytes, size_ - std::min(offset, size_)));
      size_t got = 0;
      while (got < want) {
        const ssize_t n =
            ::pread(fd_, buffer_.data() + got, want - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ErrnoError(errno, "read", path_);
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      buffer_offset_ = offset;
      buffer_length_ = got;
      if (got < length) {
        return absl::DataLossError(
            absl::StrCat("'", path_, "' became shorter than ", size_, " bytes while being read"));
      }
    }
    return std::string_view(buffer_.data() + (offset - buffer_offset_), length);
  }

 private:
  std::string path_;
  int fd_;
  uint64_t size_;
  std::string buffer_;
  uint64_t buffer_offset_ = 0;
  size_t buffer_length_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<OldSource>> OpenOldFile(const std::string& path) {
  absl::StatusOr<OpenedFile> file = OpenRegularFile(path);
  if (!file.ok()) return file.status();
  return std::make_unique<FileOldSource>(path, *file);
}

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  absl::StatusOr<OpenedFile> file = OpenRegularFile(path);
  if (!file.ok()) return file.status();
  const auto size = static_cast<size_t>(file->size);
  void* addr = nullptr;
  // mmap of length 0 fails; an empty file is simply an empty view.
  if (size > 0) {
    addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file->fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(file->fd);
      return ErrnoError(err, "mmap", path);
    }
  }
  // The mapping keeps the file's pages reachable; the descriptor is no longer needed.
  ::close(file->fd);
  return std::unique_ptr<MappedFile>(new MappedFile(addr, size));
}

MappedFile::~MappedFile() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

void MappedFile::ReleasePages() const {
  // Read-only file-backed pages are never dirty, so dropping them loses nothing.
  if (size_ > 0) ::madvise(addr_, size_, MADV_DONTNEED);
}

}  // namespace edgefleet::delta
