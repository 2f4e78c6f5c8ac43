#include "images/http_url.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "images/auth.h"

namespace crisp::images::http {
namespace {

uint16_t DefaultPort(absl::string_view scheme) { return scheme == "https" ? 443 : 80; }

// Percent-encodes what a request line cannot carry: space, controls and
// non-ASCII bytes (as curl and Go do with redirect targets). Everything else,
// '%' included, is kept: the URL is taken as already encoded.
std::string EncodeTarget(absl::string_view target) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(target.size());
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

// "%41" -> "A"; a malformed escape stays as it is.
std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = i + 2 < s.size() && s[i] == '%' ? HexValue(s[i + 1]) : -1;
    int lo = hi >= 0 ? HexValue(s[i + 2]) : -1;
    if (lo >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Parses `text` into *u; returns why not ("" on success).
std::string ParseInto(absl::string_view text, Url* u) {
  size_t sep = text.find("://");
  if (sep == absl::string_view::npos) return "not an absolute http:// or https:// URL";
  u->scheme = absl::AsciiStrToLower(text.substr(0, sep));
  if (u->scheme != "http" && u->scheme != "https")
    return absl::StrCat("unsupported scheme \"", u->scheme, "\"");
  absl::string_view rest = text.substr(sep + 3);
  size_t end = rest.find_first_of("/?#");
  absl::string_view authority = rest.substr(0, end);
  absl::string_view tail = end == absl::string_view::npos ? "" : rest.substr(end);
  if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
    u->userinfo = std::string(authority.substr(0, at));
    authority = authority.substr(at + 1);
  }
  absl::string_view host, port;
  bool has_port = false;
  if (absl::ConsumePrefix(&authority, "[")) {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return "unterminated [IPv6] host";
    host = authority.substr(0, close);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return "unexpected characters after the [IPv6] host";
      port = after.substr(1);
      has_port = true;
    }
    in6_addr a;
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a) != 1) return "invalid IPv6 address";
  } else {
    size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != absl::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
    for (char c : host) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_' && c != '~')
        return absl::StrCat("invalid character '", absl::CEscape(absl::string_view(&c, 1)), "' in the host");
    }
  }
  if (host.empty()) return "no host";
  u->host = absl::AsciiStrToLower(host);
  u->port = DefaultPort(u->scheme);
  if (has_port && !port.empty()) {
    int p = 0;
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(port, &p) || p < 1 || p > 65535)
      return absl::StrCat("invalid port \"", port, "\"");
    u->port = static_cast<uint16_t>(p);
  }
  tail = tail.substr(0, tail.find('#'));
  u->target = EncodeTarget(tail.empty() || tail[0] == '?' ? absl::StrCat("/", tail) : std::string(tail));
  return "";
}

// RFC 3986 5.2.4 on an absolute path ("/a/b/../c" -> "/a/c").
std::string RemoveDotSegments(absl::string_view path) {
  std::vector<absl::string_view> in = absl::StrSplit(path.substr(1), '/');
  std::vector<absl::string_view> out;
  for (size_t i = 0; i < in.size(); ++i) {
    bool last = i + 1 == in.size();
    if (in[i] == "..") {
      if (!out.empty()) out.pop_back();
    } else if (in[i] != ".") {
      out.push_back(in[i]);
      continue;
    }
    if (last) out.push_back("");  // "/a/.." is the directory "/"
  }
  return absl::StrCat("/", absl::StrJoin(out, "/"));
}

// Splits a target into its path and its query ("?..." or "").
std::pair<absl::string_view, absl::string_view> SplitQuery(absl::string_view target) {
  size_t q = target.find('?');
  if (q == absl::string_view::npos) return {target, ""};
  return {target.substr(0, q), target.substr(q)};
}

struct IpAddr {
  int family = 0;
  unsigned char bytes[16] = {};
  size_t size() const { return family == AF_INET ? 4 : 16; }
  bool operator==(const IpAddr& o) const {
    return family == o.family && std::memcmp(bytes, o.bytes, size()) == 0;
  }
};

