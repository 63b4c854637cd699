// Limits on what clients send: every string, map and list of every request is bounded, the
// error names the field and the limit, and the largest valid request of every call fits in the
// gRPC servers' maximum message size.
#include "server/api/request_limits.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/rollout.pb.h"
#include "server/store/paging.h"

namespace edgefleet::server {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::string Text(const absl::Status& s) { return std::string(s.message()); }

TEST(RequestLimitsTest, ATooLongDescriptionIsRefusedNamingTheFieldAndLimit) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_description(std::string(1 << 20, 'x'));
  absl::Status s = CheckRequestLimits(request);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Text(s), "description has 1048576 bytes; the limit is 1024");
  request.set_description(std::string(RequestLimits::kDescriptionBytes, 'x'));
  EXPECT_TRUE(CheckRequestLimits(request).ok());
}

TEST(RequestLimitsTest, ANulByteInTextIsRefused) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_description(std::string("line\0rest", 9));
  absl::Status s = CheckRequestLimits(request);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Text(s), "description contains a NUL byte");
}

TEST(RequestLimitsTest, MapsAndListsAreBounded) {
  v1::CreateEnrollmentTokenRequest token;
  for (int i = 0; i < 100'000; ++i) (*token.mutable_labels())[absl::StrCat("k", i)] = "v";
  EXPECT_EQ(Text(CheckRequestLimits(token)), "labels has 100000 entries; the limit is 64");

  v1::ListDevicesRequest list;
  std::string selector;
  for (int i = 0; i < 100'000; ++i) selector += "k" + std::to_string(i) + "=v,";
  list.set_label_selector(selector);
  EXPECT_NE(Text(CheckRequestLimits(list)).find("label_selector has "), std::string::npos);
}

TEST(RequestLimitsTest, DeviceInventoryIsBoundedInsideTheRequest) {
  v1::CheckInRequest checkin;
  checkin.mutable_inventory()->set_os(std::string(1 << 20, 'o'));
  EXPECT_EQ(Text(CheckRequestLimits(checkin)), "inventory.os has 1048576 bytes; the limit is 256");

  checkin.mutable_inventory()->set_os("linux");
  for (int i = 0; i < 45'000; ++i) checkin.mutable_inventory()->add_models()->set_model_name("m");
  EXPECT_EQ(Text(CheckRequestLimits(checkin)),
            "inventory.models has 45000 entries; the limit is 256");

  v1::ReportEventRequest report;
  report.add_events()->set_detail("fine");
  report.add_events()->set_detail(std::string(5000, 'd'));
  EXPECT_EQ(Text(CheckRequestLimits(report)), "events[1].detail has 5000 bytes; the limit is 4096");
}

TEST(RequestLimitsTest, AgentsFitTheirTextWithinTheLimitsOnACharacterBoundary) {
  EXPECT_EQ(FitText("short", 10), "short");
  EXPECT_EQ(FitText(std::string("a\0b", 3), 10), "ab");
  EXPECT_EQ(FitText("abcdef", 4), "abcd");
  EXPECT_EQ(FitText("ab\xc3\xa9", 3), "ab") << "the two-byte e-acute is not split";
  v1::ReportEventRequest report;
  report.add_events()->set_detail(
      FitText(std::string(RequestLimits::kDetailBytes + 100, 'x'), RequestLimits::kDetailBytes));
  EXPECT_TRUE(CheckRequestLimits(report).ok());
}

template <typename Request>
void ExpectLongestPageTokenFits(const std::string& call) {
  Request list;
  list.set_page_token(NextPageToken(call, std::string(RequestLimits::kTextBytes, 'k')));
  EXPECT_TRUE(CheckRequestLimits(list).ok()) << call << ": " << CheckRequestLimits(list);
}

TEST(RequestLimitsTest, APageTokenForTheLongestKeyIsWithinItsLimit) {
  ExpectLongestPageTokenFits<v1::ListDevicesRequest>("ListDevices");
  ExpectLongestPageTokenFits<v1::ListModelsRequest>("ListModels");
  ExpectLongestPageTokenFits<v1::ListDeploymentsRequest>("ListDeployments");
  ExpectLongestPageTokenFits<v1::ListApiTokensRequest>("ListApiTokens");
  ExpectLongestPageTokenFits<v1::ListEnrollmentTokensRequest>("ListEnrollmentTokens");
  v1::GetDeploymentRequest get;
  get.set_deployment_id("1");
  get.set_target_page_token(
      NextPageToken("GetDeployment", std::string(RequestLimits::kTextBytes, 'd')));
  EXPECT_TRUE(CheckRequestLimits(get).ok()) << CheckRequestLimits(get);
}

// Fills every string, bytes, map and list of `message` (recursively) up to its limit.
void FillToLimits(google::protobuf::Message* message, int* counter) {
  const auto* descriptor = message->GetDescriptor();
  const auto* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->containing_oneof() != nullptr) continue;  // filled one by one below
    const size_t limit = FieldLimit(*field);
    auto text = [&](size_t size) {
      std::string value(size, 'x');
      std::string unique = std::to_string((*counter)++);  // distinct map keys
      value.replace(0, std::min(unique.size(), size), unique.substr(0, size));
      return value;
    };
    if (!field->is_repeated()) {
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        reflection->SetString(message, field, text(limit));
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        FillToLimits(reflection->MutableMessage(message, field), counter);
      }
      continue;
    }
    for (size_t n = 0; n < limit; ++n) {
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_STRING:
          reflection->AddString(
              message, field,
              text(field->type() == FieldDescriptor::TYPE_BYTES ? RequestLimits::kBytesBytes
                                                                : RequestLimits::kTextBytes));
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          FillToLimits(reflection->AddMessage(message, field), counter);
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          reflection->AddInt64(message, field, -1);  // the longest varint
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          reflection->AddUInt64(message, field, ~uint64_t{0});  // the longest varint
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          reflection->AddDouble(message, field, 1.5);  // packed: 8 bytes whatever the value
          break;
        default:
          FAIL() << "no filler for repeated " << field->full_name();
      }
    }
  }
}

