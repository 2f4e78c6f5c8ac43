// EmbeddedNetwork: the bridge, veth, IPAM and port mapping of a pod network
// without CNI plugins. See embedded.h for what it creates.
//
// Semantics follow the CNI reference plugins (containernetworking/plugins):
// bridge (isGateway, fixed bridge MAC, forwarding on), host-local (one file
// per address, round robin) and portmap (DNAT for local destinations,
// 127.0.0.1 host ports through route_localnet + masquerade).
#include "netcni/embedded.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netcni/netlink_util.h"

namespace crisp::netcni {

using json = nlohmann::json;

namespace {

constexpr char kRecordKind[] = "crispEmbeddedV1";

std::shared_ptr<spdlog::logger> Log() { return Logger("netcni"); }

// FNV-1a: stable across builds and restarts, unlike std::hash.
uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string HashHex(const std::string& id, const std::string& ifname) {
  return absl::StrFormat("%016x", Fnv1a(absl::StrCat(id, "/", ifname)));
}

bool IsPlainName(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos;
}

// Undo steps run in reverse unless dismissed.
class Undo {
 public:
  void Add(std::string what, std::function<absl::Status()> fn) {
    steps_.emplace_back(std::move(what), std::move(fn));
  }
  void Dismiss() { steps_.clear(); }
  ~Undo() {
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      if (absl::Status s = it->second(); !s.ok())
        Log()->warn("embedded network: undoing {} failed: {}", it->first, s.ToString());
    }
  }