bool ParseIp(absl::string_view text, IpAddr* ip) {
  std::string s(text);
  if (::inet_pton(AF_INET, s.c_str(), ip->bytes) == 1) {
    ip->family = AF_INET;
    return true;
  }
  if (::inet_pton(AF_INET6, s.c_str(), ip->bytes) == 1) {
    ip->family = AF_INET6;
    return true;
  }
  return false;
}

bool IsLoopback(const IpAddr& ip) {
  if (ip.family == AF_INET) return ip.bytes[0] == 127;
  static const unsigned char kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(ip.bytes, kV6Loopback, 16) == 0;
}

// Whether `ip` lies in `net`/`bits`.
bool InPrefix(const IpAddr& ip, const IpAddr& net, int bits) {
  if (ip.family != net.family || bits < 0 || static_cast<size_t>(bits) > ip.size() * 8) return false;
  size_t whole = static_cast<size_t>(bits) / 8;
  if (std::memcmp(ip.bytes, net.bytes, whole) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (ip.bytes[whole] & mask) == (net.bytes[whole] & mask);
}

const char* EnvAny(const char* upper, const char* lower) {
  const char* v = std::getenv(upper);
  if (v == nullptr || *v == '\0') v = std::getenv(lower);
  return v == nullptr ? "" : v;
}

}  // namespace

std::string Url::Authority() const {
  std::string h = absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host;
  return port == DefaultPort(scheme) ? h : absl::StrCat(h, ":", port);
}

std::string Url::HostPort() const {
  return absl::StrCat(absl::StrContains(host, ':') ? absl::StrCat("[", host, "]") : host, ":", port);
}

std::string Url::String() const { return absl::StrCat(scheme, "://", Authority(), target); }

absl::StatusOr<Url> ParseUrl(absl::string_view text) {
  Url u;
  std::string why = ParseInto(text, &u);
  if (!why.empty()) return absl::InvalidArgumentError(absl::StrCat("invalid URL \"", text, "\": ", why));
  return u;
}

absl::StatusOr<Url> ResolveLocation(const Url& base, absl::string_view location) {
  location = absl::StripAsciiWhitespace(location);
  // A scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":".
  size_t i = 0;
  if (!location.empty() && absl::ascii_isalpha(location[0])) {
    while (i < location.size() && (absl::ascii_isalnum(location[i]) || location[i] == '+' ||
                                   location[i] == '-' || location[i] == '.'))
      ++i;
  }
  Url u;
  if (i > 0 && i < location.size() && location[i] == ':') {
    std::string scheme = absl::AsciiStrToLower(location.substr(0, i));
    if (scheme != "http" && scheme != "https")
      return absl::InvalidArgumentError(absl::StrCat("redirect to unsupported scheme \"", scheme, "\""));
    auto parsed = ParseUrl(location);
    if (!parsed.ok()) return parsed.status();
    u = std::move(*parsed);
  } else if (absl::StartsWith(location, "//")) {
    auto parsed = ParseUrl(absl::StrCat(base.scheme, ":", location));
    if (!parsed.ok()) return parsed.status();
    u = std::move(*parsed);
  } else {
    u = base;
    u.userinfo.clear();
    location = location.substr(0, location.find('#'));
    auto [base_path, base_query] = SplitQuery(base.target);
    if (location.empty()) return u;
    if (location[0] == '?') {
      u.target = EncodeTarget(absl::StrCat(base_path, location));
      return u;
    }
    auto [path, query] = SplitQuery(location);
    std::string merged = path[0] == '/' ? std::string(path)
                                        : absl::StrCat(base_path.substr(0, base_path.rfind('/') + 1), path);
    u.target = EncodeTarget(absl::StrCat(RemoveDotSegments(merged), query));
    return u;
  }
  auto [path, query] = SplitQuery(u.target);
  u.target = absl::StrCat(RemoveDotSegments(path), query);
  return u;
}

