// ExecSync, Exec, Attach and PortForward: commands in running containers and
// the streaming sessions behind the URLs that kubelet and crictl connect to.
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/status.h"
#include "runtime/exec_shim.h"
#include "server/cri_service.h"

namespace crisp::server {
namespace {

// Each ExecSync stream is read up to 16 MiB (the rest is dropped as it
// comes). The response must also fit in one gRPC message of kubelet's (and
// our) 16 MiB limit, so together they keep what fits: stderr first (up to
// half), stdout the rest.
constexpr size_t kMaxExecSyncStream = 16 << 20;
constexpr size_t kMaxExecSyncResponse = (16 << 20) - 1024;

}  // namespace

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