void ExpectLargestRequestFits(const google::protobuf::Descriptor* type, int max_bytes) {
  {
    SCOPED_TRACE(type->full_name());
    const google::protobuf::Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
    int counter = 0;
    std::unique_ptr<google::protobuf::Message> request(prototype->New());
    FillToLimits(request.get(), &counter);
    // Each oneof member in turn, the others unset.
    std::vector<std::unique_ptr<google::protobuf::Message>> variants;
    variants.push_back(std::move(request));
    for (int o = 0; o < type->oneof_decl_count(); ++o) {
      for (int f = 0; f < type->oneof_decl(o)->field_count(); ++f) {
        const FieldDescriptor* field = type->oneof_decl(o)->field(f);
        auto variant = std::unique_ptr<google::protobuf::Message>(variants.front()->New());
        variant->CopyFrom(*variants.front());
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          FillToLimits(variant->GetReflection()->MutableMessage(variant.get(), field), &counter);
        } else {
          variant->GetReflection()->SetString(variant.get(), field,
                                              std::string(FieldLimit(*field), 'x'));
        }
        variants.push_back(std::move(variant));
      }
    }
    for (const auto& variant : variants) {
      EXPECT_TRUE(CheckRequestLimits(*variant).ok()) << CheckRequestLimits(*variant);
      EXPECT_LE(variant->ByteSizeLong(), static_cast<size_t>(max_bytes));
    }
  }
}

void ExpectLargestRequestsFit(const char* service_name, int max_bytes) {
  const auto* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service_name);
  ASSERT_NE(service, nullptr);
  for (int m = 0; m < service->method_count(); ++m) {
    ExpectLargestRequestFits(service->method(m)->input_type(), max_bytes);
  }
}

TEST(RequestLimitsTest, TheLargestValidDeviceRequestsFitTheDeviceServersMessageSize) {
  ExpectLargestRequestsFit("edgefleet.v1.DeviceService", RequestLimits::kMaxDeviceMessageBytes);
}

TEST(RequestLimitsTest, TheLargestValidAdminRequestsFitTheAdminServersMessageSize) {
  ExpectLargestRequestsFit("edgefleet.v1.AdminService", RequestLimits::kMaxAdminMessageBytes);
}

// The rollout calls' requests (their RPCs join AdminService with their handlers).
TEST(RequestLimitsTest, TheLargestValidRolloutRequestsFitTheAdminServersMessageSize) {
  for (const auto* type :
       {v1::CreateRolloutRequest::descriptor(), v1::GetRolloutRequest::descriptor(),
        v1::ListRolloutsRequest::descriptor(), v1::PauseRolloutRequest::descriptor(),
        v1::ResumeRolloutRequest::descriptor(), v1::PromoteRolloutRequest::descriptor(),
        v1::AbortRolloutRequest::descriptor(), v1::RollbackRolloutRequest::descriptor()}) {
    ExpectLargestRequestFits(type, RequestLimits::kMaxAdminMessageBytes);
  }
  v1::CreateRolloutRequest create;
  for (size_t i = 0; i <= RequestLimits::kRolloutWaves; ++i) create.add_waves()->set_percent(100);
  EXPECT_EQ(Text(CheckRequestLimits(create)), "waves has 17 entries; the limit is 16");
  v1::PauseRolloutRequest pause;
  pause.set_reason(std::string(RequestLimits::kDescriptionBytes + 1, 'r'));
  EXPECT_EQ(Text(CheckRequestLimits(pause)), "reason has 1025 bytes; the limit is 1024");
  ExpectLongestPageTokenFits<v1::ListRolloutsRequest>("ListRollouts");
}

}  // namespace
}  // namespace edgefleet::server