ProxySettings ProxySettings::FromEnvironment() {
  ProxySettings s;
  s.http_proxy = EnvAny("HTTP_PROXY", "http_proxy");
  s.https_proxy = EnvAny("HTTPS_PROXY", "https_proxy");
  s.no_proxy = EnvAny("NO_PROXY", "no_proxy");
  return s;
}

bool BypassesProxy(absl::string_view no_proxy, const Url& url) {
  if (url.host == "localhost") return true;
  IpAddr ip;
  bool is_ip = ParseIp(url.host, &ip);
  if (is_ip && IsLoopback(ip)) return true;
  for (absl::string_view raw : absl::StrSplit(no_proxy, ',')) {
    std::string entry = absl::AsciiStrToLower(absl::StripAsciiWhitespace(raw));
    if (entry.empty()) continue;
    if (entry == "*") return true;
    if (size_t slash = entry.find('/'); slash != std::string::npos) {
      IpAddr net;
      int bits = 0;
      if (is_ip && ParseIp(entry.substr(0, slash), &net) &&
          absl::SimpleAtoi(entry.substr(slash + 1), &bits) && InPrefix(ip, net, bits))
        return true;
      continue;
    }
    // host, host:port, [v6]:port or a bare IPv6 address.
    absl::string_view host = entry, port;
    if (absl::StartsWith(host, "[")) {
      size_t close = host.find(']');
      if (close == absl::string_view::npos) continue;
      port = absl::StripPrefix(host.substr(close + 1), ":");
      host = host.substr(1, close - 1);
    } else if (size_t colon = host.find(':'); colon != absl::string_view::npos && host.rfind(':') == colon) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    if (!port.empty() && port != absl::StrCat(url.port)) continue;
    IpAddr entry_ip;
    if (ParseIp(host, &entry_ip)) {
      if (is_ip && entry_ip == ip) return true;
      continue;
    }
    absl::ConsumePrefix(&host, "*");
    if (host.empty() || host == ".") continue;
    if (host[0] == '.') {
      if (absl::EndsWith(url.host, host)) return true;
    } else if (url.host == host || absl::EndsWith(url.host, absl::StrCat(".", host))) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<Url> ParseProxy(absl::string_view setting) {
  std::string text =
      absl::StrContains(setting, "://") ? std::string(setting) : absl::StrCat("http://", setting);
  // Messages name the proxy without its credentials.
  std::string shown = text;
  if (size_t at = shown.rfind('@'), sep = shown.find("://"); at != std::string::npos && at > sep)
    shown.replace(sep + 3, at - sep - 3, "***");
  if (!absl::StartsWithIgnoreCase(text, "http://"))
    return absl::InvalidArgumentError(
        absl::StrCat("proxy \"", shown, "\": only http:// proxies are supported"));
  Url proxy;
  std::string why = ParseInto(text, &proxy);
  if (!why.empty()) return absl::InvalidArgumentError(absl::StrCat("proxy \"", shown, "\": ", why));
  proxy.target = "/";
  return proxy;
}

absl::StatusOr<std::optional<Url>> ProxyFor(const ProxySettings& settings, const Url& url) {
  const std::string& setting = url.Tls() ? settings.https_proxy : settings.http_proxy;
  if (setting.empty() || BypassesProxy(settings.no_proxy, url)) return std::nullopt;
  return ParseProxy(setting);
}

std::string ProxyAuthorization(const Url& proxy) {
  if (proxy.userinfo.empty()) return "";
  size_t colon = proxy.userinfo.find(':');
  std::string user = PercentDecode(absl::string_view(proxy.userinfo).substr(0, colon));
  std::string pass =
      colon == std::string::npos ? "" : PercentDecode(absl::string_view(proxy.userinfo).substr(colon + 1));
  return BasicAuthHeaderValue(user, pass);
}

}  // namespace crisp::images::http
