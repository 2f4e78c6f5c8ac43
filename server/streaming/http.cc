#include "server/streaming/http.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace crisp::streaming {

namespace {
int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

bool PercentDecode(absl::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexVal(in[i + 1]), lo = HexVal(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  return true;
}

absl::StatusOr<HttpRequest> ParseRequestHead(absl::string_view head) {
  HttpRequest req;
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return absl::InvalidArgumentError("empty request");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || !absl::StartsWith(parts[2], "HTTP/1.")) {
    return absl::InvalidArgumentError("malformed request line");
  }
  req.method = std::string(parts[0]);
  absl::string_view target = parts[1];
  absl::string_view raw_query;
  if (size_t q = target.find('?'); q != absl::string_view::npos) {
    raw_query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  if (target.empty() || target[0] != '/') return absl::InvalidArgumentError("request target is not a path");
  if (!PercentDecode(target, false, &req.path)) return absl::InvalidArgumentError("malformed path escape");
  for (absl::string_view kv : absl::StrSplit(raw_query, '&', absl::SkipEmpty())) {
    absl::string_view k = kv, v;
    if (size_t eq = kv.find('='); eq != absl::string_view::npos) {
      k = kv.substr(0, eq);
      v = kv.substr(eq + 1);
    }
    std::string dk, dv;
    if (!PercentDecode(k, true, &dk) || !PercentDecode(v, true, &dv)) {
      return absl::InvalidArgumentError("malformed query escape");
    }
    req.query.emplace_back(std::move(dk), std::move(dv));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    size_t colon = line.find(':');
    // Obsolete line folding (a line starting with whitespace) is rejected as
    // RFC 9112 5.2 allows.
    if (colon == absl::string_view::npos || colon == 0 || line[0] == ' ' || line[0] == '\t') {
      return absl::InvalidArgumentError("malformed header line");
    }
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    if (name.find_first_of(" \t") != std::string::npos)
      return absl::InvalidArgumentError("space in header name");
    req.headers.emplace(std::move(name), std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return req;
}

std::vector<std::string> HeaderTokens(const HttpRequest& request, absl::string_view name) {
  std::vector<std::string> out;
  auto [b, e] = request.headers.equal_range(std::string(name));
  for (auto it = b; it != e; ++it) {
    for (absl::string_view t : absl::StrSplit(it->second, ',')) {
      t = absl::StripAsciiWhitespace(t);
      if (!t.empty()) out.emplace_back(t);
    }
  }
  return out;
}

std::string HeaderValue(const HttpRequest& request, absl::string_view name) {
  auto it = request.headers.find(std::string(name));
  return it == request.headers.end() ? std::string() : it->second;
}

std::string HttpResponse(int code, absl::string_view reason, absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason,
                      "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

bool SendAll(int fd, absl::string_view data, int shutdown_fd, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd p[2] = {{fd, POLLOUT, 0}, {shutdown_fd, POLLIN, 0}};
    int r = ::poll(p, shutdown_fd >= 0 ? 2 : 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno != EINTR) return false;
    if (shutdown_fd >= 0 && (p[1].revents & POLLIN)) return false;
  }
  return true;
}

bool SetNonBlocking(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

bool FlushSome(int fd, std::string* out) {
  while (!out->empty()) {
    ssize_t n = ::send(fd, out->data(), out->size(), MSG_NOSIGNAL);
    if (n > 0) {
      out->erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

}  // namespace crisp::streaming
