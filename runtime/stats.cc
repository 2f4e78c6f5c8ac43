#include "runtime/stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>
#include <memory>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::runtime {
namespace {

// v1 reports "no limit" as LONG_MAX rounded down to a page (9223372036854771712);
// like runc and cAdvisor, anything this large is unlimited.
constexpr uint64_t kV1Unlimited = uint64_t{1} << 62;

absl::string_view TrimSpace(absl::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

std::optional<uint64_t> ParseU64(absl::string_view s) {
  s = TrimSpace(s);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> ParseDouble(absl::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Splits off the next line (without its '\n').
absl::string_view NextLine(absl::string_view& text) {
  size_t nl = text.find('\n');
  absl::string_view line = text.substr(0, nl);
  text.remove_prefix(nl == absl::string_view::npos ? text.size() : nl + 1);
  return line;
}

// Splits off the next space-separated field.
absl::string_view NextField(absl::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  size_t end = s.find_first_of(" \t");
  absl::string_view f = s.substr(0, end);
  s.remove_prefix(end == absl::string_view::npos ? s.size() : end);
  return f;
}

absl::Status Unparsable(const std::string& file, absl::string_view what) {
  return absl::InternalError(absl::StrCat("cannot parse ", file, ": \"", what, "\""));
}

// One key of a flat keyed file ("key value" lines: memory.stat, cpu.stat,
// memory.events, memory.oom_control) that the caller wants.
struct Key {
  absl::string_view name;
  uint64_t* out;
  bool found = false;
};

// One pass over `text`; keys not listed are skipped without parsing their value.
absl::Status ParseKeyed(absl::string_view text, const std::string& file, std::initializer_list<Key*> keys) {
  while (!text.empty()) {
    absl::string_view line = NextLine(text);
    size_t sp = line.find(' ');
    if (sp == absl::string_view::npos) continue;
    absl::string_view name = line.substr(0, sp);
    for (Key* k : keys) {
      if (k->name != name) continue;
      auto v = ParseU64(line.substr(sp + 1));
      if (!v) return Unparsable(file, line);
      *k->out = *v;
      k->found = true;
      break;
    }
  }
  return absl::OkStatus();
}

// A control file that may legitimately be missing (controller not mounted or
// not enabled, cgroup absent from that hierarchy, kernel too old): nullopt.
absl::StatusOr<std::optional<std::string>> ReadIfExists(CgroupWriter& w, const std::string& file) {
  auto r = w.Read(file);
  if (r.ok()) return std::optional<std::string>(std::move(*r));
  if (absl::IsNotFound(r.status())) return std::optional<std::string>();
  return r.status();
}

absl::StatusOr<uint64_t> ReadU64(CgroupWriter& w, const std::string& file) {
  ASSIGN_OR_RETURN(std::string s, w.Read(file));
  auto v = ParseU64(s);
  if (!v) return Unparsable(file, TrimSpace(s));
  return *v;
}

// "max" or a number (v2 memory.max, memory.swap.max, pids.max; v1 pids.max).
absl::StatusOr<std::optional<uint64_t>> ParseMax(const std::string& file, absl::string_view s) {
  s = TrimSpace(s);
  if (s == "max") return std::optional<uint64_t>();
  auto v = ParseU64(s);
  if (!v) return Unparsable(file, s);
  return std::optional<uint64_t>(*v);
}

// working set and available exactly as cAdvisor computes them for kubelet.
void FinishMemory(MemoryStats& m, uint64_t inactive_file) {
  m.working_set_bytes = m.usage_bytes > inactive_file ? m.usage_bytes - inactive_file : 0;
  if (m.limit_bytes)
    m.available_bytes = *m.limit_bytes > m.working_set_bytes ? *m.limit_bytes - m.working_set_bytes : 0;
}

absl::Status ReadPids(CgroupWriter& w, const std::string& dir, CgroupStats& st) {
  ASSIGN_OR_RETURN(std::optional<std::string> cur, ReadIfExists(w, JoinPath(dir, "pids.current")));
  if (!cur) return absl::OkStatus();
  PidsStats p;
  auto v = ParseU64(*cur);
  if (!v) return Unparsable(JoinPath(dir, "pids.current"), TrimSpace(*cur));
  p.current = *v;
  const std::string max_file = JoinPath(dir, "pids.max");
  ASSIGN_OR_RETURN(std::string max, w.Read(max_file));
  ASSIGN_OR_RETURN(p.limit, ParseMax(max_file, max));
  st.pids = p;
  return absl::OkStatus();
}

absl::Status ReadV2(CgroupWriter& w, const std::string& dir, CgroupStats& st) {
  // cpu.stat is a core file of every v2 cgroup; the throttling keys appear
  // only with the cpu controller enabled.
  const std::string cpu_file = JoinPath(dir, "cpu.stat");
  ASSIGN_OR_RETURN(std::optional<std::string> cpu_stat, ReadIfExists(w, cpu_file));
  if (cpu_stat) {
    uint64_t usage = 0, user = 0, sys = 0;
    CpuThrottling t;
    Key k_usage{"usage_usec", &usage}, k_user{"user_usec", &user}, k_sys{"system_usec", &sys},
        k_periods{"nr_periods", &t.periods}, k_thr{"nr_throttled", &t.throttled_periods},
        k_thr_us{"throttled_usec", &t.throttled_ns};
    RETURN_IF_ERROR(ParseKeyed(*cpu_stat, cpu_file, {&k_usage, &k_user, &k_sys, &k_periods, &k_thr, &k_thr_us}));
    CpuStats c;
    if (k_usage.found) c.usage_ns = usage * 1000;
    if (k_user.found) c.user_ns = user * 1000;
    if (k_sys.found) c.system_ns = sys * 1000;
    if (k_periods.found) {
      t.throttled_ns *= 1000;
      c.throttling = t;
    }
    st.cpu = c;
  }

  // memory.current exists only with the memory controller enabled.
  ASSIGN_OR_RETURN(std::optional<std::string> current, ReadIfExists(w, JoinPath(dir, "memory.current")));
  if (current) {
    MemoryStats m;
    auto v = ParseU64(*current);
    if (!v) return Unparsable(JoinPath(dir, "memory.current"), TrimSpace(*current));
    m.usage_bytes = *v;
    const std::string stat_file = JoinPath(dir, "memory.stat");
    ASSIGN_OR_RETURN(std::string stat, w.Read(stat_file));
    uint64_t inactive_file = 0;
    Key k_inactive{"inactive_file", &inactive_file}, k_anon{"anon", &m.rss_bytes}, k_file{"file", &m.cache_bytes},
        k_pgfault{"pgfault", &m.pgfault}, k_pgmaj{"pgmajfault", &m.pgmajfault};
    RETURN_IF_ERROR(ParseKeyed(stat, stat_file, {&k_inactive, &k_anon, &k_file, &k_pgfault, &k_pgmaj}));
    const std::string max_file = JoinPath(dir, "memory.max");
    ASSIGN_OR_RETURN(std::string max, w.Read(max_file));
    ASSIGN_OR_RETURN(m.limit_bytes, ParseMax(max_file, max));
    const std::string events_file = JoinPath(dir, "memory.events");
    ASSIGN_OR_RETURN(std::string events, w.Read(events_file));
    uint64_t oom_kill = 0;
    Key k_oom{"oom_kill", &oom_kill};
    RETURN_IF_ERROR(ParseKeyed(events, events_file, {&k_oom}));
    if (k_oom.found) m.oom_kill_count = oom_kill;
    // Without swap accounting (or CONFIG_SWAP) the swap files are absent.
    const std::string swap_file = JoinPath(dir, "memory.swap.current");
    ASSIGN_OR_RETURN(std::optional<std::string> swap, ReadIfExists(w, swap_file));
    if (swap) {
      auto s = ParseU64(*swap);
      if (!s) return Unparsable(swap_file, TrimSpace(*swap));
      m.swap_usage_bytes = *s;
      const std::string swap_max_file = JoinPath(dir, "memory.swap.max");
      ASSIGN_OR_RETURN(std::optional<std::string> swap_max, ReadIfExists(w, swap_max_file));
      if (swap_max) {
        ASSIGN_OR_RETURN(m.swap_limit_bytes, ParseMax(swap_max_file, *swap_max));
      }
    }
    FinishMemory(m, inactive_file);
    st.memory = m;
  }

  RETURN_IF_ERROR(ReadPids(w, dir, st));

  // PSI is best effort: without CONFIG_PSI the files are missing, and with
  // psi=0 on the kernel command line reading them fails (EOPNOTSUPP), which
  // the writer edge does not report distinctly. Neither is worth failing the
  // counters that are there.
  for (auto [file, out] : {std::pair{"cpu.pressure", &st.cpu_pressure},
                           std::pair{"memory.pressure", &st.memory_pressure},
                           std::pair{"io.pressure", &st.io_pressure}}) {
    auto text = w.Read(JoinPath(dir, file));
    if (!text.ok()) continue;
    auto psi = ParsePressure(*text);
    if (!psi.ok()) return Annotate(psi.status(), JoinPath(dir, file));
    *out = *psi;
  }
  return absl::OkStatus();
}

absl::Status ReadV1(const CgroupLayout& layout, CgroupWriter& w, const std::string& path, CgroupStats& st) {
  auto dir_of = [&](const char* ctrl) -> std::string {
    auto it = layout.v1_roots.find(ctrl);
    return it == layout.v1_roots.end() ? "" : JoinPath(it->second, path);
  };

  CpuStats c;
  bool have_cpu = false;
  if (std::string d = dir_of("cpuacct"); !d.empty()) {
    const std::string f = JoinPath(d, "cpuacct.usage");
    ASSIGN_OR_RETURN(std::optional<std::string> usage, ReadIfExists(w, f));
    if (usage) {
      auto v = ParseU64(*usage);
      if (!v) return Unparsable(f, TrimSpace(*usage));
      c.usage_ns = *v;
      have_cpu = true;
    }
  }
  if (std::string d = dir_of("cpu"); !d.empty()) {
    const std::string f = JoinPath(d, "cpu.stat");
    ASSIGN_OR_RETURN(std::optional<std::string> cpu_stat, ReadIfExists(w, f));
    if (cpu_stat) {
      CpuThrottling t;
      Key k_periods{"nr_periods", &t.periods}, k_thr{"nr_throttled", &t.throttled_periods},
          k_time{"throttled_time", &t.throttled_ns};
      RETURN_IF_ERROR(ParseKeyed(*cpu_stat, f, {&k_periods, &k_thr, &k_time}));
      if (k_periods.found) c.throttling = t;
      have_cpu = true;
    }
  }
  if (have_cpu) st.cpu = c;

  if (std::string d = dir_of("memory"); !d.empty()) {
    const std::string usage_file = JoinPath(d, "memory.usage_in_bytes");
    ASSIGN_OR_RETURN(std::optional<std::string> usage, ReadIfExists(w, usage_file));
    if (usage) {
      MemoryStats m;
      auto v = ParseU64(*usage);
      if (!v) return Unparsable(usage_file, TrimSpace(*usage));
      m.usage_bytes = *v;
      // The total_* keys include descendants, as usage_in_bytes does.
      const std::string stat_file = JoinPath(d, "memory.stat");
      ASSIGN_OR_RETURN(std::string stat, w.Read(stat_file));
      uint64_t inactive_file = 0, swap = 0;
      Key k_inactive{"total_inactive_file", &inactive_file}, k_rss{"total_rss", &m.rss_bytes},
          k_cache{"total_cache", &m.cache_bytes}, k_pgfault{"total_pgfault", &m.pgfault},
          k_pgmaj{"total_pgmajfault", &m.pgmajfault}, k_swap{"total_swap", &swap};
      RETURN_IF_ERROR(ParseKeyed(stat, stat_file, {&k_inactive, &k_rss, &k_cache, &k_pgfault, &k_pgmaj, &k_swap}));
      if (k_swap.found) m.swap_usage_bytes = swap;
      ASSIGN_OR_RETURN(uint64_t limit, ReadU64(w, JoinPath(d, "memory.limit_in_bytes")));
      if (limit < kV1Unlimited) m.limit_bytes = limit;
      // The oom_kill line exists since Linux 4.13.
      const std::string oom_file = JoinPath(d, "memory.oom_control");
      ASSIGN_OR_RETURN(std::string oom, w.Read(oom_file));
      uint64_t oom_kill = 0;
      Key k_oom{"oom_kill", &oom_kill};
      RETURN_IF_ERROR(ParseKeyed(oom, oom_file, {&k_oom}));
      if (k_oom.found) m.oom_kill_count = oom_kill;
      FinishMemory(m, inactive_file);
      st.memory = m;
    }
  }

  if (std::string d = dir_of("pids"); !d.empty()) RETURN_IF_ERROR(ReadPids(w, d, st));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CgroupStats> CgroupManager::Stats(const std::string& path) {
  // Same rule as the other methods: no hierarchy roots, nothing outside them.
  bool has_component = false;
  for (absl::string_view rest = path; !rest.empty();) {
    size_t slash = rest.find('/');
    absl::string_view c = rest.substr(0, slash);
    rest.remove_prefix(slash == absl::string_view::npos ? rest.size() : slash + 1);
    if (c.empty()) continue;
    if (c == "." || c == "..")
      return absl::InvalidArgumentError(absl::StrCat("cgroup path \"", path, "\" contains \"", c, "\""));
    has_component = true;
  }
  if (!has_component) return absl::InvalidArgumentError("empty cgroup path: refusing to read a hierarchy root");

  CgroupStats st;
  if (layout_.v2) {
    RETURN_IF_ERROR(ReadV2(*writer_, JoinPath(layout_.unified_root, path), st));
  } else {
    RETURN_IF_ERROR(ReadV1(layout_, *writer_, path, st));
  }
  // Only when nothing was read does it cost the existence check: a missing
  // cgroup and one present only in hierarchies without counters (devices,
  // freezer, ...) look the same until then.
  if (!st.cpu && !st.memory && !st.pids && !Exists(path))
    return absl::NotFoundError(absl::StrCat("cgroup ", path, " does not exist"));
  return st;
}

absl::StatusOr<PsiStats> ParsePressure(absl::string_view text) {
  PsiStats out;
  bool have_some = false;
  while (!text.empty()) {
    absl::string_view line = NextLine(text);
    absl::string_view rest = line;
    absl::string_view kind = NextField(rest);
    if (kind.empty()) continue;
    PsiData d;
    if (kind != "some" && kind != "full") return absl::InvalidArgumentError(absl::StrCat("bad PSI line \"", line, "\""));
    int seen = 0;
    for (absl::string_view f = NextField(rest); !f.empty(); f = NextField(rest)) {
      size_t eq = f.find('=');
      if (eq == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat("bad PSI line \"", line, "\""));
      absl::string_view k = f.substr(0, eq), v = f.substr(eq + 1);
      double* avg = k == "avg10" ? &d.avg10 : k == "avg60" ? &d.avg60 : k == "avg300" ? &d.avg300 : nullptr;
      if (avg) {
        auto x = ParseDouble(v);
        if (!x) return absl::InvalidArgumentError(absl::StrCat("bad PSI value \"", f, "\""));
        *avg = *x;
        ++seen;
      } else if (k == "total") {
        auto x = ParseU64(v);
        if (!x) return absl::InvalidArgumentError(absl::StrCat("bad PSI value \"", f, "\""));
        d.total_us = *x;
        ++seen;
      }
    }
    if (seen != 4) return absl::InvalidArgumentError(absl::StrCat("incomplete PSI line \"", line, "\""));
    if (kind == "some") {
      out.some = d;
      have_some = true;
    } else {
      out.full = d;
    }
  }
  if (!have_some) return absl::InvalidArgumentError("PSI text without a \"some\" line");
  return out;
}

absl::StatusOr<std::vector<InterfaceStats>> ParseNetDev(absl::string_view text) {
  std::vector<InterfaceStats> out;
  while (!text.empty()) {
    absl::string_view line = NextLine(text);
    // Both header lines have '|'; no interface line does.
    if (TrimSpace(line).empty() || line.find('|') != absl::string_view::npos) continue;
    // Interface names cannot contain ':' (dev_valid_name), so the first one
    // ends the name even when the first counter is glued to it.
    size_t colon = line.find(':');
    absl::string_view name = colon == absl::string_view::npos ? "" : TrimSpace(line.substr(0, colon));
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("bad /proc/net/dev line \"", line, "\""));
    absl::string_view rest = line.substr(colon + 1);
    uint64_t v[16];
    int n = 0;
    for (absl::string_view f = NextField(rest); !f.empty(); f = NextField(rest)) {
      auto x = ParseU64(f);
      if (!x || n == 16) return absl::InvalidArgumentError(absl::StrCat("bad /proc/net/dev line \"", line, "\""));
      v[n++] = *x;
    }
    // rx: bytes packets errs drop fifo frame compressed multicast;
    // tx: bytes packets errs drop fifo colls carrier compressed.
    if (n != 16) return absl::InvalidArgumentError(absl::StrCat("bad /proc/net/dev line \"", line, "\""));
    InterfaceStats s;
    s.name = std::string(name);
    s.rx_bytes = v[0];
    s.rx_packets = v[1];
    s.rx_errors = v[2];
    s.rx_dropped = v[3];
    s.tx_bytes = v[8];
    s.tx_packets = v[9];
    s.tx_errors = v[10];
    s.tx_dropped = v[11];
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::vector<InterfaceStats>> ReadNetDev(int pid) {
  const std::string file = absl::StrCat("/proc/", pid, "/net/dev");
  ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  auto r = ParseNetDev(text);
  if (!r.ok()) return Annotate(r.status(), file);
  return r;
}

absl::StatusOr<DiskUsage> DirUsage(const std::string& dir) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    if (errno == ENOTDIR) return absl::InvalidArgumentError(dir + " is not a directory");
    return ErrnoStatus(errno, "opening " + dir);
  }
  struct stat rst;
  if (::fstat(root.get(), &rst) != 0) return ErrnoStatus(errno, "stat " + dir);
  const dev_t dev = rst.st_dev;
  DiskUsage u;
  u.bytes = static_cast<uint64_t>(rst.st_blocks) * 512;
  u.inodes = 1;

  // A directory still to visit: its name in a parent kept open (shared by its
  // pending siblings, closed once the last is opened) and the inode seen by
  // fstatat, to notice a rename race between listing and opening.
  using Dir = std::shared_ptr<DIR>;
  struct Pending {
    Dir parent;
    std::string name;
    ino_t ino;
  };
  std::vector<Pending> stack;
  std::unordered_set<ino_t> linked;  // inodes with st_nlink > 1 already counted; one device

  auto visit = [&](UniqueFd fd, const std::string& where) -> absl::Status {
    DIR* raw = ::fdopendir(fd.get());
    if (!raw) return ErrnoStatus(errno, "opendir " + where);
    fd.release();
    Dir d(raw, ::closedir);
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(raw);
      if (!e) {
        if (errno != 0) return ErrnoStatus(errno, "readdir " + where);
        break;
      }
      const char* n = e->d_name;
      if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
      struct stat st;
      if (::fstatat(::dirfd(raw), n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed since readdir
        return ErrnoStatus(errno, absl::StrCat("stat ", where, "/", n));
      }
      if (st.st_dev != dev) continue;  // a mount point: not ours to count (du -x)
      if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && !linked.insert(st.st_ino).second) continue;
      u.bytes += static_cast<uint64_t>(st.st_blocks) * 512;
      u.inodes++;
      if (S_ISDIR(st.st_mode)) stack.push_back(Pending{d, n, st.st_ino});
    }
    return absl::OkStatus();
  };

  RETURN_IF_ERROR(visit(std::move(root), dir));
  while (!stack.empty()) {
    Pending p = std::move(stack.back());
    stack.pop_back();
    UniqueFd fd(::openat(::dirfd(p.parent.get()), p.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
      // Removed or replaced (by a file or symlink) since it was listed.
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
      return ErrnoStatus(errno, absl::StrCat("opening ", dir, "/.../", p.name));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", dir, "/.../", p.name));
    if (st.st_dev != dev || st.st_ino != p.ino) continue;  // swapped for another dir (or a mount) meanwhile
    p.parent.reset();  // the last pending sibling closes the parent before descending
    RETURN_IF_ERROR(visit(std::move(fd), absl::StrCat(dir, "/.../", p.name)));
  }
  return u;
}

absl::StatusOr<FsStats> FsUsage(const std::string& path) {
  struct statvfs vfs;
  if (::statvfs(path.c_str(), &vfs) != 0) return ErrnoStatus(errno, "statvfs " + path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + path);
  FsStats f;
  const uint64_t bs = vfs.f_frsize;
  f.capacity_bytes = static_cast<uint64_t>(vfs.f_blocks) * bs;
  f.used_bytes = static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * bs;
  f.available_bytes = static_cast<uint64_t>(vfs.f_bavail) * bs;
  f.inodes_total = vfs.f_files;
  f.inodes_free = vfs.f_ffree;
  f.inodes_used = vfs.f_files >= vfs.f_ffree ? vfs.f_files - vfs.f_ffree : 0;
  f.dev_major = major(st.st_dev);
  f.dev_minor = minor(st.st_dev);
  return f;
}

}  // namespace crisp::runtime
