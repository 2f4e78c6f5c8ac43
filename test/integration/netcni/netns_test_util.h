#pragma once
// Helpers shared by the netcni integration tests (root, real namespaces).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/reaper.h"
#include "common/unique_fd.h"

namespace crisp::netcni::testutil {

struct CmdResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// Runs a command through the reaper: its thread reaps every child, so
// system()/popen() would lose their exit status to it.
inline CmdResult RunCmd(const std::vector<std::string>& argv) {
  CmdResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return r;
  UniqueFd rd(p[0]), wr(p[1]);
  auto pid = Reaper::Spawn({.argv = argv, .stdout_fd = wr.get(), .stderr_fd = wr.get()});
  wr.reset();
  if (!pid.ok()) {
    r.out = pid.status().ToString();
    return r;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) r.out.append(buf, static_cast<size_t>(n));
  auto st = Reaper::Wait(*pid, absl::Seconds(30));
  if (st.ok() && WIFEXITED(*st)) r.exit_code = WEXITSTATUS(*st);
  return r;
}

// The calling thread's network namespace, as /proc shows it ("net:[...]").
inline std::string NetnsLink() {
  char buf[64] = {};
  ssize_t n = ::readlink("/proc/thread-self/ns/net", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

inline bool LinkExists(const std::string& name) { return PathExists("/sys/class/net/" + name); }

}  // namespace crisp::netcni::testutil
