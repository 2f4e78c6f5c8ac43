#include "runtime/cgroups.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::runtime {
namespace {

class FsCgroupWriter : public CgroupWriter {
 public:
  absl::Status Mkdir(const std::string& dir) override {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir);
    return absl::OkStatus();
  }
  absl::Status Rmdir(const std::string& dir) override {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "rmdir " + dir);
    return absl::OkStatus();
  }
  absl::Status Write(const std::string& file, const std::string& value) override {
    // No O_CREAT and no O_TRUNC: cgroupfs control files exist and take one write.
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return ErrnoStatus(errno, "opening " + file);
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("writing \"", value, "\" to ", file));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Read(const std::string& file) override { return ReadFile(file); }
  bool Exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }
};

// Kubernetes/runc conversion of cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000].
int64_t SharesToWeight(int64_t shares) {
  if (shares <= 0) return 0;
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::unique_ptr<CgroupWriter> NewFsCgroupWriter() { return std::make_unique<FsCgroupWriter>(); }

int64_t CpuSharesToWeight(int64_t shares) { return SharesToWeight(shares); }

CgroupLayout CgroupLayout::FromMountinfo(const std::string& mountinfo) {
  CgroupLayout l;
  std::string v2_mount;
  std::istringstream in(mountinfo);
  std::string line;
  while (std::getline(in, line)) {
    // "<id> <parent> <maj:min> <root> <mountpoint> <opts> [optional...] - <fstype> <source> <superopts>"
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::vector<std::string> left = absl::StrSplit(line.substr(0, sep), ' ', absl::SkipEmpty());
    std::vector<std::string> right = absl::StrSplit(line.substr(sep + 3), ' ', absl::SkipEmpty());
    if (left.size() < 5 || right.size() < 3) continue;
    const std::string& mountpoint = left[4];
    if (right[0] == "cgroup2") {
      v2_mount = mountpoint;
    } else if (right[0] == "cgroup") {
      for (absl::string_view opt : absl::StrSplit(right[2], ',')) {
        static const std::set<std::string> kControllers = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer",
                                                           "blkio", "pids", "hugetlb", "net_cls", "net_prio",
                                                           "perf_event", "rdma", "misc"};
        if (kControllers.count(std::string(opt))) l.v1_roots[std::string(opt)] = mountpoint;
        if (opt == "name=systemd") l.v1_roots["name=systemd"] = mountpoint;
      }
    }
  }
  // Pure v2 (no v1 controller hierarchies): use the unified tree.
  if (!v2_mount.empty() && l.v1_roots.empty()) {
    l.v2 = true;
    l.unified_root = v2_mount;
  } else if (!v2_mount.empty() && l.v1_roots.count("name=systemd") == l.v1_roots.size()) {
    l.v2 = true;
    l.unified_root = v2_mount;
    l.v1_roots.clear();
  }
  return l;
}

absl::StatusOr<CgroupLayout> CgroupLayout::Detect() {
  ASSIGN_OR_RETURN(std::string mi, ReadFile("/proc/self/mountinfo"));
  CgroupLayout l = FromMountinfo(mi);
  // Hybrid with controllers enabled in the unified tree: prefer v2 only when
  // no v1 controller hierarchy is mounted (otherwise the controllers are on v1).
  if (!l.v2 && l.v1_roots.empty()) return absl::FailedPreconditionError("no cgroup hierarchy is mounted");
  return l;
}

CgroupManager::CgroupManager(CgroupLayout layout, std::unique_ptr<CgroupWriter> writer)
    : layout_(std::move(layout)), writer_(std::move(writer)) {}

