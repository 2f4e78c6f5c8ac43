// libcurl implementation of RegistryTransport.
#include <curl/curl.h>

#include <array>
#include <chrono>
#include <mutex>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "images/transport.h"

namespace crisp::images {
namespace {

std::once_flag g_curl_init;

// One transfer's state, reachable from libcurl's callbacks.
struct Transfer {
  const HttpRequest* req = nullptr;
  const BodySink* sink = nullptr;
  HttpResponse resp;
  absl::Status abort_status;  // why a callback aborted the transfer
  // Progress tracking for the stall timeout.
  curl_off_t last_dl = -1, last_ul = -1;
  std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();
};

size_t OnHeader(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  absl::string_view line(buf, len);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a redirect or a 100 Continue): start over.
    t->resp.headers.clear();
    t->resp.status = 0;
    size_t sp = line.find(' ');
    if (sp != absl::string_view::npos) {
      int code = 0;
      if (absl::SimpleAtoi(line.substr(sp + 1, 3), &code)) t->resp.status = code;
    }
    return len;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return len;
  std::string name = absl::AsciiStrToLower(line.substr(0, colon));
  std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  t->resp.headers.emplace(std::move(name), std::move(value));
  return len;
}

size_t OnBody(char* buf, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  int st = t->resp.status;
  if (st >= 300 && st < 400 && t->req->follow_redirects) return len;  // a redirect's own body
  if (st >= 200 && st < 300 && t->sink != nullptr && *t->sink) {
    absl::Status s = (*t->sink)(absl::string_view(buf, len));
    if (!s.ok()) {
      t->abort_status = s;
      return 0;  // CURLE_WRITE_ERROR
    }
    return len;
  }
  if (t->resp.body.size() + len > t->req->max_body_bytes) {
    t->abort_status = absl::ResourceExhaustedError(absl::StrCat(
        t->req->method, " ", t->req->url, ": response body larger than ", t->req->max_body_bytes, " bytes"));
    return 0;
  }
  t->resp.body.append(buf, len);
  return len;
}

int OnProgress(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  if (t->req->cancel != nullptr && t->req->cancel->load(std::memory_order_relaxed)) {
    t->abort_status = absl::CancelledError(absl::StrCat(t->req->method, " ", t->req->url, ": cancelled"));
    return 1;
  }
  auto now = std::chrono::steady_clock::now();
  if (dlnow != t->last_dl || ulnow != t->last_ul) {
    t->last_dl = dlnow;
    t->last_ul = ulnow;
    t->last_progress = now;
    return 0;
  }
  if (absl::FromChrono(now - t->last_progress) > t->req->stall_timeout) {
    t->abort_status = absl::DeadlineExceededError(
        absl::StrCat(t->req->method, " ", t->req->url, ": no data for ",
                     absl::FormatDuration(t->req->stall_timeout), " (stall timeout)"));
    return 1;
  }
  return 0;
}

class CurlTransport : public RegistryTransport {
 public:
  CurlTransport() {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    share_ = curl_share_init();
    curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &CurlTransport::Lock);
    curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &CurlTransport::Unlock);
    curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
    // One connection pool (keep-alive across requests and threads), one DNS
    // cache and one TLS session cache for every transfer.
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }

  ~CurlTransport() override {
    curl_share_cleanup(share_);
  }

  absl::StatusOr<HttpResponse> RoundTrip(const HttpRequest& req, const BodySink& sink) override {
    CURL* h = Acquire();
    Transfer t;
    t.req = &req;
    t.sink = &sink;
    struct curl_slist* headers = nullptr;
    for (const std::string& hdr : req.headers) headers = curl_slist_append(headers, hdr.c_str());
    // libcurl would otherwise send "Expect: 100-continue" for POST bodies.
    headers = curl_slist_append(headers, "Expect:");
    char errbuf[CURL_ERROR_SIZE] = {};

    curl_easy_setopt(h, CURLOPT_SHARE, share_);
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "crisp/0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, req.follow_redirects ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, req.tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, req.tls_verify ? 2L : 0L);
    if (!req.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, req.ca_file.c_str());
    long connect_secs = static_cast<long>(absl::ToInt64Seconds(req.stall_timeout));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect_secs > 0 ? connect_secs : 1L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &OnProgress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method == "POST") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
    } else {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }

    CURLcode rc = curl_easy_perform(h);
    char* eff = nullptr;
    if (curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr)
      t.resp.effective_url = eff;
    long code = 0;
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code != 0)
      t.resp.status = static_cast<int>(code);
    curl_slist_free_all(headers);
    Release(h);

    if (!t.abort_status.ok()) return t.abort_status;
    if (rc != CURLE_OK) {
      std::string what =
          absl::StrCat(req.method, " ", req.url, ": ", errbuf[0] ? errbuf : curl_easy_strerror(rc));
      if (rc == CURLE_OPERATION_TIMEDOUT) return absl::DeadlineExceededError(what);
      return absl::UnavailableError(what);
    }
    return std::move(t.resp);
  }

 private:
  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<CurlTransport*>(user)->locks_[static_cast<size_t>(data) % kLocks].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<CurlTransport*>(user)->locks_[static_cast<size_t>(data) % kLocks].unlock();
  }

  // Easy handles are reused: a reset handle keeps nothing of the previous
  // request but avoids re-allocating its buffers.
  // A fresh easy handle per request: connections are pooled in the share,
  // not in the handle, and an idle handle would keep the wakeup socketpair
  // of its internal multi handle open (2 fds each).
  CURL* Acquire() { return curl_easy_init(); }
  void Release(CURL* h) { curl_easy_cleanup(h); }

  static constexpr size_t kLocks = CURL_LOCK_DATA_LAST + 1;
  CURLSH* share_;
  std::array<std::mutex, kLocks> locks_;
};

}  // namespace

std::unique_ptr<RegistryTransport> NewCurlTransport() { return std::make_unique<CurlTransport>(); }

}  // namespace crisp::images
