#include "test/e2e/harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/reaper.h"
#include "common/status.h"
#include "test/testing/iptables.h"

namespace crisp::e2e {

namespace {

constexpr char kLockPath[] = "/run/lock/crisp-e2e.lock";

std::vector<std::string> ListOrEmpty(const std::string& dir) {
  return ListDir(dir).value_or(std::vector<std::string>{});
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

struct MountLine {
  std::string mount_point, fstype, line;
};

std::vector<MountLine> Mounts() {
  std::vector<MountLine> out;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 5) continue;
    MountLine m{f[4], "", line};
    size_t sep = line.find(" - ");
    if (sep != std::string::npos) {
      std::vector<std::string> rest = absl::StrSplit(line.substr(sep + 3), ' ');
      if (!rest.empty()) m.fstype = rest[0];
    }
    out.push_back(std::move(m));
  }
  return out;
}

// Every cgroup hierarchy root: /sys/fs/cgroup itself (v2 / hybrid) and each
// v1 controller mount under it.
std::vector<std::string> CgroupRoots() {
  std::vector<std::string> roots = {"/sys/fs/cgroup"};
  for (const auto& c : ListOrEmpty("/sys/fs/cgroup"))
    if (IsDir("/sys/fs/cgroup/" + c) && !absl::StartsWith(c, "crisp")) roots.push_back("/sys/fs/cgroup/" + c);
  return roots;
}

// Directories below `dir` (not `dir` itself), deepest first.
std::vector<std::string> SubDirs(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

// Links that are `bridge`'s ports: the host ends of our pods' veths. Not
// every veth* on the machine: other tests (netcni integration, another build
// dir) create and delete their own at the same time. A pod veth that left our
// bridge without dying still needs its netns, which the nsfs mount and
// process checks see.
std::set<std::string> PodLinks(const std::string& bridge) {
  std::set<std::string> out;
  for (absl::string_view l : absl::StrSplit(RunCapture({"/sbin/ip", "-o", "link", "show"}), '\n')) {
    std::vector<std::string> f = absl::StrSplit(l, ": ");
    if (f.size() < 3) continue;
    std::string name = f[1].substr(0, f[1].find('@'));
    if (absl::StrContains(l, " master " + bridge + " ")) out.insert(name);
  }
  return out;
}

}  // namespace

pid_t ParentPid(const std::string& pid) {
  auto stat = ReadFile("/proc/" + pid + "/stat");
  if (!stat.ok()) return 0;
  size_t p = stat->rfind(')');
  if (p == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(stat->substr(p + 2), ' ');
  return f.size() > 1 ? std::atoi(f[1].c_str()) : 0;
}

bool DescendsFrom(pid_t pid, pid_t ancestor) {
  for (int depth = 0; depth < 64 && pid > 1; ++depth) {
    pid = ParentPid(std::to_string(pid));
    if (pid == ancestor) return true;
  }
  return false;
}

// Open fds of `pid`, not counting TCP sockets: those are the HTTP
// transport's pooled keep-alive connections to registries, which come and go
// with the pool.
static size_t CountFdsButTcp(pid_t pid) {
  std::set<std::string> tcp;  // "socket:[inode]"
  for (const char* f : {"tcp", "tcp6"}) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/net/", f));
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (cols.size() > 9) tcp.insert(absl::StrCat("socket:[", std::string(cols[9]), "]"));
    }
  }
  size_t n = 0;
  std::string dir = absl::StrCat("/proc/", pid, "/fd");
  for (const auto& fd : ListOrEmpty(dir)) {
    char target[128];
    ssize_t len = ::readlink((dir + "/" + fd).c_str(), target, sizeof target - 1);
    if (len > 0 && tcp.count(std::string(target, static_cast<size_t>(len)))) continue;
    ++n;
  }
  return n;
}

std::string RunCapture(std::vector<std::string> argv) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "";
  auto pid = Reaper::Spawn({.argv = std::move(argv), .stdout_fd = p[1]});
  ::close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  if (pid.ok()) (void)Reaper::Wait(*pid, absl::Seconds(10));
  return out;
}

