#pragma once
// Registry authentication pieces: WWW-Authenticate challenges (RFC 7235),
// token server responses (Docker token auth / OAuth2) and Basic credentials.
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace crisp::images {

struct AuthChallenge {
  std::string scheme;                         // lowercased: "bearer", "basic"
  std::map<std::string, std::string> params;  // keys lowercased: "realm", "service", "scope", "error"
};

// Parses one or more challenges from a WWW-Authenticate header value, e.g.
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`
// or `Basic realm="x", Bearer realm="y"`. Malformed trailing parts are
// ignored; never fails.
std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view header);

struct TokenResponse {
  std::string token;          // "token", else "access_token"
  absl::Duration expires_in;  // default 60 s as the Docker token spec says
  std::string refresh_token;
};

// Parses a token server's JSON answer. INVALID_ARGUMENT without a token.
absl::StatusOr<TokenResponse> ParseTokenResponse(absl::string_view body);

// The credentials for one registry, from CRI's AuthConfig or crisp.yaml.
struct AuthCredentials {
  std::string username, password;
  std::string server_address;  // informational (CRI sets it); not used to pick endpoints
  std::string auth;            // base64("user:pass"), as in ~/.docker/config.json
  std::string identity_token;  // OAuth2 refresh token
  std::string registry_token;  // a bearer token to send as is
  bool empty() const {
    return username.empty() && password.empty() && auth.empty() && identity_token.empty() &&
           registry_token.empty();
  }
  // username/password (decoding `auth` if they are not set). Empty if none.
  std::pair<std::string, std::string> UserPass() const;
  // A stable fingerprint (hash) so that cached tokens never serve another
  // set of credentials.
  std::string Fingerprint() const;
};

// "Basic base64(user:pass)".
std::string BasicAuthHeaderValue(absl::string_view user, absl::string_view pass);

// application/x-www-form-urlencoded / query escaping.
std::string UrlEncode(absl::string_view s);

}  // namespace crisp::images
