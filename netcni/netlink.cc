// libnl helpers that act inside a pod's network namespace. Each runs on a
// short-lived thread that joins the namespace: crispd's own threads never
// change namespace.
#include <fcntl.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netcni/cni.h"
#include "netcni/netlink_util.h"

namespace crisp::netcni {
namespace {

// connect() with a bound on the wait: a port in a pod with a broken network
// must not hold a streaming thread forever.
absl::StatusOr<UniqueFd> ConnectLocal(int family, uint16_t port) {
  UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return ErrnoStatus(errno, "socket");
  sockaddr_storage ss = {};
  socklen_t len;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  }
  timeval tv = {10, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return ErrnoStatus(errno, "connect");
  timeval zero = {0, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
  return s;
}

absl::StatusOr<UniqueFd> DialBoth(uint16_t port) {
  auto v4 = ConnectLocal(AF_INET, port);
  if (v4.ok()) return v4;
  auto v6 = ConnectLocal(AF_INET6, port);
  if (v6.ok()) return v6;
  return absl::UnavailableError(
      absl::StrCat("nothing accepts connections on localhost:", port, " (", v4.status().message(), ")"));
}

}  // namespace

absl::StatusOr<UniqueFd> DialLocalhost(const std::string& netns_path, uint16_t port) {
  if (port == 0) return absl::InvalidArgumentError("port 0 cannot be dialed");
  if (netns_path.empty()) return DialBoth(port);
  absl::StatusOr<UniqueFd> out = absl::UnknownError("not dialed");
  RETURN_IF_ERROR(InNetns(netns_path, [&]() -> absl::Status {
    out = DialBoth(port);
    return absl::OkStatus();
  }));
  return out;
}

absl::Status BringUpLoopback(const std::string& netns_path) {
  return InNetns(netns_path, []() -> absl::Status {
    Sock sock;
    if (!sock.s) return absl::ResourceExhaustedError("nl_socket_alloc");
    if (int e = nl_connect(sock.s, NETLINK_ROUTE); e < 0) return NlError(e, "netlink connect");
    struct rtnl_link* lo = nullptr;
    if (int e = rtnl_link_get_kernel(sock.s, 0, "lo", &lo); e < 0) return NlError(e, "looking up lo");
    // A fresh namespace has lo down: without it 127.0.0.1 does not work in the pod.
    if (rtnl_link_get_flags(lo) & IFF_UP) {
      rtnl_link_put(lo);
      return absl::OkStatus();
    }
    struct rtnl_link* change = rtnl_link_alloc();
    if (!change) {
      rtnl_link_put(lo);
      return absl::ResourceExhaustedError("rtnl_link_alloc");
    }
    rtnl_link_set_flags(change, IFF_UP);
    int e = rtnl_link_change(sock.s, lo, change, 0);
    rtnl_link_put(change);
    rtnl_link_put(lo);
    if (e < 0) return NlError(e, "setting lo up");
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PodIp>> ListAddresses(const std::string& netns_path, const std::string& ifname) {
  std::vector<PodIp> out;
  absl::Status s = InNetns(netns_path, [&]() -> absl::Status {
    Sock sock;
    if (!sock.s) return absl::ResourceExhaustedError("nl_socket_alloc");
    if (int e = nl_connect(sock.s, NETLINK_ROUTE); e < 0) return NlError(e, "netlink connect");
    int ifindex = 0;  // 0: every interface but lo
    if (!ifname.empty()) {
      struct rtnl_link* link = nullptr;
      if (int e = rtnl_link_get_kernel(sock.s, 0, ifname.c_str(), &link); e < 0)
        return absl::NotFoundError(absl::StrCat("interface ", ifname, ": ", nl_geterror(e)));
      ifindex = rtnl_link_get_ifindex(link);
      rtnl_link_put(link);
    }
    struct nl_cache* cache = nullptr;
    if (int e = rtnl_addr_alloc_cache(sock.s, &cache); e < 0) return NlError(e, "listing addresses");
    for (struct nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
      auto* a = reinterpret_cast<struct rtnl_addr*>(o);
      if (ifindex != 0 && rtnl_addr_get_ifindex(a) != ifindex) continue;
      // Pod IPs only: this skips lo's host-scope and IPv6 link-local addresses.
      if (rtnl_addr_get_scope(a) != RT_SCOPE_UNIVERSE) continue;
      struct nl_addr* local = rtnl_addr_get_local(a);
      if (!local) continue;
      char buf[128];
      std::string text = nl_addr2str(local, buf, sizeof buf);
      PodIp ip;
      ip.address = text.substr(0, text.find('/'));
      ip.prefix_len = static_cast<int>(nl_addr_get_prefixlen(local));
      ip.ipv6 = nl_addr_get_family(local) == AF_INET6;
      out.push_back(ip);
    }
    nl_cache_free(cache);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace crisp::netcni
