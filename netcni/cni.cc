// CniManager: configuration loading, plugin chaining and the result cache.
//
// Follows libcni (containernetworking/cni/libcni/api.go) where the spec leaves
// room: the stdin of a plugin is its own config plus the list's name and
// cniVersion, `runtimeConfig` only for the capabilities it declares, and DEL
// runs with the config and capability arguments that ADD used.
#include "netcni/cni.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status.h"

namespace crisp::netcni {

using json = nlohmann::json;

namespace {

std::shared_ptr<spdlog::logger> Log() { return Logger("netcni"); }

constexpr char kCacheKind[] = "crispCniCacheV1";

// A loaded network configuration list.
struct NetConfList {
  std::string file;
  std::string name;
  std::string cni_version;
  std::vector<json> plugins;
  json raw;  // the list form: what the cache keeps for DEL
};

// Everything a plugin call needs besides the config. Built from the request
// for ADD and read back from the cache for DEL/CHECK, so that DEL undoes
// exactly what ADD did (same port mappings, same pod identity).
struct Invocation {
  std::string container_id;
  std::string netns;
  std::string ifname;
  std::string cni_args;
  json capability_args = json::object();  // libcni's RuntimeConf.CapabilityArgs
};

struct CacheEntry {
  std::shared_ptr<const NetConfList> list;
  Invocation inv;
  json result;  // the final plugin's result (partial if !complete)
  // False when ADD failed and its rollback failed too: the entry exists only
  // so that a later Teardown retries DEL with the right config.
  bool complete = true;
};

// "1.0.0" -> {1,0,0}; unparsable parts count as 0.
std::vector<int> VersionParts(const std::string& v) {
  std::vector<int> out;
  for (absl::string_view p : absl::StrSplit(v, '.')) {
    int n = 0;
    if (!absl::SimpleAtoi(p, &n)) n = 0;
    out.push_back(n);
  }
  while (out.size() < 3) out.push_back(0);
  return out;
}
bool VersionAtLeast(const std::string& v, const std::string& min) {
  return VersionParts(v) >= VersionParts(min);
}

bool IsPlainName(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos;
}

bool IsConfigName(const std::string& n) {
  return absl::EndsWith(n, ".conflist") || absl::EndsWith(n, ".conf") || absl::EndsWith(n, ".json");
}

absl::Status ConfError(const std::string& file, absl::string_view what) {
  return absl::FailedPreconditionError(absl::StrCat("parse error in file ", file, ": ", what));
}

// Parses a .conflist, or a single-plugin .conf/.json as a list of one.
absl::StatusOr<NetConfList> ParseConfList(const std::string& file, const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return ConfError(file, e.what());
  }
  if (!j.is_object()) return ConfError(file, "not a JSON object");
  NetConfList l;
  l.file = file;
  // A .conf holding a list (no "type", a "plugins" array) is accepted too: a
  // common mistake that CRI-O tolerates and that would otherwise only show
  // up as "plugin type missing".
  bool is_list = absl::EndsWith(file, ".conflist") || (!j.contains("type") && j.contains("plugins"));
  if (is_list) {
    if (!j.contains("plugins") || !j["plugins"].is_array() || j["plugins"].empty())
      return ConfError(file, "\"plugins\" must be a non-empty list");
    l.raw = j;
  } else {
    json name = j.contains("name") ? j["name"] : json();
    json version = j.contains("cniVersion") ? j["cniVersion"] : json();
    l.raw = {{"cniVersion", version}, {"name", name}, {"plugins", json::array({j})}};
  }
  if (!l.raw.contains("name") || !l.raw["name"].is_string() || l.raw["name"].get<std::string>().empty())
    return ConfError(file, "network \"name\" is missing");
  l.name = l.raw["name"];
  if (l.raw.contains("cniVersion") && l.raw["cniVersion"].is_string()) {
    l.cni_version = l.raw["cniVersion"];
  } else if (l.raw.contains("cniVersion") && !l.raw["cniVersion"].is_null()) {
    return ConfError(file, "\"cniVersion\" must be a string");
  } else {
    l.cni_version = "0.3.0";  // libcni's oldest version with lists
    l.raw["cniVersion"] = l.cni_version;
  }
  // Before 0.3.0 results have another shape (ip4/ip6) and DEL semantics differ.
  if (!VersionAtLeast(l.cni_version, "0.3.0"))
    return ConfError(file,
                     absl::StrCat("cniVersion \"", l.cni_version, "\" is not supported (0.3.0 - 1.0.0)"));
  for (const auto& p : l.raw["plugins"]) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      return ConfError(file, "every plugin needs a \"type\"");
    if (!IsPlainName(p["type"]))
      return ConfError(file, absl::StrCat("invalid plugin type ", p["type"].dump()));
    l.plugins.push_back(p);
  }
  return l;
}

