#include "runtime/cgroups.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::runtime {
namespace {

constexpr char kPureV2Root[] = "/sys/fs/cgroup";

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

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountinfo(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t j) { return j < s.size() && s[j] >= '0' && s[j] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool IsV1Controller(absl::string_view opt) {
  static const std::set<std::string, std::less<>> kControllers = {
      "cpu",  "cpuacct", "cpuset",  "memory",   "devices",    "freezer", "blkio",
      "pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",    "misc"};
  return kControllers.count(opt) > 0;
}

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty())) out.emplace_back(p);
  return out;
}

absl::Status ValidatePath(const std::string& path) {
  std::vector<std::string> comps = Components(path);
  if (comps.empty())
    return absl::InvalidArgumentError("empty cgroup path: refusing to manage a hierarchy root");
  for (const auto& c : comps)
    if (c == "." || c == "..")
      return absl::InvalidArgumentError(absl::StrCat("cgroup path \"", path, "\" contains \"", c, "\""));
  return absl::OkStatus();
}

// A file name that stays inside the cgroup directory.
bool IsPlainName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find("..") == std::string::npos;
}

}  // namespace

std::unique_ptr<CgroupWriter> NewFsCgroupWriter() { return std::make_unique<FsCgroupWriter>(); }

int64_t CpuSharesToWeight(int64_t shares) {
  if (shares <= 0) return 0;
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

CgroupLayout CgroupLayout::FromMountinfo(const std::string& mountinfo) {
  CgroupLayout l;
  std::vector<std::string> v2_mounts;
  bool v1_controllers = false;
  std::istringstream in(mountinfo);
  std::string line;
  while (std::getline(in, line)) {
    // "<id> <parent> <maj:min> <root> <mountpoint> <opts> [optional...] - <fstype> <source> <superopts>"
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::vector<std::string> left = absl::StrSplit(line.substr(0, sep), ' ', absl::SkipEmpty());
    std::vector<std::string> right = absl::StrSplit(line.substr(sep + 3), ' ', absl::SkipEmpty());
    if (left.size() < 5 || right.size() < 3) continue;
    if (left[3] != "/") continue;  // a bind mount of a sub-cgroup, not a hierarchy root
    std::string mountpoint = UnescapeMountinfo(left[4]);
    if (right[0] == "cgroup2") {
      v2_mounts.push_back(mountpoint);
    } else if (right[0] == "cgroup") {
      for (absl::string_view opt : absl::StrSplit(right[2], ',')) {
        std::string key;
        if (IsV1Controller(opt)) {
          key = std::string(opt);
          v1_controllers = true;
        } else if (absl::StartsWith(opt, "name=")) {
          key = std::string(opt);
        } else {
          continue;
        }
        // The first mount of a hierarchy wins: later ones are usually bind
        // mounts into chroots or containers of the same hierarchy.
        l.v1_roots.emplace(key, mountpoint);
      }
    }
  }
  for (const auto& m : v2_mounts) {
    if (m == kPureV2Root) {
      l.v2 = true;
      l.unified_root = m;
    }
  }
  if (!l.v2 && !v1_controllers && !v2_mounts.empty()) {
    l.v2 = true;
    l.unified_root = v2_mounts.front();
  }
  if (l.v2) l.v1_roots.clear();
  return l;
}

absl::StatusOr<CgroupLayout> CgroupLayout::Detect() {
  ASSIGN_OR_RETURN(std::string mi, ReadFile("/proc/self/mountinfo"));
  CgroupLayout l = FromMountinfo(mi);
  if (!l.v2 && l.v1_roots.empty()) return absl::FailedPreconditionError("no cgroup hierarchy is mounted");
  return l;
}

CgroupManager::CgroupManager(CgroupLayout layout, std::unique_ptr<CgroupWriter> writer)
    : layout_(std::move(layout)), writer_(std::move(writer)) {}

namespace {

// Hierarchy roots, each once (comounted controllers share one), keyed by the
// first controller naming it ("" for v2).
std::map<std::string, std::string> Roots(const CgroupLayout& l) {
  std::map<std::string, std::string> out;
  if (l.v2) {
    out[""] = l.unified_root;
    return out;
  }
  std::set<std::string> seen;
  for (const auto& [ctrl, root] : l.v1_roots)
    if (seen.insert(root).second) out[ctrl] = root;
  return out;
}

// Directories of the cgroup in each hierarchy.
std::map<std::string, std::string> Dirs(const CgroupLayout& l, const std::string& path) {
  std::map<std::string, std::string> out;
  for (const auto& [ctrl, root] : Roots(l)) out[ctrl] = JoinPath(root, path);
  return out;
}

std::string DirFor(const CgroupLayout& l, const std::string& ctrl, const std::string& path) {
  if (l.v2) return JoinPath(l.unified_root, path);
  auto it = l.v1_roots.find(ctrl);
  return it == l.v1_roots.end() ? "" : JoinPath(it->second, path);
}

// What Update() would reject, checked before anything is created or written.
absl::Status ValidateResources(const CgroupLayout& layout, const CgroupResources& res) {
  for (const auto& [k, v] : res.unified) {
    if (!layout.v2) return absl::InvalidArgumentError("unified cgroup settings need cgroup v2");
    if (!IsPlainName(k))
      return absl::InvalidArgumentError(absl::StrCat("invalid unified cgroup key \"", k, "\""));
  }
  for (const auto& [size, limit] : res.hugepage_limits)
    if (!IsPlainName(size))
      return absl::InvalidArgumentError(absl::StrCat("invalid hugepage size \"", size, "\""));
  return absl::OkStatus();
}

}  // namespace

absl::Status CgroupManager::Create(const std::string& path, const CgroupResources& res) {
  RETURN_IF_ERROR(ValidatePath(path));
  RETURN_IF_ERROR(ValidateResources(layout_, res));

  std::vector<std::string> created;
  auto rollback = [&] {
    for (auto it = created.rbegin(); it != created.rend(); ++it) (void)writer_->Rmdir(*it);
  };
  const std::vector<std::string> comps = Components(path);
  auto cpuset = layout_.v1_roots.find("cpuset");
  for (const auto& [ctrl, root] : Roots(layout_)) {
    const bool is_cpuset = !layout_.v2 && cpuset != layout_.v1_roots.end() && cpuset->second == root;
    std::string cur = root;
    for (const auto& c : comps) {
      std::string parent = cur;
      cur = JoinPath(cur, c);
      if (layout_.v2) {
        // Control files of a controller appear in a child only when the
        // parent enables it. Each one separately: a single write naming an
        // unavailable controller would enable none. EBUSY (processes in a
        // non-root parent) and the like are not ours to fix.
        auto avail = writer_->Read(JoinPath(parent, "cgroup.controllers"));
        if (avail.ok()) {
          for (absl::string_view ctl : absl::StrSplit(*avail, absl::ByAnyChar(" \n"), absl::SkipEmpty()))
            (void)writer_->Write(JoinPath(parent, "cgroup.subtree_control"), absl::StrCat("+", ctl));
        }
      }
      if (writer_->Exists(cur)) continue;
      if (auto s = writer_->Mkdir(cur); !s.ok()) {
        rollback();
        return s;
      }
      created.push_back(cur);
      if (is_cpuset) {
        // A new v1 cpuset cgroup starts empty and refuses tasks until it has cpus and mems.
        for (const char* f : {"cpuset.cpus", "cpuset.mems"}) {
          auto v = writer_->Read(JoinPath(parent, f));
          absl::Status s = v.ok() ? writer_->Write(JoinPath(cur, f), Trim(*v)) : v.status();
          if (!s.ok()) {
            rollback();
            return Annotate(s, "seeding cpuset of " + cur);
          }
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
  RETURN_IF_ERROR(ValidatePath(path));
  auto write = [&](const std::string& ctrl, const std::string& file,
                   const std::string& value) -> absl::Status {
    std::string dir = DirFor(layout_, ctrl, path);
    if (dir.empty()) return absl::OkStatus();  // controller not mounted: nothing to limit with
    return writer_->Write(JoinPath(dir, file), value);
  };
  RETURN_IF_ERROR(ValidateResources(layout_, res));

  if (layout_.v2) {
    if (res.cpu_shares && *res.cpu_shares > 0)
      RETURN_IF_ERROR(write("", "cpu.weight", std::to_string(CpuSharesToWeight(*res.cpu_shares))));
    if (res.cpu_quota || res.cpu_period) {
      int64_t period = res.cpu_period.value_or(0) > 0 ? *res.cpu_period : 100000;
      std::string quota = (!res.cpu_quota || *res.cpu_quota <= 0) ? "max" : std::to_string(*res.cpu_quota);
      RETURN_IF_ERROR(write("", "cpu.max", absl::StrCat(quota, " ", period)));
    }
    if (res.cpuset_cpus) RETURN_IF_ERROR(write("", "cpuset.cpus", *res.cpuset_cpus));
    if (res.cpuset_mems) RETURN_IF_ERROR(write("", "cpuset.mems", *res.cpuset_mems));
    if (res.memory_limit)
      RETURN_IF_ERROR(
          write("", "memory.max", *res.memory_limit > 0 ? std::to_string(*res.memory_limit) : "max"));
    // v2 limits swap alone; CRI (like v1) gives memory+swap.
    if (res.memory_swap_limit && *res.memory_swap_limit > 0 && res.memory_limit && *res.memory_limit > 0) {
      int64_t swap = *res.memory_swap_limit - *res.memory_limit;
      RETURN_IF_ERROR(write("", "memory.swap.max", std::to_string(swap < 0 ? 0 : swap)));
    }
    if (res.pids_limit)
      RETURN_IF_ERROR(write("", "pids.max", *res.pids_limit > 0 ? std::to_string(*res.pids_limit) : "max"));
    for (const auto& [size, limit] : res.hugepage_limits)
      RETURN_IF_ERROR(write("", absl::StrCat("hugetlb.", size, ".max"), std::to_string(limit)));
    for (const auto& [k, v] : res.unified) RETURN_IF_ERROR(write("", k, v));
    return absl::OkStatus();
  }

  if (res.cpu_shares && *res.cpu_shares > 0)
    RETURN_IF_ERROR(write("cpu", "cpu.shares", std::to_string(*res.cpu_shares)));
  // Period first: the kernel checks the quota against the current period.
  if (res.cpu_period && *res.cpu_period > 0)
    RETURN_IF_ERROR(write("cpu", "cpu.cfs_period_us", std::to_string(*res.cpu_period)));
  if (res.cpu_quota)
    RETURN_IF_ERROR(
        write("cpu", "cpu.cfs_quota_us", std::to_string(*res.cpu_quota > 0 ? *res.cpu_quota : -1)));
  if (res.cpuset_cpus) RETURN_IF_ERROR(write("cpuset", "cpuset.cpus", *res.cpuset_cpus));
  if (res.cpuset_mems) RETURN_IF_ERROR(write("cpuset", "cpuset.mems", *res.cpuset_mems));
  if (res.memory_limit) {
    const bool unlimited = *res.memory_limit <= 0;
    std::string mem = unlimited ? "-1" : std::to_string(*res.memory_limit);
    // The kernel keeps memsw >= memory at every step, so the order depends on
    // the direction: raise memsw first, lower it last. Not knowing the current
    // values, write memsw before (may fail: it would go below memory) and after.
    std::optional<std::string> memsw;
    if (res.memory_swap_limit && *res.memory_swap_limit > 0)
      memsw = std::to_string(*res.memory_swap_limit);
    else if (unlimited)
      memsw = "-1";  // an old finite memsw would block an unlimited memory limit
    std::string memsw_file = JoinPath(DirFor(layout_, "memory", path), "memory.memsw.limit_in_bytes");
    if (memsw && !DirFor(layout_, "memory", path).empty() && writer_->Exists(memsw_file)) {
      (void)writer_->Write(memsw_file, *memsw);
      RETURN_IF_ERROR(write("memory", "memory.limit_in_bytes", mem));
      RETURN_IF_ERROR(writer_->Write(memsw_file, *memsw));
    } else {
      RETURN_IF_ERROR(write("memory", "memory.limit_in_bytes", mem));
    }
  }
  if (res.pids_limit)
    RETURN_IF_ERROR(write("pids", "pids.max", *res.pids_limit > 0 ? std::to_string(*res.pids_limit) : "max"));
  for (const auto& [size, limit] : res.hugepage_limits)
    RETURN_IF_ERROR(
        write("hugetlb", absl::StrCat("hugetlb.", size, ".limit_in_bytes"), std::to_string(limit)));
  return absl::OkStatus();
}

absl::Status CgroupManager::AddProcess(const std::string& path, int pid) {
  RETURN_IF_ERROR(ValidatePath(path));
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) {
    RETURN_IF_ERROR(writer_->Write(JoinPath(dir, "cgroup.procs"), std::to_string(pid)));
  }
  return absl::OkStatus();
}

absl::Status CgroupManager::Destroy(const std::string& path) {
  RETURN_IF_ERROR(ValidatePath(path));
  // Every hierarchy is tried even after a failure so that a retry has less to do.
  absl::Status first;
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) {
    absl::Status s = writer_->Rmdir(dir);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

std::set<int> CgroupManager::Pids(const std::string& path) {
  std::set<int> out;
  if (!ValidatePath(path).ok()) return out;
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) {
    auto text = writer_->Read(JoinPath(dir, "cgroup.procs"));
    if (!text.ok()) continue;
    for (absl::string_view l : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
      int pid = 0;
      if (absl::SimpleAtoi(l, &pid) && pid > 0) out.insert(pid);
    }
  }
  return out;
}

std::vector<std::string> CgroupManager::ProcsFiles(const std::string& path) const {
  std::vector<std::string> out;
  if (!ValidatePath(path).ok()) return out;
  for (const auto& [ctrl, dir] : Dirs(layout_, path)) out.push_back(JoinPath(dir, "cgroup.procs"));
  return out;
}

std::string CgroupManager::OomEventsFile(const std::string& path) const {
  if (!ValidatePath(path).ok()) return "";
  std::string dir = DirFor(layout_, "memory", path);
  if (dir.empty()) return "";
  return JoinPath(dir, layout_.v2 ? "memory.events" : "memory.oom_control");
}

bool CgroupManager::Exists(const std::string& path) {
  if (!ValidatePath(path).ok()) return false;
  for (const auto& [ctrl, dir] : Dirs(layout_, path))
    if (writer_->Exists(dir)) return true;
  return false;
}

}  // namespace crisp::runtime