std::string DefaultConflist(const std::string& ipam_data_dir, const std::string& bridge,
                            const std::string& subnet) {
  nlohmann::json j = {{"cniVersion", "1.0.0"},
                      {"name", "crisp-e2e"},
                      {"plugins",
                       {{{"type", "bridge"},
                         {"bridge", bridge},
                         {"isGateway", true},
                         {"ipMasq", false},
                         {"hairpinMode", true},
                         {"ipam",
                          {{"type", "host-local"},
                           {"dataDir", ipam_data_dir},
                           {"ranges", {{{{"subnet", subnet}}}}},
                           {"routes", {{{"dst", "0.0.0.0/0"}}}}}}},
                        {{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}}}}};
  return j.dump(2);
}

DaemonOptions EmbeddedDaemonOptions() {
  DaemonOptions o;
  o.network = "embedded";
  o.write_conflist = false;
  o.bridge = "crispemb0";
  o.subnet = "10.90.0.0/16";
  return o;
}

std::vector<std::string> EmbeddedNatRules(const std::string& bridge) {
  std::vector<std::string> out;
  for (absl::string_view l :
       absl::StrSplit(RunCapture({"/usr/sbin/iptables", "-w", "-t", "nat", "-S"}), '\n')) {
    if (absl::StrContains(l, "crisp-embedded:" + bridge) || absl::StrContains(l, " CRISP-HP-" + bridge) ||
        absl::StrContains(l, "CRISP-HPD-"))
      out.emplace_back(l);
  }
  return out;
}

namespace {

// Removes the embedded network's nat rules and chains on `bridge` (what the
// README's clean-up does); returns what could not be removed.
std::vector<std::string> RemoveEmbeddedNat(const std::string& bridge) {
  std::vector<std::string> problems;
  std::vector<std::string> chains;
  for (const auto& l : EmbeddedNatRules(bridge)) {
    if (absl::StartsWith(l, "-N ")) {
      chains.push_back(l.substr(3));
      continue;
    }
    if (!absl::StartsWith(l, "-A ")) continue;
    std::vector<std::string> argv = {"/usr/sbin/iptables", "-w", "-t", "nat", "-D"};
    for (auto& w : crisp::testing::IptablesRuleWords(l.substr(3))) argv.push_back(std::move(w));
    (void)RunCapture(argv);
  }
  for (const auto& c : chains) {
    (void)RunCapture({"/usr/sbin/iptables", "-w", "-t", "nat", "-F", c});
    (void)RunCapture({"/usr/sbin/iptables", "-w", "-t", "nat", "-X", c});
  }
  for (const auto& l : EmbeddedNatRules(bridge)) problems.push_back("nat rule left: " + l);
  return problems;
}

}  // namespace

std::set<std::string> CrispProcesses() {
  std::set<std::string> out;
  for (const auto& p : ListOrEmpty("/proc")) {
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    auto comm = ReadFile("/proc/" + p + "/comm");
    if (!comm.ok()) continue;
    std::string name(absl::StripAsciiWhitespace(*comm));
    // comm, not the whole cmdline: a "ninja crisp-shim" or a grep must not count.
    auto cmd = ReadFile("/proc/" + p + "/cmdline");
    std::string argv0 = cmd.ok() ? cmd->substr(0, cmd->find('\0')) : "";
    if (name == "crisp-pause" || name == "crisp-shim" || absl::EndsWith(argv0, "/crisp-shim"))
      out.insert(absl::StrCat("process ", p, " ", name));
  }
  return out;
}

