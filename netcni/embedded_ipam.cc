#include "netcni/embedded_ipam.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace crisp::netcni {
namespace {

constexpr char kLastReserved[] = "last_reserved_ip.0";  // host-local's name for range set 0

// What host-local writes into an address file.
std::string Owner(const std::string& id, const std::string& ifname) {
  return absl::StrCat(id, "\r\n", ifname);
}

}  // namespace

std::string Ipv4ToString(uint32_t ip) {
  return absl::StrCat(ip >> 24, ".", (ip >> 16) & 255, ".", (ip >> 8) & 255, ".", ip & 255);
}

absl::StatusOr<uint32_t> ParseIpv4(const std::string& s) {
  in_addr a;
  if (::inet_pton(AF_INET, s.c_str(), &a) != 1)
    return absl::InvalidArgumentError(absl::StrCat("\"", s, "\" is not an IPv4 address"));
  return ntohl(a.s_addr);
}

std::string Ipv4Subnet::ToString() const { return absl::StrCat(Ipv4ToString(network), "/", prefix_len); }

absl::StatusOr<Ipv4Subnet> ParseIpv4Subnet(const std::string& cidr) {
  size_t slash = cidr.find('/');
  if (slash == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat("\"", cidr, "\" is not a CIDR (e.g. 10.88.0.0/16)"));
  auto ip = ParseIpv4(cidr.substr(0, slash));
  if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat("\"", cidr, "\": ", ip.status().message()));
  Ipv4Subnet s;
  if (!absl::SimpleAtoi(cidr.substr(slash + 1), &s.prefix_len) || s.prefix_len < 8 || s.prefix_len > 30)
    return absl::InvalidArgumentError(absl::StrCat("\"", cidr, "\": the prefix length must be 8 to 30"));
  s.network = *ip;
  if ((s.network & s.mask()) != s.network)
    return absl::InvalidArgumentError(absl::StrCat("\"", cidr, "\" has host bits set (did you mean ",
                                                   Ipv4ToString(s.network & s.mask()), "/", s.prefix_len,
                                                   "?)"));
  return s;
}

EmbeddedIpam::EmbeddedIpam(std::string dir, Ipv4Subnet subnet) : dir_(std::move(dir)), subnet_(subnet) {}

absl::StatusOr<uint32_t> EmbeddedIpam::Allocate(const std::string& container_id, const std::string& ifname) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(MkdirAll(dir_, 0700));
  const uint32_t first = subnet_.network + 2, last = subnet_.broadcast() - 1;
  uint32_t start = first;
  if (auto text = ReadFile(JoinPath(dir_, kLastReserved)); text.ok()) {
    auto prev = ParseIpv4(std::string(absl::StripAsciiWhitespace(*text)));
    if (prev.ok() && *prev >= first && *prev < last) start = *prev + 1;
  }
  const std::string owner = Owner(container_id, ifname);
  uint32_t ip = start;
  for (uint64_t tried = 0, n = uint64_t{last} - first + 1; tried < n; ++tried) {
    std::string path = JoinPath(dir_, Ipv4ToString(ip));
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd) {
      if (::write(fd.get(), owner.data(), owner.size()) != static_cast<ssize_t>(owner.size())) {
        int e = errno;
        ::unlink(path.c_str());
        return ErrnoStatus(e ? e : EIO, "writing " + path);
      }
      // Not fsync'd, as host-local: after a crash that loses it, the pod's
      // namespace is gone too, and a teardown without the file is fine.
      (void)WriteFileAtomic(JoinPath(dir_, kLastReserved), Ipv4ToString(ip), 0600, /*durable=*/false);
      return ip;
    }
    if (errno != EEXIST) return ErrnoStatus(errno, "creating " + path);
    ip = ip == last ? first : ip + 1;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("no free address left in ", subnet_.ToString(), " (", dir_, ")"));
}

absl::Status EmbeddedIpam::Release(uint32_t ip, const std::string& container_id, const std::string& ifname) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = JoinPath(dir_, Ipv4ToString(ip));
  auto text = ReadFile(path);
  if (!text.ok()) return absl::IsNotFound(text.status()) ? absl::OkStatus() : text.status();
  if (absl::StripAsciiWhitespace(*text) != Owner(container_id, ifname)) return absl::OkStatus();
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "removing " + path);
  return absl::OkStatus();
}

std::vector<uint32_t> EmbeddedIpam::AllocatedTo(const std::string& container_id,
                                                const std::string& ifname) const {
  std::vector<uint32_t> out;
  auto names = ListDir(dir_);
  if (!names.ok()) return out;
  const std::string owner = Owner(container_id, ifname);
  for (const auto& n : *names) {
    auto ip = ParseIpv4(n);
    if (!ip.ok()) continue;  // last_reserved_ip.0 and anything else
    auto text = ReadFile(JoinPath(dir_, n));
    if (text.ok() && absl::StripAsciiWhitespace(*text) == owner) out.push_back(*ip);
  }
  return out;
}

absl::Status EmbeddedIpam::ReleaseById(const std::string& container_id, const std::string& ifname) {
  for (uint32_t ip : AllocatedTo(container_id, ifname)) RETURN_IF_ERROR(Release(ip, container_id, ifname));
  return absl::OkStatus();
}

}  // namespace crisp::netcni