absl::Status ValidateRequest(const PodNetworkRequest& req) {
  // Both end up in a cache file name.
  if (!IsPlainName(req.container_id))
    return absl::InvalidArgumentError(absl::StrCat("invalid container id \"", req.container_id, "\""));
  if (!IsPlainName(req.ifname))
    return absl::InvalidArgumentError(absl::StrCat("invalid interface name \"", req.ifname, "\""));
  return absl::OkStatus();
}

// Capability arguments in their CNI form (the conventions in
// containernetworking/cni CONVENTIONS.md). Only non-empty ones are set.
json CapabilityArgs(const PodNetworkRequest& req) {
  json args = json::object();
  json pm = json::array();
  for (const auto& m : req.port_mappings) {
    if (m.host_port <= 0) continue;  // nothing for portmap to do, as in containerd
    json e = {{"hostPort", m.host_port},
              {"containerPort", m.container_port},
              {"protocol", absl::AsciiStrToLower(m.protocol.empty() ? "tcp" : m.protocol)}};
    if (!m.host_ip.empty()) e["hostIP"] = m.host_ip;
    pm.push_back(e);
  }
  if (!pm.empty()) args["portMappings"] = pm;
  if (!req.dns_servers.empty() || !req.dns_searches.empty() || !req.dns_options.empty())
    args["dns"] = {
        {"servers", req.dns_servers}, {"searches", req.dns_searches}, {"options", req.dns_options}};
  if (req.bandwidth) {
    args["bandwidth"] = {{"ingressRate", req.bandwidth->ingress_rate},
                         {"ingressBurst", req.bandwidth->ingress_burst},
                         {"egressRate", req.bandwidth->egress_rate},
                         {"egressBurst", req.bandwidth->egress_burst}};
  }
  if (!req.pod_cidr.empty()) args["ipRanges"] = json::array({json::array({{{"subnet", req.pod_cidr}}})});
  return args;
}

Invocation FromRequest(const PodNetworkRequest& req) {
  Invocation inv;
  inv.container_id = req.container_id;
  inv.netns = req.netns_path;
  inv.ifname = req.ifname;
  inv.cni_args =
      absl::StrCat("IgnoreUnknown=1;K8S_POD_NAMESPACE=", req.pod_namespace, ";K8S_POD_NAME=", req.pod_name,
                   ";K8S_POD_INFRA_CONTAINER_ID=", req.container_id, ";K8S_POD_UID=", req.pod_uid);
  inv.capability_args = CapabilityArgs(req);
  return inv;
}

// The plugin's stdin: its own config, the list's name and version, the
// previous result and the capability arguments it asked for.
json PluginStdin(const NetConfList& list, const json& plugin, const json& prev_result,
                 const Invocation& inv) {
  json conf = plugin;
  conf["name"] = list.name;
  conf["cniVersion"] = list.cni_version;
  json rc = json::object();
  if (plugin.contains("capabilities") && plugin["capabilities"].is_object()) {
    for (const auto& [cap, on] : plugin["capabilities"].items()) {
      if (on.is_boolean() && on.get<bool>() && inv.capability_args.contains(cap))
        rc[cap] = inv.capability_args[cap];
    }
  }
  if (!rc.empty()) conf["runtimeConfig"] = rc;
  if (!prev_result.is_null()) conf["prevResult"] = prev_result;
  return conf;
}

std::string TrimTrailingSpace(std::string s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// The message of a failed plugin: its JSON error (spec: {code, msg, details}
// on stdout), else whatever it wrote.
std::string PluginError(const CniInvoker::Result& res) {
  json err = json::parse(res.stdout_data, nullptr, false);
  if (!err.is_discarded() && err.is_object() && err.contains("msg") && err["msg"].is_string()) {
    std::string msg = err["msg"];
    if (err.contains("details") && err["details"].is_string() && !err["details"].get<std::string>().empty())
      absl::StrAppend(&msg, ": ", err["details"].get<std::string>());
    return msg;
  }
  std::string msg = TrimTrailingSpace(!res.stderr_data.empty() ? res.stderr_data : res.stdout_data);
  if (msg.size() > 4096) msg = msg.substr(0, 4096) + "...";
  if (msg.empty()) msg = absl::StrCat("exit status ", res.exit_code, " and no output");
  return msg;
}

}  // namespace

