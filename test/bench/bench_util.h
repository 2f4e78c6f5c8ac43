#pragma once
// Small pieces shared by the benchmarks: latency series and their table.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "test/e2e/harness.h"

namespace crisp::bench {

struct Series {
  std::vector<double> ms;
  void Add(absl::Duration d) { ms.push_back(absl::ToDoubleMilliseconds(d)); }
  // Nearest-rank percentile, p in [0, 1].
  double Pct(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    size_t i = static_cast<size_t>(p * (ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  }
};

template <typename F>
absl::Duration Time(F f) {
  absl::Time t = absl::Now();
  f();
  return absl::Now() - t;
}

// Throws (the benchmarks' way out) when a call failed.
inline void Check(const grpc::Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error(absl::StrCat(what, " failed: ", st.error_message()));
}

// "operation  p50  p90  max  n" for every series.
inline void PrintTable(std::map<std::string, Series>& s) {
  std::printf("%-44s %9s %9s %9s %6s\n", "operation", "p50 ms", "p90 ms", "max ms", "n");
  for (auto& [name, series] : s) {
    std::printf("%-44s %9.2f %9.2f %9.2f %6zu\n", name.c_str(), series.Pct(0.5), series.Pct(0.9),
                series.Pct(1.0), series.ms.size());
  }
}

// The runtime a benchmark measures: its own crispd (started with `opts`) or
// the CRI endpoint named by --endpoint.
struct Target {
  std::unique_ptr<e2e::Daemon> daemon;  // null when measuring an endpoint
  std::unique_ptr<e2e::CriClient> own;
  e2e::CriClient* client = nullptr;
  std::string where;
  ::runtime::v1::VersionResponse version;

  // Starts/connects and checks that the runtime answers Version; prints why
  // not and returns false on failure.
  bool Open(const std::string& endpoint, const e2e::DaemonOptions& opts) {
    where = endpoint;
    if (endpoint.empty()) {
      auto d = e2e::Daemon::Start(opts);
      if (!d.ok()) {
        std::fprintf(stderr, "starting crispd: %s\n", std::string(d.status().message()).c_str());
        return false;
      }
      daemon = std::move(*d);
      client = &daemon->client();
      where = "own crispd in " + daemon->dir();
    } else {
      own = std::make_unique<e2e::CriClient>(endpoint);
      client = own.get();
    }
    if (grpc::Status st = client->Version(10, &version); !st.ok()) {
      std::fprintf(stderr, "runtime at %s does not answer: %s\n", where.c_str(), st.error_message().c_str());
      return false;
    }
    return true;
  }
  // Pulls `image`; prints why not and returns false on failure.
  bool Pull(const std::string& image) {
    ::runtime::v1::PullImageRequest req;
    req.mutable_image()->set_image(image);
    ::runtime::v1::PullImageResponse resp;
    if (grpc::Status st = client->Image(&::runtime::v1::ImageService::Stub::PullImage, req, &resp); !st.ok()) {
      std::fprintf(stderr, "pulling %s: %s\n", image.c_str(), st.error_message().c_str());
      return false;
    }
    return true;
  }
  // Leaves the runtime as a benchmark found it: stops and removes the
  // containers in `live` and the pod `pod` (best effort).
  void CleanUp(const std::set<std::string>& live, const std::string& pod) {
    using Stub = ::runtime::v1::RuntimeService::Stub;
    for (const auto& id : live) {
      ::runtime::v1::StopContainerRequest sreq;
      sreq.set_container_id(id);
      ::runtime::v1::StopContainerResponse sresp;
      (void)client->Runtime(&Stub::StopContainer, sreq, &sresp);
      ::runtime::v1::RemoveContainerRequest req;
      req.set_container_id(id);
      ::runtime::v1::RemoveContainerResponse resp;
      (void)client->Runtime(&Stub::RemoveContainer, req, &resp);
    }
    if (!pod.empty()) {
      (void)client->StopPodSandbox(pod);
      (void)client->RemovePodSandbox(pod);
    }
  }
  // Tears down our own crispd (if any); returns `rc`, or 1 if that failed.
  int Close(int rc) {
    if (daemon) {
      if (auto st = daemon->Destroy(); !st.ok()) {
        std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
        rc = 1;
      }
    }
    return rc;
  }
};

}  // namespace crisp::bench
