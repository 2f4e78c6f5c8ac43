// crispd: the crisp CRI daemon.
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/reaper.h"
#include "common/status.h"
#include "grpcpp/grpcpp.h"
#include "images/http_transport.h"
#include "images/image_manager.h"
#include "images/reference.h"
#include "netcni/cni.h"
#include "netcni/embedded.h"
#include "runtime/cgroups.h"
#include "server/config.h"
#include "server/cri_service.h"
#include "server/grpc_services.h"

#ifndef CRISP_VERSION
#define CRISP_VERSION "0.0.0"
#endif

namespace crisp::server {
namespace {

constexpr char kDefaultConfigPath[] = "/etc/crisp/crisp.yaml";

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: crispd [--config FILE] [--socket PATH] [--root DIR] [--state DIR] [--log-level LEVEL]\n"
               "       crispd --version\n"
               "       crispd config default     print the default configuration, commented\n"
               "       crispd registry resolve REF   print the endpoints a pull of REF tries, in order\n"
               "\n"
               "Serves the Kubernetes CRI v1 (RuntimeService, ImageService) on a unix socket.\n"
               "Flags override the config file (default %s).\n",
               kDefaultConfigPath);
}

std::string ExeDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.find_last_of('/'));
}

absl::Status PrepareSocket(const std::string& path) {
  std::string dir = path.substr(0, path.find_last_of('/'));
  if (!dir.empty() && !PathExists(dir)) RETURN_IF_ERROR(MkdirAll(dir, 0700));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    ::unlink(path.c_str());  // stale socket from a previous run
  }
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  // One malloc arena instead of one per thread that ever allocated (up to
  // 8 per core): crispd's threads mostly wait, and each extra arena kept
  // ~1 MiB of PSS (docs/benchmarks.md). Before any thread exists.
  ::mallopt(M_ARENA_MAX, 1);
  std::string config_path = kDefaultConfigPath;
  bool config_explicit = false;
  std::map<std::string, std::string> overrides;
  std::string registry_resolve;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version" || a == "-v") {
      std::printf("crispd %s (CRI v1)\n", CRISP_VERSION);
      return 0;
    }
    if (a == "--help" || a == "-h") {
      Usage(stdout);
      return 0;
    }
    if (a == "registry" && i + 2 < argc && std::string(argv[i + 1]) == "resolve") {
      registry_resolve = argv[i + 2];
      i += 2;
      continue;
    }
    if (a == "config" && i + 1 < argc && std::string(argv[i + 1]) == "default") {
      std::fputs(DefaultConfigYaml().c_str(), stdout);
      return 0;
    }
    std::string key, value;
    if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
      key = a.substr(2, a.find('=') - 2);
      value = a.substr(a.find('=') + 1);
    } else if (a.rfind("--", 0) == 0 && i + 1 < argc) {
      key = a.substr(2);
      value = argv[++i];
    } else {
      std::fprintf(stderr, "crispd: unexpected argument \"%s\"\n", a.c_str());
      Usage(stderr);
      return 2;
    }
    if (key == "config") {
      config_path = value;
      config_explicit = true;
    } else if (key == "socket" || key == "root" || key == "state" || key == "log-level") {
      overrides[key] = value;
    } else {
      std::fprintf(stderr, "crispd: unknown flag --%s\n", key.c_str());
      Usage(stderr);
      return 2;
    }
  }

  auto loaded = LoadConfig(config_path, config_explicit);
  if (!loaded.ok()) {
    std::fprintf(stderr, "crispd: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  Config config = *loaded;
  if (overrides.count("socket")) config.socket = overrides["socket"];
  if (overrides.count("root")) config.root = overrides["root"];
  if (overrides.count("state")) config.state = overrides["state"];
  if (overrides.count("log-level")) config.log_level = overrides["log-level"];
  if (auto s = config.Validate(); !s.ok()) {
    std::fprintf(stderr, "crispd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  if (!registry_resolve.empty()) {
    // Which endpoints a pull of REF would try, in order (no network access).
    images::ImageManager m(ImageOptionsFromConfig(config), images::NewHttpTransport());
    auto ref = images::ParseReference(registry_resolve);
    if (!ref.ok()) {
      std::fprintf(stderr, "crispd: %s\n", std::string(ref.status().message()).c_str());
      return 1;
    }
    auto eps = m.Endpoints(registry_resolve);
    if (!eps.ok()) {
      std::fprintf(stderr, "crispd: %s\n", std::string(eps.status().message()).c_str());
      return 1;
    }
    std::printf("%s\n", ref->String().c_str());
    for (const auto& e : *eps) std::printf("  %s\n", e.c_str());
    return 0;
  }
  if (config.shim_path.empty()) config.shim_path = ExeDir() + "/crisp-shim";
  (void)SetLogLevel(config.log_level);
  auto log = Logger("server");

  // Signals: SIGTERM/SIGINT/SIGHUP are taken synchronously by main (blocked
  // in every thread, which inherit this mask); SIGPIPE is ignored.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  ::umask(022);

  if (auto s = Reaper::InstallSubreaper(); !s.ok()) {
    log->critical("{}", s.ToString());
    return 1;
  }
  if (::access(config.shim_path.c_str(), X_OK) != 0) {
    log->critical("crisp-shim not found or not executable at {} (set shim_path)", config.shim_path);
    return 1;
  }
  auto layout = runtime::CgroupLayout::Detect();
  if (!layout.ok()) {
    log->critical("detecting cgroups: {}", layout.status().ToString());
    return 1;
  }
  netcni::CniOptions cni_opts;
  cni_opts.conf_dir = config.cni.conf_dir;
  cni_opts.bin_dirs = config.cni.bin_dirs;
  cni_opts.cache_dir = JoinPath(config.root, "cni");
  cni_opts.plugin_timeout = config.cni.plugin_timeout;
  auto cni = std::make_unique<netcni::CniManager>(cni_opts, netcni::NewExecInvoker());
  netcni::EmbeddedOptions emb_opts;
  emb_opts.bridge = config.embedded_network.bridge;
  emb_opts.subnet = config.embedded_network.subnet;
  emb_opts.masquerade = config.embedded_network.masquerade;
  emb_opts.ipam_dir = JoinPath(config.root, "embedded-ipam");
  emb_opts.state_dir = JoinPath(config.root, "embedded-network");
  auto embedded = std::make_unique<netcni::EmbeddedNetwork>(emb_opts);
  log->info("pod network: {} (CNI conf dir {}, embedded bridge {} {})", netcni::NetworkModeName(config.network),
            config.cni.conf_dir, emb_opts.bridge, emb_opts.subnet);
  auto cgroups = std::make_unique<runtime::CgroupManager>(*layout, runtime::NewFsCgroupWriter());
  auto image_manager =
      std::make_unique<images::ImageManager>(ImageOptionsFromConfig(config), images::NewHttpTransport());
  CriService svc(config, std::move(cni), std::move(embedded), std::move(cgroups), std::move(image_manager));
  if (auto s = svc.Init(); !s.ok()) {
    log->critical("initialising: {}", s.ToString());
    return 1;
  }

  if (auto s = PrepareSocket(config.socket); !s.ok()) {
    log->critical("{}", s.ToString());
    return 1;
  }
  auto runtime_service = NewRuntimeService(&svc);
  auto image_service = NewImageService(&svc);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + config.socket, grpc::InsecureServerCredentials());
  builder.RegisterService(runtime_service.get());
  builder.RegisterService(image_service.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    log->critical("cannot listen on {}", config.socket);
    return 1;
  }
  ::chmod(config.socket.c_str(), 0660);
  log->info("crispd {} serving CRI v1 on unix://{} (root {}, state {})", CRISP_VERSION, config.socket, config.root,
            config.state);

  // Between signals: once a burst of RPCs is over (none in flight, some
  // answered since the last look), give freed heap pages back to the kernel.
  // A pull or a hundred pod creations leave megabytes of free chunks inside
  // the heap that glibc keeps otherwise (measured: ~3 MiB of PSS, see
  // docs/benchmarks.md); malloc_trim on this small heap takes well under 1 ms.
  int sig = 0;
  uint64_t trimmed_at = FinishedRpcs();
  const struct timespec tick = {1, 0};
  for (;;) {
    sig = sigtimedwait(&sigs, nullptr, &tick);
    if (sig < 0) {
      if (errno != EAGAIN && errno != EINTR) break;
      uint64_t done = FinishedRpcs();
      if (done != trimmed_at && InFlightRpcs() == 0) {
        ::malloc_trim(0);
        trimmed_at = done;
      }
      continue;
    }
    if (sig == SIGHUP) continue;  // reserved for config reload
    break;
  }
  log->info("received signal {}, shutting down", sig);
  // Let RPCs in progress finish (up to 5 s), then stop at once: gRPC's own
  // Shutdown(deadline) would also wait out idle client connections, which
  // kubelet always holds.
  absl::Time drain_deadline = absl::Now() + absl::Seconds(5);
  while (InFlightRpcs() > 0 && absl::Now() < drain_deadline) absl::SleepFor(absl::Milliseconds(10));
  server->Shutdown(std::chrono::system_clock::now());
  ::unlink(config.socket.c_str());
  log->info("stopped");
  return 0;
}

}  // namespace
}  // namespace crisp::server

int main(int argc, char** argv) { return crisp::server::Run(argc, argv); }
