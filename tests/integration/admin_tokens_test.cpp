// Operator API tokens, enrollment-token revocation and the HTTP layer's error bodies, against a
// running server: raw HTTP requests where the client library would refuse to send them.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct RawResponse {
  int status = 0;
  std::string headers;  // lower-cased header block
  std::string body;
};

// Sends `request` as-is to 127.0.0.1:`port` and reads one response (headers, then
// Content-Length bytes). The server may answer before it has read everything we sent.
RawResponse RawHttp(int port, const std::string& request) {
  RawResponse response;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return response;
  timeval timeout{.tv_sec = 20, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return response;
  }
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server answered and closed early; read what it said
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  size_t header_end = std::string::npos;
  size_t want = std::string::npos;
  char buffer[4096];
  while (want == std::string::npos || raw.size() < want) {
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    raw.append(buffer, static_cast<size_t>(n));
    if (header_end == std::string::npos &&
        (header_end = raw.find("\r\n\r\n")) != std::string::npos) {
      std::string head = raw.substr(0, header_end);
      for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers = head;
      size_t at = head.find("content-length:");
      want = at == std::string::npos ? header_end + 4
                                     : header_end + 4 + std::stoul(head.substr(at + 15));
    }
  }
  ::close(fd);
  if (raw.size() > 12 && raw.rfind("HTTP/1.", 0) == 0)
    response.status = std::stoi(raw.substr(9, 3));
  if (header_end != std::string::npos) response.body = raw.substr(header_end + 4);
  return response;
}

class AdminTokensTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    server_->Start();
    http_ = server_->Http();
  }

  // An error answer with an ErrorBody of `code`.
  static void ExpectJsonError(const RawResponse& r, int status, const std::string& code,
                              const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.headers << "\n" << r.body;
    EXPECT_THAT(r.headers, HasSubstr("content-type: application/json")) << what;
    v1::ErrorBody error;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &error).ok())
        << what << ": not an ErrorBody: " << r.body;
    EXPECT_EQ(error.code(), code) << what;
    EXPECT_FALSE(error.message().empty()) << what;
  }

  static httplib::Headers Bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
  }

  std::unique_ptr<httplib::Client> http_;
};

TEST_F(AdminTokensTest, ApiTokensHaveRolesAndRevokedOnesAreRefusedOnBothFaces) {
  auto created = http_->Post("/v1/api-tokens", server_->AuthHeaders(),
                             R"({"name": "ci", "role": "ROLE_OPERATOR", "ttlSeconds": "3600"})",
                             "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 200) << created->body;
  v1::ApiToken token;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created->body, &token).ok());
  ASSERT_EQ(token.token().rfind("efa_", 0), 0u) << created->body;
  EXPECT_EQ(token.created_by(), "admin");

  auto listed = http_->Get("/v1/api-tokens", server_->AuthHeaders());
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200) << listed->body;
  EXPECT_THAT(listed->body, HasSubstr("\"ci\""));
  EXPECT_THAT(listed->body, Not(HasSubstr(token.token()))) << "a secret is never shown again";

  // An operator reads and acts on devices, but may not mint credentials.
  auto devices = http_->Get("/v1/devices", Bearer(token.token()));
  ASSERT_TRUE(devices);
  EXPECT_EQ(devices->status, 200) << devices->body;
  auto denied =
      http_->Post("/v1/enrollment-tokens", Bearer(token.token()), "{}", "application/json");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 403) << denied->body;
  EXPECT_THAT(denied->body, HasSubstr("create:enrollment-tokens"));

  auto revoked = http_->Post("/v1/api-tokens/ci/revoke", server_->AuthHeaders(), "", "");
  ASSERT_TRUE(revoked);
  ASSERT_EQ(revoked->status, 200) << revoked->body;
  EXPECT_THAT(revoked->body, HasSubstr("revokedAt"));

  auto after = http_->Get("/v1/devices", Bearer(token.token()));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 401) << after->body;
  EXPECT_THAT(after->body, HasSubstr("'ci' was revoked"));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token.token());
  v1::ListDevicesResponse out;
  grpc::Status over_grpc = server_->admin().ListDevices(&context, v1::ListDevicesRequest(), &out);
  EXPECT_EQ(over_grpc.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(over_grpc.error_message(), HasSubstr("'ci' was revoked"));

  // The built-in admin token keeps working and cannot be revoked through the API.
  auto admin_revoke = http_->Post("/v1/api-tokens/admin/revoke", server_->AuthHeaders(), "", "");
  ASSERT_TRUE(admin_revoke);
  EXPECT_EQ(admin_revoke->status, 400) << admin_revoke->body;
  auto still = http_->Get("/v1/devices", server_->AuthHeaders());
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
}

TEST_F(AdminTokensTest, ARevokedEnrollmentTokenCannotEnroll) {
  v1::EnrollmentToken token;
  ASSERT_TRUE(server_->CreateEnrollmentToken(5, {}, &token).ok());
  auto listed = http_->Get("/v1/enrollment-tokens", server_->AuthHeaders());
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->status, 200) << listed->body;
  EXPECT_THAT(listed->body, HasSubstr(token.token_id()));
  EXPECT_THAT(listed->body, Not(HasSubstr(token.token())));

  auto revoked = http_->Post("/v1/enrollment-tokens/" + token.token_id() + "/revoke",
                             server_->AuthHeaders(), "", "");
  ASSERT_TRUE(revoked);
  ASSERT_EQ(revoked->status, 200) << revoked->body;

  AgentHarness& agent = StartAgent("dev-revoked", token.token());
  EXPECT_TRUE(WaitFor(
      [&] {
        return MetricValue(server_->Metrics(), "edgefleet_enrollments_total",
                           {{"result", "PERMISSION_DENIED"}})
                   .value_or(0) >= 1;
      },
      kLongWait, 100ms))
      << "a revoked token must be refused";
  EXPECT_FALSE(agent.Enrolled());
  v1::ListDevicesResponse devices;
  ASSERT_TRUE(server_->ListDevices("", &devices).ok());
  EXPECT_EQ(devices.devices_size(), 0) << devices.ShortDebugString();
}

