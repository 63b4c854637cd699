#include "cli/commands.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/capture_cli.h"
#include "cli/delta_commands.h"
#include "cli/drift_cli.h"
#include "cli/key_commands.h"
#include "cli/npy.h"
#include "cli/parsers.h"
#include "cli/reference_sample.h"
#include "cli/rollout_cli.h"
#include "cli/telemetry_cli.h"
#include "common/core/clock.h"
#include "common/core/files.h"
#include "common/core/labels.h"
#include "common/crypto/sha256.h"
#include "common/delta/onnx_signature.h"

namespace edgefleet::cli {
namespace {

constexpr char kProgram[] = "edgefleetctl";
const std::set<std::string> kGlobalFlags = {"server", "token",   "token-file",
                                            "o",      "timeout", "help"};

// A create command's flags plus the --capture-* ones.
std::set<std::string> WithCaptureFlags(std::set<std::string> flags) {
  flags.insert(kCaptureFlags.begin(), kCaptureFlags.end());
  return flags;
}

struct Context;
using Handler = int (*)(Context&);

struct Command {
  std::string name;   // "device list"
  std::string usage;  // what follows the name in the usage line
  std::set<std::string> flags;
  size_t min_args;
  size_t max_args;  // SIZE_MAX: unbounded
  std::string summary;
  Handler run;
};

struct Context {
  const Command& command;
  std::vector<std::string> args;  // positionals after the command words
  const ParsedArgs& parsed;
  GlobalOptions options;
  std::ostream& out;
  std::ostream& err;
  const Clients& clients;

  std::unique_ptr<AdminClient> Admin() const {
    return clients.admin(AdminClientOptions{options.server, options.token, options.timeout});
  }

  // One line on stderr, exit code 1.
  int Fail(const std::string& what, const absl::Status& status) const {
    std::string message = absl::StrReplaceAll(status.message(), {{"\n", " "}});
    err << kProgram << ": " << what << ": " << absl::StatusCodeToString(status.code()) << ": "
        << message << "\n";
    return 1;
  }

  int Usage(const std::string& problem) const {
    err << kProgram << ": " << problem << "\n"
        << "usage: " << kProgram << " " << command.name << " " << command.usage << "\n";
    return 2;
  }

  // Prints `message` as JSON, or calls `table` for the human form.
  template <typename Render>
  int Print(const std::string& what, const google::protobuf::Message& message,
            Render&& table) const {
    if (options.output == OutputFormat::kJson) {
      absl::StatusOr<std::string> json = ToJson(message);
      if (!json.ok()) return Fail(what, json.status());
      out << *json << "\n";
      return 0;
    }
    table();
    return 0;
  }
};

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

Labels ToLabels(const google::protobuf::Map<std::string, std::string>& map) {
  return Labels(map.begin(), map.end());
}

std::string SpecList(const google::protobuf::RepeatedPtrField<v1::TensorSpec>& specs) {
  std::vector<std::string> parts;
  for (const auto& s : specs) parts.push_back(absl::StrCat(s.name(), ":", FormatShape(s.shape())));
  return OrDash(absl::StrJoin(parts, ","));
}

std::string DeviceStatusName(v1::DeviceStatus s) {
  return ShortEnumName(v1::DeviceStatus_Name(s), 2);
}
std::string ModelStateName(v1::ModelState s) { return ShortEnumName(v1::ModelState_Name(s), 2); }
std::string TargetStateName(v1::DeploymentTargetState s) {
  return ShortEnumName(v1::DeploymentTargetState_Name(s), 3);
}
std::string FormatName(v1::ModelFormat f) { return ShortEnumName(v1::ModelFormat_Name(f), 2); }

std::string ShortSha(const std::string& raw) { return OrDash(crypto::ToHex(raw).substr(0, 12)); }

// Reads --limit: 0 (all) when absent.
absl::StatusOr<size_t> ParseLimit(const Context& c) {
  std::optional<std::string> v = c.parsed.Get("limit");
  if (!v.has_value()) return 0;
  size_t n = 0;
  if (!absl::SimpleAtoi(*v, &n) || n == 0) {
    return absl::InvalidArgumentError("--limit must be a positive number");
  }
  return n;
}

// Runs a list call page after page until the last page or `limit` items (0: all), answering
// the items of every page in one response. A response cut by `limit` keeps the token that
// continues after it.
template <typename Request, typename Response, typename Call, typename Items>
absl::StatusOr<Response> FollowPages(Request request, size_t limit, Call call, Items items) {
  constexpr size_t kPageSize = 1000;  // the server's largest page
  Response all;
  while (true) {
    const size_t have = static_cast<size_t>(items(all)->size());
    request.set_page_size(
        static_cast<uint32_t>(limit == 0 ? kPageSize : std::min(kPageSize, limit - have)));
    absl::StatusOr<Response> page = call(request);
    if (!page.ok()) return page.status();
    for (auto& item : *items(*page)) *items(all)->Add() = std::move(item);
    all.set_next_page_token(page->next_page_token());
    if (page->next_page_token().empty()) break;
    if (limit != 0 && static_cast<size_t>(items(all)->size()) >= limit) break;
    request.set_page_token(page->next_page_token());
  }
  return all;
}

// ---- token ----

int TokenCreate(Context& c) {
  v1::CreateEnrollmentTokenRequest req;
  if (auto v = c.parsed.Get("max-uses")) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(*v, &n) || n == 0) return c.Usage("--max-uses must be a positive number");
    req.set_max_uses(n);
  }
  if (auto v = c.parsed.Get("ttl")) {
    absl::StatusOr<uint64_t> ttl = ParseDurationSeconds(*v);
    if (!ttl.ok()) return c.Usage(std::string(ttl.status().message()));
    req.set_ttl_seconds(*ttl);
  }
  absl::StatusOr<Labels> labels = ParseLabelItems(c.parsed.GetAll("label"));
  if (!labels.ok()) return c.Usage(std::string(labels.status().message()));
  req.mutable_labels()->insert(labels->begin(), labels->end());
  req.set_description(c.parsed.Get("description").value_or(""));

  const std::string what = "create enrollment token";
  absl::StatusOr<v1::EnrollmentToken> token = c.Admin()->CreateEnrollmentToken(req);
  if (!token.ok()) return c.Fail(what, token.status());
  return c.Print(what, *token, [&] {
    RenderFields({{"Token ID", token->token_id()},
                  {"Token", token->token()},
                  {"Max uses", absl::StrCat(token->max_uses())},
                  {"Expires", FormatTimestamp(token->expires_at())},
                  {"Labels", OrDash(FormatLabels(ToLabels(token->labels())))},
                  {"Description", OrDash(token->description())}},
                 c.out);
    c.out << "\nThe token is shown only once: store it now.\n";
  });
}

std::string TokenState(const google::protobuf::Timestamp& revoked_at,
                       const google::protobuf::Timestamp& expires_at, int64_t now_unix) {
  if (revoked_at.seconds() != 0) return "revoked";
  if (expires_at.seconds() != 0 && expires_at.seconds() <= now_unix) return "expired";
  return "active";
}

int64_t NowUnix() { return ToUnixSeconds(SystemClock().Now()); }

