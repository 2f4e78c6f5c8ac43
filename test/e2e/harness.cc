#include "test/e2e/harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/reaper.h"
#include "common/status.h"

namespace crisp::e2e {

std::string DefaultConflist(const std::string& ipam_dir) {
  nlohmann::json j = {
      {"cniVersion", "1.0.0"},
      {"name", "crisp-e2e"},
      {"plugins",
       {{{"type", "bridge"},
         {"bridge", "crispe2e0"},
         {"isGateway", true},
         {"ipMasq", false},
         {"hairpinMode", true},
         {"ipam",
          {{"type", "host-local"},
           {"dataDir", ipam_dir.substr(0, ipam_dir.find_last_of('/'))},
           {"ranges", {{{{"subnet", "10.88.0.0/16"}}}}},
           {"routes", {{{"dst", "0.0.0.0/0"}}}}}}},
        {{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}},
        {{"type", "loopback"}}}}};
  return j.dump(2);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions opts) {
  static bool reaper = [] { return Reaper::InstallSubreaper().ok(); }();
  if (!reaper) return absl::InternalError("cannot become a child subreaper");
  auto d = std::unique_ptr<Daemon>(new Daemon());
  d->opts_ = std::move(opts);
  char t[] = "/tmp/crisp-e2e.XXXXXX";
  if (!::mkdtemp(t)) return ErrnoStatus(errno, "mkdtemp");
  d->dir_ = t;
  d->cgroup_parent_ = "/crisp-e2e-" + RandomHex(4);
  d->socket_ = d->dir_ + "/crisp.sock";
  RETURN_IF_ERROR(MkdirAll(d->conf_dir()));
  RETURN_IF_ERROR(MkdirAll(d->ipam_dir()));
  if (d->opts_.write_conflist) {
    std::string cl = d->opts_.conflist_json.empty() ? DefaultConflist(d->ipam_dir()) : d->opts_.conflist_json;
    RETURN_IF_ERROR(WriteFileAtomic(d->conf_dir() + "/10-e2e.conflist", cl));
  }
  std::string bins;
  for (const auto& b : d->opts_.bin_dirs) absl::StrAppend(&bins, bins.empty() ? "" : ", ", b);
  std::string yaml = absl::StrCat("log_level: ", d->opts_.log_level, "\ncgroup_parent: ", d->cgroup_parent_,
                                  "\ncni:\n  conf_dir: ", d->conf_dir(), "\n  bin_dirs: [", bins,
                                  "]\n  plugin_timeout: 30s\n", d->opts_.extra_yaml);
  RETURN_IF_ERROR(WriteFileAtomic(d->dir_ + "/crisp.yaml", yaml));
  RETURN_IF_ERROR(d->Launch());
  return d;
}

absl::Status Daemon::Launch() {
  int log = ::open((dir_ + "/crispd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoStatus(errno, "opening crispd.log");
  auto pid = Reaper::Spawn({.argv = {opts_.crispd_path.empty() ? CrispdPath() : opts_.crispd_path, "--config",
                                     dir_ + "/crisp.yaml", "--socket", socket_, "--root", root(), "--state", state()},
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
  for (int i = 0; i < 200; ++i) {
    if (accepting()) {
      if (!client_) client_ = std::make_unique<CriClient>("unix://" + socket_);
      cri::VersionRequest req;
      cri::VersionResponse resp;
      if (client_->Runtime(&cri::RuntimeService::Stub::Version, req, &resp, 2).ok()) return absl::OkStatus();
    }
    auto exited = Reaper::Wait(pid_, absl::Milliseconds(25));
    if (exited.ok()) {
      pid_ = 0;
      return absl::InternalError(
          absl::StrCat("crispd exited at start (", DescribeWaitStatus(*exited), "):\n", LogTail()));
    }
  }
  return absl::DeadlineExceededError("crispd did not serve within 5 s:\n" + LogTail());
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
  if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0)
    return absl::InternalError("crispd exited with " + DescribeWaitStatus(*st));
  return absl::OkStatus();
}

Daemon::~Daemon() {
  // A failed test may have left pods behind (its leak check already said so):
  // remove them so that they do not pollute the machine and later tests.
  if (client_ && pid_ > 0) {
    cri::ListPodSandboxResponse pods;
    if (client_->ListPodSandbox({}, &pods).ok()) {
      for (const auto& p : pods.items()) (void)client_->RemovePodSandbox(p.id());
    }
  }
  (void)Shutdown();
  (void)Kill();
  auto run = [](std::vector<std::string> argv) {
    auto p = Reaper::Spawn({.argv = std::move(argv)});
    if (p.ok()) (void)Reaper::Wait(*p, absl::Seconds(10));
  };
  run({"/sbin/ip", "link", "del", "crispe2e0"});
  auto ctrls = ListDir("/sys/fs/cgroup");
  for (const auto& c : ctrls.value_or(std::vector<std::string>{})) ::rmdir(("/sys/fs/cgroup/" + c + cgroup_parent_).c_str());
  ::rmdir(("/sys/fs/cgroup/unified" + cgroup_parent_).c_str());
  // CRISP_E2E_KEEP=1 keeps the temp dir (config, crispd.log) for debugging.
  if (!dir_.empty() && !::getenv("CRISP_E2E_KEEP")) (void)RemoveAll(dir_);
}

std::string Daemon::LogTail(size_t lines) const {
  auto text = ReadFile(dir_ + "/crispd.log");
  if (!text.ok()) return "(no crispd log)";
  std::vector<std::string> all = absl::StrSplit(*text, '\n');
  size_t from = all.size() > lines ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) absl::StrAppend(&out, all[i], "\n");
  return out;
}

namespace {

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

}  // namespace

std::set<std::string> LeakSnapshot(const Daemon& d) {
  std::set<std::string> out;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && (absl::StrContains(f[4], d.dir()) || absl::StrContains(line, " - nsfs ")))
      out.insert("mount " + f[4]);
  }
  for (const auto& n : ListDir("/run/netns").value_or(std::vector<std::string>{})) out.insert("netns " + n);
  for (absl::string_view l : absl::StrSplit(RunCapture({"/sbin/ip", "-o", "link", "show"}), '\n')) {
    std::vector<std::string> f = absl::StrSplit(l, ": ");
    if (f.size() < 2) continue;
    std::string name = f[1].substr(0, f[1].find('@'));
    if (absl::StartsWith(name, "veth")) out.insert("link " + name);
  }
  for (const auto& c : ListDir("/sys/fs/cgroup").value_or(std::vector<std::string>{})) {
    std::string dir = "/sys/fs/cgroup/" + c + d.cgroup_parent();
    for (const auto& n : ListDir(dir).value_or(std::vector<std::string>{})) {
      struct stat st;
      if (::stat((dir + "/" + n).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.insert("cgroup " + dir + "/" + n);
    }
  }
  for (const auto& n : ListDir(d.ipam_dir()).value_or(std::vector<std::string>{})) {
    if (absl::StartsWith(n, "last_reserved_ip") || n == "lock") continue;
    out.insert("ip " + n);
  }
  for (const auto& p : ListDir("/proc").value_or(std::vector<std::string>{})) {
    if (p.find_first_not_of("0123456789") != std::string::npos) continue;
    auto comm = ReadFile("/proc/" + p + "/comm");
    auto cmd = ReadFile("/proc/" + p + "/cmdline");
    if ((comm.ok() && *comm == "crisp-pause\n") || (cmd.ok() && absl::StrContains(*cmd, "crisp-shim")))
      out.insert("process " + p + " " + (comm.ok() ? std::string(absl::StripAsciiWhitespace(*comm)) : ""));
  }
  for (const auto& dir : {d.root() + "/sandboxes", d.state() + "/sandboxes", d.state() + "/ns", d.root() + "/cni/results"})
    for (const auto& n : ListDir(dir).value_or(std::vector<std::string>{})) out.insert("file " + dir + "/" + n);
  if (d.pid() > 0) {
    auto fds = ListDir(absl::StrCat("/proc/", d.pid(), "/fd"));
    out.insert(absl::StrCat("crispd fds ", fds.ok() ? fds->size() : 0));
  }
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
    ASSERT_GE(fd, 0) << ns_path;
    ASSERT_EQ(::unshare(CLONE_FS), 0);
    ASSERT_EQ(::setns(fd, nstype), 0) << ns_path;
    ::close(fd);
    fn();
  });
  t.join();
}

std::unique_ptr<Daemon> E2eTest::daemon_;

DaemonOptions E2eTest::Options() { return DaemonOptions{}; }

void E2eTest::SetUpTestSuite() {
  if (::geteuid() != 0) return;
  auto d = Daemon::Start(Options());
  ASSERT_TRUE(d.ok()) << d.status();
  daemon_ = std::move(*d);
}

void E2eTest::TearDownTestSuite() { daemon_.reset(); }

void E2eTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "e2e tests need root";
  ASSERT_NE(daemon_, nullptr);
  before_ = LeakSnapshot(*daemon_);
  before_pid_ = daemon_->pid();
}

void E2eTest::TearDown() {
  if (!daemon_ || ::geteuid() != 0) return;
  std::set<std::string> after;
  // Let asynchronous exits (reaping, fd closes) settle before judging.
  for (int i = 0; i < 20; ++i) {
    after = LeakSnapshot(*daemon_);
    if (after == before_) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (daemon_->pid() != before_pid_) {
    // crispd was restarted by the test: its fd count is not comparable.
    std::erase_if(before_, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
    std::erase_if(after, [](const std::string& e) { return absl::StartsWith(e, "crispd fds"); });
  }
  std::string leaked, gone;
  for (const auto& a : after)
    if (!before_.count(a)) absl::StrAppend(&leaked, "\n  + ", a);
  for (const auto& b : before_)
    if (!after.count(b)) absl::StrAppend(&gone, "\n  - ", b);
  EXPECT_TRUE(leaked.empty() && gone.empty()) << "leak check: the test left behind:" << leaked
                                              << "\nand these changed/vanished:" << gone << "\ncrispd log tail:\n"
                                              << daemon_->LogTail();
}

std::string CrispdPath() { return CRISPD_PATH; }

}  // namespace crisp::e2e