struct CniManager::Impl {
  CniOptions opts;
  std::unique_ptr<CniInvoker> invoker;
  std::string path_env;  // crispd's PATH: plugins such as portmap exec iptables

  // Guards only the snapshot below, never a plugin run: operations take a
  // shared_ptr copy and work on it unlocked.
  std::mutex mu;
  std::string signature;  // what was on disk when `loaded` was read; empty: never read
  std::shared_ptr<const NetConfList> loaded;
  absl::Status load_status = absl::FailedPreconditionError("not loaded yet");

  // The lexically first config file in conf_dir and a signature of what is on
  // disk (directory mtime, chosen file's identity), cheap enough to compute
  // on every call.
  std::pair<std::string, std::string> Scan() const {
    // A missing or unreadable directory has a signature too, so that it is
    // not re-read (and re-logged) on every call.
    struct stat st;
    if (::stat(opts.conf_dir.c_str(), &st) != 0) return {"", "absent"};
    std::string sig = absl::StrCat(st.st_ino, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
    auto names = ListDir(opts.conf_dir);
    if (!names.ok()) return {"", "unreadable"};
    for (const auto& n : *names) {  // sorted
      if (!IsConfigName(n)) continue;
      std::string p = JoinPath(opts.conf_dir, n);
      struct stat fst;
      if (::stat(p.c_str(), &fst) != 0 || !S_ISREG(fst.st_mode)) continue;
      absl::StrAppend(&sig, "|", n, "|", fst.st_ino, ":", fst.st_mtim.tv_sec, ".", fst.st_mtim.tv_nsec, ":",
                      fst.st_size);
      return {p, sig};
    }
    return {"", sig};
  }

  // The current configuration, re-read if what is on disk changed.
  std::pair<std::shared_ptr<const NetConfList>, absl::Status> Current() {
    auto [chosen, sig] = Scan();
    {
      std::lock_guard<std::mutex> lock(mu);
      if (sig == signature) return {loaded, load_status};
    }
    // Read and parse outside the lock; a racing caller just does it twice.
    std::shared_ptr<const NetConfList> list;
    absl::Status status;
    if (chosen.empty()) {
      status = absl::FailedPreconditionError(absl::StrCat("no network config found in ", opts.conf_dir,
                                                          " (looking for *.conflist, *.conf, *.json)"));
    } else if (auto text = ReadFile(chosen); !text.ok()) {
      status =
          absl::FailedPreconditionError(absl::StrCat("reading network config: ", text.status().message()));
    } else if (auto l = ParseConfList(chosen, *text); !l.ok()) {
      status = l.status();
    } else {
      list = std::make_shared<const NetConfList>(std::move(*l));
    }
    std::lock_guard<std::mutex> lock(mu);
    if (sig != signature) {
      if (list) {
        Log()->info("loaded CNI network \"{}\" (cniVersion {}, {} plugins) from {}", list->name,
                    list->cni_version, list->plugins.size(), chosen);
      } else {
        Log()->warn("CNI config not usable: {}", std::string(status.message()));
      }
    }
    signature = sig;
    loaded = list;
    load_status = status;
    return {loaded, load_status};
  }

  absl::StatusOr<std::string> FindPlugin(const std::string& type) const {
    for (const auto& d : opts.bin_dirs) {
      std::string p = JoinPath(d, type);
      struct stat st;
      if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) return p;
    }
    return absl::FailedPreconditionError(absl::StrCat("plugin \"", type, "\" not found in bin_dirs (",
                                                      absl::StrJoin(opts.bin_dirs, ":"), ")"));
  }

  // Every plugin binary of `list` exists: checked before ADD so that a
  // missing one fails before anything was created.
  absl::Status CheckPlugins(const NetConfList& list) const {
    for (const auto& p : list.plugins) {
      if (auto path = FindPlugin(p["type"]); !path.ok()) return Annotate(path.status(), list.file);
    }
    return absl::OkStatus();
  }

