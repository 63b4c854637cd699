// File-level delta operations for the CLI, server and agent: diff and apply between paths, with
// outputs that appear atomically (temporary file, fsync, rename) or not at all.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/delta/delta.h"

namespace edgefleet::delta {

// A ByteSink that writes `path` atomically: bytes go to a temporary "<path>.tmp-XXXXXX" in the
// same directory; Commit() fsyncs it, renames it over `path` and fsyncs the directory. Without
// a successful Commit() (an error, Discard() or destruction) the temporary is removed and
// `path` is left untouched.
class FileSink final : public ByteSink {
 public:
  static absl::StatusOr<std::unique_ptr<FileSink>> Create(const std::string& path);
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  absl::Status Write(std::string_view data) override;
  absl::Status Commit();
  void Discard();

  uint64_t bytes_written() const { return bytes_written_; }
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  FileSink(std::string path, std::string temp_path, int fd);
  absl::Status Flush();
  absl::Status WriteAll(std::string_view data);

  std::string path_;
  std::string temp_path_;
  int fd_;
  std::string buffer_;
  uint64_t bytes_written_ = 0;
};

// Diffs two files into `patch_path`. For `auto` with full_is_smaller, no patch file is written.
absl::StatusOr<DiffResult> DiffFiles(const std::string& old_path, const std::string& new_path,
                                     const std::string& patch_path, Codec codec,
                                     const DiffOptions& options = {});

// Applies `patch_path` to `old_path` and writes `out_path` atomically; any failure (damaged
// patch, wrong base, digest mismatch, I/O) leaves no file at `out_path`.
absl::Status ApplyFiles(const std::string& old_path, const std::string& patch_path,
                        const std::string& out_path, const ApplyOptions& options = {});

absl::StatusOr<PatchInfo> InspectFile(const std::string& path);

}  // namespace edgefleet::delta