int TokenList(Context& c) {
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list enrollment tokens";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListEnrollmentTokensResponse> resp =
      FollowPages<v1::ListEnrollmentTokensRequest, v1::ListEnrollmentTokensResponse>(
          v1::ListEnrollmentTokensRequest(), *limit,
          [&](const v1::ListEnrollmentTokensRequest& r) { return admin->ListEnrollmentTokens(r); },
          [](v1::ListEnrollmentTokensResponse& r) { return r.mutable_tokens(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"ID", "STATE", "USES", "EXPIRES", "LABELS", "DESCRIPTION"});
    for (const auto& t : resp->tokens()) {
      table.AddRow({t.token_id(), TokenState(t.revoked_at(), t.expires_at(), NowUnix()),
                    absl::StrCat(t.uses(), "/", t.max_uses()), FormatTimestamp(t.expires_at()),
                    OrDash(FormatLabels(ToLabels(t.labels()))), OrDash(t.description())});
    }
    table.Render(c.out);
  });
}

int TokenRevoke(Context& c) {
  v1::RevokeEnrollmentTokenRequest req;
  req.set_token_id(c.args[0]);
  const std::string what = absl::StrCat("revoke enrollment token '", c.args[0], "'");
  absl::StatusOr<v1::EnrollmentToken> token = c.Admin()->RevokeEnrollmentToken(req);
  if (!token.ok()) return c.Fail(what, token.status());
  return c.Print(what, *token,
                 [&] { c.out << "Enrollment token " << token->token_id() << " revoked.\n"; });
}

// ---- api-token ----

// "release-manager" <-> ROLE_RELEASE_MANAGER.
absl::StatusOr<v1::Role> ParseRole(const std::string& name) {
  v1::Role role = v1::ROLE_UNSPECIFIED;
  std::string upper = absl::AsciiStrToUpper(absl::StrReplaceAll(name, {{"-", "_"}}));
  if (name.empty() || !v1::Role_Parse("ROLE_" + upper, &role) || role == v1::ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--role must be viewer, operator, release-manager or admin, not '", name, "'"));
  }
  return role;
}
std::string RoleText(v1::Role role) {
  return absl::AsciiStrToLower(
      absl::StrReplaceAll(ShortEnumName(v1::Role_Name(role), 1), {{"_", "-"}}));
}

void RenderApiToken(const v1::ApiToken& t, std::ostream& out) {
  RenderFields({{"Name", t.name()},
                {"Role", RoleText(t.role())},
                {"State", TokenState(t.revoked_at(), t.expires_at(), NowUnix())},
                {"Expires", t.has_expires_at() ? FormatTimestamp(t.expires_at()) : "never"},
                {"Created by", OrDash(t.created_by())},
                {"Description", OrDash(t.description())}},
               out);
}

int ApiTokenCreate(Context& c) {
  v1::CreateApiTokenRequest req;
  req.set_name(c.args[0]);
  absl::StatusOr<v1::Role> role = ParseRole(c.parsed.Get("role").value_or(""));
  if (!role.ok()) return c.Usage(std::string(role.status().message()));
  req.set_role(*role);
  if (auto v = c.parsed.Get("ttl")) {
    absl::StatusOr<uint64_t> ttl = ParseDurationSeconds(*v);
    if (!ttl.ok()) return c.Usage(std::string(ttl.status().message()));
    req.set_ttl_seconds(*ttl);
  }
  req.set_description(c.parsed.Get("description").value_or(""));
  const std::string what = absl::StrCat("create API token '", c.args[0], "'");
  absl::StatusOr<v1::ApiToken> token = c.Admin()->CreateApiToken(req);
  if (!token.ok()) return c.Fail(what, token.status());
  return c.Print(what, *token, [&] {
    RenderApiToken(*token, c.out);
    RenderFields({{"Token", token->token()}}, c.out);
    c.out << "\nThe token is shown only once: store it now.\n";
  });
}

int ApiTokenList(Context& c) {
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list API tokens";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListApiTokensResponse> resp =
      FollowPages<v1::ListApiTokensRequest, v1::ListApiTokensResponse>(
          v1::ListApiTokensRequest(), *limit,
          [&](const v1::ListApiTokensRequest& r) { return admin->ListApiTokens(r); },
          [](v1::ListApiTokensResponse& r) { return r.mutable_tokens(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"NAME", "ROLE", "STATE", "EXPIRES", "CREATED-BY", "DESCRIPTION"});
    for (const auto& t : resp->tokens()) {
      table.AddRow({t.name(), RoleText(t.role()),
                    TokenState(t.revoked_at(), t.expires_at(), NowUnix()),
                    t.has_expires_at() ? FormatTimestamp(t.expires_at()) : "never",
                    OrDash(t.created_by()), OrDash(t.description())});
    }
    table.Render(c.out);
  });
}

int ApiTokenRevoke(Context& c) {
  v1::RevokeApiTokenRequest req;
  req.set_name(c.args[0]);
  const std::string what = absl::StrCat("revoke API token '", c.args[0], "'");
  absl::StatusOr<v1::ApiToken> token = c.Admin()->RevokeApiToken(req);
  if (!token.ok()) return c.Fail(what, token.status());
  return c.Print(what, *token, [&] { RenderApiToken(*token, c.out); });
}

// ---- device ----

std::string ModelsSummary(const v1::Inventory& inventory) {
  std::vector<std::string> parts;
  for (const auto& m : inventory.models()) {
    std::string part = absl::StrCat(m.model_name(), "@", m.version());
    if (m.state() != v1::MODEL_STATE_SERVING) {
      absl::StrAppend(&part, "(", ModelStateName(m.state()), ")");
    }
    parts.push_back(std::move(part));
  }
  return OrDash(absl::StrJoin(parts, ","));
}

// Windows the device's agent lost over its life, by reason.
std::string TelemetryDropped(const v1::Device& d) {
  const v1::DroppedTelemetryWindows& t = d.telemetry_dropped();
  return absl::StrCat(t.outbox_full() + t.refused(), " windows (outbox full ", t.outbox_full(),
                      ", refused ", t.refused(), ")");
}

void RenderDevice(const v1::Device& d, std::ostream& out) {
  const v1::Inventory& inv = d.inventory();
  RenderFields({{"ID", d.device_id()},
                {"Status", DeviceStatusName(d.status())},
                {"Labels", OrDash(FormatLabels(ToLabels(d.labels())))},
                {"First seen", FormatTimestamp(d.first_seen())},
                {"Last seen", FormatTimestamp(d.last_seen())},
                {"Hardware", OrDash(inv.hardware())},
                {"OS", OrDash(inv.os())},
                {"Agent version", OrDash(inv.agent_version())},
                {"Runtime", OrDash(inv.inference_runtime())},
                {"Free memory", absl::StrCat(inv.free_memory_bytes(), " bytes")},
                {"Free disk", absl::StrCat(inv.free_disk_bytes(), " bytes")},
                {"Telemetry dropped", TelemetryDropped(d)}},
               out);
  if (inv.models_size() > 0) {
    out << "\n";
    Table table({"MODEL", "VERSION", "STATE", "SHA256", "DETAIL"});
    for (const auto& m : inv.models()) {
      table.AddRow({m.model_name(), m.version(), ModelStateName(m.state()),
                    ShortSha(m.artifact_sha256()), m.detail()});
    }
    table.Render(out);
  }
}

int DeviceList(Context& c) {
  v1::ListDevicesRequest req;
  std::string selector = c.parsed.Get("selector").value_or("");
  if (absl::StatusOr<Labels> s = ParseLabelSelector(selector); !s.ok()) {
    return c.Usage(std::string(s.status().message()));
  }
  req.set_label_selector(selector);
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list devices";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListDevicesResponse> resp =
      FollowPages<v1::ListDevicesRequest, v1::ListDevicesResponse>(
          req, *limit, [&](const v1::ListDevicesRequest& r) { return admin->ListDevices(r); },
          [](v1::ListDevicesResponse& r) { return r.mutable_devices(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"ID", "STATUS", "LABELS", "LAST-SEEN", "MODELS"});
    for (const auto& d : resp->devices()) {
      table.AddRow({d.device_id(), DeviceStatusName(d.status()),
                    OrDash(FormatLabels(ToLabels(d.labels()))), FormatTimestamp(d.last_seen()),
                    ModelsSummary(d.inventory())});
    }
    table.Render(c.out);
  });
}

