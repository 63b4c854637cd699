// Uploads that are complete, or nothing (issue 9, finding 1): against a real server process, a
// REST body cut short, a gRPC stream cancelled or ended without its finish message, and
// `edgefleetctl model push` killed mid-way each register no version and leave no temporary
// file, and the full file can be pushed again; oversize uploads are refused before the body;
// files that are not ONNX, or whose graph does not match the declared tensors, are refused.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/crypto/sha256.h"
#include "tests/integration/integration_fixture.h"
#include "tests/support/onnx_bytes.h"

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kSpecs[] = "input=input:1x4&output=probs:1x3";
constexpr uint64_t kBigWeights = uint64_t{256} << 20;

std::string RandomBytes(size_t size) {
  std::mt19937_64 rng(42);
  std::string out(size, '\0');
  for (size_t i = 0; i < size; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, size - i));
  }
  return out;
}

// One HTTP request over a raw socket: sends `head` and `body`, then either reads the answer
// until the server closes the connection (`read_answer`) or closes at once, as a client that
// dies mid-upload does (httplib answers nothing to a half-closed socket, so there is no way to
// both stop sending and hear back).
std::string RawHttp(int port, const std::string& head, const std::string& body, bool read_answer) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = head + body;
    for (size_t sent = 0; sent < request.size();) {
      ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    char buffer[4096];
    while (read_answer) {
      ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      answer.append(buffer, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return answer;
}

class PushIntegrityTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    model_ = ReadFile(TestModel("classifier_v1.onnx")).value();
  }

  std::string UploadHead(const std::string& path_and_query, const std::string& length_header) {
    return "POST " + path_and_query + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
           server_->admin_token() + "\r\nContent-Type: application/octet-stream\r\n" +
           length_header + "Connection: close\r\n\r\n";
  }

  std::string TmpDir() const { return server_->data_dir() + "/artifacts/tmp"; }
  bool TmpIsEmpty() const { return !fs::exists(TmpDir()) || fs::is_empty(TmpDir()); }

  int VersionCount(const std::string& model_name) {
    grpc::ClientContext context;
    server_->Authorize(&context);
    v1::GetModelRequest request;
    request.set_model_name(model_name);
    v1::Model model;
    grpc::Status s = server_->admin().GetModel(&context, request, &model);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return 0;
    EXPECT_TRUE(s.ok()) << s.error_message();
    return model.versions_size();
  }

  // A PushModel stream of classifier version 1 that has sent its metadata and `bytes`, no more.
  std::unique_ptr<grpc::ClientWriter<v1::PushModelRequest>> StartPush(grpc::ClientContext& context,
                                                                      v1::ModelVersion& out,
                                                                      const std::string& bytes) {
    server_->Authorize(&context);
    auto writer = server_->admin().PushModel(&context, &out);
    v1::PushModelRequest first;
    first.mutable_metadata()->set_model_name("classifier");
    first.mutable_metadata()->set_version("1");
    EXPECT_TRUE(writer->Write(first));
    v1::PushModelRequest chunk;
    chunk.set_chunk(bytes);
    EXPECT_TRUE(writer->Write(chunk));
    return writer;
  }

  // Answered REST uploads with `status` ("" for any).
  double UploadAnswers(const std::string& status) {
    std::map<std::string, std::string> labels = {{"route", "/v1/models"}};
    if (!status.empty()) labels["status"] = status;
    return MetricValue(server_->Metrics(), "edgefleet_http_requests_total", labels).value_or(0);
  }

  double PushCalls() {
    return MetricValue(server_->Metrics(), "edgefleet_grpc_requests_total",
                       {{"service", "AdminService"}, {"method", "PushModel"}})
        .value_or(0);
  }

  void ExpectNothingRegisteredThenFullPushWorks(const std::string& what) {
    EXPECT_EQ(VersionCount("classifier"), 0) << what << ": a version was registered";
    EXPECT_TRUE(TmpIsEmpty()) << what << ": a temporary upload was left behind";
    v1::ModelVersion version;
    grpc::Status again =
        server_->PushClassifier("classifier", "1", TestModel("classifier_v1.onnx"), &version);
    EXPECT_TRUE(again.ok()) << what << ": full re-push: " << again.error_message();
    EXPECT_EQ(version.size_bytes(), model_.size());
  }

  std::string model_;
};

