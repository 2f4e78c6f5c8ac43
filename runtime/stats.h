#pragma once
// Low-level readers behind the CRI stats RPCs (ContainerStats, PodSandboxStats,
// ImageFsInfo): cgroup counters, per-namespace network counters, and disk
// usage of a directory tree or a filesystem.
//
// These run every few seconds for every container, so each reads as few files
// as it can, once each, and parses with string_view (no regex, no iostreams).
#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/cgroups.h"

namespace crisp::runtime {

// CFS bandwidth throttling, from cpu.stat.
struct CpuThrottling {
  uint64_t periods = 0;            // nr_periods
  uint64_t throttled_periods = 0;  // nr_throttled
  uint64_t throttled_ns = 0;       // v1 throttled_time; v2 throttled_usec * 1000
};

struct CpuStats {
  // Cumulative CPU time: v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000.
  // Absent on v1 when the cpuacct hierarchy lacks the cgroup.
  std::optional<uint64_t> usage_ns;
  // v2 only (cpu.stat user_usec/system_usec): on v1 they would cost another
  // file (cpuacct.stat, in USER_HZ ticks) and nothing in CRI needs them.
  std::optional<uint64_t> user_ns, system_ns;
  // Absent without the cpu controller (v1 cpu hierarchy; v2 cpu not enabled).
  std::optional<CpuThrottling> throttling;
};

struct MemoryStats {
  uint64_t usage_bytes = 0;        // v1 memory.usage_in_bytes; v2 memory.current
  uint64_t working_set_bytes = 0;  // usage - inactive_file, clamped at 0 (cAdvisor/kubelet)
  uint64_t rss_bytes = 0;          // v1 total_rss; v2 anon
  uint64_t cache_bytes = 0;        // v1 total_cache; v2 file
  uint64_t pgfault = 0;            // v1 total_pgfault; v2 pgfault
  uint64_t pgmajfault = 0;         // v1 total_pgmajfault; v2 pgmajfault
  // nullopt = unlimited (v1 limit_in_bytes >= 2^62; v2 memory.max "max").
  std::optional<uint64_t> limit_bytes;
  // limit - working_set clamped at 0; only when limited.
  std::optional<uint64_t> available_bytes;
  // v1 memory.oom_control / v2 memory.events "oom_kill"; absent on kernels
  // that do not count it.
  std::optional<uint64_t> oom_kill_count;
  // v1 memory.stat total_swap (present with swap accounting); v2
  // memory.swap.current.
  std::optional<uint64_t> swap_usage_bytes;
  // v2 memory.swap.max when finite; v1: not read (memsw limits memory+swap).
  std::optional<uint64_t> swap_limit_bytes;
};

struct PidsStats {
  uint64_t current = 0;          // pids.current
  std::optional<uint64_t> limit;  // pids.max; nullopt = "max"
};

// One line of a *.pressure file.
struct PsiData {
  double avg10 = 0, avg60 = 0, avg300 = 0;  // percent
  uint64_t total_us = 0;                    // cumulative stall time, microseconds
};
struct PsiStats {
  PsiData some;
  std::optional<PsiData> full;  // cpu.pressure has no "full" line on older kernels
};

struct CgroupStats {
  // Each is absent when its controller is not mounted (v1) or the cgroup is
  // missing from that hierarchy; PSI only on v2 with the *.pressure files.
  std::optional<CpuStats> cpu;
  std::optional<MemoryStats> memory;
  std::optional<PidsStats> pids;
  std::optional<PsiStats> cpu_pressure, memory_pressure, io_pressure;
};

// CgroupManager::Stats(path) (declared in cgroups.h) returns CgroupStats:
// NOT_FOUND if the cgroup exists in no hierarchy, INVALID_ARGUMENT for a bad
// path, INTERNAL for an unparsable control file.

// Parses "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull ...\n".
absl::StatusOr<PsiStats> ParsePressure(absl::string_view text);

struct InterfaceStats {
  std::string name;
  uint64_t rx_bytes = 0, rx_packets = 0, rx_errors = 0, rx_dropped = 0;
  uint64_t tx_bytes = 0, tx_packets = 0, tx_errors = 0, tx_dropped = 0;
};

// Parses /proc/net/dev text (two header lines, then "name: 16 counters"; the
// name may be glued to the first counter, "eth0:1234"). Includes "lo"; callers
// skip it. INVALID_ARGUMENT for a malformed line.
absl::StatusOr<std::vector<InterfaceStats>> ParseNetDev(absl::string_view text);
// Interfaces of the network namespace `pid` is in (/proc/<pid>/net/dev).
// NOT_FOUND if the process is gone.
absl::StatusOr<std::vector<InterfaceStats>> ReadNetDev(int pid);

struct DiskUsage {
  uint64_t bytes = 0;   // sum of st_blocks * 512, each inode once
  uint64_t inodes = 0;  // distinct inodes, including `dir` itself
};
// Usage of the tree under `dir` (e.g. a container's overlay upper dir), like
// `du -x`: symlinks are not followed (their own inode counts), other mounts
// are skipped entirely, hard links count once. Iterative, so depth costs heap,
// not stack; at most one open fd per ancestor that still has subdirectories
// to visit. Entries vanishing during the walk are skipped (the container is
// live). NOT_FOUND if `dir` does not exist, INVALID_ARGUMENT if not a dir.
absl::StatusOr<DiskUsage> DirUsage(const std::string& dir);

// Whole-filesystem usage (statvfs) of the filesystem holding `path`, and its
// identity for ImageFsInfo. images::ImageManager::Usage() is the image
// store's own usage from memory; this is what the disk says.
struct FsStats {
  uint64_t capacity_bytes = 0, used_bytes = 0, available_bytes = 0;  // available: to unprivileged users
  uint64_t inodes_total = 0, inodes_used = 0, inodes_free = 0;
  uint32_t dev_major = 0, dev_minor = 0;  // st_dev of `path`
};
absl::StatusOr<FsStats> FsUsage(const std::string& path);

}  // namespace crisp::runtime
