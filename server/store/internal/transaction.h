// Runs repository code on the pqxx transaction behind a Tx and turns libpqxx exceptions into
// absl::Status (adapter-internal header: include it only from server/store/*.cpp).
#pragma once

#include <exception>
#include <pqxx/pqxx>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/store/database.h"
#include "server/store/internal/connection_pool.h"

namespace edgefleet::server::internal {

// unique violation -> AlreadyExists; foreign key -> NotFound (missing parent) or
// FailedPrecondition (row still referenced); check/not-null/data errors -> InvalidArgument;
// broken connection -> Unavailable; anything else -> Internal. `what` prefixes the message.
absl::Status StatusFromException(absl::string_view what, const std::exception& e);

// What Database::Run lends to a Tx: the pqxx transaction and what went wrong inside it.
struct TxState {
  explicit TxState(pqxx::work& w) : work(w) {}
  pqxx::work& work;
  // The first statement that threw: PostgreSQL has aborted the transaction, so it cannot commit
  // (even when the caller carries on) and later statements fail with this status.
  absl::Status failure;
  bool retry = false;   // a fresh transaction may succeed (serialization, deadlock, connection)
  bool broken = false;  // the connection must not go back to the pool
};

struct TxAccess {
  static TxState* State(Tx& tx) { return tx.state_; }
};

// Calls f(pqxx::work&) -> absl::Status or absl::StatusOr<T> on the transaction behind `tx`; a
// libpqxx exception becomes a status prefixed with `what` and marks the transaction failed.
template <class F>
auto InTx(Tx& tx, absl::string_view what, F&& f) -> std::invoke_result_t<F&, pqxx::work&> {
  using R = std::invoke_result_t<F&, pqxx::work&>;
  TxState* state = TxAccess::State(tx);
  if (state == nullptr) {
    return absl::InternalError(
        absl::StrCat(what, ": transaction '", tx.name(), "' is not a PostgreSQL one"));
  }
  if (!state->failure.ok()) return R(state->failure);
  auto fail = [&](const std::exception& e, bool retry, bool broken) -> R {
    absl::Status status = StatusFromException(what, e);
    state->failure = status;
    state->retry = retry;
    state->broken = broken;
    return R(status);
  };
  try {
    return f(state->work);
  } catch (const pqxx::statement_completion_unknown& e) {
    return fail(e, false, true);
  } catch (const pqxx::in_doubt_error& e) {
    return fail(e, false, true);
  } catch (const pqxx::broken_connection& e) {
    return fail(e, true, true);
  } catch (const pqxx::transaction_rollback& e) {
    return fail(e, true, false);
  } catch (const std::exception& e) {
    return fail(e, false, false);
  }
}

// For a statement error that a repository turns into a status of its own: PostgreSQL aborted
// the transaction all the same, so it must not commit.
inline absl::Status MarkFailed(Tx& tx, absl::Status status) {
  if (TxState* state = TxAccess::State(tx); state != nullptr && state->failure.ok()) {
    state->failure = status;
  }
  return status;
}

// Read-only convenience: f in a transaction of its own (see Transactor::Transact).
template <class F>
auto WithTransaction(Database& db, absl::string_view what, F&& f)
    -> std::invoke_result_t<F&, pqxx::work&> {
  return db.Transact(what, [&](Tx& tx) { return InTx(tx, what, f); });
}

// Runs `sql` as the prepared statement `name` of this connection, prepared at its first use
// there: parsed and planned once per pooled connection instead of on every call. For the
// statements of hot paths (each device call); `name` must always come with the same `sql`.
template <class... Args>
pqxx::result ExecPrepared(pqxx::transaction_base& tx, const std::string& name,
                          const std::string& sql, Args&&... args) {
  tx.conn().prepare(name, sql);  // a no-op once declared with this text
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// One statement outside a transaction (autocommit): f(pqxx::nontransaction&) without the
// BEGIN and COMMIT round trips of WithTransaction, for the statements of hot paths (every device
// call reads the caller's status; a check-in is one statement). A broken connection is retried
// once on a fresh one, so the statement must be safe to run twice: a read, or a write that
// sets what it sets.
template <class F>
auto AutocommitOnce(Database& db, absl::string_view what, F&& f)
    -> std::invoke_result_t<F&, pqxx::nontransaction&> {
  using R = std::invoke_result_t<F&, pqxx::nontransaction&>;
  constexpr int kAttempts = 2;
  absl::Status status;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto lease = db.pool().Acquire();
    if (!lease.ok()) return R(lease.status());
    try {
      pqxx::nontransaction tx(lease->connection());
      return f(tx);
    } catch (const pqxx::broken_connection& e) {
      lease->MarkBroken();
      status = StatusFromException(what, e);
    } catch (const std::exception& e) {
      return R(StatusFromException(what, e));
    }
  }
  return R(status);
}

}  // namespace edgefleet::server::internal
