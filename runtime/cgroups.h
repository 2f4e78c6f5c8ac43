#pragma once
// cgroups for pods and containers with the cgroupfs driver, v1 and v2.
//
// A cgroup is named by a path relative to the hierarchy roots, e.g.
// "/kubepods/besteffort/pod123/<sandbox-id>". On v1 it exists once per
// controller hierarchy (cpu, cpuacct, cpuset, memory, pids, blkio, devices,
// freezer, hugetlb, and the named systemd hierarchy when mounted); on v2 once
// in the unified tree.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crisp::runtime {

struct CgroupStats;  // runtime/stats.h

// Kernel edge: the filesystem operations cgroup management needs. Real
// implementation on the mounted cgroupfs; tests use a temp-dir tree.
class CgroupWriter {
 public:
  virtual ~CgroupWriter() = default;
  // mkdir; OK if it exists.
  virtual absl::Status Mkdir(const std::string& dir) = 0;
  // rmdir; OK if it does not exist.
  virtual absl::Status Rmdir(const std::string& dir) = 0;
  // Writes `value` to an existing control file (no create, no truncate
  // semantics beyond what cgroupfs does).
  virtual absl::Status Write(const std::string& file, const std::string& value) = 0;
  virtual absl::StatusOr<std::string> Read(const std::string& file) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

std::unique_ptr<CgroupWriter> NewFsCgroupWriter();

// cgroup v1 cpu.shares -> v2 cpu.weight, the formula runc and Kubernetes use:
// 1 + ((shares - 2) * 9999) / 262142, with shares clamped to [2, 262144].
// Returns 0 ("leave cpu.weight alone") for shares <= 0.
int64_t CpuSharesToWeight(int64_t shares);

// Resource settings, in CRI units. Unset fields are left alone.
struct CgroupResources {
  std::optional<int64_t> cpu_shares;  // v1 cpu.shares; v2 cpu.weight converted
  std::optional<int64_t> cpu_quota;   // us; <=0 means unlimited
  std::optional<int64_t> cpu_period;  // us
  std::optional<std::string> cpuset_cpus, cpuset_mems;
  std::optional<int64_t> memory_limit;              // bytes; 0 = unlimited
  std::optional<int64_t> memory_swap_limit;         // bytes (memory+swap on v1); 0 = unset
  std::optional<int64_t> pids_limit;                // <=0 = unlimited
  std::map<std::string, uint64_t> hugepage_limits;  // page size ("2MB") -> bytes
  std::map<std::string, std::string> unified;       // v2 only: file -> value
};

// Where each hierarchy is mounted. Detect() reads /proc/self/mountinfo.
//
// Which version is used (the rule kubelet's cgroupfs driver follows too):
//  * cgroup2 mounted at /sys/fs/cgroup: pure v2;
//  * else any v1 hierarchy with a controller mounted: v1 (hybrid hosts such as
//    systemd's "unified" layout, where /sys/fs/cgroup/unified has no
//    controllers; a split host with controllers in both is also driven as v1,
//    since one cgroup cannot be managed half here and half there);
//  * else a cgroup2 mount elsewhere (its controllers, if any, are all there): v2.
// Only mounts of a hierarchy's root ("/" in mountinfo field 4) count: a bind
// mount of a sub-cgroup would shift every path.
struct CgroupLayout {
  bool v2 = false;                              // unified hierarchy in use
  std::string unified_root;                     // v2 mount point (if v2)
  std::map<std::string, std::string> v1_roots;  // controller or "name=X" -> mount point (v1)
  // INTERNAL if mountinfo is unreadable, FAILED_PRECONDITION if no cgroup
  // hierarchy is mounted.
  static absl::StatusOr<CgroupLayout> Detect();
  // Parses mountinfo text (for tests).
  static CgroupLayout FromMountinfo(const std::string& mountinfo);
};

class CgroupManager {
 public:
  CgroupManager(CgroupLayout layout, std::unique_ptr<CgroupWriter> writer);

  // Creates the cgroup (and its parents) in every hierarchy and applies `res`.
  // On v1 a new cpuset cgroup gets its parent's cpuset.cpus/mems (it refuses
  // tasks while empty); on v2 the controllers available in each ancestor are
  // enabled in its cgroup.subtree_control (best effort). OK if it exists
  // already (resources are then re-applied). INVALID_ARGUMENT for an empty
  // path, a "." or ".." component, or a bad unified key / hugepage size.
  // On failure, removes the directories it created.
  absl::Status Create(const std::string& path, const CgroupResources& res);
  // Applies `res` to an existing cgroup. Settings whose controller is not
  // mounted (v1) are skipped; a missing control file is an error.
  absl::Status Update(const std::string& path, const CgroupResources& res);
  // Moves `pid` into the cgroup in every hierarchy (v1: also the named ones).
  absl::Status AddProcess(const std::string& path, int pid);
  // Removes the cgroup from every hierarchy (not its parents). Kills nothing:
  // FAILED_PRECONDITION if processes remain. OK if it does not exist.
  absl::Status Destroy(const std::string& path);
  // The processes in the cgroup (in crispd's PID namespace), from every
  // hierarchy's cgroup.procs; empty if it does not exist.
  std::set<int> Pids(const std::string& path);
  // The cgroup.procs file of the cgroup in every hierarchy (for a process
  // that moves itself in); empty for an invalid path.
  std::vector<std::string> ProcsFiles(const std::string& path) const;
  // The file whose "oom_kill N" line counts OOM kills in the cgroup:
  // memory.oom_control (v1 memory hierarchy) or memory.events (v2); "" if
  // there is no memory controller.
  std::string OomEventsFile(const std::string& path) const;
  // True if the cgroup exists in any hierarchy.
  bool Exists(const std::string& path);
  // CPU, memory, pids and (v2) PSI counters of the cgroup; defined in
  // runtime/stats.cc, include runtime/stats.h to call it. NOT_FOUND if the
  // cgroup exists in no hierarchy.
  absl::StatusOr<CgroupStats> Stats(const std::string& path);
  const CgroupLayout& layout() const { return layout_; }

 private:
  CgroupLayout layout_;
  std::unique_ptr<CgroupWriter> writer_;
};

}  // namespace crisp::runtime
