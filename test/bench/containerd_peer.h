#pragma once
// containerd (Debian's `containerd` + `runc`) as a peer runtime for the
// benchmarks: started on a private socket, root and state dir in a temp dir,
// its CRI plugin given the same CNI conflist shape as crisp's bench daemon
// (bridge + host-local, portmap, loopback) on its own bridge and subnet, a
// registry mirror for the loopback fixture registry (plain HTTP), the fixture
// `pause` image as sandbox image, and `restrict_oom_score_adj = true`
// (lowering oom_score_adj is denied on some VMs).
#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace crisp::bench {

struct ContainerdOptions {
  std::string binary = "/usr/bin/containerd";
  std::string registry;       // "127.0.0.1:PORT": served over plain HTTP
  std::string sandbox_image;  // e.g. "127.0.0.1:PORT/crisp/pause:latest"
  std::string bridge = "crispbench2";
  std::string subnet = "10.87.0.0/16";
  std::string log_level = "info";
};

class Containerd {
 public:
  // Waits for the harness's machine-wide lock (the e2e daemons take it too:
  // a peer's pods must not show up in their leak checks), writes the config
  // and starts containerd; OK once it answers on its socket.
  static absl::StatusOr<std::unique_ptr<Containerd>> Start(const ContainerdOptions& opts);
  // Stop().
  ~Containerd();

  std::string endpoint() const { return "unix://" + dir_ + "/containerd.sock"; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

  // SIGTERM (then SIGKILL), kills shims left behind, unmounts what is still
  // mounted under its dir, deletes the dir, its bridge and empty /run dirs it
  // made, releases the lock. Errors are returned but everything is tried.
  absl::Status Stop();

 private:
  Containerd() = default;
  ContainerdOptions opts_;
  std::string dir_;
  pid_t pid_ = 0;
  int lock_fd_ = -1;
  bool made_run_dir_ = false;
};

}  // namespace crisp::bench
