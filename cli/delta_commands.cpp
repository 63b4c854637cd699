#include "cli/delta_commands.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cli/text_output.h"
#include "common/crypto/sha256.h"
#include "common/delta/delta.h"
#include "common/delta/delta_files.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;

struct DeltaContext;
using DeltaHandler = int (*)(DeltaContext&);

struct DeltaCommand {
  std::string name;  // "diff", run as "delta diff"
  std::string usage;
  std::set<std::string> flags;
  size_t num_args;
  std::string summary;
  DeltaHandler run;
};

struct DeltaContext {
  const DeltaFrontEnd& front;
  const DeltaCommand& command;
  std::vector<std::string> args;
  const ParsedArgs& parsed;
  OutputFormat output;
  std::ostream& out;
  std::ostream& err;

  // The same one-line form as the other commands: "edgefleetctl: delta apply: CODE: message".
  int Fail(const absl::Status& status) const {
    std::string message = absl::StrReplaceAll(status.message(), {{"\n", " "}});
    err << front.program << ": " << front.command_prefix << command.name << ": "
        << absl::StatusCodeToString(status.code()) << ": " << message << "\n";
    return 1;
  }

  int Usage(const std::string& problem) const {
    err << front.program << ": " << problem << "\n"
        << "usage: " << front.program << " " << front.command_prefix << command.name << " "
        << command.usage << "\n";
    return 2;
  }
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string FormatDouble(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

// Files that vanished after a successful operation are reported as 0 bytes, not as a failure.
uint64_t FileSizeOrZero(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(size);
}

bool SameFile(const std::string& a, const std::string& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

// A flat JSON object; values are already-rendered JSON.
void PrintJsonObject(const std::vector<std::pair<std::string, std::string>>& fields,
                     std::ostream& out) {
  out << "{\n";
  for (size_t i = 0; i < fields.size(); ++i) {
    out << "  " << JsonString(fields[i].first) << ": " << fields[i].second
        << (i + 1 < fields.size() ? ",\n" : "\n");
  }
  out << "}\n";
}

std::string CodecString(delta::Codec codec) { return std::string(delta::CodecName(codec)); }

int DeltaDiff(DeltaContext& c) {
  const std::string& old_path = c.args[0];
  const std::string& new_path = c.args[1];
  const std::string& patch_path = c.args[2];
  delta::Codec codec = delta::Codec::kAuto;
  if (std::optional<std::string> name = c.parsed.Get("codec")) {
    absl::StatusOr<delta::Codec> parsed = delta::ParseCodec(*name);
    if (!parsed.ok()) return c.Usage(std::string(parsed.status().message()));
    codec = *parsed;
  }
  delta::DiffOptions options;
  if (std::optional<std::string> budget = c.parsed.Get("time-budget")) {
    double seconds = 0;
    if (!absl::SimpleAtod(*budget, &seconds) || !std::isfinite(seconds) || seconds <= 0 ||
        seconds > 7 * 24 * 3600) {
      return c.Usage(
          absl::StrCat("--time-budget must be a positive number of seconds, not '", *budget, "'"));
    }
    options.time_budget = std::chrono::milliseconds(
        std::max<int64_t>(1, static_cast<int64_t>(std::llround(seconds * 1000))));
  }
  // The patch replaces its path atomically, so naming an input as PATCH would destroy it.
  if (SameFile(patch_path, old_path) || SameFile(patch_path, new_path)) {
    return c.Usage(absl::StrCat("PATCH '", patch_path, "' is one of the inputs"));
  }

  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<delta::DiffResult> result =
      delta::DiffFiles(old_path, new_path, patch_path, codec, options);
  const double seconds = SecondsSince(start);
  if (!result.ok()) return c.Fail(result.status());

  const uint64_t old_size = FileSizeOrZero(old_path);
  const uint64_t new_size = FileSizeOrZero(new_path);
  const double ratio =
      new_size == 0 ? 0.0 : static_cast<double>(result->patch_size_bytes) / new_size;
  if (c.output == OutputFormat::kJson) {
    PrintJsonObject({{"requested_codec", JsonString(CodecString(codec))},
                     {"codec", JsonString(CodecString(result->codec))},
                     {"full_is_smaller", result->full_is_smaller ? "true" : "false"},
                     {"patch", result->full_is_smaller ? "null" : JsonString(patch_path)},
                     {"old_size_bytes", absl::StrCat(old_size)},
                     {"new_size_bytes", absl::StrCat(new_size)},
                     {"patch_size_bytes", absl::StrCat(result->patch_size_bytes)},
                     {"ratio", result->full_is_smaller ? "null" : FormatDouble(ratio, 6)},
                     {"seconds", FormatDouble(seconds, 3)}},
                    c.out);
    return 0;
  }
  if (result->full_is_smaller) {
    c.out << "No patch written: the full new file, zstd-compressed, is smaller than the best "
             "patch ("
          << CodecString(result->codec) << "); send '" << new_path << "' whole.\n\n";
    RenderFields({{"Old size", absl::StrCat(old_size, " bytes")},
                  {"New size", absl::StrCat(new_size, " bytes")},
                  {"Time", absl::StrCat(FormatDouble(seconds, 3), " s")}},
                 c.out);
    return 0;
  }
  RenderFields({{"Patch", patch_path},
                {"Codec", CodecString(result->codec)},
                {"Old size", absl::StrCat(old_size, " bytes")},
                {"New size", absl::StrCat(new_size, " bytes")},
                {"Patch size", absl::StrCat(result->patch_size_bytes, " bytes")},
                {"Ratio", absl::StrCat(FormatDouble(ratio * 100, 2), "% of the new file")},
                {"Time", absl::StrCat(FormatDouble(seconds, 3), " s")}},
               c.out);
  return 0;
}

int DeltaApply(DeltaContext& c) {
  const std::string& old_path = c.args[0];
  const std::string& patch_path = c.args[1];
  const std::string& out_path = c.args[2];
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = delta::ApplyFiles(old_path, patch_path, out_path); !s.ok()) {
    return c.Fail(s);
  }
  const double seconds = SecondsSince(start);
  const uint64_t size = FileSizeOrZero(out_path);
  if (c.output == OutputFormat::kJson) {
    PrintJsonObject({{"out", JsonString(out_path)},
                     {"new_size_bytes", absl::StrCat(size)},
                     {"seconds", FormatDouble(seconds, 3)}},
                    c.out);
    return 0;
  }
  c.out << "Wrote '" << out_path << "': " << size << " bytes in " << FormatDouble(seconds, 3)
        << " s\n";
  return 0;
}

int DeltaInfo(DeltaContext& c) {
  absl::StatusOr<delta::PatchInfo> info = delta::InspectFile(c.args[0]);
  if (!info.ok()) return c.Fail(info.status());
  // bsdiff40 carries neither the old size nor digests.
  const bool has_old = info->codec != delta::Codec::kBsdiff40;
  if (c.output == OutputFormat::kJson) {
    auto digest = [](const std::string& raw) {
      return raw.empty() ? std::string("null") : JsonString(crypto::ToHex(raw));
    };
    PrintJsonObject(
        {{"codec", JsonString(CodecString(info->codec))},
         {"old_size_bytes", has_old ? absl::StrCat(info->old_size_bytes) : std::string("null")},
         {"new_size_bytes", absl::StrCat(info->new_size_bytes)},
         {"patch_size_bytes", absl::StrCat(info->patch_size_bytes)},
         {"old_sha256", digest(info->old_sha256)},
         {"new_sha256", digest(info->new_sha256)}},
        c.out);
    return 0;
  }
  auto digest = [](const std::string& raw) {
    return raw.empty() ? std::string("- (not carried by this codec)") : crypto::ToHex(raw);
  };
  RenderFields({{"Codec", CodecString(info->codec)},
                {"Old size", has_old ? absl::StrCat(info->old_size_bytes, " bytes") : "-"},
                {"New size", absl::StrCat(info->new_size_bytes, " bytes")},
                {"Patch size", absl::StrCat(info->patch_size_bytes, " bytes")},
                {"Old SHA-256", digest(info->old_sha256)},
                {"New SHA-256", digest(info->new_sha256)}},
               c.out);
  return 0;
}

const std::vector<DeltaCommand>& DeltaCommands() {
  static const std::vector<DeltaCommand> kCommands = {
      {"diff",
       "OLD NEW PATCH [--codec auto|bsdiff40|match-zstd|tensor] [--time-budget SECONDS]",
       {"codec", "time-budget"},
       3,
       "write a patch that turns OLD into NEW (auto: the smallest codec; no patch when the full "
       "file is smaller)",
       &DeltaDiff},
      {"apply",
       "OLD PATCH OUT",
       {},
       3,
       "rebuild NEW from OLD and PATCH into OUT (no OUT on failure)",
       &DeltaApply},
      {"info", "PATCH", {}, 1, "show a patch's codec, sizes and digests", &DeltaInfo},
  };
  return kCommands;
}

}  // namespace

const std::set<std::string>& DeltaFlags() {
  static const std::set<std::string> kFlags = {"codec", "time-budget"};
  return kFlags;
}

void PrintDeltaUsage(const DeltaFrontEnd& front, std::ostream& out) {
  size_t width = 0;
  for (const DeltaCommand& c : DeltaCommands()) {
    width = std::max(width, front.command_prefix.size() + c.name.size());
  }
  for (const DeltaCommand& c : DeltaCommands()) {
    const std::string name = front.command_prefix + c.name;
    out << "  " << name << std::string(width - name.size() + 2, ' ') << c.summary << "\n"
        << "  " << std::string(width + 2, ' ') << front.program << " " << name << " " << c.usage
        << "\n";
  }
}

int RunDelta(const DeltaFrontEnd& front, const ParsedArgs& parsed, std::ostream& out,
             std::ostream& err) {
  const std::vector<std::string>& pos = parsed.positionals;
  const DeltaCommand* command = nullptr;
  if (!pos.empty()) {
    for (const DeltaCommand& c : DeltaCommands()) {
      if (pos[0] == c.name) command = &c;
    }
  }
  if (command == nullptr && pos.empty() && parsed.Has("help")) {
    PrintDeltaUsage(front, out);
    return 0;
  }
  if (command == nullptr) {
    if (!pos.empty()) {
      err << front.program << ": unknown command '" << front.command_prefix << pos[0] << "'\n";
    } else {
      err << front.program << ": a command is needed (diff, apply or info)\n";
    }
    err << "usage: " << front.program << " " << front.command_prefix << "diff|apply|info ...\n"
        << "run '" << front.program << " help' for the list of commands\n";
    return 2;
  }

  DeltaContext ctx{front,
                   *command,
                   std::vector<std::string>(pos.begin() + 1, pos.end()),
                   parsed,
                   OutputFormat::kTable,
                   out,
                   err};
  if (parsed.Has("help")) {
    out << "usage: " << front.program << " " << front.command_prefix << command->name << " "
        << command->usage << "\n";
    return 0;
  }
  std::set<std::string> allowed = front.other_flags;
  allowed.insert(command->flags.begin(), command->flags.end());
  if (absl::Status s = CheckAllowedFlags(parsed, allowed); !s.ok()) {
    return ctx.Usage(std::string(s.message()));
  }
  if (ctx.args.size() < command->num_args) return ctx.Usage("missing arguments");
  if (ctx.args.size() > command->num_args) {
    return ctx.Usage(absl::StrCat("unexpected argument '", ctx.args[command->num_args], "'"));
  }
  absl::StatusOr<OutputFormat> format = front.output_format(parsed);
  if (!format.ok()) return ctx.Usage(std::string(format.status().message()));
  ctx.output = *format;
  return command->run(ctx);
}

}  // namespace edgefleet::cli