int DeviceGet(Context& c) {
  v1::GetDeviceRequest req;
  req.set_device_id(c.args[0]);
  const std::string what = absl::StrCat("get device '", c.args[0], "'");
  absl::StatusOr<v1::Device> d = c.Admin()->GetDevice(req);
  if (!d.ok()) return c.Fail(what, d.status());
  return c.Print(what, *d, [&] { RenderDevice(*d, c.out); });
}

int DeviceLabel(Context& c) {
  v1::LabelDeviceRequest req;
  req.set_device_id(c.args[0]);
  absl::StatusOr<Labels> set =
      ParseLabelItems(std::vector<std::string>(c.args.begin() + 1, c.args.end()));
  if (!set.ok()) return c.Usage(std::string(set.status().message()));
  req.mutable_set_labels()->insert(set->begin(), set->end());
  for (const std::string& key : c.parsed.GetAll("remove")) req.add_remove_labels(key);
  if (req.set_labels().empty() && req.remove_labels().empty()) {
    return c.Usage("give labels to set (k=v) or --remove KEY");
  }
  const std::string what = absl::StrCat("label device '", c.args[0], "'");
  absl::StatusOr<v1::Device> d = c.Admin()->LabelDevice(req);
  if (!d.ok()) return c.Fail(what, d.status());
  return c.Print(what, *d, [&] { RenderDevice(*d, c.out); });
}

int DeviceDecommission(Context& c) {
  v1::DecommissionDeviceRequest req;
  req.set_device_id(c.args[0]);
  const std::string what = absl::StrCat("decommission device '", c.args[0], "'");
  absl::StatusOr<v1::Device> d = c.Admin()->DecommissionDevice(req);
  if (!d.ok()) return c.Fail(what, d.status());
  return c.Print(what, *d, [&] { RenderDevice(*d, c.out); });
}

int DeviceRekey(Context& c) {
  v1::RekeyDeviceRequest req;
  req.set_device_id(c.args[0]);
  if (auto v = c.parsed.Get("ttl")) {
    absl::StatusOr<uint64_t> ttl = ParseDurationSeconds(*v);
    if (!ttl.ok()) return c.Usage(std::string(ttl.status().message()));
    req.set_ttl_seconds(*ttl);
  }
  const std::string what = absl::StrCat("rekey device '", c.args[0], "'");
  absl::StatusOr<v1::RekeyDeviceResponse> r = c.Admin()->RekeyDevice(req);
  if (!r.ok()) return c.Fail(what, r.status());
  return c.Print(what, *r, [&] {
    RenderDevice(r->device(), c.out);
    RenderFields({{"Enroll before", FormatTimestamp(r->enroll_before())}}, c.out);
  });
}

// ---- model ----

// A version's reference in one line: where it came from and how much it rests on.
std::string FormatReference(const v1::ReferenceSummary& r) {
  const std::string sha =
      r.profile_sha256().empty() ? "" : absl::StrCat(", sha256 ", ShortSha(r.profile_sha256()));
  switch (r.source()) {
    case v1::REFERENCE_SOURCE_UPLOADED:
      return absl::StrCat("uploaded, ", r.samples(), " samples",
                          r.samples() < 1000 ? " (under 1,000)" : "", ", ", r.feature_count(),
                          " features", sha);
    case v1::REFERENCE_SOURCE_FLEET:
      return absl::StrCat("fleet, ", r.windows(), " windows, ", r.samples(), " samples, ",
                          r.feature_count(), " features", sha);
    default:
      return r.detail().empty() ? "none" : absl::StrCat("none (", r.detail(), ")");
  }
}

void RenderModelVersion(const v1::ModelVersion& v, std::ostream& out) {
  RenderFields({{"Model", v.model_name()},
                {"Version", v.version()},
                {"Format", FormatName(v.format())},
                {"SHA-256", OrDash(crypto::ToHex(v.artifact_sha256()))},
                {"Size", absl::StrCat(v.size_bytes(), " bytes")},
                {"Inputs", SpecList(v.inputs())},
                {"Outputs", SpecList(v.outputs())},
                {"Labels", OrDash(FormatLabels(ToLabels(v.labels())))},
                {"Metadata version", absl::StrCat(v.metadata_version())},
                {"Created", FormatTimestamp(v.created_at())},
                {"Reference", FormatReference(v.reference())}},
               out);
}

// The reference profile of `--reference SAMPLE.npy`, for the model file about to be pushed: its
// inputs and outputs as declared with --input/--output, else as its graph states them.
absl::StatusOr<v1::ReferenceProfile> ReferenceForPush(const std::string& model_path,
                                                      const v1::PushModelMetadata& meta,
                                                      const std::string& sample_path) {
  auto sample = ReadNpyFile(sample_path);
  if (!sample.ok()) return sample.status();
  std::ifstream in(model_path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  auto signature = delta::ParseOnnxSignature(bytes.str());
  if (!signature.ok()) return signature.status();
  v1::ModelVersion model;
  const auto describe = [](const std::vector<delta::OnnxTensorInfo>& graph,
                           const google::protobuf::RepeatedPtrField<v1::TensorSpec>& declared,
                           google::protobuf::RepeatedPtrField<v1::TensorSpec>* out) {
    if (!declared.empty()) {
      *out = declared;
      return;
    }
    for (const auto& t : graph) {
      v1::TensorSpec* spec = out->Add();
      spec->set_name(t.name);
      for (int64_t d : t.dims) spec->add_shape(d);
    }
  };
  describe(signature->inputs, meta.inputs(), model.mutable_inputs());
  describe(signature->outputs, meta.outputs(), model.mutable_outputs());
  return ReferenceFromSample(model_path, model, *sample);
}

int ModelPush(Context& c) {
  v1::PushModelMetadata meta;
  meta.set_model_name(c.args[0]);
  const std::string& file = c.args[1];
  std::optional<std::string> version = c.parsed.Get("version");
  if (!version.has_value() || version->empty()) return c.Usage("--version is required");
  meta.set_version(*version);
  meta.set_format(v1::MODEL_FORMAT_ONNX);
  for (const std::string& s : c.parsed.GetAll("input")) {
    absl::StatusOr<v1::TensorSpec> spec = ParseTensorSpec(s);
    if (!spec.ok()) return c.Usage(std::string(spec.status().message()));
    *meta.add_inputs() = *spec;
  }
  for (const std::string& s : c.parsed.GetAll("output")) {
    absl::StatusOr<v1::TensorSpec> spec = ParseTensorSpec(s);
    if (!spec.ok()) return c.Usage(std::string(spec.status().message()));
    *meta.add_outputs() = *spec;
  }
  absl::StatusOr<Labels> labels = ParseLabelItems(c.parsed.GetAll("label"));
  if (!labels.ok()) return c.Usage(std::string(labels.status().message()));
  meta.mutable_labels()->insert(labels->begin(), labels->end());
  if (auto hex = c.parsed.Get("sha256")) {
    absl::StatusOr<std::string> raw = ParseSha256Hex(*hex);
    if (!raw.ok()) return c.Usage(std::string(raw.status().message()));
    meta.set_expected_sha256(*raw);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) return c.Fail(absl::StrCat("open '", file, "'"), absl::NotFoundError("cannot read"));
  // The server registers the version only if exactly these bytes arrive: a push cut short (or a
  // file changed while it is sent) registers nothing.
  std::error_code size_error;
  const uint64_t size = std::filesystem::file_size(file, size_error);
  absl::StatusOr<std::string> digest = crypto::Sha256File(file);
  if (size_error || !digest.ok()) {
    return c.Fail(absl::StrCat("read '", file, "'"),
                  digest.ok() ? absl::NotFoundError(size_error.message()) : digest.status());
  }
  if (!meta.expected_sha256().empty() && meta.expected_sha256() != *digest) {
    return c.Fail(
        absl::StrCat("check '", file, "'"),
        absl::InvalidArgumentError(absl::StrCat("the file's SHA-256 is ", crypto::ToHex(*digest),
                                                ", not the one given with --sha256")));
  }
  meta.set_expected_sha256(*digest);
  meta.set_expected_size_bytes(size);
  if (auto sample_path = c.parsed.Get("reference")) {
    auto profile = ReferenceForPush(file, meta, *sample_path);
    if (!profile.ok())
      return c.Fail(absl::StrCat("reference sample '", *sample_path, "'"), profile.status());
    *meta.mutable_reference() = *std::move(profile);
  }

  const std::string what = absl::StrCat("push model '", c.args[0], "' version '", *version, "'");
  absl::StatusOr<v1::ModelVersion> v = c.Admin()->PushModel(meta, in);
  if (!v.ok()) return c.Fail(what, v.status());
  return c.Print(what, *v, [&] { RenderModelVersion(*v, c.out); });
}

// The version published last: highest metadata version, then newest.
const v1::ModelVersion* Latest(const v1::Model& m) {
  const v1::ModelVersion* best = nullptr;
  for (const auto& v : m.versions()) {
    if (best == nullptr ||
        std::make_pair(v.metadata_version(), v.created_at().seconds()) >=
            std::make_pair(best->metadata_version(), best->created_at().seconds())) {
      best = &v;
    }
  }
  return best;
}

int ModelList(Context& c) {
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list models";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListModelsResponse> resp =
      FollowPages<v1::ListModelsRequest, v1::ListModelsResponse>(
          v1::ListModelsRequest(), *limit,
          [&](const v1::ListModelsRequest& r) { return admin->ListModels(r); },
          [](v1::ListModelsResponse& r) { return r.mutable_models(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"NAME", "VERSIONS", "LATEST", "CREATED"});
    for (const auto& m : resp->models()) {
      const v1::ModelVersion* latest = Latest(m);
      table.AddRow({m.name(), absl::StrCat(m.versions_size()), latest ? latest->version() : "-",
                    latest ? FormatTimestamp(latest->created_at()) : "-"});
    }
    table.Render(c.out);
  });
}

