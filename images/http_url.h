#pragma once
// URLs as the HTTP transport (images/http_transport.h) needs them: parsing
// an absolute http(s) URL, resolving a redirect's Location against the URL
// that answered it (RFC 3986 section 5), and choosing a proxy from the
// environment the way Go's net/http does (containerd and kubelet read the
// same variables, so one setting means the same to all of them).
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace crisp::images::http {

struct Url {
  std::string scheme;    // "http" or "https"
  std::string host;      // lowercased; an IPv6 literal without its brackets
  uint16_t port = 0;     // as written, else the scheme's default (80, 443)
  std::string target;    // path and query, "/" at least; no fragment
  std::string userinfo;  // "user:password" before '@' as written (proxy URLs)

  bool Tls() const { return scheme == "https"; }
  // host[:port] with brackets around IPv6, the port only when it is not the
  // scheme's default: the Host header.
  std::string Authority() const;
  // host:port always (brackets around IPv6): CONNECT targets, messages.
  std::string HostPort() const;
  // scheme://authority/target (no userinfo): absolute-form request targets,
  // effective URLs.
  std::string String() const;
  // Same scheme, host and port: where credentials may follow a redirect.
  bool SameOrigin(const Url& o) const { return scheme == o.scheme && host == o.host && port == o.port; }
};

// Parses an absolute http:// or https:// URL. Host names, IPv4 and
// "[IPv6]" hosts, ports 1-65535; bytes a request line cannot carry (space,
// controls, non-ASCII) in the path and query are percent-encoded, the
// fragment is dropped. INVALID_ARGUMENT naming what is wrong otherwise
// (other schemes, no host, bad port, bad host characters).
absl::StatusOr<Url> ParseUrl(absl::string_view text);

// The URL a redirect's Location header names, relative to `base`: absolute
// ("https://other/x"), scheme-relative ("//other/x"), absolute path ("/x"),
// relative path ("x", "../x") or query ("?x"), with dot segments removed.
// INVALID_ARGUMENT for schemes other than http and https.
absl::StatusOr<Url> ResolveLocation(const Url& base, absl::string_view location);

// The proxy settings: each proxy a URL ("http://[user:pass@]host[:port]";
// the scheme may be left out and defaults to http, the port to 80) or empty;
// no_proxy a comma-separated list of hosts that are reached directly.
struct ProxySettings {
  std::string http_proxy;   // for http:// URLs
  std::string https_proxy;  // for https:// URLs (a CONNECT tunnel)
  std::string no_proxy;

  // From HTTP_PROXY/http_proxy, HTTPS_PROXY/https_proxy and
  // NO_PROXY/no_proxy (the upper-case name first when both are set, as Go).
  static ProxySettings FromEnvironment();
  bool empty() const { return http_proxy.empty() && https_proxy.empty(); }
};

// Whether `url` bypasses the proxy: "localhost" and loopback IPs always do;
// else when an entry of `no_proxy` matches, Go's rules: "*" matches every
// host; an IP or CIDR ("10.0.0.0/8", "fd00::/8") matches IP hosts in it; a
// name matches itself and its subdomains ("example.com" matches
// "registry.example.com"), ".example.com" and "*.example.com" only the
// subdomains; an entry with ":port" matches that port only. Case-insensitive,
// blanks around entries ignored.
bool BypassesProxy(absl::string_view no_proxy, const Url& url);

// A proxy setting as a URL ("proxy:3128" means "http://proxy:3128").
// INVALID_ARGUMENT, naming the proxy without its credentials, when it is not
// a valid http:// URL (https:// and SOCKS proxies are not supported).
absl::StatusOr<Url> ParseProxy(absl::string_view setting);

// The proxy to use for `url` (nullopt: connect directly); errors as
// ParseProxy.
absl::StatusOr<std::optional<Url>> ProxyFor(const ProxySettings& settings, const Url& url);

// The Proxy-Authorization value for a proxy URL with credentials: "Basic "
// and base64 of the percent-decoded "user:password"; "" without credentials.
std::string ProxyAuthorization(const Url& proxy);

}  // namespace crisp::images::http
