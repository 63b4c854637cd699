// SQLite adapter behind StateStore: the only file that sees sqlite3 types.
#include <sqlite3.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "agent/state/state_store.h"

namespace edgefleet::agent {
namespace {

constexpr int kSchemaVersion = 6;

// Appending a migration: add the next entry and bump kSchemaVersion; never edit one.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE identity (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  device_id TEXT NOT NULL
);
CREATE TABLE installed_versions (
  model_name TEXT NOT NULL,
  version TEXT NOT NULL,
  slot TEXT NOT NULL CHECK (slot IN ('current', 'previous')),
  artifact_sha256 BLOB NOT NULL,
  path TEXT NOT NULL,
  signed_manifest BLOB NOT NULL,
  signature BLOB NOT NULL,
  metadata_version INTEGER NOT NULL,
  metadata_proto BLOB NOT NULL,
  PRIMARY KEY (model_name, version),
  UNIQUE (model_name, slot)
);
CREATE TABLE metadata_versions (
  model_name TEXT PRIMARY KEY,
  highest INTEGER NOT NULL
);
CREATE TABLE updates (
  model_name TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  artifact_sha256 BLOB NOT NULL,
  phase TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE TABLE failed_releases (
  model_name TEXT NOT NULL,
  version TEXT NOT NULL,
  artifact_sha256 BLOB NOT NULL,
  reason_code INTEGER NOT NULL,
  detail TEXT NOT NULL,
  PRIMARY KEY (model_name, version, artifact_sha256)
);
-- AUTOINCREMENT: ids are never reused, so Ack(up_to_id) cannot drop an item enqueued later.
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  payload BLOB NOT NULL
);
)sql",
    // v2: a refused release is retried with backoff and a bounded count instead of being skipped
    // forever. One record per model (its latest failing release) replaces the blacklist; releases
    // it held get another attempt.
    R"sql(
CREATE TABLE update_failures (
  model_name TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  artifact_sha256 BLOB NOT NULL,
  metadata_version INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt_unix INTEGER NOT NULL,
  reason_code INTEGER NOT NULL,
  detail TEXT NOT NULL
);
INSERT OR REPLACE INTO update_failures (model_name, version, artifact_sha256, metadata_version,
    attempts, next_attempt_unix, reason_code, detail)
  SELECT model_name, version, artifact_sha256, 0, 0, 0, reason_code, detail
  FROM failed_releases ORDER BY rowid;
DROP TABLE failed_releases;
)sql",
    // v3: the update lifecycle is a transition table whose states are read back at start-up.
    // A record names its release fully (the metadata version, so that a failure found at
    // start-up counts against the right release), counts the starts that found it on
    // probation, and keeps the reason of the failure being rolled back. Phases saved by v2 agents
    // map onto the states that mean the same.
    R"sql(
ALTER TABLE updates ADD COLUMN metadata_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE updates ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE updates ADD COLUMN reason_code INTEGER NOT NULL DEFAULT 0;
UPDATE updates SET phase = CASE phase
  WHEN 'Fetch' THEN 'Fetching'
  WHEN 'Verify' THEN 'Verifying'
  WHEN 'Stage' THEN 'Staged'
  WHEN 'Activate' THEN 'Activating'
  WHEN 'Commit' THEN 'Committed'
  ELSE phase END;
)sql",
    // v4: one bounded outbox for update events, telemetry and captured data. Sizes are kept per
    // item so the budget is enforced without reading payloads; drops are counted per kind and
    // reported; a random stream id makes (device, stream, id) a key no later database reuses.
    R"sql(
ALTER TABLE outbox ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET bytes = length(payload);
CREATE INDEX outbox_by_kind ON outbox (kind, id);
CREATE TABLE outbox_dropped (
  kind TEXT PRIMARY KEY,
  items INTEGER NOT NULL
);
CREATE TABLE outbox_stream (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  stream_id INTEGER NOT NULL
);
INSERT INTO outbox_stream (id, stream_id) VALUES (1, abs(random() >> 1));
)sql",
    // v5: items the server refused for good are counted too (reported with the drops).
    R"sql(
ALTER TABLE outbox_dropped ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
)sql",
    // v6: bytes captured per UTC day (day number since the epoch), so that a capture's daily cap
    // holds across restarts and after its captures have left the outbox.
    R"sql(
