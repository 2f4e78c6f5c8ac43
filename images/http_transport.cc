// HTTP/1.1 over images/http_conn.h: request formatting, response parsing and
// body framing, redirects, proxies and the keep-alive pool. See
// images/http_transport.h for what is supported.
#include "images/http_transport.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/status.h"
#include "images/http_conn.h"

namespace crisp::images {
namespace {

using http::Conn;
using http::IoLimits;
using http::Url;
using Clock = std::chrono::steady_clock;

// Bodies are read into one buffer of this size per request and handed to the
// sink straight from it.
constexpr size_t kBufferSize = 256 << 10;
// A response head (or a chunked body's trailers) larger than this is an error.
constexpr size_t kMaxHead = 64 << 10;
constexpr size_t kMaxChunkLine = 4 << 10;
constexpr int kMaxRedirects = 10;
constexpr int kMaxInterimResponses = 10;
// A redirect's body is read (and dropped) up to this much so that its
// connection can be reused; a larger one closes the connection instead.
constexpr size_t kMaxDrain = 64 << 10;
constexpr char kUserAgent[] = "crisp/0.1";

absl::Status ProtocolError(absl::string_view what) { return absl::UnavailableError(what); }

// RFC 9110 token characters (header names, methods).
bool IsTchar(char c) {
  return absl::ascii_isalnum(c) || (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool IsToken(absl::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar); }

// Header values: no control characters but tab (a bare CR could split a line).
bool IsFieldValue(absl::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; });
}

std::string Quoted(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s.substr(0, 100)), "\"");
}

// "Name: value" split and trimmed; false when it is not a valid header line.
bool SplitHeader(absl::string_view line, absl::string_view* name, absl::string_view* value) {
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return false;
  *name = line.substr(0, colon);
  *value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  return IsToken(*name) && IsFieldValue(*value);
}

struct ResponseHead {
  int status = 0;
  int minor_version = 1;                            // HTTP/1.<minor>
  std::multimap<std::string, std::string> headers;  // names lowercased
};

// Parses a response head through its blank line: "HTTP/1.x NNN reason" and
// header lines ending in CRLF (a bare LF is accepted, as curl and Go do).
// Obsolete line folding, lines without a colon, names that are not tokens
// and control characters are errors.
absl::StatusOr<ResponseHead> ParseResponseHead(absl::string_view text) {
  ResponseHead h;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (absl::string_view& l : lines) absl::ConsumeSuffix(&l, "\r");
  absl::string_view status = lines.empty() ? "" : lines[0];
  if (status.size() < 12 || !absl::StartsWith(status, "HTTP/1.") || !absl::ascii_isdigit(status[7]) ||
      status[8] != ' ' || !absl::ascii_isdigit(status[9]) || !absl::ascii_isdigit(status[10]) ||
      !absl::ascii_isdigit(status[11]) || (status.size() > 12 && status[12] != ' ') || status[9] == '0')
    return ProtocolError(absl::StrCat("malformed status line ", Quoted(status)));
  h.minor_version = status[7] - '0';
  h.status = (status[9] - '0') * 100 + (status[10] - '0') * 10 + (status[11] - '0');
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty()) break;  // the blank line ending the head
    if (line[0] == ' ' || line[0] == '\t')
      return ProtocolError(absl::StrCat("folded header line ", Quoted(line), " (obsolete line folding)"));
    absl::string_view name, value;
    if (!SplitHeader(line, &name, &value))
      return ProtocolError(absl::StrCat("malformed header line ", Quoted(line)));
    h.headers.emplace(absl::AsciiStrToLower(name), std::string(value));
  }
  return h;
}

// Every comma-separated element of every `name` header, trimmed, lowercased.
std::vector<std::string> HeaderTokens(const std::multimap<std::string, std::string>& headers,
                                      const std::string& name) {
  std::vector<std::string> out;
  for (auto [it, end] = headers.equal_range(name); it != end; ++it) {
    for (absl::string_view t : absl::StrSplit(it->second, ',')) {
      t = absl::StripAsciiWhitespace(t);
      if (!t.empty()) out.push_back(absl::AsciiStrToLower(t));
    }
  }
  return out;
}

