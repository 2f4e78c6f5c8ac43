#pragma once
// The real RegistryTransport (images/transport.h): our own HTTP/1.1 client
// on sockets and OpenSSL. It replaces libcurl, whose Debian build mapped ~30
// shared libraries (GnuTLS, Kerberos, LDAP, ssh2, nghttp2, ...) into crispd,
// ~4 MiB of its PSS, for what crisp uses as a plain HTTP/1.1 client.
//
// What it speaks: http and https URLs (host names, IPv4, [IPv6], ports);
// GET, HEAD and POST; responses framed by Content-Length, chunked
// transfer-encoding (trailers skipped) or the end of the connection; 1xx
// interim responses skipped; redirects (301/302/303/307/308, at most 10,
// http/https only; Authorization and Cookie headers are dropped when a
// redirect leaves the original scheme://host:port, as curl does); TLS >= 1.2
// with SNI and host name / IP verification against the system trust store
// plus the request's CA file; HTTP proxies from the environment (absolute-form
// requests for http, CONNECT tunnels for https, NO_PROXY, Basic proxy
// credentials from the proxy URL). One pool of keep-alive connections per
// transport. Not supported: HTTP/2, content or transfer codings other than
// chunked (we send no Accept-Encoding), https:// and SOCKS proxies, TLS
// client certificates, TLS session resumption.
#include <cstddef>
#include <memory>

#include "absl/time/time.h"
#include "images/http_url.h"
#include "images/transport.h"

namespace crisp::images {

struct HttpTransportOptions {
  // Read from the environment when the options are made (see
  // http::ProxySettings::FromEnvironment); tests set them directly.
  http::ProxySettings proxy = http::ProxySettings::FromEnvironment();
  // Idle keep-alive connections kept per scheme://host:port (and TLS
  // settings and proxy); more are closed. Pulls fetch up to
  // ImageOptions::max_concurrent_downloads blobs at once.
  size_t max_idle_per_host = 8;
  // An idle connection older than this is closed instead of reused (servers
  // close theirs after a while; a reused dead one costs a retry).
  absl::Duration idle_timeout = absl::Seconds(60);
};

std::unique_ptr<RegistryTransport> NewHttpTransport(HttpTransportOptions options = {});

}  // namespace crisp::images
