#pragma once
// The embedded network's address allocator: host-local's semantics and file
// layout, one IPv4 range, no plugin.
//
//   <dir>/<ip>                  one file per allocated address, created with
//                               O_EXCL, holding "<container id>\r\n<ifname>"
//   <dir>/last_reserved_ip.0    the address handed out last; the next
//                               allocation starts after it (round robin, so a
//                               just-released address is not reused at once)
//
// O_EXCL makes an address belong to exactly one caller across threads,
// processes and restarts; a mutex keeps the round-robin pointer consistent
// within the process.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace crisp::netcni {

// An IPv4 subnet in host byte order.
struct Ipv4Subnet {
  uint32_t network = 0;
  int prefix_len = 0;

  uint32_t mask() const { return prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - prefix_len); }
  uint32_t broadcast() const { return network | ~mask(); }
  uint32_t gateway() const { return network + 1; }  // the bridge's address
  bool Contains(uint32_t ip) const { return (ip & mask()) == network; }
  std::string ToString() const;  // "10.88.0.0/16"
};

// "10.88.0.0/16". INVALID_ARGUMENT unless it is an IPv4 CIDR whose host bits
// are zero and that leaves room for a gateway and at least one pod (/8 - /30).
absl::StatusOr<Ipv4Subnet> ParseIpv4Subnet(const std::string& cidr);
std::string Ipv4ToString(uint32_t ip);  // host byte order
absl::StatusOr<uint32_t> ParseIpv4(const std::string& s);

class EmbeddedIpam {
 public:
  // Addresses from network+2 to broadcast-1 (network+1 is the gateway), as
  // host-local's default range with the gateway excluded.
  EmbeddedIpam(std::string dir, Ipv4Subnet subnet);

  // Reserves the next free address after the last reserved one, wrapping
  // around. RESOURCE_EXHAUSTED when the range is full. Creates `dir` if needed.
  absl::StatusOr<uint32_t> Allocate(const std::string& container_id, const std::string& ifname);

  // Releases `ip` if it is allocated to (container_id, ifname). OK when it
  // is not allocated, or allocated to someone else (which is left alone).
  absl::Status Release(uint32_t ip, const std::string& container_id, const std::string& ifname);

  // Releases every address allocated to (container_id, ifname), found by
  // reading every file: for a teardown that has no record of the address
  // (a crash between allocation and recording it). OK if there is none.
  absl::Status ReleaseById(const std::string& container_id, const std::string& ifname);

  // Addresses currently allocated to (container_id, ifname).
  std::vector<uint32_t> AllocatedTo(const std::string& container_id, const std::string& ifname) const;

  const std::string& dir() const { return dir_; }
  const Ipv4Subnet& subnet() const { return subnet_; }

 private:
  std::string dir_;
  Ipv4Subnet subnet_;
  std::mutex mu_;
};

}  // namespace crisp::netcni