// How a response body ends.
struct Framing {
  enum Kind { kNone, kLength, kChunked, kClose } kind = kNone;
  uint64_t length = 0;  // kLength
};

absl::StatusOr<Framing> FramingOf(absl::string_view method, const ResponseHead& h) {
  Framing f;
  if (method == "HEAD" || h.status == 204 || h.status == 304 || h.status < 200) return f;
  std::vector<std::string> te = HeaderTokens(h.headers, "transfer-encoding");
  if (!te.empty()) {
    // Go's rule: chunked alone; we never ask for other codings (no TE header).
    if (te.size() != 1 || te[0] != "chunked")
      return ProtocolError(absl::StrCat("unsupported Transfer-Encoding ",
                                        Quoted(h.headers.find("transfer-encoding")->second)));
    f.kind = Framing::kChunked;
    return f;
  }
  std::vector<std::string> cl = HeaderTokens(h.headers, "content-length");
  if (cl.empty()) {
    f.kind = Framing::kClose;
    return f;
  }
  for (const std::string& v : cl) {
    uint64_t n = 0;
    if (v.size() > 18 || !std::all_of(v.begin(), v.end(), absl::ascii_isdigit) || !absl::SimpleAtoi(v, &n) ||
        (v != cl[0]))
      return ProtocolError(
          absl::StrCat("invalid Content-Length ", Quoted(h.headers.find("content-length")->second)));
    f.length = n;
  }
  f.kind = Framing::kLength;
  return f;
}

// Reads responses from a connection into a caller's buffer: heads, then
// bodies by their framing, handing body bytes out of the buffer.
class Reader {
 public:
  Reader(Conn* conn, char* buf, size_t cap, const IoLimits& limits)
      : conn_(conn), buf_(buf), cap_(cap), limits_(limits) {}

  // Bytes received so far (0: the server never answered).
  uint64_t received() const { return received_; }
  // Bytes received beyond what was consumed.
  bool leftover() const { return pos_ < end_; }

  // The next head, through its blank line.
  absl::StatusOr<std::string> ReadHead() {
    size_t scanned = 0;  // bytes after pos_ known to hold no head end
    for (;;) {
      std::optional<size_t> n = FindHeadEnd(&scanned);
      if (n.has_value() && *n <= kMaxHead) {
        std::string head(buf_ + pos_, *n);
        pos_ += *n;
        return head;
      }
      if (n.has_value() || end_ - pos_ >= kMaxHead)
        return ProtocolError("response header larger than 64 KiB");
      ASSIGN_OR_RETURN(bool more, Fill());
      if (!more)
        return ProtocolError(pos_ == end_ ? "connection closed before a response"
                                          : "connection closed in the middle of the response header");
    }
  }

  // Reads the body framed by `f`, passing it to `deliver` in chunks as they
  // come. `deliver` returns false to stop reading (the body is then not read
  // to its end). True when the body was read to its end.
  absl::StatusOr<bool> ReadBody(const Framing& f,
                                absl::FunctionRef<absl::StatusOr<bool>(absl::string_view)> deliver) {
    switch (f.kind) {
      case Framing::kNone:
        return true;
      case Framing::kLength:
        return ReadExactly(f.length, deliver);
      case Framing::kClose:
        for (;;) {
          if (pos_ == end_) {
            ASSIGN_OR_RETURN(bool more, Fill());
            if (!more) return true;
          }
          absl::string_view chunk(buf_ + pos_, end_ - pos_);
          pos_ = end_;
          ASSIGN_OR_RETURN(bool go_on, deliver(chunk));
          if (!go_on) return false;
        }
      case Framing::kChunked:
        return ReadChunked(deliver);
    }
    return true;
  }