namespace {

// Directories of the cgroup in each hierarchy, keyed by controller ("" for v2).
std::map<std::string, std::string> Dirs(const CgroupLayout& l, const std::string& path) {
  std::map<std::string, std::string> out;
  if (l.v2) {
    out[""] = JoinPath(l.unified_root, path);
  } else {
    std::set<std::string> seen;  // comounted controllers share a directory
    for (const auto& [ctrl, root] : l.v1_roots) {
      std::string d = JoinPath(root, path);
      if (seen.insert(d).second) out[ctrl] = d;
    }
  }
  return out;
}

std::string DirFor(const CgroupLayout& l, const std::string& ctrl, const std::string& path) {
  if (l.v2) return JoinPath(l.unified_root, path);
  auto it = l.v1_roots.find(ctrl);
  return it == l.v1_roots.end() ? "" : JoinPath(it->second, path);
}

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) out.emplace_back(p);
  return out;
}

}  // namespace

absl::Status CgroupManager::Create(const std::string& path, const CgroupResources& res) {
  for (const auto& c : Components(path))
    if (c == "..") return absl::InvalidArgumentError(absl::StrCat("cgroup path \"", path, "\" contains \"..\""));
  std::vector<std::string> created;
  auto rollback = [&] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) (void)writer_->Rmdir(*it);
  };
  std::vector<std::string> comps = Components(path);
  std::map<std::string, std::string> roots;
  if (layout_.v2) roots[""] = layout_.unified_root;
  else {
    std::set<std::string> seen;
    for (const auto& [ctrl, root] : layout_.v1_roots)
      if (seen.insert(root).second) roots[ctrl] = root;
  }
  for (const auto& [ctrl, root] : roots) {
    std::string cur = root;
    for (const auto& c : comps) {
      std::string parent = cur;
      cur = JoinPath(cur, c);
      if (writer_->Exists(cur)) continue;
      if (layout_.v2) {
        // Enable the controllers we write in the parent, best effort (some may be absent).
        for (const char* ctl : {"+cpu", "+cpuset", "+memory", "+pids", "+hugetlb", "+io"})
          (void)writer_->Write(JoinPath(parent, "cgroup.subtree_control"), ctl);
      }
      if (auto s = writer_->Mkdir(cur); !s.ok()) {
        rollback();
        return s;
      }
      created.push_back(cur);
      if (!layout_.v2 && ctrl == "cpuset") {
        // A new v1 cpuset cgroup starts empty and refuses tasks until it has cpus and mems.
        for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
          auto v = writer_->Read(JoinPath(parent, f));
          if (v.ok()) (void)writer_->Write(JoinPath(cur, f), Trim(*v));
        }
      }
    }
  }
  if (auto s = Update(path, res); !s.ok()) {
    rollback();
    return s;
  }
  return absl::OkStatus();
}

