// What the load generators in bench/ share: talking to a running edgefleet-server as its operator
// (admin gRPC with a bearer token) and as many devices, each enrolled for real (its own P-256 key,
// CSR and certificate) and calling over its own mTLS connection, as in the field.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/device.grpc.pb.h"

namespace edgefleet::bench {

// The whole file; throws std::runtime_error when it cannot be read.
std::string ReadFileOrThrow(const std::string& path);

// Channel arguments for one device: its own connection (no subchannel shared between
// identities, so each device's calls carry its certificate).
grpc::ChannelArguments DeviceChannelArgs();

// Bearer token and a 60 s deadline on an admin call.
void AuthorizeAdmin(grpc::ClientContext* context, const std::string& admin_token);

std::unique_ptr<v1::AdminService::Stub> AdminStub(const std::string& admin_address);

// Metadata for the test classifier (tests/models: input "input" [1, 4], output "probs" [1, 3]).
v1::PushModelMetadata ClassifierMetadata(const std::string& model_name, const std::string& version);

// Pushes a model version (ALREADY_EXISTS counts as done); throws on any other failure.
void PushModelVersion(v1::AdminService::Stub& admin, const std::string& admin_token,
                      const v1::PushModelMetadata& metadata, const std::string& bytes);

// An enrollment token good for `uses` enrollments within an hour.
std::string CreateEnrollmentToken(v1::AdminService::Stub& admin, const std::string& admin_token,
                                  uint32_t uses);

// A device's identity after enrollment: what its mTLS channel is made of.
struct DeviceIdentity {
  std::string device_id;
  std::string certificate_pem;
  std::string private_key_pem;
};

// Enrolls one device (key and CSR made here) with `inventory` as what it runs; throws on failure.
DeviceIdentity EnrollDevice(const std::string& device_address, const std::string& ca_pem,
                            const std::string& enrollment_token, const std::string& device_id,
                            const v1::Inventory& inventory);

// The device's own mTLS channel to the device API (not yet connected).
std::shared_ptr<grpc::Channel> OpenDeviceChannel(const std::string& device_address,
                                                 const std::string& ca_pem,
                                                 const DeviceIdentity& identity);

// Runs enroll(i) for i in [0, count) on `threads` threads; the first exception stops every
// thread and is rethrown.
void ForEachInParallel(int count, int threads, const std::function<void(int)>& enroll);

// Waits until every channel is connected (asking each to connect first); throws after `seconds`.
void ConnectAll(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int seconds);

// The q-quantile (0..1) of `values`, nearest rank; 0 when empty.
double Quantile(std::vector<double> values, double q);

// Resident set size of a process in MiB from /proc (0 when it cannot be read).
double ProcessRssMib(int pid);

// CPU seconds (user + system) a process has used, from /proc (0 when it cannot be read); pid 0
// is this process. Its children's time is not counted.
double ProcessCpuSeconds(int pid);

// The same for a process and its living children (PostgreSQL's postmaster and its backends).
double ProcessTreeCpuSeconds(int pid);

}  // namespace edgefleet::bench
