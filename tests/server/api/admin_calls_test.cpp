// The admin call table: every AdminService RPC has exactly one entry with a permission, and roles
// are nested permission sets. (api_test.cpp runs both faces of the table against a database.)
#include "server/api/admin_calls.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <regex>
#include <set>

namespace edgefleet::server {
namespace {

const google::protobuf::ServiceDescriptor& AdminServiceDescriptor() {
  const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      "edgefleet.v1.AdminService");
  EXPECT_NE(service, nullptr);
  return *service;
}

TEST(AdminCallTableTest, EveryRpcHasExactlyOneEntryWithAPermission) {
  const auto& service = AdminServiceDescriptor();
  ASSERT_EQ(AdminCalls().size(), static_cast<size_t>(service.method_count()))
      << "the table has an entry that is no AdminService RPC";
  const std::regex kPermission("[a-z]+:[a-z-]+");
  for (int i = 0; i < service.method_count(); ++i) {
    const google::protobuf::MethodDescriptor& method = *service.method(i);
    SCOPED_TRACE(method.name());
    int entries = 0;
    for (const AdminCall& call : AdminCalls()) entries += call.rpc == method.name();
    ASSERT_EQ(entries, 1);
    const AdminCall& call = *FindAdminCall(method.name());
    EXPECT_TRUE(std::regex_match(std::string(call.permission), kPermission)) << call.permission;
    EXPECT_TRUE(RoleAllows(v1::ROLE_ADMIN, call.permission)) << "admin may do everything";
    EXPECT_EQ(call.request_prototype->GetDescriptor(), method.input_type());
    EXPECT_EQ(call.response_prototype->GetDescriptor(), method.output_type());
    EXPECT_EQ(call.handler == nullptr, method.client_streaming() || method.server_streaming())
        << "unary calls have a handler, streaming ones are served by each face";
    ASSERT_TRUE(call.rest.has_value()) << "every admin call has a REST route";
    EXPECT_EQ(call.rest->body == RestBody::kRawUpload, method.client_streaming());
    // Every {field} of the path is a string field of the request.
    std::string path(call.rest->path);
    std::smatch m;
    for (auto it = path.cbegin();
         std::regex_search(it, path.cend(), m, std::regex("\\{([^}]+)\\}"));
         it = m.suffix().first) {
      const auto* field = call.request_prototype->GetDescriptor()->FindFieldByName(m[1]);
      if (call.rest->body == RestBody::kRawUpload) {
        field = v1::PushModelMetadata::descriptor()->FindFieldByName(m[1]);
      }
      ASSERT_NE(field, nullptr) << path << " names no field " << m[1];
      EXPECT_EQ(field->cpp_type(), google::protobuf::FieldDescriptor::CPPTYPE_STRING) << m[1];
    }
  }
}

TEST(AdminCallTableTest, RestRoutesAreDistinct) {
  std::set<std::pair<HttpMethod, std::string_view>> seen;
  for (const AdminCall& call : AdminCalls()) {
    EXPECT_TRUE(seen.insert({call.rest->method, call.rest->path}).second) << call.rest->path;
  }
}

TEST(AdminCallTableTest, RolesAreNestedPermissionSets) {
  using namespace permission;
  const v1::Role kOrder[] = {v1::ROLE_VIEWER, v1::ROLE_OPERATOR, v1::ROLE_RELEASE_MANAGER,
                             v1::ROLE_ADMIN};
  for (size_t i = 1; i < std::size(kOrder); ++i) {
    for (Permission p : PermissionsOf(kOrder[i - 1])) {
      EXPECT_TRUE(RoleAllows(kOrder[i], p)) << RoleName(kOrder[i]) << " lacks " << p;
    }
    EXPECT_GT(PermissionsOf(kOrder[i]).size(), PermissionsOf(kOrder[i - 1]).size());
  }
  for (Permission p : PermissionsOf(v1::ROLE_VIEWER)) {
    EXPECT_EQ(p.substr(0, 5), "read:") << "viewers only read";
  }
  EXPECT_TRUE(RoleAllows(v1::ROLE_OPERATOR, kWriteDevices));
  EXPECT_TRUE(RoleAllows(v1::ROLE_OPERATOR, kCreateDeployments));
  EXPECT_FALSE(RoleAllows(v1::ROLE_OPERATOR, kPushModels));
  EXPECT_TRUE(RoleAllows(v1::ROLE_RELEASE_MANAGER, kPushModels));
  EXPECT_FALSE(RoleAllows(v1::ROLE_OPERATOR, kConfigureModels));
  EXPECT_TRUE(RoleAllows(v1::ROLE_RELEASE_MANAGER, kConfigureModels));
  EXPECT_FALSE(RoleAllows(v1::ROLE_RELEASE_MANAGER, kCreateEnrollmentTokens));
  // Rollouts: everyone reads them; operators (and above) start them and act on them.
  EXPECT_TRUE(RoleAllows(v1::ROLE_VIEWER, kReadRollouts));
  EXPECT_FALSE(RoleAllows(v1::ROLE_VIEWER, kCreateRollouts));
  EXPECT_FALSE(RoleAllows(v1::ROLE_VIEWER, kActRollouts));
  EXPECT_TRUE(RoleAllows(v1::ROLE_OPERATOR, kCreateRollouts));
  EXPECT_TRUE(RoleAllows(v1::ROLE_OPERATOR, kActRollouts));
  EXPECT_TRUE(PermissionsOf(v1::ROLE_UNSPECIFIED).empty());
  for (v1::Role role : kOrder) EXPECT_EQ(*ParseRoleName(RoleName(role)), role);
  EXPECT_EQ(ParseRoleName("root").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefleet::server
