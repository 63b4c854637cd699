// End-to-end check that the CA's certificates work for gRPC mutual TLS, which is how devices
// and the server will actually use them.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <gtest/gtest.h>

#include <ctime>
#include <future>
#include <optional>

#include "common/crypto/certificate_authority.h"

namespace edgefleet::crypto {
namespace {

constexpr std::chrono::seconds kDay{24 * 3600};

int64_t WallNow() { return static_cast<int64_t>(std::time(nullptr)); }

struct Pki {
  std::unique_ptr<CertificateAuthority> ca;
  KeyAndCertificate server;
  KeyAndCertificate client;
};

Pki NewPki(std::string_view ca_name) {
  Pki pki;
  absl::StatusOr<KeyAndCertificate> ca = CreateSelfSignedCa(ca_name, 365 * kDay);
  EXPECT_TRUE(ca.ok()) << ca.status();
  auto loaded = CertificateAuthority::Load(ca->certificate_pem, ca->private_key_pem);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  pki.ca = *std::move(loaded);
  auto server =
      pki.ca->IssueServerCertificate("fleet-server", {"127.0.0.1", "localhost"}, kDay, WallNow());
  EXPECT_TRUE(server.ok()) << server.status();
  pki.server = *std::move(server);
  absl::StatusOr<KeyAndCsr> device = GenerateKeyAndCsr("device-1");
  EXPECT_TRUE(device.ok());
  auto client = pki.ca->SignClientCsr(device->csr_pem, "device-1", kDay, WallNow());
  EXPECT_TRUE(client.ok()) << client.status();
  pki.client = {device->private_key_pem, *std::move(client)};
  return pki;
}

// Starts a server requiring client certificates from `pki`'s CA, makes one call to an
// unregistered method and returns its status: UNIMPLEMENTED means the TLS handshake succeeded
// and the request reached the server; UNAVAILABLE means the handshake failed.
grpc::StatusCode CallOverMutualTls(const Pki& pki, const std::string& client_root,
                                   const std::optional<KeyAndCertificate>& client_identity) {
  grpc::SslServerCredentialsOptions server_options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  server_options.pem_root_certs = pki.ca->CertificatePem();
  server_options.pem_key_cert_pairs.push_back(
      {pki.server.private_key_pem, pki.server.certificate_pem});
  int port = 0;
  // The default generic service answers every method with UNIMPLEMENTED.
  grpc::CallbackGenericService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(server_options), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    ADD_FAILURE() << "gRPC server did not start";
    return grpc::StatusCode::INTERNAL;
  }

  grpc::SslCredentialsOptions client_options;
  client_options.pem_root_certs = client_root;
  if (client_identity.has_value()) {
    client_options.pem_private_key = client_identity->private_key_pem;
    client_options.pem_cert_chain = client_identity->certificate_pem;
  }
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::SslCredentials(client_options));
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Slice payload("probe");
  grpc::ByteBuffer request(&payload, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/edgefleet.test.Probe/Call", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  server->Shutdown();
  return status.error_code();
}

TEST(MutualTlsTest, GrpcAcceptsIssuedServerAndClientCertificates) {
  Pki pki = NewPki("edgefleet device CA");
  EXPECT_EQ(CallOverMutualTls(pki, pki.ca->CertificatePem(), pki.client),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST(MutualTlsTest, GrpcRejectsClientsWithoutAValidCertificate) {
  Pki pki = NewPki("edgefleet device CA");
  Pki foreign = NewPki("foreign CA");
  // No client certificate at all.
  EXPECT_EQ(CallOverMutualTls(pki, pki.ca->CertificatePem(), std::nullopt),
            grpc::StatusCode::UNAVAILABLE);
  // A client certificate from a CA the server does not trust.
  EXPECT_EQ(CallOverMutualTls(pki, pki.ca->CertificatePem(), foreign.client),
            grpc::StatusCode::UNAVAILABLE);
  // A client that does not trust the server's CA refuses to talk.
  EXPECT_EQ(CallOverMutualTls(pki, foreign.ca->CertificatePem(), pki.client),
            grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace edgefleet::crypto