int ModelGet(Context& c) {
  v1::GetModelRequest req;
  req.set_model_name(c.args[0]);
  const std::string what = absl::StrCat("get model '", c.args[0], "'");
  absl::StatusOr<v1::Model> m = c.Admin()->GetModel(req);
  if (!m.ok()) return c.Fail(what, m.status());
  return c.Print(what, *m, [&] {
    c.out << "Model: " << m->name() << "\n\n";
    Table table({"VERSION", "FORMAT", "SHA256", "SIZE", "INPUTS", "OUTPUTS", "META-VERSION",
                 "CREATED", "REFERENCE"});
    for (const auto& v : m->versions()) {
      table.AddRow({v.version(), FormatName(v.format()), ShortSha(v.artifact_sha256()),
                    absl::StrCat(v.size_bytes()), SpecList(v.inputs()), SpecList(v.outputs()),
                    absl::StrCat(v.metadata_version()), FormatTimestamp(v.created_at()),
                    FormatReference(v.reference())});
    }
    table.Render(c.out);
  });
}

int ModelDrift(Context& c) {
  v1::GetModelDriftRequest req = DriftRequestFromFlags(c.args[0], c.args[1], c.parsed);
  const std::string what = absl::StrCat("get drift of '", c.args[0], "' ", c.args[1]);
  absl::StatusOr<v1::ModelDrift> drift = c.Admin()->GetModelDrift(req);
  if (!drift.ok()) return c.Fail(what, drift.status());
  return c.Print(what, *drift, [&] { RenderDrift(*drift, c.out); });
}

int ModelDriftThresholds(Context& c) {
  absl::StatusOr<v1::SetDriftThresholdsRequest> req =
      DriftThresholdsRequestFromFlags(c.args[0], c.parsed);
  if (!req.ok()) return c.Usage(std::string(req.status().message()));
  const std::string what = absl::StrCat("set drift thresholds of '", c.args[0], "'");
  absl::StatusOr<v1::DriftThresholds> t = c.Admin()->SetDriftThresholds(*req);
  if (!t.ok()) return c.Fail(what, t.status());
  return c.Print(what, *t, [&] { RenderDriftThresholds(*t, c.out); });
}

// ---- deploy ----

// From the server's per-state counts: a listed deployment carries no targets.
std::string TargetSummary(const v1::Deployment& d) {
  const v1::DeploymentTargetCounts& n = d.target_counts();
  // A deployment replaced by a newer one reads as such, not as a rollout that stalled.
  if (n.superseded() == d.target_count() && n.superseded() > 0) return "superseded";
  std::string s = absl::StrCat(n.serving(), "/", d.target_count(), " serving");
  if (n.failed() > 0) absl::StrAppend(&s, ", ", n.failed(), " failed");
  if (n.superseded() > 0) absl::StrAppend(&s, ", ", n.superseded(), " superseded");
  if (n.rolled_back() > 0) absl::StrAppend(&s, ", ", n.rolled_back(), " rolled back");
  return s;
}

void RenderDeployment(const v1::Deployment& d, std::ostream& out) {
  RenderFields({{"ID", d.deployment_id()},
                {"Model", d.model_name()},
                {"Version", d.version()},
                {"Selector", d.label_selector().empty() ? "(all devices)" : d.label_selector()},
                {"Created", FormatTimestamp(d.created_at())},
                {"Targets", TargetSummary(d)}},
               out);
  if (d.targets_size() > 0) {
    out << "\n";
    Table table({"DEVICE", "STATE", "UPDATED", "DETAIL"});
    for (const auto& t : d.targets()) {
      table.AddRow(
          {t.device_id(), TargetStateName(t.state()), FormatTimestamp(t.updated_at()), t.detail()});
    }
    table.Render(out);
  }
}

int DeployCreate(Context& c) {
  v1::CreateDeploymentRequest req;
  req.set_model_name(c.args[0]);
  req.set_version(c.args[1]);
  std::string selector = c.parsed.Get("selector").value_or("");
  if (absl::StatusOr<Labels> s = ParseLabelSelector(selector); !s.ok()) {
    return c.Usage(std::string(s.status().message()));
  }
  req.set_label_selector(selector);
  absl::StatusOr<std::optional<v1::CaptureSpec>> capture = CaptureSpecFromFlags(c.parsed);
  if (!capture.ok()) return c.Usage(std::string(capture.status().message()));
  if (capture->has_value()) *req.mutable_capture() = **capture;
  const std::string what = absl::StrCat("deploy model '", c.args[0], "' version '", c.args[1], "'");
  absl::StatusOr<v1::Deployment> d = c.Admin()->CreateDeployment(req);
  if (!d.ok()) return c.Fail(what, d.status());
  return c.Print(what, *d, [&] { RenderDeployment(*d, c.out); });
}