 private:
  std::vector<std::pair<std::string, std::function<absl::Status()>>> steps_;
};

// A libnl object reference, put on scope exit.
template <typename T, void (*Put)(T*)>
struct NlRef {
  T* p = nullptr;
  NlRef() = default;
  explicit NlRef(T* x) : p(x) {}
  NlRef(const NlRef&) = delete;
  NlRef& operator=(const NlRef&) = delete;
  ~NlRef() {
    if (p) Put(p);
  }
};
using LinkRef = NlRef<struct rtnl_link, rtnl_link_put>;
using AddrRef = NlRef<struct nl_addr, nl_addr_put>;
using RtAddrRef = NlRef<struct rtnl_addr, rtnl_addr_put>;
using RouteRef = NlRef<struct rtnl_route, rtnl_route_put>;

// An IPv4 nl_addr from a host-order address.
struct nl_addr* V4Addr(uint32_t ip, int prefix_len) {
  uint32_t be = htonl(ip);
  struct nl_addr* a = nl_addr_build(AF_INET, &be, sizeof be);
  if (a) nl_addr_set_prefixlen(a, prefix_len);
  return a;
}

bool IsNotFound(int nl_err) { return nl_err == -NLE_OBJ_NOTFOUND || nl_err == -NLE_NODEV; }

absl::Status DeleteLink(struct nl_sock* sock, const std::string& name) {
  LinkRef link(rtnl_link_alloc());
  if (!link.p) return absl::ResourceExhaustedError("rtnl_link_alloc");
  rtnl_link_set_name(link.p, name.c_str());
  int e = rtnl_link_delete(sock, link.p);
  if (e < 0 && !IsNotFound(e)) return NlError(e, "deleting link " + name);
  return absl::OkStatus();
}

// Adds `ip`/prefix to the link `ifindex` (EEXIST is fine).
absl::Status AddAddress(struct nl_sock* sock, int ifindex, uint32_t ip, int prefix_len, uint32_t broadcast,
                        absl::string_view what) {
  RtAddrRef addr(rtnl_addr_alloc());
  AddrRef local(V4Addr(ip, prefix_len));
  AddrRef brd(V4Addr(broadcast, 32));
  if (!addr.p || !local.p || !brd.p) return absl::ResourceExhaustedError("rtnl_addr_alloc");
  rtnl_addr_set_ifindex(addr.p, ifindex);
  rtnl_addr_set_family(addr.p, AF_INET);
  if (int e = rtnl_addr_set_local(addr.p, local.p); e < 0) return NlError(e, what);
  rtnl_addr_set_broadcast(addr.p, brd.p);
  int e = rtnl_addr_add(sock, addr.p, 0);
  if (e < 0 && e != -NLE_EXIST) return NlError(e, what);
  return absl::OkStatus();
}

std::string PathEnv() {
  const char* p = ::getenv("PATH");
  return p && *p ? p : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

std::string FindTool(const std::string& configured, const std::string& name) {
  if (!configured.empty()) return configured;
  std::vector<std::string> dirs = absl::StrSplit(PathEnv(), ':', absl::SkipEmpty());
  for (const char* d : {"/usr/sbin", "/sbin"}) dirs.emplace_back(d);
  for (const auto& d : dirs) {
    std::string p = JoinPath(d, name);
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

struct PortRule {
  std::string protocol;
  int container_port = 0, host_port = 0;
  std::string host_ip;  // "" = any local address
};

absl::StatusOr<std::vector<PortRule>> PortRules(const std::vector<PortMapping>& mappings) {
  std::vector<PortRule> out;
  for (const auto& m : mappings) {
    if (m.host_port <= 0) continue;
    PortRule r;
    r.protocol = absl::AsciiStrToLower(m.protocol.empty() ? "tcp" : m.protocol);
    if (r.protocol != "tcp" && r.protocol != "udp" && r.protocol != "sctp")
      return absl::InvalidArgumentError(absl::StrCat("port mapping: unknown protocol \"", m.protocol, "\""));
    if (m.host_port > 65535 || m.container_port <= 0 || m.container_port > 65535)
      return absl::InvalidArgumentError(
          absl::StrCat("port mapping ", m.host_port, "->", m.container_port, ": ports must be 1-65535"));
    r.host_port = m.host_port;
    r.container_port = m.container_port;
    if (!m.host_ip.empty() && m.host_ip != "0.0.0.0") {
      if (!ParseIpv4(m.host_ip).ok())
        return absl::InvalidArgumentError(
            absl::StrCat("port mapping ", m.host_port, ": host_ip \"", m.host_ip,
                         "\" is not an IPv4 address (the embedded network is IPv4 only)"));
      r.host_ip = m.host_ip;
    }
    out.push_back(r);
  }
  return out;
}

// What Teardown needs, written by Setup.
struct Record {
  std::string container_id, ifname, netns, bridge, host_ifname;
  uint32_t ip = 0;
  int prefix_len = 0;
  std::string pod_chain, shared_chain, comment;  // pod_chain empty: no host ports
  json result;
};

}  // namespace

absl::Status ValidateInterfaceName(const std::string& name) {
  if (name.empty() || name.size() > 15 || name == "." || name == ".." ||
      name.find_first_of("/: \t\n\r") != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", name, "\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)"));
  return absl::OkStatus();
}

std::string EmbeddedNetwork::HostVethName(const std::string& container_id, const std::string& ifname) {
  return "veth" + HashHex(container_id, ifname).substr(0, 11);
}

struct EmbeddedNetwork::Impl {
  EmbeddedOptions opts;
  absl::Status config_status;
  Ipv4Subnet subnet;
  std::unique_ptr<EmbeddedIpam> ipam;
  std::string path_env = PathEnv();

  // Host set-up (bridge, forwarding, masquerade) is done once under host_mu
  // and re-done if the bridge disappears; host ports' shared rules once.
  std::mutex host_mu;
  std::atomic<bool> host_ready{false};
  bool hostports_ready = false;

  std::string SharedChain() const { return "CRISP-HP-" + opts.bridge; }
  std::string Comment() const { return "crisp-embedded:" + opts.bridge; }
  static std::string PodChain(const std::string& id, const std::string& ifname) {
    return "CRISP-HPD-" + HashHex(id, ifname).substr(0, 12);
  }
  std::string RecordPath(const std::string& id, const std::string& ifname) const {
    return JoinPath(opts.state_dir, absl::StrCat(id, "-", ifname, ".json"));
  }

  // ---- iptables ----

  absl::StatusOr<CniInvoker::Result> Run(const std::string& tool, std::vector<std::string> args,
                                         const std::string& stdin_data = "") {
    std::string path = FindTool(tool == "iptables" ? opts.iptables_path : opts.iptables_restore_path, tool);
    if (path.empty())
      return absl::FailedPreconditionError(
          absl::StrCat(tool,
                       " not found in PATH, /usr/sbin or /sbin (install the iptables package, or set "
                       "embedded_network.masquerade: false and use no host ports)"));
    std::vector<std::string> argv = {path};
    for (auto& a : args) argv.push_back(std::move(a));
    return ExecArgv(argv, stdin_data);
  }

  absl::StatusOr<CniInvoker::Result> ExecArgv(const std::vector<std::string>& argv,
                                              const std::string& stdin_data);

  // iptables -w -t nat ARGS; error unless it exits 0.
  absl::Status Nat(const std::vector<std::string>& args) {
    std::vector<std::string> a = {"-w", "-t", "nat"};
    a.insert(a.end(), args.begin(), args.end());
    ASSIGN_OR_RETURN(auto r, Run("iptables", a));
    if (r.exit_code != 0)
      return absl::InternalError(absl::StrCat("iptables -t nat ", absl::StrJoin(args, " "), ": ",
                                              absl::StripAsciiWhitespace(r.stderr_data + r.stdout_data)));
    return absl::OkStatus();
  }

  // Appends the rule to `chain` unless it is there (-C first).
  absl::Status EnsureRule(const std::string& chain, const std::vector<std::string>& spec) {
    std::vector<std::string> check = {"-w", "-t", "nat", "-C", chain};
    check.insert(check.end(), spec.begin(), spec.end());
    ASSIGN_OR_RETURN(auto r, Run("iptables", check));
    if (r.exit_code == 0) return absl::OkStatus();
    std::vector<std::string> add = {"-A", chain};
    add.insert(add.end(), spec.begin(), spec.end());
    return Nat(add);
  }

  absl::Status EnsureMasquerade() {
    std::string sub = subnet.ToString();
    return EnsureRule("POSTROUTING", {"-s", sub, "!", "-d", sub, "-m", "comment", "--comment", Comment(),
                                      "-j", "MASQUERADE"});
  }

  // Shared host-port plumbing; with host_mu held.
  absl::Status EnsureHostPortsLocked() {
    if (hostports_ready) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto r, Run("iptables", {"-w", "-t", "nat", "-S", SharedChain()}));
    if (r.exit_code != 0) {
      absl::Status s = Nat({"-N", SharedChain()});
      if (!s.ok() && !absl::StrContains(s.message(), "exists")) return s;
    }
    for (const char* hook : {"PREROUTING", "OUTPUT"}) {
      RETURN_IF_ERROR(EnsureRule(hook, {"-m", "addrtype", "--dst-type", "LOCAL", "-m", "comment", "--comment",
                                        Comment(), "-j", SharedChain()}));
    }
    // 127.0.0.1:HOSTPORT: the DNAT'd packet leaves through the bridge with
    // a loopback source, which the pod could not answer.
    RETURN_IF_ERROR(EnsureRule("POSTROUTING", {"-s", "127.0.0.0/8", "-o", opts.bridge, "-m", "comment",
                                               "--comment", Comment(), "-j", "MASQUERADE"}));
    RETURN_IF_ERROR(
        WriteSysctl(absl::StrCat("/proc/sys/net/ipv4/conf/", opts.bridge, "/route_localnet"), "1"));
    hostports_ready = true;
    return absl::OkStatus();
  }

  static absl::Status WriteSysctl(const std::string& path, const std::string& value) {
    auto cur = ReadFile(path);
    if (cur.ok() && absl::StripAsciiWhitespace(*cur) == value) return absl::OkStatus();
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return ErrnoStatus(errno, "opening " + path);
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
      return ErrnoStatus(errno, "writing " + path);
    return absl::OkStatus();
  }

  absl::Status AddPodPorts(const Record& rec, const std::vector<PortRule>& rules) {
    std::string in = absl::StrCat("*nat\n:", rec.pod_chain, " - [0:0]\n");
    for (const auto& r : rules) {
      absl::StrAppend(&in, "-A ", rec.pod_chain, " -p ", r.protocol);
      if (!r.host_ip.empty()) absl::StrAppend(&in, " -d ", r.host_ip, "/32");
      absl::StrAppend(&in, " -m ", r.protocol, " --dport ", r.host_port, " -j DNAT --to-destination ",
                      Ipv4ToString(rec.ip), ":", r.container_port, "\n");
    }
    absl::StrAppend(&in, "-A ", rec.shared_chain, " -m comment --comment ", rec.comment, " -j ",
                    rec.pod_chain, "\nCOMMIT\n");
    ASSIGN_OR_RETURN(auto r, Run("iptables-restore", {"-w", "--noflush"}, in));
    if (r.exit_code != 0)
      return absl::InternalError(absl::StrCat("iptables-restore of the host port rules: ",
                                              absl::StripAsciiWhitespace(r.stderr_data + r.stdout_data)));
    return absl::OkStatus();
  }

  // Removes a pod's chain and the jump to it; OK if neither exists.
  absl::Status RemovePodPorts(const std::string& shared_chain, const std::string& pod_chain,
                              const std::string& comment) {
    std::string in = absl::StrCat("*nat\n-D ", shared_chain, " -m comment --comment ", comment, " -j ",
                                  pod_chain, "\n-F ", pod_chain, "\n-X ", pod_chain, "\nCOMMIT\n");
    ASSIGN_OR_RETURN(auto r, Run("iptables-restore", {"-w", "--noflush"}, in));
    if (r.exit_code == 0) return absl::OkStatus();
    // Part of it is gone already (an earlier teardown stopped half way):
    // remove what is left one by one.
    (void)Nat({"-D", shared_chain, "-m", "comment", "--comment", comment, "-j", pod_chain});
    ASSIGN_OR_RETURN(auto exists, Run("iptables", {"-w", "-t", "nat", "-S", pod_chain}));
    if (exists.exit_code != 0) return absl::OkStatus();
    RETURN_IF_ERROR(Nat({"-F", pod_chain}));
    return Nat({"-X", pod_chain});
  }

  // ---- netlink ----

  // The bridge with the gateway address, up; forwarding and masquerade.
  // Returns the bridge's ifindex.
  absl::StatusOr<int> EnsureHost(struct nl_sock* sock) {
    if (host_ready.load()) {
      if (int idx = static_cast<int>(::if_nametoindex(opts.bridge.c_str())); idx > 0) return idx;
    }
    std::lock_guard<std::mutex> lock(host_mu);
    LinkRef link;
    int e = rtnl_link_get_kernel(sock, 0, opts.bridge.c_str(), &link.p);
    if (e < 0) {
      if (!IsNotFound(e)) return NlError(e, "looking up bridge " + opts.bridge);
      LinkRef br(rtnl_link_alloc());
      if (!br.p) return absl::ResourceExhaustedError("rtnl_link_alloc");
      if (int te = rtnl_link_set_type(br.p, "bridge"); te < 0) return NlError(te, "bridge link type");
      rtnl_link_set_name(br.p, opts.bridge.c_str());
      rtnl_link_set_flags(br.p, IFF_UP);
      // A MAC of its own: a bridge without one takes its lowest port's, and
      // changes it as pods come and go (the pods' ARP entries go stale).
      uint8_t mac[6];
      std::string rnd = RandomHex(6);
      for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(std::stoi(rnd.substr(2 * i, 2), nullptr, 16));
      mac[0] = (mac[0] & 0xfe) | 0x02;  // unicast, locally administered
      AddrRef lladdr(nl_addr_build(AF_LLC, mac, sizeof mac));
      if (lladdr.p) rtnl_link_set_addr(br.p, lladdr.p);
      e = rtnl_link_add(sock, br.p, NLM_F_CREATE | NLM_F_EXCL);
      if (e < 0 && e != -NLE_EXIST) return NlError(e, "creating bridge " + opts.bridge);
      Log()->info("embedded network: created bridge {} for {}", opts.bridge, subnet.ToString());
      e = rtnl_link_get_kernel(sock, 0, opts.bridge.c_str(), &link.p);
      if (e < 0) return NlError(e, "looking up bridge " + opts.bridge);
    }
    const char* type = rtnl_link_get_type(link.p);
    if (!type || std::string(type) != "bridge")
      return absl::FailedPreconditionError(absl::StrCat("embedded_network.bridge: interface ", opts.bridge,
                                                        " exists and is not a bridge (", type ? type : "?",
                                                        ")"));
    const int idx = rtnl_link_get_ifindex(link.p);
    if (!(rtnl_link_get_flags(link.p) & IFF_UP)) {
      LinkRef change(rtnl_link_alloc());
      if (!change.p) return absl::ResourceExhaustedError("rtnl_link_alloc");
      rtnl_link_set_flags(change.p, IFF_UP);
      if (int ce = rtnl_link_change(sock, link.p, change.p, 0); ce < 0)
        return NlError(ce, "setting " + opts.bridge + " up");
    }
    RETURN_IF_ERROR(AddAddress(sock, idx, subnet.gateway(), subnet.prefix_len, subnet.broadcast(),
                               "adding the gateway address to " + opts.bridge));
    RETURN_IF_ERROR(WriteSysctl("/proc/sys/net/ipv4/ip_forward", "1"));
    if (opts.masquerade) RETURN_IF_ERROR(Annotate(EnsureMasquerade(), "installing the masquerade rule"));
    host_ready.store(true);
    return idx;
  }

  // One RTM_NEWLINK: host end `host` on the bridge and up, peer `ifname`
  // created inside the namespace `netns_fd`.
  absl::Status CreateVeth(struct nl_sock* sock, const std::string& host, const std::string& ifname,
                          int bridge, int netns_fd) {
    struct rtnl_link* veth = rtnl_link_veth_alloc();
    if (!veth) return absl::ResourceExhaustedError("rtnl_link_veth_alloc");
    struct rtnl_link* peer = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(veth, host.c_str());
    rtnl_link_set_flags(veth, IFF_UP);
    rtnl_link_set_master(veth, bridge);
    rtnl_link_set_name(peer, ifname.c_str());
    // Not IFF_UP here: the kernel opens the peer before the pair is linked
    // (veth_open: ENOTCONN); ConfigurePod brings it up from inside.
    rtnl_link_set_ns_fd(peer, netns_fd);
    int e = rtnl_link_add(sock, veth, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_put(peer);
    rtnl_link_veth_release(veth);
    if (e < 0) return NlError(e, absl::StrCat("creating veth ", host, " <-> ", ifname, " in the pod"));
    return absl::OkStatus();
  }

  // Inside the pod (on a thread in its netns): `ifname` up with the address,
  // and the default route via the gateway.
  absl::Status ConfigurePod(const std::string& netns, const std::string& ifname, uint32_t ip) {
    return InNetns(netns, [&]() -> absl::Status {
      Sock sock;
      RETURN_IF_ERROR(sock.Connect());
      LinkRef link;
      if (int e = rtnl_link_get_kernel(sock.s, 0, ifname.c_str(), &link.p); e < 0)
        return NlError(e, ifname + " inside the pod");
      const int idx = rtnl_link_get_ifindex(link.p);
      LinkRef up(rtnl_link_alloc());
      if (!up.p) return absl::ResourceExhaustedError("rtnl_link_alloc");
      rtnl_link_set_flags(up.p, IFF_UP);
      if (int e = rtnl_link_change(sock.s, link.p, up.p, 0); e < 0)
        return NlError(e, "setting " + ifname + " up");
      RETURN_IF_ERROR(AddAddress(sock.s, idx, ip, subnet.prefix_len, subnet.broadcast(),
                                 absl::StrCat("adding ", Ipv4ToString(ip), " to ", ifname)));
      RouteRef route(rtnl_route_alloc());
      AddrRef dst(V4Addr(0, 0));
      AddrRef gw(V4Addr(subnet.gateway(), 32));
      struct rtnl_nexthop* nh = rtnl_route_nh_alloc();
      if (!route.p || !dst.p || !gw.p || !nh) {
        if (nh) rtnl_route_nh_free(nh);
        return absl::ResourceExhaustedError("rtnl_route_alloc");
      }
      rtnl_route_set_family(route.p, AF_INET);
      rtnl_route_set_table(route.p, RT_TABLE_MAIN);
      rtnl_route_set_protocol(route.p, RTPROT_BOOT);
      rtnl_route_set_scope(route.p, RT_SCOPE_UNIVERSE);
      rtnl_route_set_type(route.p, RTN_UNICAST);
      if (int e = rtnl_route_set_dst(route.p, dst.p); e < 0) {
        rtnl_route_nh_free(nh);
        return NlError(e, "default route");
      }
      rtnl_route_nh_set_ifindex(nh, idx);
      rtnl_route_nh_set_gateway(nh, gw.p);
      rtnl_route_add_nexthop(route.p, nh);  // the route owns it now
      int e = rtnl_route_add(sock.s, route.p, NLM_F_CREATE | NLM_F_EXCL);
      if (e < 0 && e != -NLE_EXIST)
        return NlError(e, absl::StrCat("adding the default route via ", Ipv4ToString(subnet.gateway())));
      return absl::OkStatus();
    });
  }

  // ---- records ----

  absl::Status WriteRecord(const Record& r) {
    json j = {{"kind", kRecordKind},      {"containerId", r.container_id},
              {"ifName", r.ifname},       {"netns", r.netns},
              {"bridge", r.bridge},       {"hostIfName", r.host_ifname},
              {"ip", Ipv4ToString(r.ip)}, {"prefixLen", r.prefix_len},
              {"podChain", r.pod_chain},  {"sharedChain", r.shared_chain},
              {"comment", r.comment},     {"result", r.result}};
    RETURN_IF_ERROR(MkdirAll(opts.state_dir, 0700));
    // Not fsync'd: a lost record after a crash means a teardown from the
    // names derived from the id and an IPAM scan, which finds the same.
    return WriteFileAtomic(RecordPath(r.container_id, r.ifname), j.dump(), 0600, /*durable=*/false);
  }

  // NOT_FOUND if there is none; DATA_LOSS if it is unreadable.
  absl::StatusOr<Record> ReadRecord(const std::string& id, const std::string& ifname) const {
    std::string path = RecordPath(id, ifname);
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("kind", "") != kRecordKind)
      return absl::DataLossError(path + ": not a crisp embedded network record");
    Record r;
    r.container_id = j.value("containerId", id);
    r.ifname = j.value("ifName", ifname);
    r.netns = j.value("netns", "");
    r.bridge = j.value("bridge", "");
    r.host_ifname = j.value("hostIfName", "");
    auto ip = ParseIpv4(j.value("ip", ""));
    if (!ip.ok() || r.host_ifname.empty()) return absl::DataLossError(path + ": no address or interface");
    r.ip = *ip;
    r.prefix_len = j.value("prefixLen", 0);
    r.pod_chain = j.value("podChain", "");
    r.shared_chain = j.value("sharedChain", "");
    r.comment = j.value("comment", "");
    r.result = j.contains("result") ? j["result"] : json();
    return r;
  }
};

absl::StatusOr<CniInvoker::Result> EmbeddedNetwork::Impl::ExecArgv(const std::vector<std::string>& argv,
                                                                   const std::string& stdin_data) {
  return RunCommand(argv, {"PATH=" + path_env}, stdin_data, opts.command_timeout);
}

EmbeddedNetwork::EmbeddedNetwork(EmbeddedOptions opts)
    : opts_(std::move(opts)), impl_(std::make_unique<Impl>()) {
  impl_->opts = opts_;
  if (impl_->opts.ipam_dir.empty()) impl_->opts.ipam_dir = "/var/lib/crisp/embedded-ipam";
  if (impl_->opts.state_dir.empty()) impl_->opts.state_dir = "/var/lib/crisp/embedded-network";
  auto sub = ParseIpv4Subnet(opts_.subnet);
  if (!sub.ok()) {
    impl_->config_status = Annotate(sub.status(), "embedded_network.subnet");
  } else {
    impl_->subnet = *sub;
  }
  if (auto s = ValidateInterfaceName(opts_.bridge); !s.ok())
    impl_->config_status = Annotate(s, "embedded_network.bridge");
  impl_->ipam = std::make_unique<EmbeddedIpam>(impl_->opts.ipam_dir, impl_->subnet);
}

EmbeddedNetwork::~EmbeddedNetwork() = default;

absl::Status EmbeddedNetwork::Ready() {
  if (!impl_->config_status.ok())
    return absl::FailedPreconditionError(absl::StrCat("embedded network: ", impl_->config_status.message()));
  return absl::OkStatus();
}

absl::StatusOr<PodNetworkResult> EmbeddedNetwork::Setup(const PodNetworkRequest& req) {
  RETURN_IF_ERROR(Ready());
  if (!IsPlainName(req.container_id))
    return absl::InvalidArgumentError(absl::StrCat("invalid container id \"", req.container_id, "\""));
  RETURN_IF_ERROR(ValidateInterfaceName(req.ifname));
  if (req.netns_path.empty()) return absl::InvalidArgumentError("no network namespace to set up");
  ASSIGN_OR_RETURN(std::vector<PortRule> ports, PortRules(req.port_mappings));
  Impl& m = *impl_;

  Sock sock;
  RETURN_IF_ERROR(sock.Connect());
  ASSIGN_OR_RETURN(int bridge, m.EnsureHost(sock.s));
  UniqueFd nsfd(::open(req.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsfd) return ErrnoStatus(errno, "opening netns " + req.netns_path);

  Undo undo;
  auto ip = m.ipam->Allocate(req.container_id, req.ifname);
  if (!ip.ok()) return Annotate(ip.status(), "allocating a pod address");
  undo.Add("address " + Ipv4ToString(*ip),
           [&m, ip = *ip, req] { return m.ipam->Release(ip, req.container_id, req.ifname); });

  Record rec;
  rec.container_id = req.container_id;
  rec.ifname = req.ifname;
  rec.netns = req.netns_path;
  rec.bridge = opts_.bridge;
  rec.host_ifname = HostVethName(req.container_id, req.ifname);
  rec.ip = *ip;
  rec.prefix_len = m.subnet.prefix_len;
  RETURN_IF_ERROR(m.CreateVeth(sock.s, rec.host_ifname, req.ifname, bridge, nsfd.get()));
  // Deleting the host end deletes the pod's end with it.
  undo.Add("veth " + rec.host_ifname, [&sock, host = rec.host_ifname] { return DeleteLink(sock.s, host); });
  RETURN_IF_ERROR(
      Annotate(m.ConfigurePod(req.netns_path, req.ifname, *ip), "configuring the pod's interface"));

  if (!ports.empty()) {
    {
      std::lock_guard<std::mutex> lock(m.host_mu);
      RETURN_IF_ERROR(Annotate(m.EnsureHostPortsLocked(), "setting up host ports"));
    }
    rec.pod_chain = Impl::PodChain(req.container_id, req.ifname);
    rec.shared_chain = m.SharedChain();
    rec.comment = m.Comment();
    RETURN_IF_ERROR(m.AddPodPorts(rec, ports));
    undo.Add("host port rules",
             [&m, rec] { return m.RemovePodPorts(rec.shared_chain, rec.pod_chain, rec.comment); });
  }

  std::string gw = Ipv4ToString(m.subnet.gateway());
  rec.result = {
      {"cniVersion", "1.0.0"},
      {"interfaces", json::array({{{"name", opts_.bridge}},
                                  {{"name", rec.host_ifname}},
                                  {{"name", req.ifname}, {"sandbox", req.netns_path}}})},
      {"ips", json::array({{{"address", absl::StrCat(Ipv4ToString(*ip), "/", m.subnet.prefix_len)},
                            {"gateway", gw},
                            {"interface", 2}}})},
      {"routes", json::array({{{"dst", "0.0.0.0/0"}, {"gw", gw}}})},
  };
  RETURN_IF_ERROR(Annotate(m.WriteRecord(rec), "recording the pod network"));
  undo.Dismiss();
  return ParseResult(NetworkName(), rec.result);
}

absl::Status EmbeddedNetwork::Teardown(const PodNetworkRequest& req) {
  if (!IsPlainName(req.container_id))
    return absl::InvalidArgumentError(absl::StrCat("invalid container id \"", req.container_id, "\""));
  RETURN_IF_ERROR(ValidateInterfaceName(req.ifname));
  Impl& m = *impl_;
  auto rec = m.ReadRecord(req.container_id, req.ifname);
  if (!rec.ok() && !absl::IsNotFound(rec.status()))
    Log()->warn("{}: ignoring the embedded network record: {}", req.container_id, rec.status().ToString());

  // Host ports first: they point at the address about to be released.
  if (rec.ok()) {
    if (!rec->pod_chain.empty())
      RETURN_IF_ERROR(Annotate(m.RemovePodPorts(rec->shared_chain, rec->pod_chain, rec->comment),
                               "removing host port rules"));
  } else if (m.hostports_ready || !FindTool(opts_.iptables_path, "iptables").empty()) {
    // No record (a crash before it was written): remove what Setup may have
    // made under the names it derives from the id.
    std::string chain = Impl::PodChain(req.container_id, req.ifname);
    auto exists = m.Run("iptables", {"-w", "-t", "nat", "-S", chain});
    if (exists.ok() && exists->exit_code == 0)
      RETURN_IF_ERROR(m.RemovePodPorts(m.SharedChain(), chain, m.Comment()));
  }

  Sock sock;
  RETURN_IF_ERROR(sock.Connect());
  std::string host = rec.ok() ? rec->host_ifname : HostVethName(req.container_id, req.ifname);
  RETURN_IF_ERROR(DeleteLink(sock.s, host));

  if (rec.ok()) {
    RETURN_IF_ERROR(m.ipam->Release(rec->ip, req.container_id, req.ifname));
  } else {
    RETURN_IF_ERROR(m.ipam->ReleaseById(req.container_id, req.ifname));
  }
  std::string path = m.RecordPath(req.container_id, req.ifname);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + path);
  return absl::OkStatus();
}

absl::Status EmbeddedNetwork::Check(const PodNetworkRequest& req) {
  if (!IsPlainName(req.container_id))
    return absl::InvalidArgumentError(absl::StrCat("invalid container id \"", req.container_id, "\""));
  auto rec = impl_->ReadRecord(req.container_id, req.ifname);
  if (absl::IsNotFound(rec.status()))
    return absl::NotFoundError(absl::StrCat("no embedded network recorded for ", req.container_id));
  if (!rec.ok()) return rec.status();
  Sock sock;
  RETURN_IF_ERROR(sock.Connect());
  LinkRef host, br;
  if (int e = rtnl_link_get_kernel(sock.s, 0, rec->host_ifname.c_str(), &host.p); e < 0)
    return absl::FailedPreconditionError(
        absl::StrCat("host interface ", rec->host_ifname, ": ", nl_geterror(e)));
  if (int e = rtnl_link_get_kernel(sock.s, 0, rec->bridge.c_str(), &br.p); e < 0)
    return absl::FailedPreconditionError(absl::StrCat("bridge ", rec->bridge, ": ", nl_geterror(e)));
  if (rtnl_link_get_master(host.p) != rtnl_link_get_ifindex(br.p))
    return absl::FailedPreconditionError(absl::StrCat(rec->host_ifname, " is not a port of ", rec->bridge));
  std::string netns = req.netns_path.empty() ? rec->netns : req.netns_path;
  auto addrs = ListAddresses(netns, req.ifname);
  if (!addrs.ok()) return Annotate(addrs.status(), "the pod's interface");
  for (const auto& a : *addrs)
    if (a.address == Ipv4ToString(rec->ip)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(req.ifname, " in the pod does not have ", Ipv4ToString(rec->ip), " any more"));
}

std::optional<PodNetworkResult> EmbeddedNetwork::CachedResult(const std::string& container_id) {
  if (!IsPlainName(container_id)) return std::nullopt;
  auto rec = impl_->ReadRecord(container_id, "eth0");
  if (!rec.ok()) return std::nullopt;
  return ParseResult(NetworkName(), rec->result);
}

}  // namespace crisp::netcni
