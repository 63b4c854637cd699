#include "cli/key_commands.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/parsers.h"
#include "common/core/files.h"
#include "common/crypto/signer.h"
#include "common/manifest/trust.h"

namespace edgefleet::cli {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDefaultValiditySeconds = 90 * 24 * 3600;

struct KeyCommand {
  std::string name;
  std::string usage;
  std::set<std::string> flags;
  std::string summary;
  int (*run)(const ParsedArgs&, std::ostream&, std::ostream&, const Clock&);
};

int Fail(std::ostream& err, const std::string& command, const absl::Status& status) {
  err << "edgefleetctl: keys " << command << ": " << absl::StatusCodeToString(status.code()) << ": "
      << status.message() << "\n";
  return 1;
}

absl::StatusOr<std::unique_ptr<crypto::Signer>> LoadRoot(const ParsedArgs& p) {
  auto pem = ReadFile(*p.Get("root"));
  if (!pem.ok()) return pem.status();
  return crypto::LoadEd25519Signer(*pem);
}

absl::StatusOr<v1::SignedDelegation> ReadDelegation(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  v1::SignedDelegation d;
  if (!d.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a delegation file"));
  }
  return d;
}

absl::Status WriteNew(const std::string& path, const std::string& data, bool secret) {
  std::error_code ec;
  if (fs::exists(path, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(path, " exists; not overwriting it"));
  }
  return WriteFileAtomically(path, data, secret);
}

void Describe(const v1::ReleaseKeyDelegation& d, std::ostream& out) {
  out << "release key " << d.key_id() << " delegated, version " << d.delegation_version()
      << ", expires at unix time " << d.expires_at().seconds() << ", revoked ["
      << absl::StrJoin(d.revoked_key_ids(), ",") << "]";
  if (d.rollback_floor_epoch() != 0) out << ", rollback floor epoch " << d.rollback_floor_epoch();
  out << "\n";
}

struct Issued {
  v1::ReleaseKeyDelegation delegation;
  v1::SignedDelegation signed_delegation;
};

// Signs the delegation that follows --previous (if any); nothing is written yet.
absl::StatusOr<Issued> Issue(const ParsedArgs& p, const Clock& clock,
                             const std::string& release_public_key_pem, bool revoke_previous) {
  auto root = LoadRoot(p);
  if (!root.ok()) return root.status();
  std::optional<v1::ReleaseKeyDelegation> previous;
  if (auto path = p.Get("previous")) {
    auto signed_previous = ReadDelegation(*path);
    if (!signed_previous.ok()) return signed_previous.status();
    // Only a delegation this root signed may be followed.
    auto root_public = crypto::LoadEd25519Verifier((*root)->PublicKeyPem());
    if (!root_public.ok()) return root_public.status();
    auto decoded = manifest::VerifyDelegationSignature(*signed_previous, **root_public);
    if (!decoded.ok()) return decoded.status();
    previous = *std::move(decoded);
  }
  uint64_t seconds = kDefaultValiditySeconds;
  if (auto v = p.Get("expires-in")) {
    auto parsed = ParseDurationSeconds(*v);
    if (!parsed.ok()) return parsed.status();
    seconds = *parsed;
  }
  auto next = manifest::NextDelegation(previous, release_public_key_pem, clock.Now(),
                                       std::chrono::seconds(seconds), revoke_previous);
  if (!next.ok()) return next.status();
  std::set<std::string> revoked(next->revoked_key_ids().begin(), next->revoked_key_ids().end());
  for (const std::string& id : p.GetAll("revoke")) {
    if (id == next->key_id()) return absl::InvalidArgumentError("cannot revoke the delegated key");
    revoked.insert(id);
  }
  next->clear_revoked_key_ids();
  for (const std::string& id : revoked) next->add_revoked_key_ids(id);
  if (p.Has("reset-rollback-floors")) {
    next->set_rollback_floor_epoch(next->rollback_floor_epoch() + 1);
  }
  auto signed_delegation = manifest::SignDelegation(*next, **root);
  if (!signed_delegation.ok()) return signed_delegation.status();
  return Issued{*std::move(next), *std::move(signed_delegation)};
}

int WriteIssued(const std::string& command, const ParsedArgs& p, const Issued& issued,
                std::ostream& out, std::ostream& err) {
  if (auto s =
          WriteFileAtomically(*p.Get("out"), issued.signed_delegation.SerializeAsString(), false);
      !s.ok()) {
    return Fail(err, command, s);
  }
  Describe(issued.delegation, out);
  out << "wrote " << *p.Get("out") << ": copy it to the server's <data-dir>/keys/delegation.bin "
      << "with the release key, and restart the server\n";
  return 0;
}

int Init(const ParsedArgs& p, std::ostream& out, std::ostream& err, const Clock&) {
  const fs::path dir(*p.Get("out"));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Fail(err, "init", absl::InternalError(ec.message()));
  auto keys = crypto::GenerateEd25519KeyPair();
  if (!keys.ok()) return Fail(err, "init", keys.status());
  if (auto s = WriteNew((dir / "root.key").string(), keys->private_key_pem, true); !s.ok()) {
    return Fail(err, "init", s);
  }
  if (auto s = WriteNew((dir / "root.pub").string(), keys->public_key_pem, false); !s.ok()) {
    return Fail(err, "init", s);
  }
  auto signer = crypto::LoadEd25519Signer(keys->private_key_pem);
  if (!signer.ok()) return Fail(err, "init", signer.status());
  out << "root key " << (*signer)->KeyId() << " written to " << (dir / "root.key").string()
      << " (keep it offline) and " << (dir / "root.pub").string()
      << " (give it to the server: <data-dir>/keys/root.pub)\n";
  return 0;
}

int Delegate(const ParsedArgs& p, std::ostream& out, std::ostream& err, const Clock& clock) {
  auto pem = ReadFile(*p.Get("release-public-key"));
  if (!pem.ok()) return Fail(err, "delegate", pem.status());
  auto issued = Issue(p, clock, *pem, /*revoke_previous=*/false);
  if (!issued.ok()) return Fail(err, "delegate", issued.status());
  return WriteIssued("delegate", p, *issued, out, err);
}

int Rotate(const ParsedArgs& p, std::ostream& out, std::ostream& err, const Clock& clock) {
  std::optional<crypto::KeyPairPem> generated;
  std::string pem;
  if (auto path = p.Get("release-public-key")) {
    auto supplied = ReadFile(*path);
    if (!supplied.ok()) return Fail(err, "rotate", supplied.status());
    pem = *std::move(supplied);
  } else {
    // No key supplied: make the new release key here, for the operator to install on the server.
    auto keys = crypto::GenerateEd25519KeyPair();
    if (!keys.ok()) return Fail(err, "rotate", keys.status());
    generated = *std::move(keys);
    pem = generated->public_key_pem;
  }
  auto issued = Issue(p, clock, pem, /*revoke_previous=*/true);
  if (!issued.ok()) return Fail(err, "rotate", issued.status());
  if (generated.has_value()) {
    const fs::path dir(*p.Get("new-key-dir"));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (auto s = WriteNew((dir / "release.key").string(), generated->private_key_pem, true);
        !s.ok()) {
      return Fail(err, "rotate", s);
    }
    if (auto s = WriteNew((dir / "release.pub").string(), generated->public_key_pem, false);
        !s.ok()) {
      return Fail(err, "rotate", s);
    }
    out << "new release key written to " << (dir / "release.key").string() << " and "
        << (dir / "release.pub").string() << "\n";
  }
  return WriteIssued("rotate", p, *issued, out, err);
}

int Show(const ParsedArgs& p, std::ostream& out, std::ostream& err, const Clock&) {
  auto signed_delegation = ReadDelegation(p.positionals.at(1));
  if (!signed_delegation.ok()) return Fail(err, "show", signed_delegation.status());
  auto d = manifest::DecodeCanonicalDelegation(signed_delegation->canonical_delegation());
  if (!d.ok()) return Fail(err, "show", d.status());
  if (auto root = p.Get("root-public-key")) {
    auto pem = ReadFile(*root);
    if (!pem.ok()) return Fail(err, "show", pem.status());
    auto verifier = crypto::LoadEd25519Verifier(*pem);
    if (!verifier.ok()) return Fail(err, "show", verifier.status());
    auto verified = manifest::VerifyDelegationSignature(*signed_delegation, **verifier);
    if (!verified.ok()) return Fail(err, "show", verified.status());
    out << "signature verifies against root " << (*verifier)->KeyId() << "\n";
  }
  out << "signed by root " << signed_delegation->root_key_id() << ": ";
  Describe(*d, out);
  return 0;
}

const std::vector<KeyCommand>& Commands() {
  static const std::vector<KeyCommand> kCommands = {
      {"init",
       "--out DIR",
       {"out"},
       "create the offline root key pair (root.key, root.pub)",
       &Init},
      {"delegate",
       "--root ROOT.key --release-public-key PEM --out FILE [--expires-in 90d] "
       "[--previous FILE] [--revoke KEYID ...]",
       {"root", "release-public-key", "out", "expires-in", "previous", "revoke"},
       "sign a delegation of release signing to the server's release key",
       &Delegate},
      {"rotate",
       "--root ROOT.key --previous FILE (--release-public-key PEM | --new-key-dir DIR) --out FILE "
       "[--expires-in 90d] [--revoke KEYID ...] [--reset-rollback-floors]",
       {"root", "release-public-key", "new-key-dir", "out", "expires-in", "previous", "revoke",
        "reset-rollback-floors"},
       "delegate to a new release key and revoke the previous one; --reset-rollback-floors "
       "also makes devices forget the metadata versions the previous key fast-forwarded",
       &Rotate},
      {"show",
       "FILE [--root-public-key PEM]",
       {"root-public-key"},
       "print a delegation (and verify it against a root)",
       &Show},
  };
  return kCommands;
}

// Flags each command cannot do without.
std::vector<std::string> RequiredFlags(const std::string& name, const ParsedArgs& p) {
  if (name == "init") return {"out"};
  if (name == "delegate") return {"root", "release-public-key", "out"};
  if (name == "rotate") {
    std::vector<std::string> required = {"root", "previous", "out"};
    if (!p.Has("release-public-key")) required.push_back("new-key-dir");
    return required;
  }
  return {};
}

}  // namespace