  std::vector<std::string> Env(const std::string& command, const Invocation& inv) const {
    return {
        "CNI_COMMAND=" + command,   "CNI_CONTAINERID=" + inv.container_id,
        "CNI_NETNS=" + inv.netns,   "CNI_IFNAME=" + inv.ifname,
        "CNI_ARGS=" + inv.cni_args, "CNI_PATH=" + absl::StrJoin(opts.bin_dirs, ":"),
        "PATH=" + path_env,
    };
  }

  // Runs one plugin. Returns its parsed result for ADD, null otherwise.
  absl::StatusOr<json> Invoke(const std::string& command, const NetConfList& list, const json& plugin,
                              const json& prev_result, const Invocation& inv) {
    const std::string type = plugin["type"];
    auto found = FindPlugin(type);
    if (!found.ok()) return Annotate(found.status(), absl::StrCat("CNI ", command));
    const std::string& path = *found;
    std::string stdin_data = PluginStdin(list, plugin, prev_result, inv).dump();
    absl::Time start = absl::Now();
    auto res = invoker->Exec(path, Env(command, inv), stdin_data, opts.plugin_timeout);
    double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    if (!res.ok()) {
      Log()->debug("{} {} {} for {}: {} after {:.1f} ms", list.name, type, command, inv.container_id,
                   res.status().ToString(), ms);
      absl::Status s = res.status();
      // The caller's request was fine; what broke is the plugin run.
      if (!absl::IsDeadlineExceeded(s)) s = absl::InternalError(s.message());
      return Annotate(s, absl::StrCat("CNI plugin \"", type, "\" ", command));
    }
    Log()->debug("{} {} {} for {}: exit {} in {:.1f} ms", list.name, type, command, inv.container_id,
                 res->exit_code, ms);
    if (!res->stderr_data.empty())
      Log()->debug("{} {} stderr: {}", type, command, TrimTrailingSpace(res->stderr_data));
    if (res->exit_code != 0)
      return absl::UnavailableError(
          absl::StrCat("CNI plugin \"", type, "\" failed ", command, ": ", PluginError(*res)));
    if (command != "ADD") return json();
    json out = json::parse(res->stdout_data, nullptr, false);
    if (out.is_discarded() || !out.is_object()) {
      return absl::InternalError(absl::StrCat("CNI plugin \"", type, "\" ADD printed no JSON result: \"",
                                              TrimTrailingSpace(res->stdout_data.substr(0, 512)), "\""));
    }
    return out;
  }

  // DEL in reverse order, from plugin `last` down to the first. prevResult
  // exists for DEL only from 0.4.0 on.
  absl::Status DelFrom(size_t last, const NetConfList& list, const json& result, const Invocation& inv,
                       bool stop_on_error) {
    json prev = VersionAtLeast(list.cni_version, "0.4.0") ? result : json();
    absl::Status first;
    for (size_t j = last + 1; j-- > 0;) {
      auto r = Invoke("DEL", list, list.plugins[j], prev, inv);
      if (r.ok()) continue;
      if (stop_on_error) return r.status();
      Log()->warn("undoing network of {}: {}", inv.container_id, r.status().ToString());
      if (first.ok()) first = r.status();
    }
    return first;
  }

  std::string CachePath(const std::string& container_id, const std::string& ifname) const {
    return JoinPath(JoinPath(opts.cache_dir, "results"), absl::StrCat(container_id, "-", ifname, ".json"));
  }

  absl::Status WriteCache(const NetConfList& list, const Invocation& inv, const json& result, bool complete) {
    json c = {{"kind", kCacheKind},
              {"complete", complete},
              {"containerId", inv.container_id},
              {"ifName", inv.ifname},
              {"netns", inv.netns},
              {"cniArgs", inv.cni_args},
              {"capabilityArgs", inv.capability_args},
              {"configFile", list.file},
              {"config", list.raw},
              {"result", result}};
    RETURN_IF_ERROR(MkdirAll(JoinPath(opts.cache_dir, "results"), 0700));
    return WriteFileAtomic(CachePath(inv.container_id, inv.ifname), c.dump(), 0600);
  }

