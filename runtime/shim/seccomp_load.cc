#include "runtime/shim/seccomp_load.h"

#include <seccomp.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace crisp::runtime {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterCtx = std::unique_ptr<void, CtxDeleter>;

bool Fail(std::string* error, const std::string& what, int negative_errno = 0) {
  if (error != nullptr) {
    *error = what;
    if (negative_errno != 0) *error += std::string(": ") + std::strerror(-negative_errno);
  }
  return false;
}

// The libseccomp action value, or false for an action it cannot express.
bool ToScmpAction(SeccompAction action, const std::optional<uint32_t>& errno_ret, uint32_t* out) {
  // runc's defaults: a bare ERRNO / TRACE means EPERM.
  const uint32_t data = errno_ret.value_or(EPERM);
  switch (action) {
    case SeccompAction::kKill:
    case SeccompAction::kKillThread:
      *out = SCMP_ACT_KILL_THREAD;
      return true;
    case SeccompAction::kKillProcess:
      *out = SCMP_ACT_KILL_PROCESS;
      return true;
    case SeccompAction::kTrap:
      *out = SCMP_ACT_TRAP;
      return true;
    case SeccompAction::kErrno:
      *out = SCMP_ACT_ERRNO(data);
      return true;
    case SeccompAction::kTrace:
      *out = SCMP_ACT_TRACE(data);
      return true;
    case SeccompAction::kAllow:
      *out = SCMP_ACT_ALLOW;
      return true;
    case SeccompAction::kLog:
      *out = SCMP_ACT_LOG;
      return true;
  }
  return false;
}

enum scmp_compare ToScmpOp(SeccompOp op) {
  switch (op) {
    case SeccompOp::kNotEqual:
      return SCMP_CMP_NE;
    case SeccompOp::kLessThan:
      return SCMP_CMP_LT;
    case SeccompOp::kLessEqual:
      return SCMP_CMP_LE;
    case SeccompOp::kEqualTo:
      return SCMP_CMP_EQ;
    case SeccompOp::kGreaterEqual:
      return SCMP_CMP_GE;
    case SeccompOp::kGreaterThan:
      return SCMP_CMP_GT;
    case SeccompOp::kMaskedEqual:
      return SCMP_CMP_MASKED_EQ;
  }
  return _SCMP_CMP_MIN;  // invalid: libseccomp rejects it with EINVAL
}

// "SCMP_ARCH_X86_64" -> libseccomp's token via its own name ("x86_64"), so
// that whatever this libseccomp supports is accepted and nothing else.
uint32_t ArchToken(const std::string& oci_name) {
  constexpr char kPrefix[] = "SCMP_ARCH_";
  if (oci_name.rfind(kPrefix, 0) != 0) return 0;
  std::string name = oci_name.substr(sizeof(kPrefix) - 1);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return seccomp_arch_resolve_name(name.c_str());
}

bool SetFlag(scmp_filter_ctx ctx, const std::string& flag, std::string* error) {
  enum scmp_filter_attr attr;
  if (flag == "SECCOMP_FILTER_FLAG_TSYNC") {
    attr = SCMP_FLTATR_CTL_TSYNC;
  } else if (flag == "SECCOMP_FILTER_FLAG_LOG") {
    attr = SCMP_FLTATR_CTL_LOG;
  } else if (flag == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
    attr = SCMP_FLTATR_CTL_SSB;
  } else {
    // WAIT_KILLABLE_RECV only matters with a notify listener, which crisp
    // never installs; libseccomp < 2.6 cannot set it anyway.
    return Fail(error, "seccomp flag " + flag + " is not supported");
  }
  int rc = seccomp_attr_set(ctx, attr, 1);
  if (rc < 0) return Fail(error, "seccomp flag " + flag, rc);
  return true;
}

// Adds one rule for `nr`, OR'ing conditions on a repeated argument index
// by giving each its own rule (libseccomp would AND them, which for the
// same argument is rarely what a profile means; runc does the same).
int AddRule(scmp_filter_ctx ctx, uint32_t action, int nr, const std::vector<SeccompArg>& args) {
  std::vector<scmp_arg_cmp> cmps;
  cmps.reserve(args.size());
  bool repeated_index = false;
  unsigned seen = 0;
  for (const SeccompArg& a : args) {
    if (a.index > 5) return -EINVAL;
    if (seen & (1u << a.index)) repeated_index = true;
    seen |= 1u << a.index;
    cmps.push_back(scmp_arg_cmp{a.index, ToScmpOp(a.op), a.value, a.value_two});
  }
  if (!repeated_index) {
    return seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(cmps.size()), cmps.data());
  }
  for (const scmp_arg_cmp& c : cmps) {
    int rc = seccomp_rule_add_array(ctx, action, nr, 1, &c);
    if (rc < 0) return rc;
  }
  return 0;
}

}  // namespace

bool LoadSeccompProfile(const SeccompProfile& profile, std::string* error) {
  uint32_t default_action = 0;
  if (!ToScmpAction(profile.default_action, profile.default_errno_ret, &default_action))
    return Fail(error, "seccomp: invalid default action");
  FilterCtx ctx(seccomp_init(default_action));
  if (!ctx)
    return Fail(error, std::string("seccomp_init(") + SeccompActionName(profile.default_action) + ") failed");

  // no_new_privs is the caller's decision (see the contract); libseccomp
  // would otherwise set it behind our back.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return Fail(error, "seccomp: clearing SCMP_FLTATR_CTL_NNP", rc);
  // Report the kernel's errno from seccomp_load instead of ECANCELED. Older
  // libseccomp lacks the attribute; the message is then just less precise.
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_API_SYSRAWRC, 1);

  for (const std::string& arch : profile.architectures) {
    uint32_t token = ArchToken(arch);
    if (token == 0)
      return Fail(error, "seccomp: architecture " + arch + " is not supported by this libseccomp");
    rc = seccomp_arch_add(ctx.get(), token);
    // EEXIST: the native architecture, which seccomp_init added already.
    if (rc < 0 && rc != -EEXIST) return Fail(error, "seccomp: adding architecture " + arch, rc);
  }
  for (const std::string& flag : profile.flags)
    if (!SetFlag(ctx.get(), flag, error)) return false;

  for (const SeccompSyscall& s : profile.syscalls) {
    uint32_t action = 0;
    if (!ToScmpAction(s.action, s.errno_ret, &action)) return Fail(error, "seccomp: invalid action");
    // libseccomp refuses (EACCES) a rule that repeats the default action.
    if (action == default_action) continue;
    for (const std::string& name : s.names) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      // Unknown to this libseccomp (newer than it): nothing to filter.
      if (nr == __NR_SCMP_ERROR) continue;
      rc = AddRule(ctx.get(), action, nr, s.args);
      if (rc < 0)
        return Fail(error,
                    std::string("seccomp: adding rule ") + SeccompActionName(s.action) + " for " + name, rc);
    }
  }

  rc = seccomp_load(ctx.get());
  if (rc < 0) return Fail(error, "seccomp_load", rc);
  return true;
}

}  // namespace crisp::runtime