CREATE TABLE capture_usage (
  day INTEGER PRIMARY KEY,
  bytes INTEGER NOT NULL
);
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

using UpdatePhase = StateStore::UpdatePhase;
constexpr UpdatePhase kAllPhases[] = {
    UpdatePhase::kIdle,      UpdatePhase::kFetching,    UpdatePhase::kVerifying,
    UpdatePhase::kStaged,    UpdatePhase::kActivating,  UpdatePhase::kProbation,
    UpdatePhase::kCommitted, UpdatePhase::kRollingBack, UpdatePhase::kFailed};

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string text = absl::StrCat(what, ": ", msg);
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(text);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::FailedPreconditionError(text);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(text);
    default:
      return absl::InternalError(text);
  }
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(absl::string_view text) {
    if (rc_ == SQLITE_OK) {
      rc_ = sqlite3_bind_text(stmt_, ++index_, text.data(), static_cast<int>(text.size()),
                              SQLITE_TRANSIENT);
    }
    return *this;
  }
  Statement& BindBlob(absl::string_view bytes) {
    if (rc_ == SQLITE_OK) {
      // A zero-length blob still needs a non-null pointer, or SQLite stores NULL.
      rc_ = sqlite3_bind_blob(stmt_, ++index_, bytes.empty() ? "" : bytes.data(),
                              static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    }
    return *this;
  }
  Statement& Bind(int64_t value) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_int64(stmt_, ++index_, value);
    return *this;
  }

  // Returns true when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    if (rc_ != SQLITE_OK) return SqliteError(db_, rc_, "prepare");
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, "step");
  }
  absl::Status Run() {
    absl::StatusOr<bool> row = Step();
    return row.status();
  }

  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::string Blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(static_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  int index_ = 0;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  absl::Status status = SqliteError(db, rc, "exec");
  if (err != nullptr) {
    status = absl::Status(status.code(), absl::StrCat("exec: ", err));
    sqlite3_free(err);
  }
  return status;
}

absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

constexpr const char* kVersionColumns =
    "model_name, version, artifact_sha256, path, signed_manifest, signature, metadata_version, "
    "metadata_proto";

StateStore::InstalledVersion ReadVersion(const Statement& s) {
  StateStore::InstalledVersion v;
  v.model_name = s.Text(0);
  v.version = s.Text(1);
  v.artifact_sha256 = s.Blob(2);
  v.path = s.Text(3);
  v.signed_manifest = s.Blob(4);
  v.signature = s.Blob(5);
  v.metadata_version = static_cast<uint64_t>(s.Int(6));
  v.metadata_proto = s.Blob(7);
  return v;
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> LoadSlot(sqlite3* db,
                                                                     absl::string_view model,
                                                                     absl::string_view slot) {
  Statement s(db, absl::StrCat("SELECT ", kVersionColumns,
                               " FROM installed_versions WHERE model_name = ? AND slot = ?"));
  s.Bind(model).Bind(slot);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return ReadVersion(s);
}

absl::Status RaiseLocked(sqlite3* db, absl::string_view model, uint64_t v) {
  Statement s(db,
              "INSERT INTO metadata_versions (model_name, highest) VALUES (?, ?) "
              "ON CONFLICT (model_name) DO UPDATE SET highest = MAX(highest, excluded.highest)");
  s.Bind(model).Bind(static_cast<int64_t>(v));
  return s.Run();
}

constexpr const char* kUpdateColumns =
    "model_name, version, artifact_sha256, phase, detail, metadata_version, restarts, reason_code";

absl::StatusOr<StateStore::UpdateRecord> ReadUpdate(const Statement& s) {
  StateStore::UpdateRecord r;
  r.model_name = s.Text(0);
  r.version = s.Text(1);
  r.artifact_sha256 = s.Blob(2);
  const std::string phase = s.Text(3);
  bool known = false;
  for (UpdatePhase p : kAllPhases) {
    if (phase == UpdatePhaseName(p)) {
      r.phase = p;
      known = true;
    }
  }
  if (!known) return absl::DataLossError(absl::StrCat("unknown update phase '", phase, "'"));
  r.detail = s.Text(4);
  r.metadata_version = static_cast<uint64_t>(s.Int(5));
  r.restarts = static_cast<uint32_t>(s.Int(6));
  r.reason_code = static_cast<int>(s.Int(7));
  return r;
}

}  // namespace

