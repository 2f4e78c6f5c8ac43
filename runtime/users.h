#pragma once
// Resolving the container's user the way containerd/runc do, from the text
// of the container's own /etc/passwd and /etc/group (pure functions; the
// shim reads the files inside the container's root). Free of absl.
#include <cstdint>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace crisp::runtime {

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string home;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// Malformed lines and comments are skipped, as libc and runc's user package do.
std::vector<PasswdEntry> ParsePasswd(const std::string& text);
std::vector<GroupEntry> ParseGroup(const std::string& text);

struct UserRequest {
  std::optional<uint32_t> run_as_user;
  std::string run_as_username;
  std::optional<uint32_t> run_as_group;
  std::vector<uint32_t> supplemental_groups;
  std::string image_user;  // OCI config User: "", "name", "uid", "name:group", "uid:gid", "uid:groupname"
};

struct ResolvedUser {
  uint32_t uid = 0, gid = 0;
  std::vector<gid_t> additional_gids;  // sorted, unique
  std::string home = "/";
  std::string username;
};

// run_as_user wins over run_as_username, which wins over the image's User.
// A numeric uid need not be in passwd (gid 0 then, home "/"); a name must be.
// The primary gid is the passwd entry's, the image user's ":group" part, or
// run_as_group (which wins). Additional gids: the primary gid, the groups
// listing the user's name as a member (when it has one) and supplemental_groups. False (with
// `error` naming what is missing) for an unknown user or group name.
bool ResolveUser(const UserRequest& req, const std::string& passwd_text, const std::string& group_text,
                 ResolvedUser* out, std::string* error);

}  // namespace crisp::runtime
