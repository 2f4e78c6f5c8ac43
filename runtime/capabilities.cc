#include "runtime/capabilities.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace crisp::runtime {
namespace {

const char* const kNames[kMaxCap + 1] = {
    "CAP_CHOWN",           "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",          "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",         "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",       "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",      "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",       "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",    "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",           "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",    "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",   "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE"};

bool IsAll(const std::string& s) {
  std::string u;
  for (char c : s) u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u == "ALL" || u == "CAP_ALL";
}

bool Mask(const std::vector<std::string>& names, uint64_t* mask, bool* all, std::string* error) {
  *mask = 0;
  *all = false;
  for (const std::string& n : names) {
    if (IsAll(n)) {
      *all = true;
      continue;
    }
    int c = CapabilityNumber(n);
    if (c < 0) {
      *error = "unknown capability \"" + n + "\"";
      return false;
    }
    *mask |= uint64_t{1} << c;
  }
  return true;
}

int CapLastCap() {
  int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kMaxCap;
  char buf[16] = {};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::atoi(buf) : kMaxCap;
}

}  // namespace

int CapabilityNumber(const std::string& name) {
  std::string u;
  for (char c : name) u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (u.rfind("CAP_", 0) != 0) u = "CAP_" + u;
  for (int i = 0; i <= kMaxCap; ++i)
    if (u == kNames[i]) return i;
  return -1;
}

std::string CapabilityName(int cap) { return cap >= 0 && cap <= kMaxCap ? kNames[cap] : ""; }

std::vector<std::string> CapsToNames(uint64_t mask) {
  std::vector<std::string> out;
  for (int i = 0; i <= kMaxCap; ++i)
    if (mask & (uint64_t{1} << i)) out.push_back(kNames[i]);
  return out;
}

uint64_t AllCapabilities() { return (uint64_t{1} << (kMaxCap + 1)) - 1; }

uint64_t DefaultCapabilities() {
  uint64_t m = 0;
  for (const char* n : {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                        "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"})
    m |= uint64_t{1} << CapabilityNumber(n);
  return m;
}

bool ComputeCapabilities(const std::vector<std::string>& add, const std::vector<std::string>& drop,
                         const std::vector<std::string>& ambient, bool privileged, CapSets* out,
                         std::string* error) {
  uint64_t add_m, drop_m, amb_m;
  bool add_all, drop_all, amb_all;
  if (!Mask(add, &add_m, &add_all, error) || !Mask(drop, &drop_m, &drop_all, error) ||
      !Mask(ambient, &amb_m, &amb_all, error))
    return false;
  uint64_t set;
  if (privileged) {
    set = AllCapabilities();
  } else if (drop_all) {
    set = add_all ? AllCapabilities() : add_m;
  } else {
    set = (add_all ? AllCapabilities() : DefaultCapabilities() | add_m) & ~drop_m;
  }
  if (amb_all) amb_m = AllCapabilities();
  set |= amb_m;
  *out = CapSets{set, set, set, 0, amb_m};
  out->inheritable = amb_m;  // an ambient capability must be inheritable too
  return true;
}

bool DropBoundingSet(const CapSets& caps, std::string* error) {
  int last = CapLastCap();
  for (int c = 0; c <= last && c < 64; ++c) {
    if (caps.bounding & (uint64_t{1} << c)) continue;
    if (::prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 0) continue;  // dropped already
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) {
      *error = "dropping " + CapabilityName(c) + " from the bounding set: " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

bool ApplyCapabilities(const CapSets& caps, std::string* error) {
  if (!DropBoundingSet(caps, error)) return false;
  int last = CapLastCap();
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  // Nobody can grant what it does not hold: "all capabilities" (privileged,
  // add ALL) means all of those this process has, as containerd takes them
  // from its own set. A host may run us without some (e.g. CAP_SYS_RESOURCE).
  if (::syscall(SYS_capget, &hdr, data) != 0) {
    *error = std::string("capget: ") + std::strerror(errno);
    return false;
  }
  const uint64_t held = (uint64_t{data[1].permitted} << 32) | data[0].permitted;
  CapSets want = caps;
  want.effective &= held;
  want.permitted &= held;
  want.inheritable &= held;
  want.ambient &= held;
  std::memset(data, 0, sizeof data);
  auto lo = [](uint64_t m) { return static_cast<uint32_t>(m & 0xffffffffu); };
  auto hi = [](uint64_t m) { return static_cast<uint32_t>(m >> 32); };
  data[0] = {lo(want.effective), lo(want.permitted), lo(want.inheritable)};
  data[1] = {hi(want.effective), hi(want.permitted), hi(want.inheritable)};
  if (::syscall(SYS_capset, &hdr, data) != 0) {
    *error = std::string("capset: ") + std::strerror(errno);
    return false;
  }
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int c = 0; c <= last && c < 64; ++c) {
    if (!(want.ambient & (uint64_t{1} << c))) continue;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0) {
      *error = "raising ambient " + CapabilityName(c) + ": " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

}  // namespace crisp::runtime