std::set<std::string> DaemonProcesses(const Daemon& d) {
  std::set<std::string> out;
  const pid_t self = ::getpid();
  for (const auto& p : CrispProcesses()) {
    std::vector<std::string> f = absl::StrSplit(p, ' ');
    bool ours = DescendsFrom(std::atoi(f[1].c_str()), self);
    if (!ours)
      ours = absl::StrContains(ReadFile("/proc/" + f[1] + "/cgroup").value_or(""), d.cgroup_parent() + "/");
    if (!ours) ours = absl::StrContains(ReadFile("/proc/" + f[1] + "/cmdline").value_or(""), d.dir());
    if (ours) out.insert(p);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions opts) {
  static bool reaper = [] { return Reaper::InstallSubreaper().ok(); }();
  if (!reaper) return absl::InternalError("cannot become a child subreaper");
  auto d = std::unique_ptr<Daemon>(new Daemon());
  d->opts_ = std::move(opts);
  // One harness daemon at a time on this machine: two e2e suites (two build
  // dirs, CI next to a developer) would share the bridge and 10.88.0.0/16
  // with separate IPAM stores and delete the bridge under each other, and any
  // two runs (the bench next to the suite too) would see each other's pause
  // processes, veths and nsfs mounts in the machine-wide leak check. A second
  // run waits for the first.
  (void)MkdirAll("/run/lock");
  d->lock_fd_ = ::open(kLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd_ < 0) return ErrnoStatus(errno, absl::StrCat("opening ", kLockPath));
  absl::Time give_up = absl::Now() + absl::Minutes(15);
  bool said = false;
  while (::flock(d->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return ErrnoStatus(errno, absl::StrCat("locking ", kLockPath));
    if (absl::Now() > give_up)
      return absl::DeadlineExceededError(absl::StrCat(kLockPath, " held for 15 min"));
    if (!said) std::cerr << "waiting for another crisp e2e run (" << kLockPath << ")\n";
    said = true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  char t[] = "/tmp/crisp-e2e.XXXXXX";
  if (!::mkdtemp(t)) return ErrnoStatus(errno, "mkdtemp");
  d->dir_ = t;
  d->cgroup_parent_ = "/crisp-e2e-" + RandomHex(4);
  d->socket_ = d->dir_ + "/crisp.sock";
  RETURN_IF_ERROR(MkdirAll(d->conf_dir()));
  RETURN_IF_ERROR(MkdirAll(d->ipam_dir()));
  if (d->opts_.write_conflist) {
    std::string cl = d->opts_.conflist_json.empty()
                         ? DefaultConflist(d->dir_ + "/ipam", d->opts_.bridge, d->opts_.subnet)
                         : absl::StrReplaceAll(d->opts_.conflist_json, {{"@DIR@", d->dir_}});
    RETURN_IF_ERROR(WriteFileAtomic(d->conflist_path(), cl));
  }
  std::string yaml =
      absl::StrCat("log_level: ", d->opts_.log_level, "\ncgroup_parent: ", d->cgroup_parent_,
                   "\nnetwork: ", d->opts_.network, "\nembedded_network:\n  bridge: ", d->opts_.bridge,
                   "\n  subnet: ", d->opts_.subnet, "\ncni:\n  conf_dir: ", d->conf_dir(), "\n  bin_dirs: [",
                   absl::StrJoin(d->opts_.bin_dirs, ", "), "]\n  plugin_timeout: 30s\n", d->opts_.extra_yaml);
  RETURN_IF_ERROR(WriteFileAtomic(d->dir_ + "/crisp.yaml", yaml));
  RETURN_IF_ERROR(d->Launch());
  return d;
}

absl::Status Daemon::Launch() {
  if (pid_ > 0) return absl::FailedPreconditionError("crispd is already running");
  int log = ::open((dir_ + "/crispd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoStatus(errno, "opening crispd.log");
  auto pid = Reaper::Spawn({.argv = {opts_.crispd_path.empty() ? CrispdPath() : opts_.crispd_path, "--config",
                                     dir_ + "/crisp.yaml", "--socket", socket_, "--root", root(), "--state",
                                     state(), "--log-level", opts_.log_level},
                            .stdout_fd = log,
                            .stderr_fd = log});
  ::close(log);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  // A socket left by a killed crispd stays until the new one replaces it:
  // open the gRPC channel only once a plain connect() is accepted, or the
  // channel backs off on the stale socket.
  auto accepting = [this] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket_.c_str());
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  };
  // Normally ~50 ms; generous for sanitizer builds on a busy machine.
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::string last_error = "the socket never accepted a connection";
  while (absl::Now() < deadline) {
    if (accepting()) {
      if (!client_) client_ = std::make_unique<CriClient>(endpoint());
      grpc::Status s = client_->WaitForReady(2);
      if (s.ok()) return absl::OkStatus();
      last_error = "Version: " + s.error_message();
    }
    auto exited = Reaper::Wait(pid_, absl::Milliseconds(25));
    if (exited.ok()) {
      pid_ = 0;
      client_.reset();
      return absl::InternalError(
          absl::StrCat("crispd exited at start (", DescribeWaitStatus(*exited), "):\n", LogTail()));
    }
  }
  (void)Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("crispd did not serve within 20 s (", last_error, "):\n", LogTail()));
}

absl::Status Daemon::Kill() {
  if (pid_ <= 0) return absl::OkStatus();
  ::kill(pid_, SIGKILL);
  auto st = Reaper::Wait(pid_, absl::Seconds(10));
  pid_ = 0;
  client_.reset();
  return st.status();
}

absl::Status Daemon::Shutdown() {
  if (pid_ <= 0) return absl::OkStatus();
  ::kill(pid_, SIGTERM);  // with our client still connected, as kubelet would be
  auto st = Reaper::Wait(pid_, absl::Seconds(5));
  if (!st.ok()) {
    (void)Kill();
    return absl::DeadlineExceededError("crispd did not exit within 5 s of SIGTERM");
  }
  pid_ = 0;
  client_.reset();
  if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0)
    return absl::InternalError("crispd exited with " + DescribeWaitStatus(*st) + " after SIGTERM");
  return absl::OkStatus();
}

absl::Status Daemon::CheckAlive() {
  if (pid_ <= 0) return absl::FailedPreconditionError("crispd is not running");
  auto exited = Reaper::Wait(pid_, absl::ZeroDuration());
  if (!exited.ok()) return absl::OkStatus();  // still running
  pid_ = 0;
  client_.reset();
  return absl::InternalError("crispd died: " + DescribeWaitStatus(*exited));
}

absl::Status Daemon::Destroy() {
  if (destroyed_) return absl::OkStatus();
  destroyed_ = true;
  if (dir_.empty() || cgroup_parent_.empty()) {  // Start() failed early: nothing of ours exists
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
    return absl::OkStatus();
  }
  std::vector<std::string> problems;
  // Pods a failed test left behind: report them, then remove them so that
  // they do not pollute the machine.
  if (pid_ > 0) {
    if (!client_) client_ = std::make_unique<CriClient>(endpoint());
    cri::ListPodSandboxResponse pods;
    if (client_->ListPodSandbox({}, &pods).ok()) {
      for (const auto& p : pods.items()) {
        problems.push_back(absl::StrCat("pod ", p.id(), " (", p.metadata().name(), ") was still there"));
        grpc::Status s = client_->RemovePodSandbox(p.id());
        if (!s.ok()) problems.push_back(absl::StrCat("removing pod ", p.id(), ": ", s.error_message()));
      }
    }
  }
  if (auto s = Shutdown(); !s.ok()) problems.push_back(std::string(s.message()));
  (void)Kill();

  // Our crisp processes still alive with crispd gone (orphans reparented to
  // this subreaper, or in our cgroup parent): report and kill them.
  for (const auto& p : DaemonProcesses(*this)) {
    problems.push_back(p + " left running");
    std::vector<std::string> f = absl::StrSplit(p, ' ');
    ::kill(std::atoi(f[1].c_str()), SIGKILL);
  }

  if (PathExists("/sys/class/net/" + opts_.bridge))
    (void)RunCapture({"/sbin/ip", "link", "del", opts_.bridge});
  if (PathExists("/sys/class/net/" + opts_.bridge))
    problems.push_back("bridge " + opts_.bridge + " not deleted");
  // The embedded network's shared nat rules stay with its bridge, as the
  // bridge does; a pod's own rules left over are the leak check's.
  if (opts_.network != "cni")
    for (auto& p : RemoveEmbeddedNat(opts_.bridge)) problems.push_back(std::move(p));

  for (const auto& root : CgroupRoots()) {
    std::string parent = root + cgroup_parent_;
    if (!IsDir(parent)) continue;
    for (const auto& sub : SubDirs(parent)) {
      problems.push_back("cgroup " + sub + " left");
      ::rmdir(sub.c_str());
    }
    // A cgroup with a process that is being killed cannot be removed yet.
    for (int i = 0; i < 50 && ::rmdir(parent.c_str()) != 0 && errno == EBUSY; ++i)
      absl::SleepFor(absl::Milliseconds(20));
    if (IsDir(parent)) problems.push_back("cgroup " + parent + " cannot be removed");
  }

  std::vector<MountLine> mounts = Mounts();
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    if (!absl::StrContains(it->line, dir_)) continue;
    problems.push_back("mount " + it->mount_point + " (" + it->fstype + ") left");
    ::umount2(it->mount_point.c_str(), MNT_DETACH);
  }

  // CRISP_E2E_KEEP=1 keeps the temp dir (config, crispd.log) for debugging.
  if (!dir_.empty() && !::getenv("CRISP_E2E_KEEP")) {
    if (auto s = RemoveAll(dir_); !s.ok())
      problems.push_back("removing " + dir_ + ": " + std::string(s.message()));
    if (PathExists(dir_)) problems.push_back(dir_ + " still exists");
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the machine lock
  lock_fd_ = -1;
  if (problems.empty()) return absl::OkStatus();
  return absl::InternalError("tearing down crispd left problems:\n  " + absl::StrJoin(problems, "\n  "));
}

Daemon::~Daemon() { (void)Destroy(); }

std::string Daemon::LogTail(size_t lines) const {
  auto text = ReadFile(dir_ + "/crispd.log");
  if (!text.ok()) return "(no crispd log)";
  std::vector<std::string> all = absl::StrSplit(absl::StripSuffix(*text, "\n"), '\n');
  size_t from = all.size() > lines ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) absl::StrAppend(&out, all[i], "\n");
  return out;
}