  // NOT_FOUND if there is no entry.
  absl::StatusOr<CacheEntry> ReadCache(const std::string& container_id, const std::string& ifname) const {
    std::string path = CachePath(container_id, ifname);
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    json c = json::parse(text, nullptr, false);
    if (c.is_discarded() || !c.is_object() || c.value("kind", "") != kCacheKind || !c.contains("config"))
      return absl::DataLossError(absl::StrCat(path, ": not a crisp CNI cache entry"));
    std::string file = c.value("configFile", "cached.conflist");
    // The cache always holds the list form, whatever file it came from.
    auto l = ParseConfList(absl::StrCat(file, " (cached in ", path, ")"), json(c["config"]).dump());
    if (!l.ok()) return absl::DataLossError(l.status().message());
    l->file = file;
    CacheEntry e;
    e.list = std::make_shared<const NetConfList>(std::move(*l));
    e.inv.container_id = c.value("containerId", container_id);
    e.inv.ifname = c.value("ifName", ifname);
    e.inv.netns = c.value("netns", "");
    e.inv.cni_args = c.value("cniArgs", "");
    if (c.contains("capabilityArgs") && c["capabilityArgs"].is_object())
      e.inv.capability_args = c["capabilityArgs"];
    e.result = c.contains("result") ? c["result"] : json();
    e.complete = c.value("complete", true);
    return e;
  }
};

PodNetworkResult ParseResult(const std::string& network, const json& result) {
  PodNetworkResult out;
  out.network_name = network;
  out.raw_result = result;
  if (!result.is_object()) return out;
  std::vector<bool> in_sandbox;
  if (result.contains("interfaces") && result["interfaces"].is_array()) {
    for (const auto& i : result["interfaces"])
      in_sandbox.push_back(i.is_object() && i.contains("sandbox") && i["sandbox"].is_string() &&
                           !i["sandbox"].get<std::string>().empty());
  }
  std::vector<PodIp> sandbox_ips, other_ips;
  if (result.contains("ips") && result["ips"].is_array()) {
    for (const auto& ip : result["ips"]) {
      if (!ip.is_object() || !ip.contains("address") || !ip["address"].is_string()) continue;
      std::string addr = ip["address"];
      PodIp p;
      size_t slash = addr.find('/');
      p.address = addr.substr(0, slash);
      if (p.address.empty()) continue;
      p.ipv6 = p.address.find(':') != std::string::npos;
      if (slash == std::string::npos || !absl::SimpleAtoi(addr.substr(slash + 1), &p.prefix_len))
        p.prefix_len = p.ipv6 ? 128 : 32;
      // "interface" indexes interfaces[] (0.3.0 on); 0.3.x also has "version",
      // which the address itself tells us.
      bool sb = false;
      if (ip.contains("interface") && ip["interface"].is_number_integer()) {
        int64_t idx = ip["interface"];
        sb = idx >= 0 && static_cast<size_t>(idx) < in_sandbox.size() && in_sandbox[idx];
      }
      (sb ? sandbox_ips : other_ips).push_back(p);
    }
  }
  // Host-side addresses (e.g. a bridge's gateway) are not pod IPs when the
  // result says which interface is the pod's.
  out.ips = sandbox_ips.empty() ? other_ips : sandbox_ips;
  auto v4 = std::find_if(out.ips.begin(), out.ips.end(), [](const PodIp& p) { return !p.ipv6; });
  if (v4 != out.ips.end()) std::rotate(out.ips.begin(), v4, v4 + 1);  // primary = first IPv4
  return out;
}

