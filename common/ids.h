#pragma once
#include <string>

namespace crisp {

// `bytes` random bytes from getrandom(2) as lowercase hex (2*bytes chars).
std::string RandomHex(size_t bytes);

// A new object id: 64 hex chars, like containerd's and CRI-O's.
inline std::string NewId() { return RandomHex(32); }

}  // namespace crisp
