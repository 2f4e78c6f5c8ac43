#include "images/reference.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "images/digest.h"

namespace crisp::images {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr char kDefaultDomain[] = "docker.io";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// path-component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
bool ValidPathComponent(absl::string_view s) {
  size_t i = 0;
  for (;;) {
    size_t start = i;
    while (i < s.size() && IsLowerAlnum(s[i])) ++i;
    if (i == start) return false;
    if (i == s.size()) return true;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < s.size() && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

bool ValidDomainComponent(absl::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alnum = absl::ascii_isalnum(static_cast<unsigned char>(c));
    if (alnum) continue;
    if (c == '-' && i != 0 && i + 1 != s.size()) continue;
    return false;
  }
  return true;
}

// domain := (host | "[" ipv6 "]") (":" port)?
bool ValidDomain(absl::string_view d) {
  absl::string_view host = d;
  absl::string_view port;
  if (absl::StartsWith(d, "[")) {
    size_t close = d.find(']');
    if (close == absl::string_view::npos || close < 3) return false;
    for (char c : d.substr(1, close - 1))
      if (!(absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == ':')) return false;
    absl::string_view rest = d.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = "";
  } else {
    size_t colon = d.rfind(':');
    if (colon != absl::string_view::npos) {
      host = d.substr(0, colon);
      port = d.substr(colon + 1);
      if (port.empty()) return false;
    }
    if (host.empty()) return false;
    for (absl::string_view comp : absl::StrSplit(host, '.'))
      if (!ValidDomainComponent(comp)) return false;
  }
  for (char c : port)
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// tag := [\w][\w.-]{0,127}
bool ValidTag(absl::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    bool word = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
    if (word) continue;
    if (i > 0 && (c == '.' || c == '-')) continue;
    return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view ref, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid image reference \"", ref, "\": ", why));
}

}  // namespace

std::string Reference::Name() const { return absl::StrCat(domain, "/", path); }

std::string Reference::String() const {
  std::string s = Name();
  if (!tag.empty()) absl::StrAppend(&s, ":", tag);
  if (!digest.empty()) absl::StrAppend(&s, "@", digest);
  return s;
}

std::string Reference::TagRef() const { return tag.empty() ? "" : absl::StrCat(Name(), ":", tag); }

std::string Reference::DigestRef(absl::string_view d) const { return absl::StrCat(Name(), "@", d); }

absl::StatusOr<Reference> ParseReference(absl::string_view ref) {
  if (ref.empty()) return Invalid(ref, "empty");
  Reference out;
  absl::string_view rest = ref;
  size_t at = rest.find('@');
  if (at != absl::string_view::npos) {
    absl::string_view d = rest.substr(at + 1);
    if (absl::Status s = ValidateDigest(d); !s.ok()) return Invalid(ref, s.message());
    out.digest = std::string(d);
    rest = rest.substr(0, at);
  }
  // A tag follows the last ':' that comes after the last '/' (a ':' before
  // it belongs to a registry port).
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != absl::string_view::npos && (slash == absl::string_view::npos || colon > slash)) {
    absl::string_view tag = rest.substr(colon + 1);
    if (!ValidTag(tag)) return Invalid(ref, absl::StrCat("invalid tag \"", tag, "\""));
    out.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Invalid(ref, "empty repository name");
  if (rest.size() == 64 && IsHex(rest))
    return Invalid(ref, "a 64-hex string is an image ID, not a repository name");

  // Docker's rule: the first component is a registry host if it contains a
  // '.' or ':', is "localhost", or has uppercase letters.
  absl::string_view domain = kDefaultDomain;
  absl::string_view path = rest;
  size_t first = rest.find('/');
  if (first != absl::string_view::npos) {
    absl::string_view head = rest.substr(0, first);
    bool has_upper = absl::AsciiStrToLower(head) != head;
    if (absl::StrContains(head, '.') || absl::StrContains(head, ':') || head == "localhost" || has_upper) {
      domain = head;
      path = rest.substr(first + 1);
    }
  }
  if (!ValidDomain(domain)) return Invalid(ref, absl::StrCat("invalid registry host \"", domain, "\""));
  if (domain == "index.docker.io") domain = kDefaultDomain;
  out.domain = std::string(domain);
  if (path.empty()) return Invalid(ref, "empty repository path");
  for (absl::string_view comp : absl::StrSplit(path, '/')) {
    if (ValidPathComponent(comp)) continue;
    if (absl::AsciiStrToLower(comp) != comp && ValidPathComponent(absl::AsciiStrToLower(comp)))
      return Invalid(ref, "repository name must be lowercase");
    return Invalid(ref, absl::StrCat("invalid repository path component \"", comp, "\""));
  }
  out.path = std::string(path);
  if (out.domain == kDefaultDomain && !absl::StrContains(out.path, '/')) out.path = "library/" + out.path;
  if (out.Name().size() > kMaxNameLength)
    return Invalid(ref, absl::StrCat("repository name longer than ", kMaxNameLength, " characters"));
  if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
  return out;
}

bool IsLoopbackHost(absl::string_view host_port) {
  absl::string_view host = host_port;
  if (absl::StartsWith(host, "[")) {
    size_t close = host.find(']');
    if (close == absl::string_view::npos) return false;
    host = host.substr(1, close - 1);
    return host == "::1" || host == "0:0:0:0:0:0:0:1";
  }
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view o : octets) {
    int v = 0;
    if (o.empty() || o.size() > 3 || !absl::SimpleAtoi(o, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

}  // namespace crisp::images
