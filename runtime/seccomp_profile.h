#pragma once
// The OCI runtime-spec `linux.seccomp` object as plain structs, its JSON wire
// form (crispd -> crisp-shim), a parser for user profiles (OCI format and
// Docker's conditional format), and crisp's RuntimeDefault profile.
//
// Free of absl/spdlog/protobuf/gRPC: crisp-shim links this. Nothing here
// throws; errors come back as `false` plus a message in `*error`.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crisp::runtime {

// What the kernel does when a rule (or the default) matches. Names on the
// wire are the OCI ones ("SCMP_ACT_ERRNO", ...). SCMP_ACT_NOTIFY is not
// modelled: crisp has no seccomp agent, so profiles using it are rejected.
enum class SeccompAction {
  kKill,         // SCMP_ACT_KILL (same as kKillThread in the kernel)
  kKillProcess,  // SCMP_ACT_KILL_PROCESS
  kKillThread,   // SCMP_ACT_KILL_THREAD
  kTrap,         // SCMP_ACT_TRAP: SIGSYS
  kErrno,        // SCMP_ACT_ERRNO: fail with errnoRet (EPERM if unset)
  kTrace,        // SCMP_ACT_TRACE: notify a ptracer with errnoRet (EPERM if unset)
  kAllow,        // SCMP_ACT_ALLOW
  kLog,          // SCMP_ACT_LOG: allow and audit-log
};

// Argument comparison operators (OCI "SCMP_CMP_*").
enum class SeccompOp {
  kNotEqual,      // SCMP_CMP_NE
  kLessThan,      // SCMP_CMP_LT
  kLessEqual,     // SCMP_CMP_LE
  kEqualTo,       // SCMP_CMP_EQ
  kGreaterEqual,  // SCMP_CMP_GE
  kGreaterThan,   // SCMP_CMP_GT
  kMaskedEqual,   // SCMP_CMP_MASKED_EQ: (arg & value) == value_two
};

// One condition on a syscall argument: arg[index] <op> value.
struct SeccompArg {
  uint32_t index = 0;  // 0..5
  uint64_t value = 0;
  uint64_t value_two = 0;  // only used by kMaskedEqual
  SeccompOp op = SeccompOp::kEqualTo;

  bool operator==(const SeccompArg&) const = default;
};

// `action` applies to a call of any of `names` when every arg condition
// holds (runc semantics: when two conditions name the same argument index,
// each becomes its own rule, i.e. they are OR'ed instead).
struct SeccompSyscall {
  std::vector<std::string> names;  // never empty in a parsed profile
  SeccompAction action = SeccompAction::kAllow;
  // Meaningful for kErrno and kTrace only; kept (and ignored) for the other
  // actions, as runc does, so that profiles written for runc still load.
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;

  bool operator==(const SeccompSyscall&) const = default;
};

struct SeccompProfile {
  SeccompAction default_action = SeccompAction::kErrno;
  std::optional<uint32_t> default_errno_ret;
  // OCI names ("SCMP_ARCH_X86_64"). Empty: the native architecture only.
  std::vector<std::string> architectures;
  // OCI names ("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", ...).
  std::vector<std::string> flags;
  std::vector<SeccompSyscall> syscalls;

  bool operator==(const SeccompProfile&) const = default;
};

// The container and host facts that Docker-format rules are conditional on.
struct SeccompConditions {
  // Capabilities of the container, "CAP_SYS_ADMIN" style ("SYS_ADMIN" is
  // accepted too). Docker checks the bounding set; crisp passes the set the
  // container process ends up with. "ALL" is not expanded here.
  std::vector<std::string> capabilities;
  // Host architecture in `uname -m` spelling ("x86_64", "aarch64", ...).
  // Matched against Docker's `arches` lists, which use Go spellings
  // ("amd64", "arm64"), and used to pick the `archMap` entry.
  std::string arch = "";  // empty: the architecture crisp was built for
  // Host kernel "<major>.<minor>" for `minKernel`; a negative major: uname().
  int kernel_major = -1;
  int kernel_minor = 0;
};

// OCI spelling of an action / operator ("SCMP_ACT_ERRNO", "SCMP_CMP_EQ").
const char* SeccompActionName(SeccompAction action);
const char* SeccompOpName(SeccompOp op);

// `uname -m` spelling of the architecture crisp was built for ("x86_64").
const char* NativeSeccompArch();

// Parses a user-supplied profile (a Localhost profile file) into `*out`.
// Accepts the OCI runtime-spec `linux.seccomp` object and Docker's profile
// format: `archMap` is reduced to the host architecture and its
// sub-architectures, a rule's `includes` (all must hold) and `excludes` (any
// excludes) on `caps`/`arches`/`minKernel` are evaluated against
// `conditions`, and the legacy single `name` is accepted. Validates every
// action, operator, architecture and flag name, argument index (0..5),
// number range and that each rule names at least one syscall. Unknown
// *syscall* names are not an error (they are skipped at load time, as runc
// does). On failure returns false, leaves `*out` unspecified and puts a
// message naming the offending field ("syscalls[2].args[0].op: unknown
// operator \"SCMP_CMP_FOO\"") in `*error`.
bool ParseOciSeccompProfile(const std::string& json, const SeccompConditions& conditions, SeccompProfile* out,
                            std::string* error);
// Same with no capabilities and the host's architecture and kernel, i.e. the
// most restrictive reading of a Docker-format profile.
bool ParseOciSeccompProfile(const std::string& json, SeccompProfile* out, std::string* error);

// Wire form (crispd -> crisp-shim): the OCI JSON object, with conditionals
// already resolved. Deterministic; SeccompProfileFromJson(SeccompProfileToJson(p))
// == p for any profile whose names are valid.
std::string SeccompProfileToJson(const SeccompProfile& profile);
// Strict inverse of SeccompProfileToJson: the OCI format only (Docker's
// conditional fields are rejected, since the shim must not re-evaluate them).
// Same validation and error reporting as ParseOciSeccompProfile.
bool SeccompProfileFromJson(const std::string& json, SeccompProfile* out, std::string* error);

// crisp's RuntimeDefault profile for a container holding `effective_caps`
// ("CAP_SYS_ADMIN" style) on this host: equivalent in effect to Docker's
// default profile (moby profiles/seccomp). Default action ERRNO(EPERM); an
// allow-list of ordinary syscalls; personality(2) only for the usual
// personas; socket(2) for every family but AF_ALG and AF_VSOCK; clone(2)
// only without namespace flags and clone3(2) failing with ENOSYS (so libc
// falls back to clone) unless CAP_SYS_ADMIN; and the syscalls each
// capability guards (mount/unshare/setns/bpf/... for CAP_SYS_ADMIN, reboot
// for CAP_SYS_BOOT, chroot for CAP_SYS_CHROOT, ...) allowed only with it.
// Architectures: the native one and its compat sub-architectures.
SeccompProfile RuntimeDefaultProfile(const std::vector<std::string>& effective_caps);

}  // namespace crisp::runtime