const char* UpdatePhaseName(StateStore::UpdatePhase phase) {
  switch (phase) {
    case UpdatePhase::kIdle:
      return "Idle";
    case UpdatePhase::kFetching:
      return "Fetching";
    case UpdatePhase::kVerifying:
      return "Verifying";
    case UpdatePhase::kStaged:
      return "Staged";
    case UpdatePhase::kActivating:
      return "Activating";
    case UpdatePhase::kProbation:
      return "Probation";
    case UpdatePhase::kCommitted:
      return "Committed";
    case UpdatePhase::kRollingBack:
      return "RollingBack";
    case UpdatePhase::kFailed:
      return "Failed";
  }
  return "Unknown";
}

struct StateStore::Impl {
  std::string path;
  std::mutex mu;  // one connection shared by every thread; SQLite calls are serialized here
  sqlite3* db = nullptr;
  uint64_t outbox_max_bytes = 0;

  ~Impl() {
    if (db != nullptr) sqlite3_close_v2(db);
  }

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back on any error. The caller must
  // hold `mu`.
  template <typename Body>
  absl::Status Transaction(absl::string_view what, Body&& body) {
    absl::Status s = Exec(db, "BEGIN IMMEDIATE");
    if (s.ok()) {
      s = body();
      if (s.ok()) {
        s = Exec(db, "COMMIT");
      }
      if (!s.ok()) Exec(db, "ROLLBACK").IgnoreError();  // the error that matters is `s`
    }
    return Annotate(s, absl::StrCat("agent state '", path, "': ", what));
  }

  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what, absl::StatusOr<T> result) {
    if (result.ok()) return result;
    return Annotate(result.status(), absl::StrCat("agent state '", path, "': ", what));
  }
};

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() = default;

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& db_path) {
  return Open(db_path, Options{});
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& db_path,
                                                             Options options) {
  auto impl = std::make_unique<Impl>();
  impl->path = db_path;
  impl->outbox_max_bytes = options.outbox_max_bytes;
  auto fail = [&](const absl::Status& s) {
    return Annotate(s, absl::StrCat("open agent state '", db_path, "'"));
  };
  int rc =
      sqlite3_open_v2(db_path.c_str(), &impl->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) return fail(SqliteError(impl->db, rc, "open"));
  sqlite3* db = impl->db;
  sqlite3_extended_result_codes(db, 1);
  // Another process (an operator poking at the file) may hold a lock briefly.
  sqlite3_busy_timeout(db, 5000);

  // The first real read of the file: a non-database file fails here as SQLITE_NOTADB.
  {
    Statement s(db, "PRAGMA journal_mode=WAL");
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return fail(row.status());
    if (!*row || s.Text(0) != "wal") {
      return fail(absl::FailedPreconditionError("cannot switch the database to WAL mode"));
    }
  }
  if (absl::Status s = Exec(db, "PRAGMA synchronous=FULL"); !s.ok()) return fail(s);
  {
    Statement s(db, "PRAGMA quick_check");
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return fail(row.status());
    if (!*row || s.Text(0) != "ok") {
      return fail(absl::DataLossError(absl::StrCat("integrity check failed: ", s.Text(0))));
    }
  }

  absl::Status migrated = impl->Transaction("migrate schema", [&]() -> absl::Status {
    int64_t version = 0;
    {
      // Finalized before migrating: DROP TABLE fails while a statement is still pending.
      Statement s(db, "PRAGMA user_version");
      absl::StatusOr<bool> row = s.Step();
      if (!row.ok()) return row.status();
      version = *row ? s.Int(0) : 0;
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat("schema version ", version,
                                                        " is newer than this agent understands (",
                                                        kSchemaVersion, ")"));
    }
    for (int64_t v = version; v < kSchemaVersion; ++v) {
      if (absl::Status e = Exec(db, kMigrations[v]); !e.ok()) {
        return Annotate(e, absl::StrCat("migration ", v + 1));
      }
    }
    if (version < kSchemaVersion) {
      return Exec(db, absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str());
    }
    return absl::OkStatus();
  });
  if (!migrated.ok())
    return absl::Status(migrated.code(), absl::StrCat("open ", migrated.message()));
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