TEST_F(PushIntegrityTest, RestUploadClosedBeforeContentLengthRegistersNothing) {
  server_->Start();
  const double answered_before = UploadAnswers("");
  const std::string head = UploadHead(std::string("/v1/models/classifier/versions/1?") + kSpecs,
                                      "Content-Length: " + std::to_string(model_.size()) + "\r\n");
  RawHttp(server_->ports().admin_http, head, model_.substr(0, model_.size() / 2), false);
  // The server has handled the upload once its request is counted; it must count as refused.
  ASSERT_TRUE(WaitFor([&] { return UploadAnswers("") > answered_before; }, kLongWait))
      << "the server never finished the cut-short upload";
  EXPECT_EQ(UploadAnswers("400"), 1) << server_->Metrics();

  // The same with chunked framing: a chunk announced in full, half of it sent, no last chunk.
  const std::string chunked_head = UploadHead(
      std::string("/v1/models/classifier/versions/1?") + kSpecs, "Transfer-Encoding: chunked\r\n");
  char size_line[32];
  std::snprintf(size_line, sizeof(size_line), "%zx\r\n", model_.size());
  RawHttp(server_->ports().admin_http, chunked_head,
          size_line + model_.substr(0, model_.size() / 2), false);
  ASSERT_TRUE(WaitFor([&] { return UploadAnswers("") > answered_before + 1; }, kLongWait))
      << "the server never finished the cut-short chunked upload";
  EXPECT_EQ(UploadAnswers("400"), 2) << server_->Metrics();
  ExpectNothingRegisteredThenFullPushWorks("REST body cut short");
}

TEST_F(PushIntegrityTest, RestUploadOverTheLimitIs413BeforeTheBody) {
  server_->set_extra_args({"--max-artifact-bytes", "100000"});
  server_->Start();
  const int port = server_->ports().admin_http;
  // Only the head is sent: the answer comes without the body.
  std::string answer = RawHttp(port,
                               UploadHead(std::string("/v1/models/classifier/versions/1?") + kSpecs,
                                          "Content-Length: 3000000000\r\n"),
                               "", true);
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 413")) << answer;
  EXPECT_THAT(answer, HasSubstr("RESOURCE_EXHAUSTED")) << answer;
  answer = RawHttp(port,
                   UploadHead(std::string("/v1/models/classifier/versions/1?size=200000&") + kSpecs,
                              "Transfer-Encoding: chunked\r\n"),
                   "", true);
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 413")) << answer;
  // No framing at all: the end of the body could not be told from a dropped connection.
  answer = RawHttp(port, UploadHead(std::string("/v1/models/classifier/versions/1?") + kSpecs, ""),
                   model_, true);
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 411")) << answer;
  // A body over the limit that was not declared is cut off at the limit, also as 413.
  auto http = server_->Http();
  auto too_big =
      http->Post(std::string("/v1/models/classifier/versions/1?") + kSpecs, server_->AuthHeaders(),
                 OnnxModelWith(std::string(200000, 'w')), "application/octet-stream");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413) << too_big->body;
  ExpectNothingRegisteredThenFullPushWorks("refused oversize uploads");
}

// A chunked body counts once its last chunk arrived, with size= and sha256= checked.
TEST_F(PushIntegrityTest, RestChunkedUploadWithStatedSizeAndDigestIsRegistered) {
  server_->Start();
  auto http = server_->Http();
  const std::string query = std::string("/v1/models/classifier/versions/1?") + kSpecs +
                            "&size=" + std::to_string(model_.size()) +
                            "&sha256=" + crypto::ToHex(crypto::Sha256Bytes(model_));
  auto chunked = http->Post(
      query, server_->AuthHeaders(),
      [&](size_t offset, httplib::DataSink& sink) {
        const size_t n = std::min<size_t>(300, model_.size() - offset);
        sink.write(model_.data() + offset, n);
        if (offset + n == model_.size()) sink.done();
        return true;
      },
      "application/octet-stream");
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->status, 200) << chunked->body;
  EXPECT_EQ(VersionCount("classifier"), 1);
  EXPECT_TRUE(TmpIsEmpty());
}

TEST_F(PushIntegrityTest, GrpcStreamCancelledMidwayRegistersNothing) {
  server_->Start();
  const double calls_before = PushCalls();
  {
    grpc::ClientContext context;
    v1::ModelVersion out;
    auto writer = StartPush(context, out, model_.substr(0, model_.size() / 2));
    // The server has the metadata once its temporary upload exists; then the client gives up.
    ASSERT_TRUE(WaitFor([&] { return !TmpIsEmpty(); }, kLongWait));
    context.TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ASSERT_TRUE(WaitFor([&] { return PushCalls() > calls_before; }, kLongWait))
      << "the server never finished the cancelled call";
  ExpectNothingRegisteredThenFullPushWorks("cancelled gRPC stream");
}

TEST_F(PushIntegrityTest, GrpcStreamWithoutFinishMessageRegistersNothing) {
  server_->Start();
  grpc::ClientContext context;
  v1::ModelVersion out;
  auto writer = StartPush(context, out, model_);
  writer->WritesDone();  // all bytes, but no finish message
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("finish"));
  ExpectNothingRegisteredThenFullPushWorks("stream without finish message");
}

