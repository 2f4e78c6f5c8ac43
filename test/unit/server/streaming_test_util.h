#pragma once
// Helpers for the streaming server tests: a fake process side (the test plays
// the shim over a socketpair, runtime/stdio_frame.h), a loopback TCP echo
// server for port forwarding, a self-signed certificate, and thread/fd counts.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "runtime/stdio_frame.h"
#include "server/streaming/streaming.h"

namespace crisp::streaming::testutil {

inline size_t CountDir(const char* path) {
  size_t n = 0;
  if (DIR* d = ::opendir(path)) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}
inline size_t ThreadCount() { return CountDir("/proc/self/task"); }
inline size_t FdCount() { return CountDir("/proc/self/fd"); }

// The shim's end of an Exec/Attach stream. The server end is handed out once
// by Opener().
class FakeProcess {
 public:
  FakeProcess() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
      ours_.reset(sv[0]);
      theirs_.reset(sv[1]);
    }
  }
  OpenStdio Opener() {
    return [this]() -> absl::StatusOr<UniqueFd> {
      opened_ = true;
      return std::move(theirs_);
    };
  }
  bool opened() const { return opened_; }

  // The next frame from the server side, or false on EOF/timeout.
  bool Next(runtime::FrameType* type, std::string* payload, absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!reader_.Next(type, payload)) {
      if (!Fill(deadline)) return false;
    }
    return true;
  }
  // Reads until EOF (frames discarded): the server closed its end.
  bool WaitEof(absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (Fill(deadline)) {
    }
    return eof_;
  }
  bool Send(const std::string& bytes) {
    return ::send(ours_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  void Close() { ours_.reset(); }

 private:
  bool Fill(absl::Time deadline) {
    pollfd p{ours_.get(), POLLIN, 0};
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0 || ::poll(&p, 1, ms) <= 0) return false;
    char buf[4096];
    ssize_t n = ::recv(ours_.get(), buf, sizeof(buf), 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    reader_.Feed(buf, static_cast<size_t>(n));
    return true;
  }
  UniqueFd ours_, theirs_;
  std::atomic<bool> opened_{false};
  runtime::FrameReader reader_;
  bool eof_ = false;
};

// Loopback listener on a random port.
inline UniqueFd ListenLoopback(uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(fd.get(), 16) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return UniqueFd();
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// Echoes every byte back, one connection at a time, prefixed by `tag` on
// connect so the test can tell servers apart.
class EchoServer {
 public:
  explicit EchoServer(std::string tag) : tag_(std::move(tag)) {
    listener_ = ListenLoopback(&port_);
    thread_ = std::thread([this] { Run(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      ++connections_;
      ::send(c.get(), tag_.data(), tag_.size(), MSG_NOSIGNAL);
      while (!stop_) {
        pollfd q{c.get(), POLLIN, 0};
        if (::poll(&q, 1, 50) <= 0) continue;
        char buf[4096];
        ssize_t n = ::recv(c.get(), buf, sizeof(buf), 0);
        if (n <= 0) break;
        ::send(c.get(), buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      }
    }
  }
  std::string tag_;
  UniqueFd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

inline DialPort LoopbackDialer() {
  return [](uint16_t port) -> absl::StatusOr<UniqueFd> {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      return absl::UnavailableError(std::string("connect: ") + strerror(errno));
    }
    return fd;
  };
}

}  // namespace crisp::streaming::testutil