// Follows `path`'s pages of `page_size` over REST; returns every page's answer.
template <typename Response>
std::vector<Response> RestPages(httplib::Client& http, const httplib::Headers& auth,
                                const std::string& path, int page_size) {
  std::vector<Response> pages;
  std::string token;
  for (int n = 0; n < 100; ++n) {
    std::string url = path + "?page_size=" + std::to_string(page_size);
    if (!token.empty()) url += "&page_token=" + token;
    auto got = http.Get(url, auth);
    EXPECT_TRUE(got && got->status == 200) << url << ": " << (got ? got->body : "no response");
    if (!got || got->status != 200) break;
    Response page;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(got->body, &page).ok()) << got->body;
    pages.push_back(page);
    token = page.next_page_token();
    if (token.empty()) break;
  }
  return pages;
}

TEST_F(AdminTokensTest, TokenListsArePagedOverRest) {
  const auto auth = server_->AuthHeaders();
  std::set<std::string> enrollment_ids;
  for (int i = 0; i < 5; ++i) {
    v1::EnrollmentToken token;
    ASSERT_TRUE(server_->CreateEnrollmentToken(1, {}, &token).ok());
    enrollment_ids.insert(token.token_id());
  }
  std::vector<std::string> seen;
  auto enrollment_pages =
      RestPages<v1::ListEnrollmentTokensResponse>(*http_, auth, "/v1/enrollment-tokens", 2);
  ASSERT_EQ(enrollment_pages.size(), 3u) << "2 + 2 + 1";
  for (const auto& page : enrollment_pages) {
    EXPECT_LE(page.tokens_size(), 2);
    for (const auto& t : page.tokens()) seen.push_back(t.token_id());
  }
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << "by id";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), enrollment_ids)
      << "each token once, none missing";

  for (const char* name : {"ci-a", "ci-b"}) {
    auto created = http_->Post("/v1/api-tokens", auth,
                               std::string(R"({"name": ")") + name + R"(", "role": "ROLE_VIEWER"})",
                               "application/json");
    ASSERT_TRUE(created && created->status == 200) << (created ? created->body : "no response");
  }
  seen.clear();
  auto api_pages = RestPages<v1::ListApiTokensResponse>(*http_, auth, "/v1/api-tokens", 1);
  for (const auto& page : api_pages) {
    for (const auto& t : page.tokens()) seen.push_back(t.name());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"admin", "ci-a", "ci-b"})) << "one a page, by name";

  ASSERT_FALSE(api_pages.empty());
  const std::string api_token = api_pages.front().next_page_token();
  auto other_call = http_->Get("/v1/enrollment-tokens?page_token=" + api_token, auth);
  ASSERT_TRUE(other_call);
  EXPECT_EQ(other_call->status, 400) << "another call's token: " << other_call->body;
  auto too_big = http_->Get("/v1/api-tokens?page_size=1001", auth);
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 400) << too_big->body;
}

TEST_F(AdminTokensTest, EveryHttpErrorIsAJsonErrorBody) {
  const int port = server_->ports().admin_http;
  const std::string auth = "Authorization: Bearer " + server_->admin_token() + "\r\n";

  ExpectJsonError(RawHttp(port, "NONSENSE\r\n\r\n"), 400, "INVALID_ARGUMENT",
                  "malformed request line");
  ExpectJsonError(RawHttp(port, "GET /v1/devices?label_selector=" + std::string(9000, 'a') +
                                    " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n"),
                  414, "INVALID_ARGUMENT", "URI over 8 KiB");
  ExpectJsonError(RawHttp(port, "GET /v1/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"), 404,
                  "NOT_FOUND", "no such route");

  // A JSON body over the limit is refused before it is read.
  ExpectJsonError(RawHttp(port, "POST /v1/deployments HTTP/1.1\r\nHost: x\r\n" + auth +
                                    "Content-Type: application/json\r\nContent-Length: " +
                                    std::to_string((1 << 20) + 1) + "\r\n\r\n{\"modelName\":"),
                  413, "RESOURCE_EXHAUSTED", "JSON body over 1 MiB");

  // curl -d sends application/x-www-form-urlencoded: a JSON body over 8 KiB is still JSON.
  const std::string json =
      "{\"maxUses\": 2, \"description\": \"curl\"" + std::string(10000, ' ') + "}";
  RawResponse form =
      RawHttp(port, "POST /v1/enrollment-tokens HTTP/1.1\r\nHost: x\r\n" + auth +
                        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
                        std::to_string(json.size()) + "\r\n\r\n" + json);
  EXPECT_EQ(form.status, 200) << form.body;
  EXPECT_THAT(form.body, HasSubstr("\"description\":\"curl\""));
}

}  // namespace
}  // namespace edgefleet::test