absl::Status StateStore::SetIdentity(const std::string& device_id) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction("set identity", [&] {
    Statement s(impl_->db,
                "INSERT INTO identity (id, device_id) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id");
    s.Bind(device_id);
    return s.Run();
  });
}

absl::StatusOr<std::string> StateStore::DeviceId() {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, "SELECT device_id FROM identity WHERE id = 1");
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return impl_->Read<std::string>("read identity", row.status());
  if (!*row) return absl::NotFoundError("device is not enrolled");
  return s.Text(0);
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::CommitVersion(
    const InstalledVersion& v) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db;
  std::optional<InstalledVersion> dropped;
  absl::Status s = impl_->Transaction(
      absl::StrCat("commit model '", v.model_name, "' version '", v.version, "'"),
      [&]() -> absl::Status {
        absl::StatusOr<std::optional<InstalledVersion>> current =
            LoadSlot(db, v.model_name, "current");
        if (!current.ok()) return current.status();
        absl::StatusOr<std::optional<InstalledVersion>> previous =
            LoadSlot(db, v.model_name, "previous");
        if (!previous.ok()) return previous.status();

        const bool is_current = current->has_value() && (*current)->version == v.version;
        const bool is_previous = previous->has_value() && (*previous)->version == v.version;
        if (!is_current) {
          // Free the 'previous' slot: either the row being promoted or the one to drop.
          Statement del(
              db, "DELETE FROM installed_versions WHERE model_name = ? AND slot = 'previous'");
          del.Bind(v.model_name);
          if (absl::Status e = del.Run(); !e.ok()) return e;
          if (previous->has_value() && !is_previous) dropped = std::move(**previous);
          Statement demote(db,
                           "UPDATE installed_versions SET slot = 'previous' "
                           "WHERE model_name = ? AND slot = 'current'");
          demote.Bind(v.model_name);
          if (absl::Status e = demote.Run(); !e.ok()) return e;
        }
        Statement put(db,
                      absl::StrCat("INSERT OR REPLACE INTO installed_versions (", kVersionColumns,
                                   ", slot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'current')"));
        put.Bind(v.model_name)
            .Bind(v.version)
            .BindBlob(v.artifact_sha256)
            .Bind(v.path)
            .BindBlob(v.signed_manifest)
            .BindBlob(v.signature)
            .Bind(static_cast<int64_t>(v.metadata_version))
            .BindBlob(v.metadata_proto);
        if (absl::Status e = put.Run(); !e.ok()) return e;
        return RaiseLocked(db, v.model_name, v.metadata_version);
      });
  if (!s.ok()) return s;
  return dropped;
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::RestorePrevious(
    const std::string& model_name) {
  return RemoveCurrent(model_name, /*promote_previous=*/true);
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::DropCurrent(
    const std::string& model_name) {
  return RemoveCurrent(model_name, /*promote_previous=*/false);
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::RemoveCurrent(
    const std::string& model_name, bool promote_previous) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db;
  std::optional<InstalledVersion> dropped;
  absl::Status s = impl_->Transaction(
      absl::StrCat(promote_previous ? "restore previous" : "drop current", " version of model '",
                   model_name, "'"),
      [&]() -> absl::Status {
        absl::StatusOr<std::optional<InstalledVersion>> current =
            LoadSlot(db, model_name, "current");
        if (!current.ok()) return current.status();
        if (promote_previous) {
          absl::StatusOr<std::optional<InstalledVersion>> previous =
              LoadSlot(db, model_name, "previous");
          if (!previous.ok()) return previous.status();
          if (!previous->has_value()) return absl::FailedPreconditionError("no previous version");
        }
        dropped = std::move(*current);
        Statement del(db,
                      "DELETE FROM installed_versions WHERE model_name = ? AND slot = 'current'");
        del.Bind(model_name);
        if (absl::Status e = del.Run(); !e.ok() || !promote_previous) return e;
        Statement promote(db,
                          "UPDATE installed_versions SET slot = 'current' "
                          "WHERE model_name = ? AND slot = 'previous'");
        promote.Bind(model_name);
        return promote.Run();
      });
  if (!s.ok()) return s;
  return dropped;
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::Current(
    const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  return impl_->Read(absl::StrCat("read current version of '", model_name, "'"),
                     LoadSlot(impl_->db, model_name, "current"));
}

absl::StatusOr<std::optional<StateStore::InstalledVersion>> StateStore::Previous(
    const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  return impl_->Read(absl::StrCat("read previous version of '", model_name, "'"),
                     LoadSlot(impl_->db, model_name, "previous"));
}

absl::StatusOr<std::vector<StateStore::InstalledVersion>> StateStore::AllCurrent() {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, absl::StrCat("SELECT ", kVersionColumns,
                                      " FROM installed_versions WHERE slot = 'current' "
                                      "ORDER BY model_name"));
  std::vector<InstalledVersion> out;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) {
      return impl_->Read<std::vector<InstalledVersion>>("list current versions", row.status());
    }
    if (!*row) break;
    out.push_back(ReadVersion(s));
  }
  return out;
}