int DeployStatus(Context& c) {
  v1::GetDeploymentRequest req;
  req.set_deployment_id(c.args[0]);
  req.set_target_page_size(1000);  // the server's largest page
  const std::string what = absl::StrCat("get deployment '", c.args[0], "'");
  auto admin = c.Admin();
  // Follows every page of targets; the first answer carries the rest of the deployment.
  absl::StatusOr<v1::Deployment> d = admin->GetDeployment(req);
  if (!d.ok()) return c.Fail(what, d.status());
  while (!d->next_target_page_token().empty()) {
    req.set_target_page_token(d->next_target_page_token());
    absl::StatusOr<v1::Deployment> page = admin->GetDeployment(req);
    if (!page.ok()) return c.Fail(what, page.status());
    for (auto& t : *page->mutable_targets()) *d->add_targets() = std::move(t);
    d->set_next_target_page_token(page->next_target_page_token());
  }
  return c.Print(what, *d, [&] { RenderDeployment(*d, c.out); });
}

int DeployList(Context& c) {
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list deployments";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListDeploymentsResponse> resp =
      FollowPages<v1::ListDeploymentsRequest, v1::ListDeploymentsResponse>(
          v1::ListDeploymentsRequest(), *limit,
          [&](const v1::ListDeploymentsRequest& r) { return admin->ListDeployments(r); },
          [](v1::ListDeploymentsResponse& r) { return r.mutable_deployments(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"ID", "MODEL", "VERSION", "SELECTOR", "TARGETS", "CREATED"});
    for (const auto& d : resp->deployments()) {
      table.AddRow({d.deployment_id(), d.model_name(), d.version(), OrDash(d.label_selector()),
                    TargetSummary(d), FormatTimestamp(d.created_at())});
    }
    table.Render(c.out);
  });
}

// ---- capture ----

// --model (required), --version and --since (RFC 3339, or a duration back from now: 24h).
absl::StatusOr<v1::ListCapturesRequest> CaptureFilter(Context& c) {
  v1::ListCapturesRequest req;
  std::optional<std::string> model = c.parsed.Get("model");
  if (!model.has_value() || model->empty())
    return absl::InvalidArgumentError("--model is required");
  req.set_model_name(*model);
  req.set_version(c.parsed.Get("version").value_or(""));
  if (auto since = c.parsed.Get("since")) {
    google::protobuf::Timestamp t;
    if (google::protobuf::util::TimeUtil::FromString(*since, &t)) {
      *req.mutable_since() = t;
    } else if (absl::StatusOr<uint64_t> back = ParseDurationSeconds(*since); back.ok()) {
      req.mutable_since()->set_seconds(ToUnixSeconds(std::chrono::system_clock::now()) -
                                       static_cast<int64_t>(*back));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--since: want an RFC 3339 time (2026-12-01T10:00:00Z) or a duration (24h), not '",
          *since, "'"));
    }
  }
  return req;
}

int CaptureList(Context& c) {
  absl::StatusOr<v1::ListCapturesRequest> filter = CaptureFilter(c);
  if (!filter.ok()) return c.Usage(std::string(filter.status().message()));
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list captures";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListCapturesResponse> resp =
      FollowPages<v1::ListCapturesRequest, v1::ListCapturesResponse>(
          *filter, *limit, [&](const v1::ListCapturesRequest& r) { return admin->ListCaptures(r); },
          [](v1::ListCapturesResponse& r) { return r.mutable_captures(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"ID", "DEVICE", "MODEL", "VERSION", "CAPTURED", "TRIGGER", "BYTES"});
    for (const auto& r : resp->captures()) {
      table.AddRow({r.capture_id(), r.device_id(), r.model_name(), r.version(),
                    FormatTimestamp(r.captured_at()), TriggerName(r.trigger()),
                    absl::StrCat(r.size_bytes())});
    }
    table.Render(c.out);
  });
}

int CaptureExport(Context& c) {
  absl::StatusOr<v1::ListCapturesRequest> filter = CaptureFilter(c);
  if (!filter.ok()) return c.Usage(std::string(filter.status().message()));
  const std::string what = absl::StrCat("export captures to ", c.args[0]);
  absl::StatusOr<ExportResult> result = ExportCaptures(*c.Admin(), *filter, c.args[0]);
  if (!result.ok()) return c.Fail(what, result.status());
  c.out << "exported " << result->written << " captures to " << c.args[0] << " (" << result->skipped
        << " already there)\n";
  return 0;
}

// ---- rollout ----

// How often `rollout status --watch` asks again.
constexpr std::chrono::seconds kWatchInterval{2};

int RolloutCreate(Context& c) {
  absl::StatusOr<v1::CreateRolloutRequest> req = CreateRolloutRequestFromFlags(c.args[0], c.parsed);
  if (!req.ok()) return c.Usage(std::string(req.status().message()));
  absl::StatusOr<std::optional<v1::CaptureSpec>> capture = CaptureSpecFromFlags(c.parsed);
  if (!capture.ok()) return c.Usage(std::string(capture.status().message()));
  if (capture->has_value()) *req->mutable_capture() = **capture;
  const std::string what = absl::StrCat("create rollout '", c.args[0], "'");
  absl::StatusOr<v1::Rollout> r = c.Admin()->CreateRollout(*req);
  if (!r.ok()) return c.Fail(what, r.status());
  return c.Print(what, *r, [&] { RenderRollout(*r, c.out); });
}

int RolloutStatus(Context& c) {
  v1::GetRolloutRequest req;
  req.set_name(c.args[0]);
  const std::string what = absl::StrCat("get rollout '", c.args[0], "'");
  auto admin = c.Admin();
  const bool watch = c.parsed.Has("watch");
  // What was printed last: a watch prints the rollout again only when more than its updated_at
  // changed (the controller touches that on every evaluation).
  std::optional<std::string> shown;
  while (true) {
    absl::StatusOr<v1::Rollout> r = admin->GetRollout(req);
    if (!r.ok()) return c.Fail(what, r.status());
    v1::Rollout compared = *r;
    compared.clear_updated_at();
    std::string now = compared.SerializeAsString();
    if (now != shown) {
      if (shown.has_value()) c.out << "\n";
      if (int rc = c.Print(what, *r, [&] { RenderRollout(*r, c.out); }); rc != 0) return rc;
      c.out.flush();
      shown = std::move(now);
    }
    if (!watch || IsFinalRolloutState(r->state())) return 0;
    c.clients.wait(kWatchInterval);
  }
}

int RolloutList(Context& c) {
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  const std::string what = "list rollouts";
  auto admin = c.Admin();
  absl::StatusOr<v1::ListRolloutsResponse> resp =
      FollowPages<v1::ListRolloutsRequest, v1::ListRolloutsResponse>(
          v1::ListRolloutsRequest(), *limit,
          [&](const v1::ListRolloutsRequest& r) { return admin->ListRollouts(r); },
          [](v1::ListRolloutsResponse& r) { return r.mutable_rollouts(); });
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] { RenderRolloutList(*resp, c.out); });
}

// An operator action on the rollout named by the first argument: `Request` carries its name and
// --reason, `call` sends it.
template <typename Request, typename Call>
int RolloutAct(Context& c, const char* verb, Call call) {
  Request req;
  req.set_name(c.args[0]);
  req.set_reason(c.parsed.Get("reason").value_or(""));
  const std::string what = absl::StrCat(verb, " rollout '", c.args[0], "'");
  std::unique_ptr<AdminClient> admin = c.Admin();
  absl::StatusOr<v1::Rollout> r = ((*admin).*call)(req);
  if (!r.ok()) return c.Fail(what, r.status());
  return c.Print(what, *r, [&] { RenderRollout(*r, c.out); });
}

