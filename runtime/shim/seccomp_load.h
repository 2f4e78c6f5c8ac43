#pragma once
// Compiling a SeccompProfile with libseccomp and installing it. Runs in the
// container child of crisp-shim right before execve; absl-free.
#include <string>

#include "runtime/seccomp_profile.h"

namespace crisp::runtime {

// Compiles `profile` to BPF and installs it on the calling thread (and, with
// SECCOMP_FILTER_FLAG_TSYNC, on every thread of the process). The filter is
// permanent and inherited by children and across execve.
//
// The caller decides about no_new_privs and must set it beforehand
// (prctl(PR_SET_NO_NEW_PRIVS, 1)) unless the thread has CAP_SYS_ADMIN in
// its user namespace: this function never sets it, and the kernel refuses
// the filter (EACCES) otherwise.
//
// Mirrors runc: syscall names this libseccomp cannot resolve are skipped (a
// newer profile on an older host); a rule whose action equals the default
// action is skipped (it could change nothing); when two conditions of a rule
// name the same argument, each condition becomes its own rule; errnoRet
// defaults to EPERM for ERRNO and TRACE and is ignored for other actions.
// Architectures are OCI names; the native one is always included.
//
// Allocates (libseccomp does), so it must not run in a child of a
// multithreaded process. On failure returns false with a message naming the
// step, the rule and the errno in `*error`, and nothing has been installed.
bool LoadSeccompProfile(const SeccompProfile& profile, std::string* error);

}  // namespace crisp::runtime
