#include <nlohmann/json.hpp>

#include "server/streaming/connection.h"

namespace crisp::streaming {

std::string ExitStatusJson(int exit_code, std::string_view message) {
  nlohmann::json s = {{"metadata", nlohmann::json::object()}};
  if (exit_code == 0) {
    s["status"] = "Success";
    return s.dump();
  }
  s["status"] = "Failure";
  if (exit_code < 0) {
    s["message"] = std::string(message.empty() ? "the command could not be run" : message);
    s["reason"] = "InternalError";
    return s.dump();
  }
  s["message"] = "command terminated with non-zero exit code: exit status " + std::to_string(exit_code);
  s["reason"] = "NonZeroExitCode";
  s["details"] = {{"causes", {{{"reason", "ExitCode"}, {"message", std::to_string(exit_code)}}}}};
  return s.dump();
}

}  // namespace crisp::streaming