absl::Status CgroupManager::Update(const std::string& path, const CgroupResources& res) {
  auto write = [&](const std::string& ctrl, const std::string& file, const std::string& value) -> absl::Status {
    std::string dir = DirFor(layout_, ctrl, path);
    if (dir.empty()) return absl::OkStatus();  // controller not mounted: nothing to limit with
    return writer_->Write(JoinPath(dir, file), value);
  };
  for (const auto& [k, v] : res.unified) {
    if (!layout_.v2) return absl::InvalidArgumentError("unified cgroup settings need cgroup v2");
    if (k.find('/') != std::string::npos || k.find("..") != std::string::npos || k.empty())
      return absl::InvalidArgumentError(absl::StrCat("invalid unified cgroup key \"", k, "\""));
  }
  if (layout_.v2) {
    if (res.cpu_shares && *res.cpu_shares > 0)
      RETURN_IF_ERROR(write("", "cpu.weight", std::to_string(SharesToWeight(*res.cpu_shares))));
    if (res.cpu_quota || res.cpu_period) {
      int64_t period = res.cpu_period.value_or(100000);
      std::string quota = (!res.cpu_quota || *res.cpu_quota <= 0) ? "max" : std::to_string(*res.cpu_quota);
      RETURN_IF_ERROR(write("", "cpu.max", absl::StrCat(quota, " ", period)));
    }
    if (res.cpuset_cpus) RETURN_IF_ERROR(write("", "cpuset.cpus", *res.cpuset_cpus));
    if (res.cpuset_mems) RETURN_IF_ERROR(write("", "cpuset.mems", *res.cpuset_mems));
    if (res.memory_limit)
      RETURN_IF_ERROR(write("", "memory.max", *res.memory_limit > 0 ? std::to_string(*res.memory_limit) : "max"));
    if (res.memory_swap_limit && *res.memory_swap_limit > 0 && res.memory_limit && *res.memory_limit > 0) {
      int64_t swap = *res.memory_swap_limit - *res.memory_limit;
      RETURN_IF_ERROR(write("", "memory.swap.max", std::to_string(swap < 0 ? 0 : swap)));
    }
    if (res.pids_limit) RETURN_IF_ERROR(write("", "pids.max", *res.pids_limit > 0 ? std::to_string(*res.pids_limit) : "max"));
    for (const auto& [size, limit] : res.hugepage_limits)
      RETURN_IF_ERROR(write("", absl::StrCat("hugetlb.", size, ".max"), std::to_string(limit)));
    for (const auto& [k, v] : res.unified) RETURN_IF_ERROR(write("", k, v));
    return absl::OkStatus();
  }
  if (res.cpu_shares && *res.cpu_shares > 0) RETURN_IF_ERROR(write("cpu", "cpu.shares", std::to_string(*res.cpu_shares)));
  if (res.cpu_period) RETURN_IF_ERROR(write("cpu", "cpu.cfs_period_us", std::to_string(*res.cpu_period)));
  if (res.cpu_quota)
    RETURN_IF_ERROR(write("cpu", "cpu.cfs_quota_us", std::to_string(*res.cpu_quota > 0 ? *res.cpu_quota : -1)));
  if (res.cpuset_cpus) RETURN_IF_ERROR(write("cpuset", "cpuset.cpus", *res.cpuset_cpus));
  if (res.cpuset_mems) RETURN_IF_ERROR(write("cpuset", "cpuset.mems", *res.cpuset_mems));
  if (res.memory_limit) {
    std::string v = *res.memory_limit > 0 ? std::to_string(*res.memory_limit) : "-1";
    // memsw must stay >= the memory limit: raise it first when it exists.
    std::string memsw = JoinPath(DirFor(layout_, "memory", path), "memory.memsw.limit_in_bytes");
    bool has_memsw = writer_->Exists(memsw);
    if (res.memory_swap_limit && *res.memory_swap_limit > 0 && has_memsw) {
      (void)writer_->Write(memsw, std::to_string(*res.memory_swap_limit));
      RETURN_IF_ERROR(write("memory", "memory.limit_in_bytes", v));
      RETURN_IF_ERROR(writer_->Write(memsw, std::to_string(*res.memory_swap_limit)));
    } else {
      RETURN_IF_ERROR(write("memory", "memory.limit_in_bytes", v));
    }
  }
  if (res.pids_limit)
    RETURN_IF_ERROR(write("pids", "pids.max", *res.pids_limit > 0 ? std::to_string(*res.pids_limit) : "max"));
  for (const auto& [size, limit] : res.hugepage_limits)
    RETURN_IF_ERROR(write("hugetlb", absl::StrCat("hugetlb.", size, ".limit_in_bytes"), std::to_string(limit)));
  return absl::OkStatus();
}

absl::Status CgroupManager::AddProcess(const std::string& path, int pid) {
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) {
    RETURN_IF_ERROR(writer_->Write(JoinPath(dir, "cgroup.procs"), std::to_string(pid)));
  }
  return absl::OkStatus();
}

absl::Status CgroupManager::Destroy(const std::string& path) {
  absl::Status first;
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) {
    absl::Status s = writer_->Rmdir(dir);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

bool CgroupManager::Exists(const std::string& path) {
  for (const auto& [ctrl, dir] : Dirs(layout_, path))
    if (writer_->Exists(dir)) return true;
  return false;
}

}  // namespace crisp::runtime
