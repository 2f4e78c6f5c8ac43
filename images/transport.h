#pragma once
// The network edge of the image service: one HTTP round trip at a time.
// The real implementation is our HTTP/1.1 client (images/http_transport.h);
// unit tests use an in-memory registry.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace crisp::images {

struct HttpRequest {
  std::string method = "GET";        // GET, HEAD or POST
  std::string url;                   // absolute http:// or https:// URL
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // POST body (application/x-www-form-urlencoded)
  bool follow_redirects = true;      // blob GETs are redirected to storage backends
  bool tls_verify = true;            // false only for hosts configured as insecure
  std::string ca_file;               // extra CA bundle for this host, or empty
  // Fail with DEADLINE_EXCEEDED when no byte moves for this long (connecting included).
  absl::Duration stall_timeout = absl::Minutes(5);
  // Largest body kept in HttpResponse::body; more fails with RESOURCE_EXHAUSTED.
  size_t max_body_bytes = 4 << 20;
  // Set to true (by another thread) to abort the request with CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpResponse {
  int status = 0;
  // Headers of the final response (after redirects), names lowercased.
  std::multimap<std::string, std::string> headers;
  // The body when no sink took it (no sink given, or a non-2xx status).
  std::string body;
  std::string effective_url;  // after redirects

  // The first value of header `lowercase_name`, or "".
  std::string Header(const std::string& lowercase_name) const {
    auto it = headers.find(lowercase_name);
    return it == headers.end() ? "" : it->second;
  }
};

// Receives a 2xx response body in order, chunk by chunk. A non-OK return
// aborts the transfer; RoundTrip then returns that status unchanged.
using BodySink = std::function<absl::Status(absl::string_view chunk)>;

class RegistryTransport {
 public:
  virtual ~RegistryTransport() = default;

  // Performs one HTTP request and returns the final response, whatever its
  // status code (a 404 is a response, not an error). When `sink` is set and
  // the final status is 2xx, the body goes to `sink` and HttpResponse::body
  // stays empty; otherwise the body is collected in HttpResponse::body (up
  // to req.max_body_bytes). Redirect response bodies are never delivered.
  // Errors (naming method and URL): UNAVAILABLE when the server cannot be
  // reached, the connection breaks, TLS fails or the response is not valid
  // HTTP, DEADLINE_EXCEEDED after req.stall_timeout without progress,
  // CANCELLED when *req.cancel becomes true, RESOURCE_EXHAUSTED for a body
  // over req.max_body_bytes, INVALID_ARGUMENT for a malformed URL, header or
  // proxy setting, FAILED_PRECONDITION when req.ca_file cannot be loaded;
  // and any error returned by `sink`, unchanged. Thread-safe: many requests
  // may run at once and share connections (keep-alive).
  virtual absl::StatusOr<HttpResponse> RoundTrip(const HttpRequest& req, const BodySink& sink) = 0;
};

}  // namespace crisp::images
