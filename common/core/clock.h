// Clock is the one source of time: real in binaries, fake in tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <string>

namespace edgefleet {

class Clock {
 public:
  using TimePoint = std::chrono::system_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

// A clock that only moves when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint(std::chrono::seconds(1'800'000'000)))
      : now_(start.time_since_epoch().count()) {}
  TimePoint Now() const override { return TimePoint(TimePoint::duration(now_.load())); }
  void Advance(std::chrono::nanoseconds d) {
    now_ += std::chrono::duration_cast<TimePoint::duration>(d).count();
  }
  void Set(TimePoint t) { now_ = t.time_since_epoch().count(); }

 private:
  std::atomic<TimePoint::duration::rep> now_;
};

inline int64_t ToUnixSeconds(Clock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// Unix seconds within +-2^62 ns (about 146 years either side of 1970): a TimePoint counts
// nanoseconds in 64 bits, and within this range the difference of two time points fits too.
inline constexpr int64_t kMaxUnixSeconds = (int64_t{1} << 62) / 1'000'000'000;

// Times from the wire (a signed expiry, a device's window start) may be absurd: they are clamped
// to +-kMaxUnixSeconds rather than overflowing, so "year 300 billion" still compares as the far
// future.
inline Clock::TimePoint FromUnixSeconds(int64_t s) {
  return Clock::TimePoint(std::chrono::seconds(std::clamp(s, -kMaxUnixSeconds, kMaxUnixSeconds)));
}

// "2026-12-01T03:20:21Z": how logs and error messages name a moment.
inline std::string FormatUnixTime(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace edgefleet
