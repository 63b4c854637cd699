#include "agent/serving/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {
namespace {

// On Linux, PRIO_PROCESS with a thread id addresses that one thread.
id_t ThisThreadId() { return static_cast<id_t>(syscall(SYS_gettid)); }

}  // namespace

absl::Status LowerThisThreadPriority(int nice) {
  if (nice < 1 || nice > kMaxNice) {
    return absl::InvalidArgumentError(
        absl::StrCat("nice value ", nice, " is outside 1..", kMaxNice));
  }
  // Already as low or lower (the whole agent may run niced): raising it would need privileges.
  if (ThisThreadNice() >= nice) return absl::OkStatus();
  if (setpriority(PRIO_PROCESS, ThisThreadId(), nice) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("set this thread's nice value to ", nice, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

int ThisThreadNice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, ThisThreadId());
}

}  // namespace edgefleet::agent