TEST_F(PushIntegrityTest, GrpcFinishMessageMustMatchWhatArrivedAndSizeOverLimitIsRefused) {
  server_->set_extra_args({"--max-artifact-bytes", "100000"});
  server_->Start();
  v1::PushModelMetadata metadata;
  metadata.set_model_name("classifier");
  metadata.set_version("1");
  metadata.set_expected_size_bytes(100001);
  v1::ModelVersion out;
  grpc::Status over = server_->PushModel(metadata, model_, &out);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << over.error_message();
  metadata.set_expected_size_bytes(model_.size() + 1);
  EXPECT_EQ(server_->PushModel(metadata, model_, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ExpectNothingRegisteredThenFullPushWorks("size mismatches");
}

TEST_F(PushIntegrityTest, CtlPushKilledMidwayRegistersNothing) {
  server_->Start();
  // Large enough that the upload is still streaming when the CLI is killed; written in pieces.
  const std::string file = tmp_.Sub("big.onnx");
  {
    const OnnxFrame frame = OnnxFrameFor(kBigWeights);
    std::ofstream out(file, std::ios::binary);
    out << frame.prefix;
    const std::string piece = RandomBytes(1 << 20);
    for (uint64_t i = 0; i < kBigWeights / piece.size(); ++i) out << piece;
    out << frame.suffix;
    ASSERT_TRUE(out.good());
  }
  const std::string server = "127.0.0.1:" + std::to_string(server_->ports().admin_grpc);
  const std::vector<std::string> args = {"model",     "push",      "classifier", file,
                                         "--version", "1",         "--input",    "input:1x4",
                                         "--output",  "probs:1x3", "--server",   server};
  const std::map<std::string, std::string> env = {{"EDGEFLEET_TOKEN", server_->admin_token()}};
  const double calls_before = PushCalls();
  {
    Process ctl;
    ctl.Spawn(BinDir() + "/edgefleetctl", args, env, tmp_.Sub("ctl.log"));
    // Killed (SIGKILL) once the server has begun storing the upload.
    ASSERT_TRUE(WaitFor([&] { return !TmpIsEmpty(); }, kLongWait, 1ms));
    ctl.Kill();
  }
  ASSERT_TRUE(WaitFor([&] { return PushCalls() > calls_before; }, kLongWait))
      << "the server never finished the broken call";
  EXPECT_EQ(VersionCount("classifier"), 0);
  EXPECT_TRUE(TmpIsEmpty());

  // The same command run to its end registers the whole file.
  Process again;
  again.Spawn(BinDir() + "/edgefleetctl", args, env, tmp_.Sub("ctl2.log"));
  EXPECT_EQ(again.Wait(std::chrono::seconds(120)), 0) << ReadFileTail(tmp_.Sub("ctl2.log"));
  EXPECT_EQ(VersionCount("classifier"), 1);
}

TEST_F(PushIntegrityTest, StaleTemporaryUploadIsRemovedAtStart) {
  fs::create_directories(TmpDir());
  const std::string stale = TmpDir() + "/upload-0123456789abcdef";
  std::ofstream(stale, std::ios::binary) << "half of a model from before a crash";
  server_->Start();
  EXPECT_FALSE(fs::exists(stale));
}

TEST_F(PushIntegrityTest, NonOnnxFilesMismatchedSpecsAndDotNamesAreRefused) {
  server_->Start();
  auto http = server_->Http();
  auto not_onnx =
      http->Post(std::string("/v1/models/classifier/versions/1?") + kSpecs, server_->AuthHeaders(),
                 std::string("this is a text file, not a model\n"), "application/octet-stream");
  ASSERT_TRUE(not_onnx);
  EXPECT_EQ(not_onnx->status, 400) << not_onnx->body;
  EXPECT_THAT(not_onnx->body, HasSubstr("not an ONNX model"));
  // A truncated model file is not ONNX either.
  v1::ModelVersion version;
  grpc::Status truncated =
      server_->PushClassifier("classifier", "1", TestModel("broken.onnx"), &version);
  EXPECT_EQ(truncated.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(truncated.error_message(), HasSubstr("not an ONNX model"));

  // conv_v1 takes image [1,1,8,8]: declared as the classifier's input [1,4], it is refused.
  grpc::Status mismatch =
      server_->PushClassifier("classifier", "1", TestModel("conv_v1.onnx"), &version);
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(mismatch.error_message(), HasSubstr("'input'"));
  auto wrong_shape = http->Post("/v1/models/classifier/versions/1?input=input:1x5",
                                server_->AuthHeaders(), model_, "application/octet-stream");
  ASSERT_TRUE(wrong_shape);
  EXPECT_EQ(wrong_shape->status, 400) << wrong_shape->body;
  EXPECT_THAT(wrong_shape->body, HasSubstr("shape"));

  for (const char* name : {"..", ".hidden"}) {
    EXPECT_EQ(
        server_->PushClassifier(name, "1", TestModel("classifier_v1.onnx"), &version).error_code(),
        grpc::StatusCode::INVALID_ARGUMENT)
        << name;
  }
  EXPECT_EQ(server_->PushClassifier("classifier", "..", TestModel("classifier_v1.onnx"), &version)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ExpectNothingRegisteredThenFullPushWorks("refused files");
}

}  // namespace
}  // namespace edgefleet::test