absl::StatusOr<uint64_t> StateStore::HighestMetadataVersion(const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, "SELECT highest FROM metadata_versions WHERE model_name = ?");
  s.Bind(model_name);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) {
    return impl_->Read<uint64_t>(absl::StrCat("read metadata version of '", model_name, "'"),
                                 row.status());
  }
  return *row ? static_cast<uint64_t>(s.Int(0)) : 0;
}

absl::Status StateStore::RaiseMetadataVersion(const std::string& model_name, uint64_t v) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(absl::StrCat("raise metadata version of '", model_name, "'"),
                            [&] { return RaiseLocked(impl_->db, model_name, v); });
}

absl::Status StateStore::ForgetMetadataVersions() {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction("forget metadata versions", [&] {
    Statement s(impl_->db, "DELETE FROM metadata_versions");
    return s.Run();
  });
}

absl::Status StateStore::SaveUpdate(const UpdateRecord& record) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(absl::StrCat("save update of '", record.model_name, "'"), [&] {
    Statement s(impl_->db, absl::StrCat("INSERT OR REPLACE INTO updates (", kUpdateColumns,
                                        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(record.model_name)
        .Bind(record.version)
        .BindBlob(record.artifact_sha256)
        .Bind(UpdatePhaseName(record.phase))
        .Bind(record.detail)
        .Bind(static_cast<int64_t>(record.metadata_version))
        .Bind(static_cast<int64_t>(record.restarts))
        .Bind(static_cast<int64_t>(record.reason_code));
    return s.Run();
  });
}

absl::StatusOr<std::optional<StateStore::UpdateRecord>> StateStore::LoadUpdate(
    const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  const std::string what = absl::StrCat("load update of '", model_name, "'");
  Statement s(impl_->db,
              absl::StrCat("SELECT ", kUpdateColumns, " FROM updates WHERE model_name = ?"));
  s.Bind(model_name);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return impl_->Read<std::optional<UpdateRecord>>(what, row.status());
  if (!*row) return std::nullopt;
  absl::StatusOr<UpdateRecord> r = ReadUpdate(s);
  if (!r.ok()) return impl_->Read<std::optional<UpdateRecord>>(what, r.status());
  return *std::move(r);
}

absl::StatusOr<std::vector<StateStore::UpdateRecord>> StateStore::AllUpdates() {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db,
              absl::StrCat("SELECT ", kUpdateColumns, " FROM updates ORDER BY model_name"));
  std::vector<UpdateRecord> out;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return impl_->Read<std::vector<UpdateRecord>>("list updates", row.status());
    if (!*row) break;
    absl::StatusOr<UpdateRecord> r = ReadUpdate(s);
    if (!r.ok()) return impl_->Read<std::vector<UpdateRecord>>("list updates", r.status());
    out.push_back(*std::move(r));
  }
  return out;
}

absl::Status StateStore::ClearUpdate(const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(absl::StrCat("clear update of '", model_name, "'"), [&] {
    Statement s(impl_->db, "DELETE FROM updates WHERE model_name = ?");
    s.Bind(model_name);
    return s.Run();
  });
}