const std::set<std::string>& KeyFlags() {
  static const std::set<std::string> kFlags = [] {
    std::set<std::string> all;
    for (const KeyCommand& c : Commands()) all.insert(c.flags.begin(), c.flags.end());
    return all;
  }();
  return kFlags;
}

void PrintKeysUsage(std::ostream& out) {
  for (const KeyCommand& c : Commands()) {
    out << "  keys " << c.name << "  " << c.summary << "\n"
        << "    edgefleetctl keys " << c.name << " " << c.usage << "\n";
  }
}

int RunKeys(const ParsedArgs& parsed, std::ostream& out, std::ostream& err, const Clock& clock) {
  const KeyCommand* command = nullptr;
  for (const KeyCommand& c : Commands()) {
    if (!parsed.positionals.empty() && parsed.positionals[0] == c.name) command = &c;
  }
  if (command == nullptr || parsed.Has("help")) {
    (command == nullptr ? err : out) << "usage:\n";
    PrintKeysUsage(command == nullptr ? err : out);
    return command == nullptr ? 2 : 0;
  }
  auto usage = [&](const std::string& problem) {
    err << "edgefleetctl: keys " << command->name << ": " << problem << "\n"
        << "usage: edgefleetctl keys " << command->name << " " << command->usage << "\n";
    return 2;
  };
  for (const auto& [flag, values] : parsed.flags) {
    if (!command->flags.contains(flag)) return usage(absl::StrCat("unknown flag --", flag));
  }
  for (const std::string& flag : RequiredFlags(command->name, parsed)) {
    if (!parsed.Has(flag)) return usage(absl::StrCat("--", flag, " is required"));
  }
  const size_t positionals = command->name == "show" ? 2 : 1;
  if (parsed.positionals.size() != positionals) return usage("wrong number of arguments");
  return command->run(parsed, out, err, clock);
}

}  // namespace edgefleet::cli
