#pragma once
// Helpers for tests that read iptables rules.
#include <string>
#include <vector>

namespace crisp::testing {

// Words of an `iptables -S` rule, ready to be an argv (e.g. "-D" + words[1..]):
// -S double-quotes arguments with spaces (comments), which an argv must not.
inline std::vector<std::string> IptablesRuleWords(const std::string& rule) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false, have = false;
  for (char ch : rule) {
    if (ch == '"') {
      quoted = !quoted;
      have = true;
    } else if (ch == ' ' && !quoted) {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += ch;
      have = true;
    }
  }
  if (have) out.push_back(cur);
  return out;
}

}  // namespace crisp::testing
