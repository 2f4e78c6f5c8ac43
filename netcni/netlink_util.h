#pragma once
// Internal to netcni: running libnl calls inside a pod's network namespace
// from a short-lived thread (crispd's own threads never change namespace),
// and small libnl RAII pieces.
#include <fcntl.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <sched.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::netcni {

// Runs `fn` on a new thread inside the namespace. The thread dies with the
// namespace it joined, so no pooled or gRPC thread ever ends up in a pod's
// namespace. setns(CLONE_NEWNET) affects only the calling thread.
template <typename F>
absl::Status InNetns(const std::string& netns_path, F fn) {
  absl::Status result;
  std::thread t([&] {
    UniqueFd fd(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      result = ErrnoStatus(errno, "opening netns " + netns_path);
      return;
    }
    if (::setns(fd.get(), CLONE_NEWNET) != 0) {
      result = ErrnoStatus(errno, "joining netns " + netns_path);
      return;
    }
    result = fn();
  });
  t.join();
  return result;
}

struct Sock {
  struct nl_sock* s = nl_socket_alloc();
  Sock() = default;
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  ~Sock() {
    if (s) nl_socket_free(s);
  }
  // Allocated and connected to NETLINK_ROUTE in the calling thread's netns.
  absl::Status Connect() {
    if (!s) return absl::ResourceExhaustedError("nl_socket_alloc");
    if (int e = nl_connect(s, NETLINK_ROUTE); e < 0)
      return absl::InternalError(absl::StrCat("netlink connect: ", nl_geterror(e)));
    return absl::OkStatus();
  }
};

inline absl::Status NlError(int err, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(err)));
}

}  // namespace crisp::netcni
