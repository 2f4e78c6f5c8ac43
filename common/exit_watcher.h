#pragma once
// Notifies when processes that are not necessarily our children exit, using
// pidfds in one epoll loop (one thread for all watched processes).
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "common/proc.h"
#include "common/unique_fd.h"

namespace crisp {

class ExitWatcher {
 public:
  ExitWatcher();
  ~ExitWatcher();
  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;

  // Calls `on_exit` once, on the watcher thread, when the process exits (at
  // once, on that thread, if it is already gone or is another process now).
  // Callbacks must not call back into the watcher.
  absl::Status Watch(const ProcessId& id, std::function<void()> on_exit);

 private:
  void Loop();
  UniqueFd epoll_, wake_;
  std::mutex mu_;
  uint64_t next_key_ = 1;
  std::map<uint64_t, std::pair<UniqueFd, std::function<void()>>> watches_;
  std::vector<std::function<void()>> immediate_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace crisp
