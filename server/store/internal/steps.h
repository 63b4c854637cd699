// Statements that one repository runs inside another's transaction, so that one device action
// (an enrollment: token use, device row, audit row) commits or rolls back as a whole
// (adapter-internal header: include it only from server/store/*.cpp).
#pragma once

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/labels.h"

namespace edgefleet::server::internal {

struct ConsumedToken {
  std::string token_id;
  Labels labels;
};
// Uses the token once (see EnrollmentTokenRepo::Consume for the errors). The token's row stays
// locked until the transaction ends: run it last in a transaction that does anything slow.
absl::StatusOr<ConsumedToken> ConsumeEnrollmentToken(pqxx::work& tx, const std::string& token_hash,
                                                     int64_t now_unix);
// The token's id and labels when it could be used now, without using it or locking it; the same
// errors as ConsumeEnrollmentToken.
absl::StatusOr<ConsumedToken> PeekEnrollmentToken(pqxx::work& tx, const std::string& token_hash,
                                                  int64_t now_unix);

// `detail_json` must be a JSON value (empty means {}).
void InsertAuditRow(pqxx::work& tx, const std::string& actor, const std::string& action,
                    const std::string& detail_json);

}  // namespace edgefleet::server::internal
