#include "cli/telemetry_cli.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"

namespace edgefleet::cli {
namespace {

// "1.23ms", "-" when unset.
std::string Latency(bool has, double seconds) {
  if (!has) return "-";
  if (seconds < 1) return absl::StrFormat("%.2fms", seconds * 1000);
  return absl::StrFormat("%.3fs", seconds);
}

template <typename Message>
std::string Reasons(const Message& m) {
  std::vector<std::string> parts;
  for (const v1::PredictErrorCount& e : m.errors_by_reason()) {
    parts.push_back(
        absl::StrCat(ShortEnumName(v1::PredictErrorReason_Name(e.reason()), 3), "=", e.count()));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ",");
}

template <typename Message>
std::vector<std::string> Quantiles(const Message& m) {
  return {Latency(m.has_latency_p50_seconds(), m.latency_p50_seconds()),
          Latency(m.has_latency_p95_seconds(), m.latency_p95_seconds()),
          Latency(m.has_latency_p99_seconds(), m.latency_p99_seconds())};
}

std::vector<std::string> PointRow(const std::string& label, const v1::ModelStatsPoint& p) {
  std::vector<std::string> row = {label, absl::StrCat(p.windows()), absl::StrCat(p.requests()),
                                  absl::StrCat(p.errors()), Reasons(p)};
  for (std::string& q : Quantiles(p)) row.push_back(std::move(q));
  return row;
}

}  // namespace

void RenderModelStats(const v1::ModelStatsResponse& stats, std::ostream& out) {
  RenderFields(
      {{"Model", stats.model_name()},
       {"Version", stats.version()},
       {"Hardware", stats.has_hw() ? (stats.hw().empty() ? "(none)" : stats.hw()) : "(all)"},
       {"From", FormatTimestamp(stats.from())},
       {"To", FormatTimestamp(stats.to())},
       {"Step", absl::StrCat(stats.step_seconds(), "s")}},
      out);
  out << "\n";
  Table table({"START", "WINDOWS", "REQUESTS", "ERRORS", "REASONS", "P50", "P95", "P99"});
  for (const v1::ModelStatsPoint& p : stats.points()) {
    table.AddRow(PointRow(FormatTimestamp(p.start()), p));
  }
  table.AddRow(PointRow("TOTAL", stats.total()));
  table.Render(out);
}

void RenderDeviceTelemetry(const v1::DeviceTelemetryResponse& telemetry, std::ostream& out) {
  if (telemetry.windows().empty()) {
    out << "no telemetry windows from " << telemetry.device_id() << " in this range\n";
    return;
  }
  Table table({"WINDOW-START", "WINDOW-END", "MODEL", "VERSION", "REQUESTS", "ERRORS", "REASONS",
               "P50", "P95", "P99"});
  for (const v1::DeviceTelemetryWindow& w : telemetry.windows()) {
    std::vector<std::string> row = {FormatTimestamp(w.window_start()),
                                    FormatTimestamp(w.window_end()),
                                    w.model_name(),
                                    w.version(),
                                    absl::StrCat(w.requests()),
                                    absl::StrCat(w.errors()),
                                    Reasons(w)};
    for (std::string& q : Quantiles(w)) row.push_back(std::move(q));
    table.AddRow(std::move(row));
  }
  table.Render(out);
}

}  // namespace edgefleet::cli
