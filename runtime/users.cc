#include "runtime/users.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace crisp::runtime {
namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

bool ParseId(const std::string& s, uint32_t* out) {
  if (s.empty() || s.size() > 10 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  unsigned long v = std::strtoul(s.c_str(), nullptr, 10);
  if (v > 0xffffffffUL) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (std::string& l : Split(text, '\n')) {
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.pop_back();
    if (l.empty() || l[0] == '#') continue;
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

std::vector<PasswdEntry> ParsePasswd(const std::string& text) {
  std::vector<PasswdEntry> out;
  for (const std::string& l : Lines(text)) {
    std::vector<std::string> f = Split(l, ':');
    if (f.size() < 4 || f[0].empty()) continue;
    PasswdEntry e;
    e.name = f[0];
    if (!ParseId(f[2], &e.uid) || !ParseId(f[3], &e.gid)) continue;
    if (f.size() > 5) e.home = f[5];
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<GroupEntry> ParseGroup(const std::string& text) {
  std::vector<GroupEntry> out;
  for (const std::string& l : Lines(text)) {
    std::vector<std::string> f = Split(l, ':');
    if (f.size() < 3 || f[0].empty()) continue;
    GroupEntry e;
    e.name = f[0];
    if (!ParseId(f[2], &e.gid)) continue;
    if (f.size() > 3)
      for (std::string& m : Split(f[3], ','))
        if (!m.empty()) e.members.push_back(m);
    out.push_back(std::move(e));
  }
  return out;
}

bool ResolveUser(const UserRequest& req, const std::string& passwd_text, const std::string& group_text,
                 ResolvedUser* out, std::string* error) {
  std::vector<PasswdEntry> users = ParsePasswd(passwd_text);
  std::vector<GroupEntry> groups = ParseGroup(group_text);
  auto by_uid = [&](uint32_t uid) -> const PasswdEntry* {
    for (const auto& u : users)
      if (u.uid == uid) return &u;
    return nullptr;
  };
  auto by_name = [&](const std::string& n) -> const PasswdEntry* {
    for (const auto& u : users)
      if (u.name == n) return &u;
    return nullptr;
  };

  ResolvedUser r;
  const PasswdEntry* entry = nullptr;
  std::string group_part;  // from the image user "x:group"
  if (req.run_as_user) {
    r.uid = *req.run_as_user;
    entry = by_uid(r.uid);
  } else if (!req.run_as_username.empty()) {
    entry = by_name(req.run_as_username);
    if (!entry) {
      *error = "user \"" + req.run_as_username + "\" is not in the container's /etc/passwd";
      return false;
    }
    r.uid = entry->uid;
  } else if (!req.image_user.empty()) {
    std::string user = req.image_user;
    size_t colon = user.find(':');
    if (colon != std::string::npos) {
      group_part = user.substr(colon + 1);
      user = user.substr(0, colon);
    }
    uint32_t uid;
    if (ParseId(user, &uid)) {
      r.uid = uid;
      entry = by_uid(uid);
    } else {
      entry = by_name(user);
      if (!entry) {
        *error = "image user \"" + user + "\" is not in the container's /etc/passwd";
        return false;
      }
      r.uid = entry->uid;
    }
  } else {
    entry = by_uid(0);  // nothing asked: root, with root's passwd entry (home /root)
  }
  if (entry) {
    r.gid = entry->gid;
    r.username = entry->name;
    if (!entry->home.empty()) r.home = entry->home;
  }
  if (!group_part.empty()) {
    uint32_t gid;
    if (ParseId(group_part, &gid)) {
      r.gid = gid;
    } else {
      auto it = std::find_if(groups.begin(), groups.end(), [&](const GroupEntry& g) { return g.name == group_part; });
      if (it == groups.end()) {
        *error = "group \"" + group_part + "\" is not in the container's /etc/group";
        return false;
      }
      r.gid = it->gid;
    }
  }
  if (req.run_as_group) r.gid = *req.run_as_group;
  if (!r.username.empty()) {
    for (const auto& g : groups)
      if (std::find(g.members.begin(), g.members.end(), r.username) != g.members.end())
        r.additional_gids.push_back(g.gid);
  }
  for (uint32_t g : req.supplemental_groups) r.additional_gids.push_back(g);
  // The primary group is a member too (as containerd's additional GIDs have it).
  r.additional_gids.push_back(r.gid);
  std::sort(r.additional_gids.begin(), r.additional_gids.end());
  r.additional_gids.erase(std::unique(r.additional_gids.begin(), r.additional_gids.end()), r.additional_gids.end());
  *out = r;
  return true;
}

}  // namespace crisp::runtime
