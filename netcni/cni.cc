#include "netcni/cni.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

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

// A loaded network configuration list.
struct NetConfList {
  std::string file;
  std::string name;
  std::string cni_version;
  std::vector<json> plugins;
  json raw;  // the list form, as cached for DEL
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
bool VersionAtLeast(const std::string& v, const std::string& min) { return VersionParts(v) >= VersionParts(min); }

absl::StatusOr<NetConfList> ParseConfList(const std::string& file, const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  NetConfList l;
  l.file = file;
  if (absl::EndsWith(file, ".conflist")) {
    if (!j.contains("plugins") || !j["plugins"].is_array() || j["plugins"].empty())
      return absl::InvalidArgumentError(absl::StrCat(file, ": \"plugins\" must be a non-empty list"));
    l.raw = j;
  } else {
    // A single-plugin .conf/.json file is a list of one.
    json plugin = j;
    l.raw = {{"cniVersion", j.value("cniVersion", "")}, {"name", j.value("name", "")}, {"plugins", json::array({plugin})}};
  }
  if (!l.raw.contains("name") || !l.raw["name"].is_string() || l.raw["name"].get<std::string>().empty())
    return absl::InvalidArgumentError(absl::StrCat(file, ": network \"name\" is missing"));
  l.name = l.raw["name"];
  l.cni_version = l.raw.value("cniVersion", "0.3.0");
  for (const auto& p : l.raw["plugins"]) {
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      return absl::InvalidArgumentError(absl::StrCat(file, ": every plugin needs a \"type\""));
    l.plugins.push_back(p);
  }
  return l;
}


}  // namespace

struct CniManager::Impl {
  CniOptions opts;
  std::unique_ptr<CniInvoker> invoker;

  std::mutex mu;
  std::string signature;  // what was on disk when `loaded` was read
  std::shared_ptr<const NetConfList> loaded;
  absl::Status load_status = absl::FailedPreconditionError("not loaded yet");

