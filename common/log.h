#pragma once
// One named spdlog logger per folder ("server", "podsandbox", "netcni", ...),
// all writing to the same sink (stderr) with the same level.
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace crisp {

// The logger for `name`, created on first use with the current level.
std::shared_ptr<spdlog::logger> Logger(const std::string& name);

// Sets the level of every logger, present and future. INVALID_ARGUMENT for an
// unknown name (trace, debug, info, warn, error, critical, off).
absl::Status SetLogLevel(const std::string& level);

}  // namespace crisp