std::set<std::string> LeakSnapshot(const Daemon& d) {
  std::set<std::string> out;
  for (const auto& m : Mounts()) {
    // nsfs pins anywhere (e.g. /run/netns) but in other tests' temp dirs.
    bool foreign_tmp =
        absl::StartsWith(m.mount_point, "/tmp/") && !absl::StartsWith(m.mount_point, d.dir() + "/");
    if (absl::StrContains(m.line, d.dir()) || (m.fstype == "nsfs" && !foreign_tmp))
      out.insert("mount " + m.mount_point + " " + m.fstype);
  }
  for (const auto& n : ListOrEmpty("/run/netns")) out.insert("netns " + n);
  // Veths of pods (our bridge itself is created by the first pod and kept
  // for the suite).
  for (const auto& l : PodLinks(d.options().bridge)) out.insert("link " + l);
  for (const auto& root : CgroupRoots())
    for (const auto& sub : SubDirs(root + d.cgroup_parent())) out.insert("cgroup " + sub);
  for (const auto& n : ListOrEmpty(d.ipam_dir())) {
    if (absl::StartsWith(n, "last_reserved_ip") || n == "lock") continue;
    out.insert("ip " + n);
  }
  for (const auto& p : DaemonProcesses(d)) out.insert(p);
  if (d.options().network != "cni") {
    // A pod's host port chain and the jump to it; not the shared rules,
    // which the first pod creates and which stay with the bridge.
    for (const auto& r : EmbeddedNatRules(d.options().bridge))
      if (absl::StrContains(r, "CRISP-HPD-")) out.insert("nat " + r);
  }
  for (const auto& dir :
       {d.root() + "/sandboxes", d.state() + "/sandboxes", d.state() + "/ns", d.root() + "/cni/results",
        d.root() + "/embedded-network", d.root() + "/containers", d.state() + "/containers"})
    for (const auto& n : ListOrEmpty(dir)) out.insert("file " + dir + "/" + n);
  if (d.pid() > 0) out.insert(absl::StrCat("crispd fds ", CountFdsButTcp(d.pid())));
  return out;
}