 private:
  // Reads more bytes after end_ (moving what is left to the front when the
  // buffer is full); false at the end of the stream.
  absl::StatusOr<bool> Fill() {
    if (pos_ == end_) {
      pos_ = end_ = 0;
    } else if (end_ == cap_) {
      std::memmove(buf_, buf_ + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    ASSIGN_OR_RETURN(size_t n, conn_->Read(buf_ + end_, cap_ - end_, limits_));
    end_ += n;
    received_ += n;
    return n > 0;
  }

  // The length of the head at pos_ (through "\n\n" or "\n\r\n"), if complete.
  std::optional<size_t> FindHeadEnd(size_t* scanned) {
    const char* p = buf_ + pos_;
    size_t len = end_ - pos_;
    while (*scanned < len) {
      const void* nl = std::memchr(p + *scanned, '\n', len - *scanned);
      if (nl == nullptr) {
        *scanned = len;
        break;
      }
      size_t i = static_cast<size_t>(static_cast<const char*>(nl) - p);
      if (i + 1 < len && p[i + 1] == '\n') return i + 2;
      if (i + 2 < len && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
      if (i + 2 >= len && (i + 1 >= len || p[i + 1] == '\r')) {
        *scanned = i;  // look at this line end again with more bytes
        break;
      }
      *scanned = i + 1;
    }
    return std::nullopt;
  }

  // One line at pos_ (without its line end), at most `max` bytes.
  absl::StatusOr<std::string> ReadLine(size_t max, absl::string_view what) {
    size_t scanned = 0;
    for (;;) {
      const void* nl = std::memchr(buf_ + pos_ + scanned, '\n', end_ - pos_ - scanned);
      if (nl != nullptr) {
        size_t n = static_cast<size_t>(static_cast<const char*>(nl) - (buf_ + pos_));
        std::string line(buf_ + pos_, n);
        pos_ += n + 1;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      scanned = end_ - pos_;
      if (scanned > max) return ProtocolError(absl::StrCat(what, " longer than ", max, " bytes"));
      ASSIGN_OR_RETURN(bool more, Fill());
      if (!more)
        return ProtocolError(absl::StrCat("connection closed in the middle of the body (", what, ")"));
    }
  }

  absl::StatusOr<bool> ReadExactly(uint64_t length,
                                   absl::FunctionRef<absl::StatusOr<bool>(absl::string_view)> deliver) {
    uint64_t left = length;
    while (left > 0) {
      if (pos_ == end_) {
        ASSIGN_OR_RETURN(bool more, Fill());
        if (!more)
          return ProtocolError(
              absl::StrCat("connection closed after ", length - left, " of ", length, " body bytes"));
      }
      size_t take = static_cast<size_t>(std::min<uint64_t>(left, end_ - pos_));
      absl::string_view chunk(buf_ + pos_, take);
      pos_ += take;
      left -= take;
      ASSIGN_OR_RETURN(bool go_on, deliver(chunk));
      if (!go_on) return false;
    }
    return true;
  }

  absl::StatusOr<bool> ReadChunked(absl::FunctionRef<absl::StatusOr<bool>(absl::string_view)> deliver) {
    for (;;) {
      ASSIGN_OR_RETURN(std::string line, ReadLine(kMaxChunkLine, "chunk size line"));
      absl::string_view hex = absl::StripAsciiWhitespace(absl::string_view(line).substr(0, line.find(';')));
      uint64_t size = 0;
      if (hex.empty() || hex.size() > 15 || !std::all_of(hex.begin(), hex.end(), absl::ascii_isxdigit) ||
          !absl::SimpleHexAtoi(hex, &size))
        return ProtocolError(absl::StrCat("malformed chunk size line ", Quoted(line)));
      if (size == 0) break;
      ASSIGN_OR_RETURN(bool complete, ReadExactly(size, deliver));
      if (!complete) return false;
      ASSIGN_OR_RETURN(std::string crlf, ReadLine(kMaxChunkLine, "chunk end"));
      if (!crlf.empty()) return ProtocolError("chunk data longer than its size");
    }
    // Trailers: skipped, up to a blank line.
    size_t trailers = 0;
    for (;;) {
      ASSIGN_OR_RETURN(std::string line, ReadLine(kMaxHead, "trailer line"));
      if (line.empty()) return true;
      trailers += line.size();
      if (trailers > kMaxHead) return ProtocolError("trailers larger than 64 KiB");
    }
  }

  Conn* conn_;
  char* buf_;
  size_t cap_;
  size_t pos_ = 0, end_ = 0;
  uint64_t received_ = 0;
  const IoLimits& limits_;
};

// Idle keep-alive connections by key, newest last. Thread-safe.
class ConnPool {
 public:
  ConnPool(size_t max_per_key, absl::Duration idle_timeout)
      : max_per_key_(max_per_key), idle_timeout_(absl::ToChronoNanoseconds(idle_timeout)) {}

  // The newest idle connection for `key` that the server has not closed, or
  // null.
  std::unique_ptr<Conn> Take(const std::string& key) {
    for (;;) {
      std::unique_ptr<Conn> c;
      std::vector<std::unique_ptr<Conn>> expired;  // closed outside the lock
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = idle_.find(key);
        if (it == idle_.end()) return nullptr;
        auto now = Clock::now();
        while (!it->second.empty() && c == nullptr) {
          Idle i = std::move(it->second.back());
          it->second.pop_back();
          if (now - i.since > idle_timeout_) {
            expired.push_back(std::move(i.conn));
          } else {
            c = std::move(i.conn);
          }
        }
        if (it->second.empty()) idle_.erase(it);
      }
      if (c == nullptr) return nullptr;
      if (c->StillIdle()) return c;
    }
  }

  void Put(const std::string& key, std::unique_ptr<Conn> c) {
    std::vector<std::unique_ptr<Conn>> closing;
    std::lock_guard<std::mutex> l(mu_);
    auto now = Clock::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
      while (!it->second.empty() && now - it->second.front().since > idle_timeout_) {
        closing.push_back(std::move(it->second.front().conn));
        it->second.pop_front();
      }
      it = it->second.empty() ? idle_.erase(it) : std::next(it);
    }
    std::deque<Idle>& list = idle_[key];
    list.push_back(Idle{std::move(c), now});
    while (list.size() > max_per_key_) {
      closing.push_back(std::move(list.front().conn));
      list.pop_front();
    }
  }

 private:
  struct Idle {
    std::unique_ptr<Conn> conn;
    Clock::time_point since;
  };
  const size_t max_per_key_;
  const Clock::duration idle_timeout_;
  std::mutex mu_;
  std::map<std::string, std::deque<Idle>> idle_;
};

// Where a request's connection goes.
struct Route {
  std::optional<Url> proxy;
  std::string proxy_auth;  // Proxy-Authorization value, or ""
};

// The header lines of a request, in the caller's order, our defaults
// first. A caller's header replaces our default of the same name; one with
// an empty value only removes it (libcurl's convention). Content-Length is
// ours alone.
std::string FormatRequest(const Url& url, const Route& route, absl::string_view method,
                          const std::vector<std::string>& headers, absl::string_view body) {
  bool absolute = route.proxy.has_value() && !url.Tls();
  std::string out = absl::StrCat(method, " ", absolute ? url.String() : url.target, " HTTP/1.1\r\n");
  auto given = [&](absl::string_view name) {
    for (const std::string& h : headers)
      if (h.size() > name.size() && h[name.size()] == ':' && absl::StartsWithIgnoreCase(h, name)) return true;
    return false;
  };
  if (!given("host")) absl::StrAppend(&out, "Host: ", url.Authority(), "\r\n");
  if (!given("user-agent")) absl::StrAppend(&out, "User-Agent: ", kUserAgent, "\r\n");
  if (!given("accept")) absl::StrAppend(&out, "Accept: */*\r\n");
  for (const std::string& h : headers) {
    absl::string_view name, value;
    SplitHeader(h, &name, &value);  // validated by RoundTrip
    if (value.empty() || absl::EqualsIgnoreCase(name, "content-length")) continue;
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  if (absolute && !route.proxy_auth.empty())
    absl::StrAppend(&out, "Proxy-Authorization: ", route.proxy_auth, "\r\n");
  if (method == "POST" || !body.empty()) absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&out, "\r\n", body);
  return out;
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// What one request/response exchange produced.
struct Exchange {
  HttpResponse resp;
  bool redirect = false;  // a redirect to follow; its Location is in resp
};

class HttpTransport : public RegistryTransport {
 public:
  explicit HttpTransport(HttpTransportOptions o)
      : proxy_(std::move(o.proxy)), pool_(std::max<size_t>(1, o.max_idle_per_host), o.idle_timeout) {
    for (const auto& [scheme, value] :
         {std::pair{"http", &proxy_.http_proxy}, std::pair{"https", &proxy_.https_proxy}}) {
      if (value->empty()) continue;
      auto proxy = http::ParseProxy(*value);
      Logger("images")->info("{}:// URLs go through proxy {} (no_proxy \"{}\")", scheme,
                             proxy.ok() ? proxy->HostPort() : std::string(proxy.status().message()),
                             proxy_.no_proxy);
    }
  }

  absl::StatusOr<HttpResponse> RoundTrip(const HttpRequest& req, const BodySink& sink) override {
    auto fail = [&](const Url* at, const absl::Status& s) {
      std::string prefix = absl::StrCat(req.method, " ", req.url);
      if (at != nullptr && at->String() != req.url)
        absl::StrAppend(&prefix, " (redirected to ", at->String(), ")");
      return Annotate(s, prefix);
    };
    if (req.method != "GET" && req.method != "HEAD" && req.method != "POST")
      return fail(nullptr, absl::InvalidArgumentError("unsupported method (GET, HEAD or POST)"));
    for (const std::string& h : req.headers) {
      absl::string_view name, value;
      if (!SplitHeader(h, &name, &value))
        return fail(nullptr, absl::InvalidArgumentError(absl::StrCat("invalid request header ", Quoted(h))));
    }
    auto parsed = http::ParseUrl(req.url);
    if (!parsed.ok()) return fail(nullptr, parsed.status());
    if (!parsed->userinfo.empty())
      return fail(nullptr, absl::InvalidArgumentError("credentials in the URL are not supported"));
    const Url original = *parsed;
    Url url = original;
    IoLimits limits{req.stall_timeout, req.cancel};
    std::string method = req.method;
    std::string body = req.body;
    std::vector<std::string> headers = req.headers;
    std::unique_ptr<char[]> buf(new char[kBufferSize]);
    for (int redirects = 0;; ++redirects) {
      if (limits.Cancelled()) return fail(&url, absl::CancelledError("cancelled"));
      // Credentials go to the origin the caller named, never to another one
      // a redirect points at (a blob store must not see the registry token).
      std::vector<std::string> hop_headers;
      for (const std::string& h : headers) {
        bool credential =
            absl::StartsWithIgnoreCase(h, "authorization:") || absl::StartsWithIgnoreCase(h, "cookie:");
        if (!credential || url.SameOrigin(original)) hop_headers.push_back(h);
      }
      bool sink_failed = false;
      auto ex = Do(url, method, hop_headers, body, req, sink, limits, buf.get(), &sink_failed);
      if (!ex.ok()) return sink_failed ? ex.status() : fail(&url, ex.status());
      if (!ex->redirect) {
        ex->resp.effective_url = redirects == 0 ? req.url : url.String();
        return std::move(ex->resp);
      }
      if (redirects == kMaxRedirects)
        return fail(
            &url, absl::UnavailableError(absl::StrCat("too many redirects (more than ", kMaxRedirects, ")")));
      auto next = http::ResolveLocation(url, ex->resp.Header("location"));
      if (!next.ok()) return fail(&url, absl::UnavailableError(next.status().message()));
      int status = ex->resp.status;
      // 303 turns every method but HEAD into GET; 301 and 302 turn POST into
      // GET (what browsers, curl and Go do); 307 and 308 keep the request.
      if ((status == 303 && method != "HEAD") || ((status == 301 || status == 302) && method == "POST")) {
        method = "GET";
        body.clear();
        std::erase_if(headers,
                      [](const std::string& h) { return absl::StartsWithIgnoreCase(h, "content-type:"); });
      }
      url = std::move(*next);
    }
  }

 private:
  absl::StatusOr<Route> RouteFor(const Url& url) {
    Route r;
    ASSIGN_OR_RETURN(r.proxy, http::ProxyFor(proxy_, url));
    if (r.proxy) r.proxy_auth = http::ProxyAuthorization(*r.proxy);
    return r;
  }

  // A new connection for `url`: direct or to the proxy, through a CONNECT
  // tunnel for https via a proxy, then TLS for https.
  absl::StatusOr<std::unique_ptr<Conn>> Open(const Url& url, const Route& route, const HttpRequest& req,
                                             const IoLimits& limits, char* buf) {
    const Url& first = route.proxy ? *route.proxy : url;
    ASSIGN_OR_RETURN(std::unique_ptr<Conn> conn, Conn::Dial(first.host, first.port, limits));
    if (!url.Tls()) return conn;
    if (route.proxy) RETURN_IF_ERROR(Tunnel(conn.get(), url, route, limits, buf));
    ASSIGN_OR_RETURN(http::SslCtxPtr ctx, tls_.Get(req.tls_verify, req.ca_file));
    RETURN_IF_ERROR(conn->StartTls(ctx.get(), url.host, limits));
    return conn;
  }

  // CONNECT host:port through the proxy on `conn`.
  absl::Status Tunnel(Conn* conn, const Url& url, const Route& route, const IoLimits& limits, char* buf) {
    std::string connect = absl::StrCat("CONNECT ", url.HostPort(), " HTTP/1.1\r\nHost: ", url.HostPort(),
                                       "\r\nUser-Agent: ", kUserAgent, "\r\n");
    if (!route.proxy_auth.empty())
      absl::StrAppend(&connect, "Proxy-Authorization: ", route.proxy_auth, "\r\n");
    absl::StrAppend(&connect, "\r\n");
    RETURN_IF_ERROR(conn->Write(connect, limits));
    Reader r(conn, buf, kBufferSize, limits);
    std::string what = absl::StrCat("proxy ", route.proxy->HostPort(), ": CONNECT ", url.HostPort());
    auto text = r.ReadHead();
    if (!text.ok()) return Annotate(text.status(), what);
    auto head = ParseResponseHead(*text);
    if (!head.ok()) return Annotate(head.status(), what);
    if (head->status / 100 != 2)
      return absl::UnavailableError(absl::StrCat(
          what, ": HTTP ", head->status, head->status == 407 ? " (proxy authentication required)" : ""));
    if (r.leftover()) return ProtocolError(absl::StrCat(what, ": data after the proxy's answer"));
    return absl::OkStatus();
  }

  // One request and its response on a pooled or new connection. A pooled
  // connection that fails before the first response byte (the server closed
  // it while idle) is replaced by a new one once. *sink_failed tells that
  // the error came from `sink`.
  absl::StatusOr<Exchange> Do(const Url& url, const std::string& method,
                              const std::vector<std::string>& headers, const std::string& body,
                              const HttpRequest& req, const BodySink& sink, const IoLimits& limits, char* buf,
                              bool* sink_failed) {
    ASSIGN_OR_RETURN(Route route, RouteFor(url));
    std::string key = absl::StrCat(url.scheme, "://", url.HostPort());
    if (url.Tls())
      absl::StrAppend(&key, req.tls_verify ? " verify " : " noverify ", req.tls_verify ? req.ca_file : "");
    if (route.proxy) absl::StrAppend(&key, " via ", route.proxy->HostPort(), " ", route.proxy_auth);
    std::string request = FormatRequest(url, route, method, headers, body);

    std::unique_ptr<Conn> conn;
    std::optional<Reader> reader;
    ResponseHead head;
    for (int attempt = 0;; ++attempt) {
      conn = attempt == 0 ? pool_.Take(key) : nullptr;
      bool reused = conn != nullptr;
      if (!reused) {
        ASSIGN_OR_RETURN(conn, Open(url, route, req, limits, buf));
      }
      reader.emplace(conn.get(), buf, kBufferSize, limits);
      absl::StatusOr<ResponseHead> h = WriteAndReadHead(conn.get(), request, &*reader, limits);
      if (h.ok()) {
        head = std::move(*h);
        break;
      }
      if (reused && reader->received() == 0 && absl::IsUnavailable(h.status())) continue;
      return h.status();
    }
    ASSIGN_OR_RETURN(Framing framing, FramingOf(method, head));
    bool keep_alive = head.minor_version >= 1 && framing.kind != Framing::kClose;
    for (const std::string& t : HeaderTokens(head.headers, "connection"))
      if (t == "close") keep_alive = false;
    if (framing.kind == Framing::kChunked && head.headers.count("content-length")) keep_alive = false;

    Exchange ex;
    ex.resp.status = head.status;
    ex.resp.headers = std::move(head.headers);
    ex.redirect = req.follow_redirects && IsRedirect(ex.resp.status) && ex.resp.headers.count("location") > 0;
    bool complete = false;
    if (ex.redirect) {
      // Dropped; read only to keep the connection, and only a small one.
      size_t drained = 0;
      auto drain = [&](absl::string_view chunk) -> absl::StatusOr<bool> {
        drained += chunk.size();
        return drained <= kMaxDrain;
      };
      auto r =
          framing.kind == Framing::kClose ? absl::StatusOr<bool>(false) : reader->ReadBody(framing, drain);
      complete = r.ok() && *r;
    } else if (ex.resp.status / 100 == 2 && sink) {
      auto deliver = [&](absl::string_view chunk) -> absl::StatusOr<bool> {
        absl::Status s = sink(chunk);
        if (!s.ok()) {
          *sink_failed = true;
          return s;
        }
        return true;
      };
      ASSIGN_OR_RETURN(complete, reader->ReadBody(framing, deliver));
    } else {
      auto collect = [&](absl::string_view chunk) -> absl::StatusOr<bool> {
        if (ex.resp.body.size() + chunk.size() > req.max_body_bytes)
          return absl::ResourceExhaustedError(
              absl::StrCat("response body larger than ", req.max_body_bytes, " bytes"));
        ex.resp.body.append(chunk.data(), chunk.size());
        return true;
      };
      ASSIGN_OR_RETURN(complete, reader->ReadBody(framing, collect));
    }
    if (keep_alive && complete && !reader->leftover()) pool_.Put(key, std::move(conn));
    return ex;
  }

  // Sends the request and reads the final response head (1xx skipped).
  static absl::StatusOr<ResponseHead> WriteAndReadHead(Conn* conn, const std::string& request, Reader* reader,
                                                       const IoLimits& limits) {
    RETURN_IF_ERROR(conn->Write(request, limits));
    for (int interim = 0;; ++interim) {
      ASSIGN_OR_RETURN(std::string text, reader->ReadHead());
      ASSIGN_OR_RETURN(ResponseHead h, ParseResponseHead(text));
      if (h.status >= 200) return h;
      // We never ask to upgrade the connection.
      if (h.status == 101) return ProtocolError("unexpected 101 Switching Protocols");
      if (interim == kMaxInterimResponses) return ProtocolError("too many 1xx interim responses");
    }
  }

  const http::ProxySettings proxy_;
  ConnPool pool_;
  http::TlsContexts tls_;
};

}  // namespace

std::unique_ptr<RegistryTransport> NewHttpTransport(HttpTransportOptions options) {
  return std::make_unique<HttpTransport>(std::move(options));
}

}  // namespace crisp::images