CniManager::CniManager(CniOptions opts, std::unique_ptr<CniInvoker> invoker)
    : impl_(std::make_shared<Impl>()) {
  impl_->opts = std::move(opts);
  impl_->invoker = std::move(invoker);
  if (impl_->opts.cache_dir.empty()) impl_->opts.cache_dir = "/var/lib/crisp/cni";
  const char* path = ::getenv("PATH");
  impl_->path_env = path && *path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

absl::Status CniManager::Ready() {
  auto [list, status] = impl_->Current();
  if (!status.ok()) return status;
  return impl_->CheckPlugins(*list);
}

std::string CniManager::NetworkName() {
  auto [list, status] = impl_->Current();
  return list ? list->name : "";
}

std::string CniManager::ConfigFile() {
  auto [list, status] = impl_->Current();
  return list ? list->file : "";
}

absl::StatusOr<PodNetworkResult> CniManager::Setup(const PodNetworkRequest& req) {
  RETURN_IF_ERROR(ValidateRequest(req));
  auto [list, status] = impl_->Current();
  if (!status.ok()) return Annotate(status, "CNI network not ready");
  if (auto s = impl_->CheckPlugins(*list); !s.ok()) return Annotate(s, "CNI network not ready");
  const Invocation inv = FromRequest(req);
  json prev;
  for (size_t i = 0; i < list->plugins.size(); ++i) {
    auto r = impl_->Invoke("ADD", *list, list->plugins[i], prev, inv);
    if (r.ok()) {
      prev = std::move(*r);
      continue;
    }
    // Undo in reverse, including the failed plugin: it may have done part
    // of its work (bridge allocates the IP before it fails on the veth).
    absl::Status undo = impl_->DelFrom(i, *list, prev, inv, /*stop_on_error=*/false);
    if (undo.ok()) return r.status();
    // Leave a record so that Teardown retries DEL with this very config.
    if (auto w = impl_->WriteCache(*list, inv, prev, /*complete=*/false); !w.ok())
      Log()->error("{}: cannot record the failed network setup: {}", req.container_id, w.ToString());
    return absl::Status(r.status().code(),
                        absl::StrCat(r.status().message(), " (undoing it failed too: ", undo.message(), ")"));
  }
  if (auto s = impl_->WriteCache(*list, inv, prev, /*complete=*/true); !s.ok()) {
    // Without the cache a later DEL could not be trusted to match: undo now.
    (void)impl_->DelFrom(list->plugins.size() - 1, *list, prev, inv, /*stop_on_error=*/false);
    return Annotate(s, "caching the CNI result");
  }
  return ParseResult(list->name, prev);
}

absl::Status CniManager::Teardown(const PodNetworkRequest& req) {
  RETURN_IF_ERROR(ValidateRequest(req));
  std::shared_ptr<const NetConfList> list;
  Invocation inv;
  json result;
  auto cached = impl_->ReadCache(req.container_id, req.ifname);
  if (cached.ok()) {
    list = cached->list;
    inv = cached->inv;
    // The caller knows best where the namespace is now; it may be gone,
    // which plugins tolerate on DEL.
    if (!req.netns_path.empty()) inv.netns = req.netns_path;
    result = cached->result;
  } else {
    if (!absl::IsNotFound(cached.status()))
      Log()->warn("{}: ignoring CNI cache: {}", req.container_id, cached.status().ToString());
    // Nothing cached: ADD may still have run (a crash before the cache
    // write), so DEL with the current config as containerd does; plugins
    // treat DEL of something unknown as success.
    auto [cur, status] = impl_->Current();
    if (!status.ok()) {
      Log()->info("{}: no cached network and {}; nothing to tear down", req.container_id,
                  std::string(status.message()));
      return absl::OkStatus();
    }
    if (auto s = impl_->CheckPlugins(*cur); !s.ok()) {
      Log()->warn("{}: no cached network and {}; nothing to tear down", req.container_id,
                  std::string(s.message()));
      return absl::OkStatus();
    }
    list = cur;
    inv = FromRequest(req);
  }
  // Stop at the first failure as libcni does: the cache entry stays and the
  // next Teardown runs every DEL again (DEL is idempotent).
  RETURN_IF_ERROR(impl_->DelFrom(list->plugins.size() - 1, *list, result, inv, /*stop_on_error=*/true));
  std::string path = impl_->CachePath(req.container_id, req.ifname);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + path);
  return absl::OkStatus();
}

absl::Status CniManager::Check(const PodNetworkRequest& req) {
  RETURN_IF_ERROR(ValidateRequest(req));
  auto cached = impl_->ReadCache(req.container_id, req.ifname);
  if (absl::IsNotFound(cached.status()))
    return absl::NotFoundError(absl::StrCat("no network result cached for ", req.container_id));
  if (!cached.ok()) return cached.status();
  if (!cached->complete)
    return absl::FailedPreconditionError(
        absl::StrCat("network setup of ", req.container_id, " did not complete"));
  // The config the sandbox was set up with, not the current one: a changed
  // file must not make every existing pod fail its check.
  const NetConfList& list = *cached->list;
  if (!VersionAtLeast(list.cni_version, "0.4.0")) return absl::OkStatus();  // CHECK exists from 0.4.0 on
  Invocation inv = cached->inv;
  if (!req.netns_path.empty()) inv.netns = req.netns_path;
  for (const auto& p : list.plugins) {
    auto r = impl_->Invoke("CHECK", list, p, cached->result, inv);
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

std::optional<PodNetworkResult> CniManager::CachedResult(const std::string& container_id) {
  if (!IsPlainName(container_id)) return std::nullopt;
  auto cached = impl_->ReadCache(container_id, "eth0");
  if (!cached.ok() || !cached->complete) return std::nullopt;
  return ParseResult(cached->list->name, cached->result);
}

}  // namespace crisp::netcni