namespace {

constexpr const char* kFailureColumns =
    "model_name, version, artifact_sha256, metadata_version, attempts, next_attempt_unix, "
    "reason_code, detail";

StateStore::UpdateFailure ReadFailure(const Statement& s) {
  StateStore::UpdateFailure f;
  f.model_name = s.Text(0);
  f.version = s.Text(1);
  f.artifact_sha256 = s.Blob(2);
  f.metadata_version = static_cast<uint64_t>(s.Int(3));
  f.attempts = static_cast<uint32_t>(s.Int(4));
  f.next_attempt_unix = s.Int(5);
  f.reason_code = static_cast<int>(s.Int(6));
  f.detail = s.Text(7);
  return f;
}

}  // namespace

absl::Status StateStore::SaveFailure(const UpdateFailure& f) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(
      absl::StrCat("record failure of model '", f.model_name, "' version '", f.version, "'"), [&] {
        Statement s(impl_->db, absl::StrCat("INSERT OR REPLACE INTO update_failures (",
                                            kFailureColumns, ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
        s.Bind(f.model_name)
            .Bind(f.version)
            .BindBlob(f.artifact_sha256)
            .Bind(static_cast<int64_t>(f.metadata_version))
            .Bind(static_cast<int64_t>(f.attempts))
            .Bind(f.next_attempt_unix)
            .Bind(static_cast<int64_t>(f.reason_code))
            .Bind(f.detail);
        return s.Run();
      });
}

absl::StatusOr<std::optional<StateStore::UpdateFailure>> StateStore::LoadFailure(
    const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, absl::StrCat("SELECT ", kFailureColumns,
                                      " FROM update_failures WHERE model_name = ?"));
  s.Bind(model_name);
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) {
    return impl_->Read<std::optional<UpdateFailure>>(
        absl::StrCat("read failure of '", model_name, "'"), row.status());
  }
  if (!*row) return std::nullopt;
  return ReadFailure(s);
}

absl::StatusOr<std::vector<StateStore::UpdateFailure>> StateStore::AllFailures() {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, absl::StrCat("SELECT ", kFailureColumns,
                                      " FROM update_failures ORDER BY model_name"));
  std::vector<UpdateFailure> out;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return impl_->Read<std::vector<UpdateFailure>>("list failures", row.status());
    if (!*row) break;
    out.push_back(ReadFailure(s));
  }
  return out;
}

absl::Status StateStore::ClearFailure(const std::string& model_name) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(absl::StrCat("clear failure of '", model_name, "'"), [&] {
    Statement s(impl_->db, "DELETE FROM update_failures WHERE model_name = ?");
    s.Bind(model_name);
    return s.Run();
  });
}

const char* OutboxKindName(StateStore::OutboxKind kind) {
  switch (kind) {
    case StateStore::OutboxKind::kCapture:
      return "capture";
    case StateStore::OutboxKind::kTelemetry:
      return "telemetry";
    case StateStore::OutboxKind::kUpdateEvent:
      return "update_event";
  }
  return "unknown";
}

namespace {

std::optional<StateStore::OutboxKind> OutboxKindFromName(absl::string_view name) {
  for (StateStore::OutboxKind kind : StateStore::kOutboxKinds) {
    if (name == OutboxKindName(kind)) return kind;
  }
  return std::nullopt;
}

int64_t ClampToInt64(uint64_t v) { return static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX)); }

}  // namespace

