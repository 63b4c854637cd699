#include "cli/drift_cli.h"

#include <cstdio>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"

namespace edgefleet::cli {
namespace {

absl::Status BadFlag(const std::string& flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::StatusOr<double> ParsePsi(const ParsedArgs& args, const std::string& flag) {
  std::optional<std::string> text = args.Get(flag);
  if (!text.has_value()) return BadFlag(flag, "is required");
  double value = 0;
  if (!absl::SimpleAtod(*text, &value) || !(value > 0)) {
    return BadFlag(flag, absl::StrCat("want a PSI above 0, not '", *text, "'"));
  }
  return value;
}

std::string LevelName(v1::DriftLevel level) {
  return absl::AsciiStrToLower(ShortEnumName(v1::DriftLevel_Name(level), 2));
}

std::string Number(bool has, double value) {
  return has ? absl::StrFormat("%.4f", value) : std::string("-");
}

std::string SourceName(const v1::ModelDrift& drift) {
  switch (drift.reference_source()) {
    case v1::REFERENCE_SOURCE_UPLOADED:
      return absl::StrCat("uploaded (", drift.reference_samples(), " samples)");
    case v1::REFERENCE_SOURCE_FLEET:
      return absl::StrCat("fleet (", drift.reference_samples(), " samples)");
    default:
      return "none yet";
  }
}

void AddScoreRow(Table& table, const std::string& start, const std::string& feature,
                 const v1::DriftScore& score, bool with_start) {
  std::vector<std::string> row;
  if (with_start) row.push_back(start);
  row.insert(row.end(),
             {feature, Number(score.has_psi(), score.psi()),
              Number(score.has_js_distance(), score.js_distance()), LevelName(score.level()),
              absl::StrCat(score.reference_samples(), "/", score.current_samples())});
  table.AddRow(std::move(row));
}

}  // namespace

v1::GetModelDriftRequest DriftRequestFromFlags(const std::string& model, const std::string& version,
                                               const ParsedArgs& args) {
  v1::GetModelDriftRequest req;
  req.set_model_name(model);
  req.set_version(version);
  req.set_from(args.Get("from").value_or(""));
  req.set_to(args.Get("to").value_or(""));
  req.set_step(args.Get("step").value_or(""));
  req.set_hw(args.Get("hw").value_or(""));
  return req;
}

absl::StatusOr<v1::SetDriftThresholdsRequest> DriftThresholdsRequestFromFlags(
    const std::string& model, const ParsedArgs& args) {
  v1::SetDriftThresholdsRequest req;
  req.set_model_name(model);
  absl::StatusOr<double> warn = ParsePsi(args, "warn");
  if (!warn.ok()) return warn.status();
  absl::StatusOr<double> alert = ParsePsi(args, "alert");
  if (!alert.ok()) return alert.status();
  if (*alert <= *warn) return BadFlag("alert", "must be above --warn");
  req.set_warn(*warn);
  req.set_alert(*alert);
  if (auto min = args.Get("min-samples")) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(*min, &n) || n == 0) {
      return BadFlag("min-samples", absl::StrCat("want a positive number, not '", *min, "'"));
    }
    req.set_min_samples(n);
  }
  return req;
}

void RenderDriftThresholds(const v1::DriftThresholds& t, std::ostream& out) {
  RenderFields({{"Model", t.model_name()},
                {"Warn above", absl::StrCat(t.warn())},
                {"Alert above", absl::StrCat(t.alert())},
                {"Min samples", absl::StrCat(t.min_samples())},
                {"Set", t.is_default() ? "no (defaults)" : FormatTimestamp(t.updated_at())}},
               out);
}

void RenderDrift(const v1::ModelDrift& drift, std::ostream& out) {
  const v1::DriftThresholds& t = drift.thresholds();
  RenderFields({{"Model", drift.model_name()},
                {"Version", drift.version()},
                {"Hw", drift.hw().empty() ? "all devices" : drift.hw()},
                {"Reference", SourceName(drift)},
                {"Thresholds",
                 absl::StrCat("warn > ", t.warn(), ", alert > ", t.alert(), ", at least ",
                              t.min_samples(), " samples", t.is_default() ? " (defaults)" : "")}},
               out);
  if (!drift.note().empty()) out << drift.note() << "\n";
  if (drift.points_size() == 0) return;
  const bool series = drift.points_size() > 1;
  std::vector<std::string> headers;
  if (series) headers.push_back("START");
  headers.insert(headers.end(), {"FEATURE", "PSI", "JS", "LEVEL", "SAMPLES(REF/NOW)"});
  Table table(headers);
  for (const v1::DriftPoint& point : drift.points()) {
    const std::string start = FormatTimestamp(point.start());
    for (const v1::FeatureDrift& f : point.features()) {
      AddScoreRow(table, start, absl::StrCat(f.feature()), f.score(), series);
    }
    if (point.has_outputs()) AddScoreRow(table, start, "output", point.outputs(), series);
  }
  out << "\n";
  table.Render(out);
  if (!series) {
    const v1::DriftPoint& p = drift.points(0);
    out << "\n"
        << "Overall: " << LevelName(p.level()) << " over " << p.windows() << " windows";
    if (p.other_profile_windows() > 0) {
      out << " (" << p.other_profile_windows() << " windows binned by another profile left out)";
    }
    out << "\n";
  }
}

}  // namespace edgefleet::cli
