#include "images/auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "images/digest.h"
#include "nlohmann/json.hpp"

namespace crisp::images {
namespace {

bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
    case '/':
    case '=':
    case ':':
      return true;
    default:
      return false;
  }
}

class Scanner {
 public:
  explicit Scanner(absl::string_view s) : s_(s) {}
  bool done() const { return i_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[i_]; }
  void SkipSpace() {
    while (!done() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  void SkipSpaceAndCommas() {
    while (!done() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == ',')) ++i_;
  }
  // A token without '=' (names and schemes stop at '=').
  std::string Name() {
    size_t start = i_;
    while (!done() && IsTokenChar(s_[i_]) && s_[i_] != '=') ++i_;
    return std::string(s_.substr(start, i_ - start));
  }
  std::string Value() {
    if (peek() == '"') {
      ++i_;
      std::string out;
      while (!done() && s_[i_] != '"') {
        if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
        out.push_back(s_[i_++]);
      }
      if (!done()) ++i_;  // closing quote
      return out;
    }
    size_t start = i_;
    while (!done() && s_[i_] != ',' && s_[i_] != ' ' && s_[i_] != '\t') ++i_;
    return std::string(s_.substr(start, i_ - start));
  }
  size_t pos() const { return i_; }
  void set_pos(size_t p) { i_ = p; }

 private:
  absl::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::vector<AuthChallenge> ParseWwwAuthenticate(absl::string_view header) {
  std::vector<AuthChallenge> out;
  Scanner sc(header);
  while (true) {
    sc.SkipSpaceAndCommas();
    if (sc.done()) break;
    std::string scheme = sc.Name();
    if (scheme.empty()) break;  // garbage: stop, keep what we have
    AuthChallenge ch;
    ch.scheme = absl::AsciiStrToLower(scheme);
    sc.SkipSpace();
    // auth-params: name=value pairs separated by commas, until a bare token
    // (the next challenge's scheme) or the end.
    while (!sc.done()) {
      size_t save = sc.pos();
      sc.SkipSpaceAndCommas();
      std::string name = sc.Name();
      sc.SkipSpace();
      if (name.empty() || sc.peek() != '=') {
        sc.set_pos(save);
        break;
      }
      sc.set_pos(sc.pos() + 1);  // '='
      sc.SkipSpace();
      ch.params[absl::AsciiStrToLower(name)] = sc.Value();
      sc.SkipSpace();
      if (sc.peek() == ',') {
        sc.set_pos(sc.pos() + 1);
      } else {
        break;
      }
    }
    out.push_back(std::move(ch));
  }
  return out;
}

absl::StatusOr<TokenResponse> ParseTokenResponse(absl::string_view body) {
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("token response is not a JSON object");
  TokenResponse r;
  auto str = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  r.token = str("token");
  if (r.token.empty()) r.token = str("access_token");
  if (r.token.empty()) return absl::InvalidArgumentError("token response has no token");
  r.refresh_token = str("refresh_token");
  r.expires_in = absl::Seconds(60);
  if (auto it = j.find("expires_in"); it != j.end() && it->is_number_integer() && it->get<int64_t>() > 0)
    r.expires_in = absl::Seconds(it->get<int64_t>());
  return r;
}

std::pair<std::string, std::string> AuthCredentials::UserPass() const {
  if (!username.empty() || !password.empty()) return {username, password};
  if (auth.empty()) return {};
  std::string decoded;
  if (!absl::Base64Unescape(auth, &decoded)) return {};
  size_t colon = decoded.find(':');
  if (colon == std::string::npos) return {};
  return {decoded.substr(0, colon), decoded.substr(colon + 1)};
}

std::string AuthCredentials::Fingerprint() const {
  if (empty()) return "anonymous";
  return Sha256Digest(absl::StrCat(username.size(), ":", username, password.size(), ":", password,
                                   auth.size(), ":", auth, identity_token.size(), ":", identity_token,
                                   registry_token));
}

std::string BasicAuthHeaderValue(absl::string_view user, absl::string_view pass) {
  return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(user, ":", pass)));
}

std::string UrlEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace crisp::images