namespace {

// Stores `payload` and keeps the outbox within `max_bytes`: the oldest captures, then the oldest
// telemetry go (counted); update events never. Inside the caller's transaction.
absl::Status InsertWithinBudget(sqlite3* db, uint64_t max_bytes, StateStore::OutboxKind kind,
                                const std::string& payload) {
  using OutboxKind = StateStore::OutboxKind;
  Statement insert(db, "INSERT INTO outbox (kind, payload, bytes) VALUES (?, ?, ?)");
  insert.Bind(OutboxKindName(kind)).BindBlob(payload).Bind(static_cast<int64_t>(payload.size()));
  if (absl::Status e = insert.Run(); !e.ok()) return e;

  Statement total(db, "SELECT COALESCE(SUM(bytes), 0) FROM outbox");
  absl::StatusOr<bool> row = total.Step();
  if (!row.ok()) return row.status();
  int64_t excess = total.Int(0) - ClampToInt64(max_bytes);
  // Oldest first within each droppable kind, captures before telemetry (kOutboxKinds' order).
  for (OutboxKind victim : {OutboxKind::kCapture, OutboxKind::kTelemetry}) {
    if (excess <= 0) break;
    std::vector<int64_t> ids;
    {
      Statement oldest(db, "SELECT id, bytes FROM outbox WHERE kind = ? ORDER BY id");
      oldest.Bind(OutboxKindName(victim));
      while (excess > 0) {
        absl::StatusOr<bool> next = oldest.Step();
        if (!next.ok()) return next.status();
        if (!*next) break;
        ids.push_back(oldest.Int(0));
        excess -= oldest.Int(1);
      }
    }
    for (int64_t id : ids) {
      Statement del(db, "DELETE FROM outbox WHERE id = ?");
      del.Bind(id);
      if (absl::Status e = del.Run(); !e.ok()) return e;
    }
    if (ids.empty()) continue;
    Statement count(db,
                    "INSERT INTO outbox_dropped (kind, items) VALUES (?, ?) "
                    "ON CONFLICT (kind) DO UPDATE SET items = items + excluded.items");
    count.Bind(OutboxKindName(victim)).Bind(static_cast<int64_t>(ids.size()));
    if (absl::Status e = count.Run(); !e.ok()) return e;
  }
  return absl::OkStatus();
}

// Whole days since the epoch of `day_unix` (the UTC day a capture counts against).
int64_t DayNumber(int64_t day_unix) {
  constexpr int64_t kDay = 24 * 3600;
  return day_unix >= 0 ? day_unix / kDay : (day_unix + 1) / kDay - 1;
}

}  // namespace

absl::Status StateStore::Enqueue(OutboxKind kind, const std::string& payload) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction(absl::StrCat("enqueue ", OutboxKindName(kind)), [&]() -> absl::Status {
    return InsertWithinBudget(impl_->db, impl_->outbox_max_bytes, kind, payload);
  });
}

absl::StatusOr<bool> StateStore::EnqueueCapture(const std::string& payload, int64_t now_unix,
                                                uint64_t max_bytes_per_day) {
  std::lock_guard lock(impl_->mu);
  const int64_t day = DayNumber(now_unix);
  bool stored = false;
  absl::Status s = impl_->Transaction("enqueue capture", [&]() -> absl::Status {
    Statement used(impl_->db, "SELECT COALESCE(SUM(bytes), 0) FROM capture_usage WHERE day = ?");
    used.Bind(day);
    absl::StatusOr<bool> row = used.Step();
    if (!row.ok()) return row.status();
    if (static_cast<uint64_t>(used.Int(0)) + payload.size() > max_bytes_per_day) {
      return absl::OkStatus();  // over the day's cap: nothing stored
    }
    if (absl::Status e =
            InsertWithinBudget(impl_->db, impl_->outbox_max_bytes, OutboxKind::kCapture, payload);
        !e.ok()) {
      return e;
    }
    Statement add(impl_->db,
                  "INSERT INTO capture_usage (day, bytes) VALUES (?, ?) "
                  "ON CONFLICT (day) DO UPDATE SET bytes = bytes + excluded.bytes");
    add.Bind(day).Bind(static_cast<int64_t>(payload.size()));
    if (absl::Status e = add.Run(); !e.ok()) return e;
    // Only today's count matters; a week of history is kept for a clock set back.
    Statement old(impl_->db, "DELETE FROM capture_usage WHERE day < ?");
    old.Bind(day - 7);
    if (absl::Status e = old.Run(); !e.ok()) return e;
    stored = true;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return stored;
}

absl::StatusOr<uint64_t> StateStore::CaptureBytesOnDay(int64_t now_unix) {
  std::lock_guard lock(impl_->mu);
  Statement used(impl_->db, "SELECT COALESCE(SUM(bytes), 0) FROM capture_usage WHERE day = ?");
  used.Bind(DayNumber(now_unix));
  absl::StatusOr<bool> row = used.Step();
  if (!row.ok()) return impl_->Read<uint64_t>("read capture usage", row.status());
  return static_cast<uint64_t>(used.Int(0));
}

absl::StatusOr<std::vector<StateStore::OutboxItem>> StateStore::Peek(OutboxKind kind,
                                                                     size_t limit) {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, "SELECT id, payload FROM outbox WHERE kind = ? ORDER BY id LIMIT ?");
  s.Bind(OutboxKindName(kind)).Bind(ClampToInt64(limit));
  std::vector<OutboxItem> out;
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return impl_->Read<std::vector<OutboxItem>>("peek outbox", row.status());
    if (!*row) break;
    out.push_back(OutboxItem{s.Int(0), kind, s.Blob(1)});
  }
  return out;
}

