#pragma once
// Name reservation: a CRI object name ("<name>_<namespace>_<uid>_<attempt>")
// belongs to exactly one id until released. Shared by sandboxes and
// containers (each with its own registry).
#include <map>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace crisp::server {

class NameRegistry {
 public:
  // Reserves `name` for `id`. ALREADY_EXISTS naming the holder if another id
  // has it; OK if `id` already holds it.
  absl::Status Reserve(const std::string& name, const std::string& id);
  // Releases `name` if `id` holds it.
  void Release(const std::string& name, const std::string& id);
  // The id holding `name`, or "".
  std::string Holder(const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> names_;
};

}  // namespace crisp::server