std::string DiffSnapshots(const std::set<std::string>& before, const std::set<std::string>& after) {
  std::string out;
  for (const auto& a : after)
    if (!before.count(a)) absl::StrAppend(&out, "\n  + ", a);
  for (const auto& b : before)
    if (!after.count(b)) absl::StrAppend(&out, "\n  - ", b);
  return out;
}

nlohmann::json SandboxInfo(CriClient& c, const std::string& id) {
  cri::PodSandboxStatusResponse resp;
  if (!c.PodSandboxStatus(id, &resp, true).ok()) return nullptr;
  auto it = resp.info().find("info");
  if (it == resp.info().end()) return nullptr;
  return nlohmann::json::parse(it->second, nullptr, false);
}

void InNamespace(const std::string& ns_path, int nstype, const std::function<void()>& fn) {
  std::thread t([&] {
    int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << ns_path << ": " << strerror(errno);
    ASSERT_EQ(::setns(fd, nstype), 0) << ns_path << ": " << strerror(errno);
    ::close(fd);
    fn();
  });
  t.join();
}

std::unique_ptr<Daemon> E2eTest::daemon_;

void E2eTest::StartDaemon(DaemonOptions opts) {
  if (::geteuid() != 0) return;
  auto d = Daemon::Start(std::move(opts));
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = std::move(*d);
}