absl::Status StateStore::Ack(const std::vector<int64_t>& ids) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction("ack outbox", [&]() -> absl::Status {
    for (int64_t id : ids) {
      Statement s(impl_->db, "DELETE FROM outbox WHERE id = ?");
      s.Bind(id);
      if (absl::Status e = s.Run(); !e.ok()) return e;
    }
    return absl::OkStatus();
  });
}

absl::Status StateStore::AckRefused(OutboxKind kind, const std::vector<int64_t>& ids) {
  std::lock_guard lock(impl_->mu);
  return impl_->Transaction("ack refused outbox items", [&]() -> absl::Status {
    int64_t removed = 0;
    for (int64_t id : ids) {
      Statement s(impl_->db, "DELETE FROM outbox WHERE id = ? AND kind = ? RETURNING id");
      s.Bind(id).Bind(OutboxKindName(kind));
      absl::StatusOr<bool> row = s.Step();
      if (!row.ok()) return row.status();
      if (*row) ++removed;
    }
    if (removed == 0) return absl::OkStatus();
    Statement count(impl_->db,
                    "INSERT INTO outbox_dropped (kind, items, refused) VALUES (?, 0, ?) "
                    "ON CONFLICT (kind) DO UPDATE SET refused = refused + excluded.refused");
    count.Bind(OutboxKindName(kind)).Bind(removed);
    return count.Run();
  });
}

absl::StatusOr<std::array<StateStore::OutboxKindStats, 3>> StateStore::OutboxStats() {
  std::lock_guard lock(impl_->mu);
  std::array<OutboxKindStats, 3> stats{};
  auto slot = [&](absl::string_view name) -> OutboxKindStats* {
    std::optional<OutboxKind> kind = OutboxKindFromName(name);
    if (!kind) return nullptr;  // a kind this build does not know: not ours to report
    return &stats[static_cast<size_t>(*kind)];
  };
  Statement held(impl_->db, "SELECT kind, COUNT(*), SUM(bytes) FROM outbox GROUP BY kind");
  while (true) {
    absl::StatusOr<bool> row = held.Step();
    if (!row.ok()) return impl_->Read<std::array<OutboxKindStats, 3>>("outbox stats", row.status());
    if (!*row) break;
    if (OutboxKindStats* s = slot(held.Text(0))) {
      s->items = static_cast<uint64_t>(held.Int(1));
      s->bytes = static_cast<uint64_t>(held.Int(2));
    }
  }
  Statement dropped(impl_->db, "SELECT kind, items, refused FROM outbox_dropped");
  while (true) {
    absl::StatusOr<bool> row = dropped.Step();
    if (!row.ok()) return impl_->Read<std::array<OutboxKindStats, 3>>("outbox stats", row.status());
    if (!*row) break;
    if (OutboxKindStats* s = slot(dropped.Text(0))) {
      s->dropped = static_cast<uint64_t>(dropped.Int(1));
      s->refused = static_cast<uint64_t>(dropped.Int(2));
    }
  }
  return stats;
}

absl::StatusOr<uint64_t> StateStore::OutboxStreamId() {
  std::lock_guard lock(impl_->mu);
  Statement s(impl_->db, "SELECT stream_id FROM outbox_stream WHERE id = 1");
  absl::StatusOr<bool> row = s.Step();
  if (!row.ok()) return impl_->Read<uint64_t>("outbox stream id", row.status());
  if (!*row)
    return absl::DataLossError(
        absl::StrCat("agent state '", impl_->path, "': no outbox stream id"));
  return static_cast<uint64_t>(s.Int(0));
}

}  // namespace edgefleet::agent
