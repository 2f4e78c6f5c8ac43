#pragma once
// Linux capabilities of containers: names, the CRI add/drop rules as
// containerd applies them, and applying a set in the container process.
// Free of absl (crisp-shim links it).
#include <cstdint>
#include <string>
#include <vector>

namespace crisp::runtime {

constexpr int kMaxCap = 40;  // CAP_CHECKPOINT_RESTORE

struct CapSets {
  uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
};

// "CAP_NET_ADMIN", "NET_ADMIN", "net_admin" -> 12; -1 if unknown.
int CapabilityNumber(const std::string& name);
// 12 -> "CAP_NET_ADMIN"; "" if unknown.
std::string CapabilityName(int cap);
// Names ("CAP_...") of the bits set in `mask`, lowest first.
std::vector<std::string> CapsToNames(uint64_t mask);
// Mask of every known capability.
uint64_t AllCapabilities();
// containerd's default set of 14.
uint64_t DefaultCapabilities();

// The container's sets from the CRI config: privileged -> everything; else
// the defaults, then `add` ("ALL" adds everything), then `drop` ("ALL" drops
// everything, after which `add` still applies: containerd's order when ALL
// is dropped). Bounding = effective = permitted; inheritable empty; ambient
// = `ambient` (and added to the others). False with `error` naming an
// unknown capability.
bool ComputeCapabilities(const std::vector<std::string>& add, const std::vector<std::string>& drop,
                         const std::vector<std::string>& ambient, bool privileged, CapSets* out,
                         std::string* error);

// In the container process: drops from the bounding set what is not in
// `caps.bounding` (caps this kernel does not know, or dropped already, are
// skipped), sets the process sets with capset(2) — limited to what this
// process holds, so "all" means all it has — then raises the ambient ones. False with `error` naming the failing step. Dropping needs
// CAP_SETPCAP in the effective set, which a uid change clears: call
// DropBoundingSet before it (with PR_SET_KEEPCAPS set across it, so that the
// permitted set survives) and this after.
bool DropBoundingSet(const CapSets& caps, std::string* error);
bool ApplyCapabilities(const CapSets& caps, std::string* error);
}  // namespace crisp::runtime