int RolloutPause(Context& c) {
  return RolloutAct<v1::PauseRolloutRequest>(c, "pause", &AdminClient::PauseRollout);
}
int RolloutResume(Context& c) {
  return RolloutAct<v1::ResumeRolloutRequest>(c, "resume", &AdminClient::ResumeRollout);
}
int RolloutPromote(Context& c) {
  return RolloutAct<v1::PromoteRolloutRequest>(c, "promote", &AdminClient::PromoteRollout);
}
int RolloutAbort(Context& c) {
  return RolloutAct<v1::AbortRolloutRequest>(c, "abort", &AdminClient::AbortRollout);
}
int RolloutRollback(Context& c) {
  return RolloutAct<v1::RollbackRolloutRequest>(c, "roll back", &AdminClient::RollbackRollout);
}

// ---- telemetry ----

int ModelStats(Context& c) {
  v1::ModelStatsRequest req;
  req.set_model_name(c.args[0]);
  req.set_version(c.args[1]);
  req.set_from(c.parsed.Get("from").value_or(""));
  req.set_to(c.parsed.Get("to").value_or(""));
  req.set_step(c.parsed.Get("step").value_or(""));
  if (std::optional<std::string> hw = c.parsed.Get("hw"); hw.has_value()) req.set_hw(*hw);
  const std::string what = absl::StrCat("model stats of ", c.args[0], " ", c.args[1]);
  absl::StatusOr<v1::ModelStatsResponse> r = c.Admin()->GetModelStats(req);
  if (!r.ok()) return c.Fail(what, r.status());
  return c.Print(what, *r, [&] { RenderModelStats(*r, c.out); });
}

int DeviceTelemetry(Context& c) {
  v1::DeviceTelemetryRequest req;
  req.set_device_id(c.args[0]);
  req.set_from(c.parsed.Get("from").value_or(""));
  req.set_to(c.parsed.Get("to").value_or(""));
  req.set_model(c.parsed.Get("model").value_or(""));
  absl::StatusOr<size_t> limit = ParseLimit(c);
  if (!limit.ok()) return c.Usage(std::string(limit.status().message()));
  req.set_limit(static_cast<uint32_t>(std::min<size_t>(*limit, UINT32_MAX)));
  const std::string what = absl::StrCat("telemetry of device ", c.args[0]);
  absl::StatusOr<v1::DeviceTelemetryResponse> r = c.Admin()->GetDeviceTelemetry(req);
  if (!r.ok()) return c.Fail(what, r.status());
  return c.Print(what, *r, [&] { RenderDeviceTelemetry(*r, c.out); });
}

// ---- agent (local inference API) ----

int AgentPredict(Context& c) {
  std::optional<std::string> socket = c.parsed.Get("socket");
  std::optional<std::string> model = c.parsed.Get("model");
  if (!socket.has_value()) return c.Usage("--socket is required");
  if (!model.has_value()) return c.Usage("--model is required");
  v1::PredictRequest req;
  req.set_model_name(*model);
  for (const std::string& s : c.parsed.GetAll("input")) {
    absl::StatusOr<v1::Tensor> t = ParseTensorValue(s);
    if (!t.ok()) return c.Usage(std::string(t.status().message()));
    *req.add_inputs() = std::move(*t);
  }
  if (req.inputs().empty()) return c.Usage("at least one --input is required");
  for (const std::string& name : c.parsed.GetAll("output-name")) req.add_output_names(name);

  const std::string what = absl::StrCat("predict with model '", *model, "'");
  absl::StatusOr<v1::PredictResponse> resp =
      c.clients.inference(*socket, c.options.timeout)->Predict(req);
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    c.out << "Model: " << resp->model_name() << "\nVersion: " << resp->version() << "\n\n";
    Table table({"OUTPUT", "SHAPE", "VALUES"});
    for (const auto& t : resp->outputs()) {
      table.AddRow({t.name(), FormatShape(t.shape()), absl::StrJoin(t.data(), ",")});
    }
    table.Render(c.out);
  });
}

int AgentModels(Context& c) {
  std::optional<std::string> socket = c.parsed.Get("socket");
  if (!socket.has_value()) return c.Usage("--socket is required");
  const std::string what = "list agent models";
  absl::StatusOr<v1::ListLocalModelsResponse> resp =
      c.clients.inference(*socket, c.options.timeout)->ListModels(v1::ListLocalModelsRequest());
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    Table table({"NAME", "VERSION", "STATE", "INPUTS", "OUTPUTS"});
    for (const auto& m : resp->models()) {
      table.AddRow({m.model_name(), m.version(), ModelStateName(m.state()), SpecList(m.inputs()),
                    SpecList(m.outputs())});
    }
    table.Render(c.out);
  });
}

int AgentStatus(Context& c) {
  std::optional<std::string> socket = c.parsed.Get("socket");
  if (!socket.has_value()) return c.Usage("--socket is required");
  const std::string what = "agent status";
  absl::StatusOr<v1::AgentStatus> resp =
      c.clients.inference(*socket, c.options.timeout)->GetAgentStatus(v1::GetAgentStatusRequest());
  if (!resp.ok()) return c.Fail(what, resp.status());
  return c.Print(what, *resp, [&] {
    const v1::ReleaseTrustStatus& t = resp->trust();
    c.out << "Device: " << OrDash(resp->device_id()) << "\nRoot key: " << OrDash(t.root_key_id())
          << "\nRelease key: " << OrDash(t.release_key_id()) << " (delegation version "
          << t.delegation_version()
          << ")\nRevoked keys: " << OrDash(absl::StrJoin(t.revoked_key_ids(), ","))
          << "\nFreshness: " << (t.stale() ? "STALE" : "fresh") << ", newest signed timestamp "
          << t.timestamp_age_seconds() << "s old (limit " << t.freshness_limit_seconds()
          << "s)\nLast refusal: " << OrDash(t.last_refusal()) << "\n";
  });
}

