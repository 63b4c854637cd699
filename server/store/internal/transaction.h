// Runs repository code in a pooled pqxx transaction and turns libpqxx exceptions into
// absl::Status (adapter-internal header: include it only from server/store/*.cpp).
#pragma once

#include <exception>
#include <pqxx/pqxx>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/store/database.h"
#include "server/store/internal/connection_pool.h"

namespace edgefleet::server::internal {

// unique violation -> AlreadyExists; foreign key -> NotFound (missing parent) or
// FailedPrecondition (row still referenced); check/not-null/data errors -> InvalidArgument;
// broken connection -> Unavailable; anything else -> Internal. `what` prefixes the message.
absl::Status StatusFromException(absl::string_view what, const std::exception& e);

template <class R>
struct IsStatusOr : std::false_type {};
template <class T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

// Calls f(pqxx::work&) -> absl::Status or absl::StatusOr<T>; commits only when it returns OK.
// A broken connection or a serialization failure/deadlock is retried once on a fresh
// transaction, so f must not keep state between calls.
template <class F>
auto WithTransaction(const Database& db, absl::string_view what, F&& f)
    -> std::invoke_result_t<F&, pqxx::work&> {
  using R = std::invoke_result_t<F&, pqxx::work&>;
  static_assert(std::is_same_v<R, absl::Status> || IsStatusOr<R>::value,
                "the transaction body must return absl::Status or absl::StatusOr<T>");
  constexpr int kAttempts = 2;
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto lease = db.pool().Acquire();
    if (!lease.ok()) return lease.status();
    try {
      pqxx::work tx(lease->connection());
      R result = f(tx);
      if (!result.ok()) return result;  // tx aborts in its destructor
      tx.commit();
      return result;
    } catch (const pqxx::statement_completion_unknown& e) {
      lease->MarkBroken();
      return StatusFromException(what, e);
    } catch (const pqxx::in_doubt_error& e) {
      // The commit may or may not have landed: never retry.
      lease->MarkBroken();
      return StatusFromException(what, e);
    } catch (const pqxx::broken_connection& e) {
      lease->MarkBroken();
      last = StatusFromException(what, e);
    } catch (const pqxx::transaction_rollback& e) {
      last = StatusFromException(what, e);
    } catch (const std::exception& e) {
      return StatusFromException(what, e);
    }
  }
  return last;
}

}  // namespace edgefleet::server::internal
