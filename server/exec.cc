// ExecSync, Exec, Attach and PortForward: commands in running containers and
// the streaming sessions behind the URLs that kubelet and crictl connect to.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/status.h"
#include "netcni/cni.h"
#include "runtime/exec_shim.h"
#include "server/cri_service.h"
#include "server/streaming/streaming.h"

namespace crisp::server {
namespace {

// Each ExecSync stream is read up to 16 MiB (the rest is dropped as it
// comes). The response must also fit in one gRPC message of kubelet's (and
// our) 16 MiB limit, so together they keep what fits: stderr first (up to
// half), stdout the rest.
constexpr size_t kMaxExecSyncStream = 16 << 20;
constexpr size_t kMaxExecSyncResponse = (16 << 20) - 1024;

// What kubelet's own streaming runtime checks before handing out a URL.
absl::Status ValidateStreams(bool in, bool out, bool err, bool tty) {
  if (!in && !out && !err) return absl::InvalidArgumentError("one of stdin, stdout, or stderr must be set");
  if (tty && err) return absl::InvalidArgumentError("tty and stderr cannot both be true");
  return absl::OkStatus();
}

// Connects to the container shim's attach.sock. The path goes through
// /proc/self/fd/<dirfd> so that a long state dir never hits sun_path's limit.
absl::StatusOr<UniqueFd> ConnectAttach(const std::string& shim_dir) {
  UniqueFd dir(::open(shim_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoStatus(errno, "opening " + shim_dir);
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoStatus(errno, "socket");
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::string path = absl::StrCat("/proc/self/fd/", dir.get(), "/attach.sock");
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return ErrnoStatus(errno, "connecting to the container's attach socket");
  return s;
}

}  // namespace

absl::Status CriService::StartStreaming() {
  streaming::ServerOptions o;
  o.address = config_.streaming.address;
  o.port = static_cast<uint16_t>(config_.streaming.port);
  o.tls_cert_file = config_.streaming.tls_cert_file;
  o.tls_key_file = config_.streaming.tls_key_file;
  o.idle_timeout = config_.streaming.idle_timeout;
  ASSIGN_OR_RETURN(streaming_, streaming::Server::Start(o));
  Logger("server")->info("streaming server on {}{}", streaming_->Endpoint(), o.tls_cert_file.empty() ? "" : " (TLS)");
  return absl::OkStatus();
}

absl::Status CriService::Exec(const cri::ExecRequest& req, cri::ExecResponse* resp) {
  RETURN_IF_ERROR(ValidateStreams(req.stdin(), req.stdout(), req.stderr(), req.tty()));
  ASSIGN_OR_RETURN(runtime::ContainerPlan plan, ExecPlan(req.container_id(), req.cmd(), req.tty(), req.stdin()));
  streaming::RemoteCommandSession session;
  session.options = {req.stdin(), req.stdout(), req.stderr() && !req.tty(), req.tty()};
  // The command starts when the client has connected, not now.
  session.open = [shim = config_.shim_path, plan = std::move(plan)]() { return runtime::StartExec(shim, plan); };
  ASSIGN_OR_RETURN(std::string url, streaming_->AddExec(std::move(session)));
  resp->set_url(url);
  return absl::OkStatus();
}

absl::Status CriService::Attach(const cri::AttachRequest& req, cri::AttachResponse* resp) {
  if (req.container_id().empty()) return absl::InvalidArgumentError("container_id is required");
  RETURN_IF_ERROR(ValidateStreams(req.stdin(), req.stdout(), req.stderr(), req.tty()));
  ASSIGN_OR_RETURN(auto e, container_store_.Find(req.container_id()));
  auto c = e->Snapshot();
  if (c->state != cri::CONTAINER_RUNNING || !ProcessAlive(c->pid))
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  // The container decides whether there is a terminal (one output stream) and
  // whether there is a stdin to write to, whatever the client assumed.
  bool tty = c->config.tty();
  streaming::RemoteCommandSession session;
  session.options = {req.stdin() && c->config.stdin(), req.stdout(), req.stderr() && !tty, tty};
  session.open = [dir = c->shim_dir]() { return ConnectAttach(dir); };
  ASSIGN_OR_RETURN(std::string url, streaming_->AddAttach(std::move(session)));
  resp->set_url(url);
  return absl::OkStatus();
}

absl::Status CriService::PortForward(const cri::PortForwardRequest& req, cri::PortForwardResponse* resp) {
  if (req.pod_sandbox_id().empty()) return absl::InvalidArgumentError("pod_sandbox_id is required");
  streaming::PortForwardSession session;
  for (int32_t p : req.port()) {
    if (p <= 0 || p > 65535) return absl::InvalidArgumentError(absl::StrCat("invalid port ", p));
    session.ports.push_back(static_cast<uint16_t>(p));
  }
  ASSIGN_OR_RETURN(auto e, sandbox_store_.Find(req.pod_sandbox_id()));
  auto sb = e->Snapshot();
  if (sb->state != podsandbox::SandboxState::kReady)
    return absl::FailedPreconditionError(absl::StrCat("pod sandbox ", sb->id, " is not ready"));
  // Host-network pods: localhost in crispd's own namespace.
  std::string netns = sb->host_network ? "" : sb->netns_path();
  if (!sb->host_network && netns.empty())
    return absl::FailedPreconditionError(absl::StrCat("pod sandbox ", sb->id, " has no network namespace"));
  session.dial = [netns](uint16_t port) { return netcni::DialLocalhost(netns, port); };
  ASSIGN_OR_RETURN(std::string url, streaming_->AddPortForward(std::move(session)));
  resp->set_url(url);
  return absl::OkStatus();
}

// The plan for running `cmd` in the running container `id`: the container's
// own plan (user, capabilities, seccomp, env, cwd, cgroups) with the command,
// its stdio and the container process to join.
absl::StatusOr<runtime::ContainerPlan> CriService::ExecPlan(const std::string& id,
                                                              const google::protobuf::RepeatedPtrField<std::string>& cmd,
                                                              bool tty, bool stdin) {
  if (id.empty()) return absl::InvalidArgumentError("container_id is required");
  if (cmd.empty()) return absl::InvalidArgumentError("cmd is required: the command to run in the container");
  ASSIGN_OR_RETURN(auto e, container_store_.Find(id));
  auto c = e->Snapshot();
  if (c->state != cri::CONTAINER_RUNNING || !ProcessAlive(c->pid))
    return absl::FailedPreconditionError(absl::StrCat("container ", c->id, " is not running"));
  auto plan = runtime::ParseContainerPlan(c->plan_json);
  if (!plan) return absl::InternalError(absl::StrCat("container ", c->id, ": its recorded plan cannot be read"));
  plan->args.assign(cmd.begin(), cmd.end());
  plan->tty = tty;
  plan->stdin_open = stdin;
  plan->stdin_once = false;
  plan->exec_pid = c->pid.pid;
  plan->log_path.clear();
  return *plan;
}

absl::Status CriService::ExecSync(const cri::ExecSyncRequest& req, cri::ExecSyncResponse* resp) {
  if (req.timeout() < 0) return absl::InvalidArgumentError("timeout must not be negative");
  ASSIGN_OR_RETURN(runtime::ContainerPlan plan, ExecPlan(req.container_id(), req.cmd(), false, false));
  std::optional<absl::Duration> timeout;
  if (req.timeout() > 0) timeout = absl::Seconds(req.timeout());
  ASSIGN_OR_RETURN(runtime::ExecSyncResult r,
                   runtime::ExecSync(config_.shim_path, plan, timeout, kMaxExecSyncStream));
  r.stderr.resize(std::min(r.stderr.size(), kMaxExecSyncResponse / 2));
  r.stdout.resize(std::min(r.stdout.size(), kMaxExecSyncResponse - r.stderr.size()));
  resp->set_stdout(std::move(r.stdout));
  resp->set_stderr(std::move(r.stderr));
  resp->set_exit_code(r.exit_code);
  return absl::OkStatus();
}

}  // namespace crisp::server
