#include "common/exit_watcher.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common/status.h"

namespace crisp {

ExitWatcher::ExitWatcher()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // key 0 is the wake-up eventfd
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { Loop(); });
}

ExitWatcher::~ExitWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

absl::Status ExitWatcher::Watch(const ProcessId& id, std::function<void()> on_exit) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, id.pid, 0)));
  std::lock_guard<std::mutex> lock(mu_);
  // Checked after pidfd_open: the pidfd refers to the process we verified.
  if (!pidfd || !ProcessAlive(id)) {
    immediate_.push_back(std::move(on_exit));
  } else {
    uint64_t key = next_key_++;
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u64 = key;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, pidfd.get(), &ev) != 0) return ErrnoStatus(errno, "epoll_ctl");
    watches_[key] = {std::move(pidfd), std::move(on_exit)};
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  return absl::OkStatus();
}

void ExitWatcher::Loop() {
  struct epoll_event events[32];
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events, 32, -1);
    if (n < 0 && errno != EINTR) return;
    std::vector<std::function<void()>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      for (int i = 0; i < n; ++i) {
        uint64_t key = events[i].data.u64;
        if (key == 0) {
          uint64_t v;
          while (::read(wake_.get(), &v, sizeof v) > 0) {
          }
          continue;
        }
        auto it = watches_.find(key);
        if (it == watches_.end()) continue;
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.first.get(), nullptr);
        ready.push_back(std::move(it->second.second));
        watches_.erase(it);
      }
      for (auto& f : immediate_) ready.push_back(std::move(f));
      immediate_.clear();
    }
    for (auto& f : ready) f();
  }
}

}  // namespace crisp
