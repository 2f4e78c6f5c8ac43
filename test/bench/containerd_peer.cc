#include "test/bench/containerd_peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/reaper.h"
#include "common/status.h"
#include "test/e2e/cri_client.h"
#include "test/e2e/harness.h"

namespace crisp::bench {
namespace {

constexpr char kLockPath[] = "/run/lock/crisp-e2e.lock";  // the e2e harness's
constexpr char kRunDir[] = "/run/containerd";  // shim sockets (s/<hash>), runc state (runc/k8s.io)

std::string Toml(const ContainerdOptions& o, const std::string& dir) {
  const std::string cri = "plugins.\"io.containerd.grpc.v1.cri\"";
  return absl::StrCat(
      "version = 2\n", "root = \"", dir, "/root\"\n", "state = \"", dir, "/state\"\n",  //
      "[grpc]\n  address = \"", dir, "/containerd.sock\"\n",                              //
      "[ttrpc]\n  address = \"", dir, "/containerd.sock.ttrpc\"\n",                       //
      "[debug]\n  level = \"", o.log_level, "\"\n",                                       //
      "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"", dir, "/opt\"\n",        //
      "[", cri, "]\n  sandbox_image = \"", o.sandbox_image, "\"\n",                       //
      "  restrict_oom_score_adj = true\n  stream_server_port = \"0\"\n",                  //
      "[", cri, ".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"", dir, "/net.d\"\n",  //
      "[", cri, ".containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n",  //
      "[", cri, ".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n",  //
      "[", cri, ".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n",            //
      "[", cri, ".registry.mirrors.\"", o.registry, "\"]\n  endpoint = [\"http://", o.registry, "\"]\n");
}

// Mount points under `dir`, deepest (last mounted) first.
std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && (f[4] == dir || f[4].rfind(dir + "/", 0) == 0)) out.push_back(f[4]);
  }
  return {out.rbegin(), out.rend()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Containerd>> Containerd::Start(const ContainerdOptions& opts) {
  if (::access(opts.binary.c_str(), X_OK) != 0)
    return absl::FailedPreconditionError(
        absl::StrCat(opts.binary, " not found (apt-get install containerd runc)"));
  auto c = std::unique_ptr<Containerd>(new Containerd());
  c->opts_ = opts;
  (void)MkdirAll("/run/lock");
  c->lock_fd_ = ::open(kLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (c->lock_fd_ < 0) return ErrnoStatus(errno, absl::StrCat("opening ", kLockPath));
  absl::Time give_up = absl::Now() + absl::Minutes(15);
  while (::flock(c->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (absl::Now() > give_up) return absl::DeadlineExceededError(absl::StrCat(kLockPath, " held for 15 min"));
    absl::SleepFor(absl::Milliseconds(200));
  }
  c->made_run_dir_ = !PathExists(kRunDir);
  char t[] = "/tmp/crisp-bench-containerd.XXXXXX";
  if (!::mkdtemp(t)) return ErrnoStatus(errno, "mkdtemp");
  c->dir_ = t;
  RETURN_IF_ERROR(MkdirAll(c->dir_ + "/net.d"));
  RETURN_IF_ERROR(MkdirAll(c->dir_ + "/ipam"));
  RETURN_IF_ERROR(WriteFileAtomic(c->dir_ + "/net.d/10-bench.conflist",
                                  e2e::DefaultConflist(c->dir_ + "/ipam", opts.bridge, opts.subnet)));
  RETURN_IF_ERROR(WriteFileAtomic(c->dir_ + "/config.toml", Toml(opts, c->dir_)));
  int log = ::open((c->dir_ + "/containerd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoStatus(errno, "opening containerd.log");
  auto pid = Reaper::Spawn({.argv = {opts.binary, "--config", c->dir_ + "/config.toml"},
                            .stdout_fd = log,
                            .stderr_fd = log,
                            .new_session = true});
  ::close(log);
  if (!pid.ok()) return pid.status();
  c->pid_ = *pid;
  e2e::CriClient client(c->endpoint());
  if (grpc::Status st = client.WaitForReady(20); !st.ok())
    return absl::UnavailableError(
        absl::StrCat("containerd did not answer within 20 s (", st.error_message(), "); see ", c->dir_,
                     "/containerd.log"));
  return c;
}

absl::Status Containerd::Stop() {
  std::vector<std::string> problems;
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!Reaper::Wait(pid_, absl::Seconds(10)).ok()) {
      ::kill(pid_, SIGKILL);
      (void)Reaper::Wait(pid_, absl::Seconds(5));
    }
    pid_ = 0;
  }
  // Shims whose tasks were all deleted have exited; any other is ours to end.
  for (const auto& p : ListDir("/proc").value_or(std::vector<std::string>{})) {
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmd = ReadFile("/proc/" + p + "/cmdline");
    if (cmd.ok() && cmd->find("containerd-shim") != std::string::npos &&
        cmd->find(dir_ + "/containerd.sock") != std::string::npos) {
      problems.push_back("shim " + p + " left running");
      ::kill(std::atoi(p.c_str()), SIGKILL);
    }
  }
  if (!dir_.empty()) {
    for (const auto& m : MountsUnder(dir_)) {
      if (::umount2(m.c_str(), MNT_DETACH) != 0) problems.push_back("cannot unmount " + m);
    }
    if (!::getenv("CRISP_BENCH_KEEP")) {
      if (auto s = RemoveAll(dir_); !s.ok()) problems.push_back(std::string(s.message()));
    }
    dir_.clear();
  }
  if (PathExists("/sys/class/net/" + opts_.bridge)) (void)e2e::RunCapture({"/sbin/ip", "link", "del", opts_.bridge});
  if (made_run_dir_) {  // shim sockets and runc's state root, empty once every task is gone
    for (const char* sub : {"/s", "/runc/k8s.io", "/runc", ""}) ::rmdir((std::string(kRunDir) + sub).c_str());
    made_run_dir_ = false;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError("stopping containerd: " + absl::StrJoin(problems, "; "));
}

Containerd::~Containerd() { (void)Stop(); }

}  // namespace crisp::bench
