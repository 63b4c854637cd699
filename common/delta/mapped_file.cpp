#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
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
  const auto size = static_cast<size_t>(st.st_size);
  void* addr = nullptr;
  // mmap of length 0 fails; an empty file is simply an empty view.
  if (size > 0) {
    addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return ErrnoError(err, "mmap", path);
    }
  }
  // The mapping keeps the file's pages reachable; the descriptor is no longer needed.
  ::close(fd);
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
