#include "runtime/container_shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/reaper.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "runtime/shim_spawn.h"

namespace crisp::runtime {
namespace {

constexpr int kCreateTimeoutMs = 10000;

// Turns a shim error report {"error","step","errno"} into a Status.
absl::Status ReportStatus(const nlohmann::json& rep, const std::string& what) {
  int err = rep.value("errno", 0);
  std::string step = rep.value("step", std::string("?"));
  std::string msg = absl::StrCat(what, ": ", step, ": ", rep.value("error", std::string("")),
                                 err ? absl::StrCat(" (errno ", err, ")") : "");
  bool bad_input = absl::StrContains(step, "resolving the user") || absl::StrContains(step, "seccomp profile") ||
                   absl::StartsWith(step, "chdir to the working directory") ||
                   absl::StartsWith(step, "executable file");
  if (bad_input) return absl::InvalidArgumentError(msg);
  if (err == EALREADY) return absl::FailedPreconditionError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::string> Recv(int fd, int timeout_ms, const std::string& what) {
  struct pollfd p = {fd, POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  if (r == 0) return absl::DeadlineExceededError(absl::StrCat(what, ": no answer from crisp-shim within ", timeout_ms / 1000, "s"));
  std::string buf(1 << 16, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n <= 0) return absl::UnavailableError(absl::StrCat(what, ": crisp-shim closed the connection"));
  buf.resize(static_cast<size_t>(n));
  return buf;
}

absl::StatusOr<nlohmann::json> Request(const std::string& shim_dir, const nlohmann::json& req, int timeout_ms,
                                       const std::string& what) {
  std::string path = shim_dir + "/ctl.sock";
  // Through /proc/self/fd/<dir>: the full path may not fit sun_path.
  UniqueFd dir(::open(shim_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return absl::UnavailableError(absl::StrCat(what, ": the shim dir ", shim_dir, ": ", std::strerror(errno)));
  std::string short_path = absl::StrCat("/proc/self/fd/", dir.get(), "/ctl.sock");
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, short_path.c_str(), short_path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return absl::UnavailableError(absl::StrCat(what, ": connecting to crisp-shim at ", path, ": ", std::strerror(errno)));
  std::string body = req.dump();
  if (::send(fd.get(), body.data(), body.size(), MSG_NOSIGNAL) < 0) return ErrnoStatus(errno, what + ": send");
  ASSIGN_OR_RETURN(std::string text, Recv(fd.get(), timeout_ms, what));
  nlohmann::json rep = nlohmann::json::parse(text, nullptr, false);
  if (!rep.is_object()) return absl::InternalError(what + ": malformed answer from crisp-shim");
  if (rep.contains("error")) return ReportStatus(rep, what);
  return rep;
}

}  // namespace

absl::StatusOr<ShimProcesses> StartContainerShim(const std::string& shim_path, const ContainerPlan& plan) {
  auto text = RunShimForReport(shim_path, "container", ContainerPlanToJson(plan), kCreateTimeoutMs);
  if (!text.ok()) return Annotate(text.status(), "creating the container");
  nlohmann::json rep = nlohmann::json::parse(*text, nullptr, false);
  if (!rep.is_object()) return absl::InternalError("crisp-shim sent a malformed report");
  if (rep.contains("error")) return ReportStatus(rep, "creating the container");
  int pid = rep.value("pid", 0), shim_pid = rep.value("shim_pid", 0);
  if (pid <= 0 || shim_pid <= 0) return absl::InternalError("crisp-shim reported no pid");
  ShimProcesses out;
  auto cst = ProcStartTime(pid);
  auto sst = ProcStartTime(shim_pid);
  if (!cst.ok() || !sst.ok()) return absl::InternalError("the container or its shim vanished right after creation");
  out.container = {pid, *cst};
  out.shim = {shim_pid, *sst};
  if (rep.contains("user") && rep["user"].is_object()) {
    const nlohmann::json& u = rep["user"];
    out.uid = u.value("uid", 0u);
    out.gid = u.value("gid", 0u);
    out.groups = u.value("groups", std::vector<uint32_t>{});
  }
  return out;
}

absl::StatusOr<int64_t> ShimStart(const std::string& shim_dir) {
  ASSIGN_OR_RETURN(nlohmann::json rep, Request(shim_dir, {{"op", "start"}}, 10000, "starting the container"));
  return rep.value("started_at", int64_t{0});
}

absl::Status ShimResize(const std::string& shim_dir, int width, int height) {
  return Request(shim_dir, {{"op", "resize"}, {"width", width}, {"height", height}}, 5000, "resizing the terminal")
      .status();
}

absl::Status ShimReopenLog(const std::string& shim_dir) {
  return Request(shim_dir, {{"op", "reopen"}}, 5000, "reopening the container log").status();
}

absl::StatusOr<ExitRecord> ReadShimExit(const std::string& shim_dir) {
  std::string path = shim_dir + "/exit.json";
  if (::access(path.c_str(), F_OK) != 0) return absl::NotFoundError(path + " does not exist");
  ExitRecord rec;
  std::string error;
  if (!ReadExitRecord(path, &rec, &error)) return absl::DataLossError(absl::StrCat(path, ": ", error));
  return rec;
}

}  // namespace crisp::runtime