constexpr size_t kUnbounded = SIZE_MAX;

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"token create",
       "[--max-uses N] [--ttl SECONDS|30m|24h|7d] [--label k=v ...] [--description TEXT]",
       {"max-uses", "ttl", "label", "description"},
       0,
       0,
       "create an enrollment token (the secret is shown once)",
       &TokenCreate},
      {"token list",
       "[--limit N]",
       {"limit"},
       0,
       0,
       "list enrollment tokens, never their secrets (every page, or the first N)",
       &TokenList},
      {"token revoke",
       "ID",
       {},
       1,
       1,
       "revoke an enrollment token: it enrolls no more",
       &TokenRevoke},
      {"api-token create",
       "NAME --role viewer|operator|release-manager|admin [--ttl 90d] [--description TEXT]",
       {"role", "ttl", "description"},
       1,
       1,
       "create an operator API token (the secret is shown once)",
       &ApiTokenCreate},
      {"api-token list",
       "[--limit N]",
       {"limit"},
       0,
       0,
       "list operator API tokens (every page, or the first N)",
       &ApiTokenList},
      {"api-token revoke", "NAME", {}, 1, 1, "revoke an operator API token", &ApiTokenRevoke},
      {"device list",
       "[--selector k=v,...] [--limit N]",
       {"selector", "limit"},
       0,
       0,
       "list devices (every page, or the first N)",
       &DeviceList},
      {"device get", "ID", {}, 1, 1, "show one device", &DeviceGet},
      {"device label",
       "ID [k=v ...] [--remove KEY ...]",
       {"remove"},
       1,
       kUnbounded,
       "set or remove device labels",
       &DeviceLabel},
      {"device decommission", "ID", {}, 1, 1, "decommission a device", &DeviceDecommission},
      {"device telemetry",
       "ID [--model M] [--from -1h|RFC3339] [--to now] [--limit N]",
       {"model", "from", "to", "limit"},
       1,
       1,
       "a device's latest telemetry windows: counts, errors and latency",
       &DeviceTelemetry},
      {"device rekey",
       "ID [--ttl 24h]",
       {"ttl"},
       1,
       1,
       "allow one new enrollment of an active device (new key); its old certificate then stops "
       "working",
       &DeviceRekey},
      {"model push",
       "NAME FILE --version V [--input NAME:1x4 ...] [--output NAME:1x3 ...] [--label k=v ...] "
       "[--sha256 HEX] [--reference SAMPLE.npy]",
       {"version", "input", "output", "label", "sha256", "reference"},
       2,
       2,
       "upload an ONNX model version",
       &ModelPush},
      {"model list",
       "[--limit N]",
       {"limit"},
       0,
       0,
       "list models (every page, or the first N)",
       &ModelList},
      {"model get", "NAME", {}, 1, 1, "show a model's versions", &ModelGet},
      {"model stats",
       "NAME VERSION [--from -1h|RFC3339] [--to now] [--step 1m] [--hw HW]",
       {"from", "to", "step", "hw"},
       2,
       2,
       "field telemetry of a version over time: requests, errors, latency p50/p95/p99",
       &ModelStats},
      {"model drift",
       "NAME VERSION [--from T] [--to T] [--step D] [--hw H]",
       {"from", "to", "step", "hw"},
       2,
       2,
       "input and output drift (PSI, JS distance) of a version against its reference, per "
       "feature; T is RFC 3339, now or an age like -2h; --step makes a series",
       &ModelDrift},
      {"model drift-thresholds",
       "NAME --warn PSI --alert PSI [--min-samples N]",
       {"warn", "alert", "min-samples"},
       1,
       1,
       "set the PSI thresholds a model's drift warns and alerts above",
       &ModelDriftThresholds},
      {"deploy create", "NAME VERSION [--selector k=v,...] [--capture-* ...]",
       WithCaptureFlags({"selector"}), 2, 2, "deploy a model version to matching devices",
       &DeployCreate},
      {"deploy status", "ID", {}, 1, 1, "show a deployment and its targets", &DeployStatus},
      {"deploy list",
       "[--limit N]",
       {"limit"},
       0,
       0,
       "list deployments (every page, or the first N)",
       &DeployList},
      {"rollout create",
       "NAME --model M --version V [--selector k=v,...] [--waves 10%,50%,100%] [--soak 30s] "
       "[--max-failure-pct 5] [--min-devices N] [--on-failure pause|abort|rollback] "
       "[--max-p99-ratio 1.2] [--max-p50-ratio 1.1] [--max-error-increase-pct 0.5] "
       "[--max-output-psi 0.1] [--min-inferences 1000] [--min-inference-devices 10] "
       "[--inference-gates on|off] "
       "[--capture-sample-rate R] [--capture-random R] [--capture-confidence-below X] "
       "[--capture-out-of-range] [--capture-max-bytes-per-day N] [--capture-upload-window 1-5]",
       WithCaptureFlags({"model", "version", "selector", "waves", "soak", "max-failure-pct",
                         "min-devices", "on-failure", "max-p99-ratio", "max-p50-ratio",
                         "max-error-increase-pct", "max-output-psi", "min-inferences",
                         "min-inference-devices", "inference-gates"}),
       1, 1,
       "start a staged rollout: cumulative waves (10% or a device count), each gated on install "
       "and probation failures (--max-failure-pct, once --min-devices finished), on its canaries' "
       "latency, errors and outputs against devices still on the previous version (once both "
       "sides have --min-inferences on --min-inference-devices), and soaked",
       &RolloutCreate},
      {"rollout status",
       "NAME [--watch]",
       {"watch"},
       1,
       1,
       "show a rollout: its waves with their counts and gate results, and its decisions "
       "(--watch: ask again every 2 s until it is finished)",
       &RolloutStatus},
      {"rollout list",
       "[--limit N]",
       {"limit"},
       0,
       0,
       "list rollouts (every page, or the first N)",
       &RolloutList},
      {"rollout pause",
       "NAME [--reason TEXT]",
       {"reason"},
       1,
       1,
       "pause a rollout: no new devices are targeted until it is resumed",
       &RolloutPause},
      {"rollout resume",
       "NAME [--reason TEXT]",
       {"reason"},
       1,
       1,
       "resume a paused rollout",
       &RolloutResume},
      {"rollout promote",
       "NAME [--reason TEXT]",
       {"reason"},
       1,
       1,
       "skip the rest of the current wave's soak (its gates must still pass)",
       &RolloutPromote},
      {"rollout abort",
       "NAME [--reason TEXT]",
       {"reason"},
       1,
       1,
       "stop a rollout: no device is assigned any more; devices keep what they run",
       &RolloutAbort},
      {"rollout rollback",
       "NAME [--reason TEXT]",
       {"reason"},
       1,
       1,
       "send the devices on the rollout's version back to the version they ran before",
       &RolloutRollback},
      {"capture list",
       "--model M [--version V] [--since T] [--limit N]",
       {"model", "version", "since", "limit"},
       0,
       0,
       "list captured field data (--since: RFC 3339 time or a duration back, e.g. 24h)",
       &CaptureList},
      {"capture export",
       "--model M [--version V] [--since T] DIR",
       {"model", "version", "since"},
       1,
       1,
       "write captured tensors as .npy files plus index.jsonl into DIR (again: adds only "
       "captures DIR's index.jsonl does not list yet)",
       &CaptureExport},
      {"agent predict",
       "--socket PATH --model NAME --input NAME=1x4:0.1,0.2,0.3,0.4|NAME=@FILE.npy "
       "[--input ...] [--output-name NAME ...]",
       {"socket", "model", "input", "output-name"},
       0,
       0,
       "run inference on a local agent",
       &AgentPredict},
      {"agent models",
       "--socket PATH",
       {"socket"},
       0,
       0,
       "list a local agent's models",
       &AgentModels},
      {"agent status",
       "--socket PATH",
       {"socket"},
       0,
       0,
       "a local agent's release keys and freshness (freeze alarm)",
       &AgentStatus},
  };
  return kCommands;
}

// The short form for usage errors; `help` prints the long one.
int ShortUsage(std::ostream& err) {
  err << "usage: " << kProgram
      << " [--server HOST:PORT] [--token-file FILE] [-o table|json] [--timeout SECONDS] COMMAND "
         "[args]\n"
      << "run '" << kProgram << " help' for the list of commands\n";
  return 2;
}

DeltaFrontEnd DeltaFrontEndFor(const EnvLookup& env) {
  return DeltaFrontEnd{
      .program = kProgram,
      .command_prefix = "delta ",
      .other_flags = kGlobalFlags,
      .output_format = [env](const ParsedArgs& args) -> absl::StatusOr<OutputFormat> {
        absl::StatusOr<GlobalOptions> options = ResolveGlobalOptions(args, env);
        if (!options.ok()) return options.status();
        return options->output;
      }};
}

std::set<std::string> AllFlags() {
  std::set<std::string> all = kGlobalFlags;
  for (const Command& c : Commands()) all.insert(c.flags.begin(), c.flags.end());
  all.insert(DeltaFlags().begin(), DeltaFlags().end());
  all.insert(KeyFlags().begin(), KeyFlags().end());
  return all;
}

// The operator token kept in a file (surrounding whitespace and the final newline ignored).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, ": cannot read it"));
  }
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  return token;
}

// The commands of `group` ("deploy"), in table order; empty for an unknown group.
std::vector<const Command*> GroupCommands(const std::string& group) {
  std::vector<const Command*> commands;
  for (const Command& c : Commands()) {
    if (c.name.substr(0, c.name.find(' ')) == group) commands.push_back(&c);
  }
  return commands;
}

