#include "common/log.h"

#include <mutex>

#include "spdlog/sinks/stdout_sinks.h"

namespace crisp {
namespace {
std::mutex g_mu;
spdlog::level::level_enum g_level = spdlog::level::info;
}  // namespace

std::shared_ptr<spdlog::logger> Logger(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto l = std::make_shared<spdlog::logger>(name, sink);
  l->set_level(g_level);
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ [%n] %v");
  spdlog::register_logger(l);
  return l;
}

absl::Status SetLogLevel(const std::string& level) {
  auto lv = spdlog::level::from_str(level);
  if (lv == spdlog::level::off && level != "off")
    return absl::InvalidArgumentError("unknown log level \"" + level +
                                      "\" (want trace, debug, info, warn, error, critical or off)");
  std::lock_guard<std::mutex> lock(g_mu);
  g_level = lv;
  spdlog::apply_all([lv](std::shared_ptr<spdlog::logger> l) { l->set_level(lv); });
  return absl::OkStatus();
}

}  // namespace crisp