  // Re-reads the configuration if the directory or the chosen file changed.
  std::pair<std::shared_ptr<const NetConfList>, absl::Status> Current() {
    std::string sig;
    std::string chosen;
    struct stat st;
    if (::stat(opts.conf_dir.c_str(), &st) == 0) {
      sig = absl::StrCat(st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
      auto names = ListDir(opts.conf_dir);
      if (names.ok()) {
        for (const auto& n : *names) {  // sorted: the lexically first wins
          if (absl::EndsWith(n, ".conflist") || absl::EndsWith(n, ".conf") || absl::EndsWith(n, ".json")) {
            chosen = JoinPath(opts.conf_dir, n);
            break;
          }
        }
      }
      struct stat fst;
      if (!chosen.empty() && ::stat(chosen.c_str(), &fst) == 0)
        absl::StrAppend(&sig, "|", chosen, "|", fst.st_mtim.tv_sec, ".", fst.st_mtim.tv_nsec, "|", fst.st_size);
    }
    std::lock_guard<std::mutex> lock(mu);
    if (sig == signature && !sig.empty()) return {loaded, load_status};
    signature = sig;
    loaded.reset();
    if (chosen.empty()) {
      load_status = absl::FailedPreconditionError(absl::StrCat("no network config found in ", opts.conf_dir));
    } else if (auto text = ReadFile(chosen); !text.ok()) {
      load_status = text.status();
    } else if (auto l = ParseConfList(chosen, *text); !l.ok()) {
      load_status = absl::FailedPreconditionError(absl::StrCat("invalid network config ", l.status().message()));
    } else {
      loaded = std::make_shared<const NetConfList>(std::move(*l));
      load_status = absl::OkStatus();
      Log()->info("loaded CNI network \"{}\" from {}", loaded->name, chosen);
    }
    if (!load_status.ok()) Log()->info("CNI not ready: {}", std::string(load_status.message()));
    return {loaded, load_status};
  }

  absl::StatusOr<std::string> FindPlugin(const std::string& type) const {
    if (type.find('/') != std::string::npos) return absl::InvalidArgumentError("plugin type must be a plain name");
    for (const auto& d : opts.bin_dirs) {
      std::string p = JoinPath(d, type);
      if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("CNI plugin \"", type, "\" not found in ", absl::StrJoin(opts.bin_dirs, ":")));
  }

  json RuntimeConfig(const json& plugin, const PodNetworkRequest& req) const {
    json rc = json::object();
    if (!plugin.contains("capabilities") || !plugin["capabilities"].is_object()) return rc;
    const json& caps = plugin["capabilities"];
    auto has = [&](const char* c) { return caps.contains(c) && caps[c].is_boolean() && caps[c].get<bool>(); };
    if (has("portMappings")) {
      json pm = json::array();
      for (const auto& m : req.port_mappings) {
        json e = {{"hostPort", m.host_port}, {"containerPort", m.container_port}, {"protocol", m.protocol}};
        if (!m.host_ip.empty()) e["hostIP"] = m.host_ip;
        pm.push_back(e);
      }
      rc["portMappings"] = pm;
    }
    if (has("dns") && !(req.dns_servers.empty() && req.dns_searches.empty() && req.dns_options.empty()))
      rc["dns"] = {{"servers", req.dns_servers}, {"searches", req.dns_searches}, {"options", req.dns_options}};
    if (has("bandwidth") && req.bandwidth)
      rc["bandwidth"] = {{"ingressRate", req.bandwidth->ingress_rate}, {"ingressBurst", req.bandwidth->ingress_burst},
                         {"egressRate", req.bandwidth->egress_rate}, {"egressBurst", req.bandwidth->egress_burst}};
    if (has("ipRanges") && !req.pod_cidr.empty())
      rc["ipRanges"] = json::array({json::array({{{"subnet", req.pod_cidr}}})});
    return rc;
  }

  std::vector<std::string> Env(const std::string& command, const PodNetworkRequest& req) const {
    std::vector<std::string> env = {
        "CNI_COMMAND=" + command,
        "CNI_CONTAINERID=" + req.container_id,
        "CNI_NETNS=" + req.netns_path,
        "CNI_IFNAME=" + req.ifname,
        absl::StrCat("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=", req.pod_namespace, ";K8S_POD_NAME=", req.pod_name,
                     ";K8S_POD_INFRA_CONTAINER_ID=", req.container_id, ";K8S_POD_UID=", req.pod_uid),
        "CNI_PATH=" + absl::StrJoin(opts.bin_dirs, ":"),
    };
    const char* path = ::getenv("PATH");
    env.push_back(std::string("PATH=") + (path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    return env;
  }

  // Runs one plugin; returns its parsed stdout (null for DEL/CHECK with no output).
  absl::StatusOr<json> Invoke(const std::string& command, const NetConfList& list, const json& plugin,
                              const json& prev_result, const PodNetworkRequest& req) {
    std::string type = plugin["type"];
    ASSIGN_OR_RETURN(std::string path, FindPlugin(type));
    json conf = plugin;
    conf["name"] = list.name;
    conf["cniVersion"] = list.cni_version;
    conf.erase("capabilities");  // runtimeConfig carries what the plugin asked for
    json rc = RuntimeConfig(plugin, req);
    if (!rc.empty()) conf["runtimeConfig"] = rc;
    if (!prev_result.is_null()) conf["prevResult"] = prev_result;
    absl::Time start = absl::Now();
    auto res = invoker->Exec(path, Env(command, req), conf.dump(), opts.plugin_timeout);
    Log()->debug("{} {} for {} took {:.1f} ms", type, command, req.container_id,
                 absl::ToDoubleMilliseconds(absl::Now() - start));
    if (!res.ok()) return Annotate(res.status(), absl::StrCat("CNI plugin \"", type, "\" ", command));
    if (res->exit_code != 0) {
      std::string msg;
      json err = json::parse(res->stdout_data, nullptr, false);
      if (!err.is_discarded() && err.is_object() && err.contains("msg")) {
        msg = err.value("msg", "");
        std::string details = err.value("details", "");
        if (!details.empty()) absl::StrAppend(&msg, ": ", details);
        if (err.contains("code")) absl::StrAppend(&msg, " (code ", err["code"].dump(), ")");
      } else {
        msg = !res->stderr_data.empty() ? res->stderr_data : res->stdout_data;
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        if (msg.empty()) msg = absl::StrCat("exit status ", res->exit_code);
      }
      return absl::UnavailableError(absl::StrCat("CNI plugin \"", type, "\" failed ", command, ": ", msg));
    }
    if (command != "ADD") return json();
    json out = json::parse(res->stdout_data, nullptr, false);
    if (out.is_discarded() || !out.is_object())
      return absl::InternalError(absl::StrCat("CNI plugin \"", type, "\" ADD printed no JSON result"));
    return out;
  }

  std::string CachePath(const std::string& container_id, const std::string& ifname) const {
    return JoinPath(JoinPath(opts.cache_dir, "results"), absl::StrCat(container_id, "-", ifname, ".json"));
  }
};

PodNetworkResult ParseResult(const std::string& network, const json& result) {
  PodNetworkResult out;
  out.network_name = network;
  out.raw_result = result;
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
      if (slash != std::string::npos) (void)absl::SimpleAtoi(addr.substr(slash + 1), &p.prefix_len);
      p.ipv6 = p.address.find(':') != std::string::npos;
      bool sb = false;
      if (ip.contains("interface") && ip["interface"].is_number_integer()) {
        int idx = ip["interface"];
        sb = idx >= 0 && static_cast<size_t>(idx) < in_sandbox.size() && in_sandbox[idx];
      }
      (sb ? sandbox_ips : other_ips).push_back(p);
    }
  }
  std::vector<PodIp> ips = sandbox_ips.empty() ? other_ips : sandbox_ips;
  std::stable_partition(ips.begin(), ips.end(), [](const PodIp& p) { return !p.ipv6; });
  out.ips = ips;
  return out;
}

CniManager::CniManager(CniOptions opts, std::unique_ptr<CniInvoker> invoker) : impl_(std::make_shared<Impl>()) {
  impl_->opts = std::move(opts);
  impl_->invoker = std::move(invoker);
  if (impl_->opts.cache_dir.empty()) impl_->opts.cache_dir = "/var/lib/crisp/cni";
}

absl::Status CniManager::Ready() {
  auto [list, status] = impl_->Current();
  if (!status.ok()) return status;
  for (const auto& p : list->plugins) {
    if (auto path = impl_->FindPlugin(p["type"]); !path.ok()) return path.status();
  }
  return absl::OkStatus();
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
  auto [list, status] = impl_->Current();
  if (!status.ok()) return Annotate(status, "network not ready");
  json prev;
  for (size_t i = 0; i < list->plugins.size(); ++i) {
    auto r = impl_->Invoke("ADD", *list, list->plugins[i], prev, req);
    if (!r.ok()) {
      // Undo: DEL every plugin up to and including the failed one, in reverse.
      for (size_t j = i + 1; j-- > 0;) {
        auto d = impl_->Invoke("DEL", *list, list->plugins[j],
                               VersionAtLeast(list->cni_version, "0.4.0") ? prev : json(), req);
        if (!d.ok()) Log()->warn("rollback of {}: {}", req.container_id, d.status().ToString());
      }
      return r.status();
    }
    prev = *r;
  }
  json cache = {{"kind", "crispCniCacheV1"},
                {"containerId", req.container_id},
                {"ifName", req.ifname},
                {"netns", req.netns_path},
                {"config", list->raw},
                {"configFile", list->file},
                {"podName", req.pod_name},
                {"podNamespace", req.pod_namespace},
                {"podUid", req.pod_uid},
                {"result", prev}};
  json pms = json::array();
  for (const auto& m : req.port_mappings)
    pms.push_back({{"protocol", m.protocol}, {"containerPort", m.container_port}, {"hostPort", m.host_port},
                   {"hostIP", m.host_ip}});
  cache["portMappings"] = pms;
  cache["podCidr"] = req.pod_cidr;
  std::string path = impl_->CachePath(req.container_id, req.ifname);
  absl::Status s = MkdirAll(JoinPath(impl_->opts.cache_dir, "results"), 0700);
  if (s.ok()) s = WriteFileAtomic(path, cache.dump(), 0600);
  if (!s.ok()) {
    for (size_t j = list->plugins.size(); j-- > 0;) (void)impl_->Invoke("DEL", *list, list->plugins[j], prev, req);
    return Annotate(s, "caching CNI result");
  }
  return ParseResult(list->name, prev);
}

absl::Status CniManager::Teardown(const PodNetworkRequest& req) {
  std::string path = impl_->CachePath(req.container_id, req.ifname);
  std::shared_ptr<const NetConfList> list;
  json prev;
  PodNetworkRequest r = req;
  if (auto text = ReadFile(path); text.ok()) {
    json c = json::parse(*text, nullptr, false);
    if (!c.is_discarded() && c.is_object() && c.contains("config")) {
      // The cache always holds the list form, whatever file it came from.
      auto l = ParseConfList("cached.conflist", c["config"].dump());
      if (l.ok()) {
        l->file = c.value("configFile", std::string());
        list = std::make_shared<const NetConfList>(std::move(*l));
      }
      prev = c.value("result", json());
      if (r.port_mappings.empty() && c.contains("portMappings")) {
        for (const auto& m : c["portMappings"])
          r.port_mappings.push_back({m.value("protocol", "tcp"), m.value("containerPort", 0), m.value("hostPort", 0),
                                     m.value("hostIP", "")});
      }
      if (r.pod_cidr.empty()) r.pod_cidr = c.value("podCidr", "");
    }
  }
  if (!list) {
    // No cache (a crash between ADD and the cache write): DEL with what is configured now.
    auto [cur, status] = impl_->Current();
    if (!status.ok()) return absl::OkStatus();  // nothing configured, nothing we could delete
    list = cur;
  }
  for (size_t j = list->plugins.size(); j-- > 0;) {
    auto d = impl_->Invoke("DEL", *list, list->plugins[j],
                           VersionAtLeast(list->cni_version, "0.4.0") ? prev : json(), r);
    if (!d.ok()) return d.status();
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + path);
  return absl::OkStatus();
}

absl::Status CniManager::Check(const PodNetworkRequest& req) {
  auto cached = CachedResult(req.container_id);
  if (!cached) return absl::NotFoundError(absl::StrCat("no network result cached for ", req.container_id));
  auto [list, status] = impl_->Current();
  if (!status.ok()) return status;
  if (!VersionAtLeast(list->cni_version, "0.4.0")) return absl::OkStatus();  // CHECK exists from 0.4.0
  for (const auto& p : list->plugins) {
    auto r = impl_->Invoke("CHECK", *list, p, cached->raw_result, req);
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

std::optional<PodNetworkResult> CniManager::CachedResult(const std::string& container_id) {
  auto text = ReadFile(impl_->CachePath(container_id, "eth0"));
  if (!text.ok()) return std::nullopt;
  json c = json::parse(*text, nullptr, false);
  if (c.is_discarded() || !c.is_object()) return std::nullopt;
  std::string name = c.contains("config") ? c["config"].value("name", "") : "";
  return ParseResult(name, c.value("result", json()));
}

}  // namespace crisp::netcni