// Each command's name and summary, then its usage line.
void PrintCommandList(const std::vector<const Command*>& commands, std::ostream& out) {
  size_t width = 0;
  for (const Command* c : commands) width = std::max(width, c->name.size());
  for (const Command* c : commands) {
    out << "  " << c->name << std::string(width - c->name.size() + 2, ' ') << c->summary << "\n"
        << "  " << std::string(width + 2, ' ') << kProgram << " " << c->name
        << (c->usage.empty() ? "" : " ") << c->usage << "\n";
  }
}

void PrintGroupUsage(const std::string& group, std::ostream& out) {
  out << "usage: " << kProgram << " " << group << " COMMAND [args] [flags]\n\n"
      << "Commands:\n";
  PrintCommandList(GroupCommands(group), out);
  out << "\nRun '" << kProgram << " " << group << " COMMAND --help' for a command's flags, '"
      << kProgram << " --help' for the global flags.\n";
}

// `edgefleetctl GROUP CMD --help`: its usage line (every flag it takes) and what it does.
void PrintCommandHelp(const Command& c, std::ostream& out) {
  out << "usage: " << kProgram << " " << c.name << (c.usage.empty() ? "" : " ") << c.usage << "\n\n"
      << c.summary << "\n"
      << "\nGlobal flags (--server, --token, --token-file, -o, --timeout): see '" << kProgram
      << " --help'.\n";
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<GlobalOptions> ResolveGlobalOptions(const ParsedArgs& args, const EnvLookup& env) {
  GlobalOptions o;
  if (auto v = args.Get("server")) {
    o.server = *v;
  } else if (auto e = env("EDGEFLEET_SERVER"); e.has_value() && !e->empty()) {
    o.server = *e;
  }
  // Flags before the environment; a token file keeps the secret out of `ps` and shell history.
  if (auto v = args.Get("token")) {
    o.token = *v;
  } else if (auto f = args.Get("token-file")) {
    absl::StatusOr<std::string> token = ReadTokenFile(*f);
    if (!token.ok()) return token.status();
    o.token = *token;
  } else if (auto e = env("EDGEFLEET_TOKEN"); e.has_value() && !e->empty()) {
    o.token = *e;
  } else if (auto ef = env("EDGEFLEET_TOKEN_FILE"); ef.has_value() && !ef->empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(*ef);
    if (!token.ok()) return token.status();
    o.token = *token;
  }
  if (auto v = args.Get("o")) {
    absl::StatusOr<OutputFormat> format = ParseOutputFormat(*v);
    if (!format.ok()) return format.status();
    o.output = *format;
  }
  if (auto v = args.Get("timeout")) {
    absl::StatusOr<uint64_t> seconds = ParseDurationSeconds(*v);
    if (!seconds.ok())
      return absl::InvalidArgumentError(absl::StrCat("--timeout: ", seconds.status().message()));
    o.timeout = std::chrono::seconds(*seconds);
  }
  return o;
}

void PrintUsage(std::ostream& out) {
  out << "usage: " << kProgram << " [global flags] COMMAND [args] [flags]\n\n"
      << "Global flags (before or after the command):\n"
      << "  --server HOST:PORT   admin API address (env EDGEFLEET_SERVER, default "
      << kDefaultServer << ")\n"
      << "  --token-file FILE    file holding the operator API token (env EDGEFLEET_TOKEN_FILE)\n"
      << "  --token TOKEN        operator API token (env EDGEFLEET_TOKEN); visible in ps, prefer\n"
      << "                       --token-file or the environment\n"
      << "  -o table|json        output format (default table)\n"
      << "  --timeout SECONDS    per-call deadline (default 30)\n\n"
      << "Commands:\n";
  std::vector<const Command*> all;
  for (const Command& c : Commands()) all.push_back(&c);
  PrintCommandList(all, out);
  out << "\nDelta commands (local files, no server needed):\n";
  PrintDeltaUsage(DeltaFrontEndFor(ProcessEnv()), out);
  out << "\nRoot key commands (local files, run where the offline root key is kept):\n";
  PrintKeysUsage(out);
}

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const EnvLookup& env, const Clients& clients) {
  // Flags that take no value.
  static const std::set<std::string> kBooleanFlags = {"help", "reset-rollback-floors", "watch",
                                                      "capture-out-of-range"};
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, kBooleanFlags, AllFlags());
  if (!parsed.ok()) {
    err << kProgram << ": " << parsed.status().message() << "\n";
    return ShortUsage(err);
  }
  const std::vector<std::string>& pos = parsed->positionals;
  // "help GROUP" is "GROUP --help".
  if (pos.size() == 2 && pos[0] == "help" && !GroupCommands(pos[1]).empty()) {
    PrintGroupUsage(pos[1], out);
    return 0;
  }
  if (pos.empty() || pos[0] == "help") {
    if (pos.empty() && !parsed->Has("help")) {
      err << kProgram << ": no command given\n";
      return ShortUsage(err);
    }
    PrintUsage(out);
    return 0;
  }

  if (pos[0] == "keys") {
    ParsedArgs key_args = *parsed;
    key_args.positionals.erase(key_args.positionals.begin());
    return RunKeys(key_args, out, err);
  }
  if (pos[0] == "delta") {
    ParsedArgs delta_args = *parsed;
    delta_args.positionals.erase(delta_args.positionals.begin());
    return RunDelta(DeltaFrontEndFor(env), delta_args, out, err);
  }

  const Command* command = nullptr;
  for (const Command& c : Commands()) {
    const size_t space = c.name.find(' ');
    if (pos.size() >= 2 && pos[0] == c.name.substr(0, space) &&
        pos[1] == c.name.substr(space + 1)) {
      command = &c;
    }
  }
  if (command == nullptr && !GroupCommands(pos[0]).empty()) {
    if (pos.size() == 1 && parsed->Has("help")) {
      PrintGroupUsage(pos[0], out);
      return 0;
    }
    if (pos.size() == 1) {
      err << kProgram << ": no " << pos[0] << " command given\n";
    } else {
      err << kProgram << ": unknown command '" << pos[0] << " " << pos[1] << "'\n";
    }
    PrintGroupUsage(pos[0], err);
    return 2;
  }
  if (command == nullptr) {
    err << kProgram << ": unknown command '"
        << absl::StrJoin(pos.begin(), pos.begin() + std::min<size_t>(pos.size(), 2), " ") << "'\n";
    return ShortUsage(err);
  }

  Context ctx{*command, std::vector<std::string>(pos.begin() + 2, pos.end()), *parsed, {}, out, err,
              clients};
  if (parsed->Has("help")) {
    PrintCommandHelp(*command, out);
    return 0;
  }
  std::set<std::string> allowed = kGlobalFlags;
  allowed.insert(command->flags.begin(), command->flags.end());
  if (absl::Status s = CheckAllowedFlags(*parsed, allowed); !s.ok()) {
    return ctx.Usage(std::string(s.message()));
  }
  if (ctx.args.size() < command->min_args) return ctx.Usage("missing arguments");
  if (ctx.args.size() > command->max_args) {
    return ctx.Usage(absl::StrCat("unexpected argument '", ctx.args[command->max_args], "'"));
  }
  absl::StatusOr<GlobalOptions> options = ResolveGlobalOptions(*parsed, env);
  if (!options.ok()) return ctx.Usage(std::string(options.status().message()));
  ctx.options = *options;
  return command->run(ctx);
}

int Run(int argc, const char* const argv[], std::ostream& out, std::ostream& err) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return Run(args, out, err);
}

}  // namespace edgefleet::cli
