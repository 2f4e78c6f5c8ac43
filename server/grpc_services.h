#pragma once
// gRPC adapters for CriService: the one place that maps absl::Status to
// grpc::Status and logs each RPC (debug: name, subject id, duration; warn on
// error with the reason).
#include <cstdint>
#include <memory>

#include "api/cri/api.grpc.pb.h"
#include "server/cri_service.h"

namespace crisp::server {

std::unique_ptr<::runtime::v1::RuntimeService::Service> NewRuntimeService(CriService* svc);
std::unique_ptr<::runtime::v1::ImageService::Service> NewImageService(CriService* svc);

// RPCs being handled right now (for a graceful drain at shutdown).
int InFlightRpcs();
// RPCs answered since start (for housekeeping after activity).
uint64_t FinishedRpcs();

// absl -> gRPC status (same code numbers, message kept).
grpc::Status ToGrpcStatus(const absl::Status& s);

}  // namespace crisp::server