void E2eTest::TearDownTestSuite() {
  if (!daemon_) return;
  absl::Status s = daemon_->Destroy();
  EXPECT_TRUE(s.ok()) << s.message();
  daemon_.reset();
}

void E2eTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "e2e tests need root";
  ASSERT_NE(daemon_, nullptr) << "crispd did not start (see the suite set-up failure)";
  ASSERT_GT(daemon_->pid(), 0) << "crispd is not running";
  before_ = LeakSnapshot(*daemon_);
  before_pid_ = daemon_->pid();
}

void E2eTest::TearDown() {
  if (!daemon_ || ::geteuid() != 0 || IsSkipped()) return;
  // crispd must have survived the test (a crash would also explain leaks).
  if (auto alive = daemon_->CheckAlive(); !alive.ok()) {
    ADD_FAILURE() << alive.message() << " during the test";
    // Start it again so that the suite's next tests can run.
    if (auto s = daemon_->Launch(); !s.ok()) ADD_FAILURE() << "restarting crispd: " << s.message();
  }
  if (daemon_->pid() != before_pid_) {
    // crispd was restarted by the test: its fd count is not comparable.
    std::erase_if(before_, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
  }
  // Named netns and nsfs mounts outside our temp dir cannot be attributed to
  // this daemon (crispd pins under its state dir, inside ours): one that
  // appeared is reported, one that went away belonged to something else
  // running on the machine (e.g. the netcni integration tests' /run/netns/*).
  const std::string dir = daemon_->dir();
  auto judge = [&](std::set<std::string> after) {
    if (daemon_->pid() != before_pid_)
      std::erase_if(after, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
    std::set<std::string> before = before_;
    // Fewer crispd fds after than before is no leak: crispd's background
    // threads (layer sync, trash deletion, stats) hold an fd for a moment,
    // and the "before" count may have caught one.
    auto fds = [](const std::set<std::string>& snap) -> long {
      for (const auto& e : snap)
        if (absl::StartsWith(e, "crispd fds ")) return std::atol(e.c_str() + 11);
      return -1;
    };
    if (fds(after) >= 0 && fds(after) <= fds(before)) {
      std::erase_if(after, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
      std::erase_if(before, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
    }
    std::erase_if(before, [&](const std::string& e) {
      bool global =
          absl::StartsWith(e, "netns ") || (absl::StartsWith(e, "mount ") && !absl::StrContains(e, dir));
      return global && !after.count(e);
    });
    return DiffSnapshots(before, after);
  };
  std::string diff;
  // Let asynchronous exits (reaping, fd closes) settle before judging.
  for (int i = 0; i < 20; ++i) {
    diff = judge(LeakSnapshot(*daemon_));
    if (diff.empty()) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(diff.empty()) << "leak check: the test left behind (+) or removed (-):" << diff;
  if (HasFailure())
    std::cerr << "---- tail of " << daemon_->dir() << "/crispd.log ----\n" << daemon_->LogTail();
}

std::string CrispdPath() { return CRISPD_PATH; }

}  // namespace crisp::e2e
