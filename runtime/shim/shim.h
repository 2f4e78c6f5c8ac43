#pragma once
// crisp-shim modes. Each returns the shim's exit code.
namespace crisp::shim {

// `crisp-shim pause`: plan on fd 3, see pause_mode.cc.
int PauseMode();

// `crisp-shim container`: plan on fd 3, see container_mode.cc.
int ContainerMode();

// `crisp-shim exec`: plan on fd 3, framed stdio on fd 4, see exec_mode.cc.
int ExecMode();

}  // namespace crisp::shim
