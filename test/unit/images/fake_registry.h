#pragma once
// An in-memory OCI distribution registry behind the RegistryTransport
// interface: manifests, blobs, optional Basic or Bearer auth, hosts that
// "do not resolve", corruption and a gate to hold blob downloads open.
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "images/digest.h"
#include "images/transport.h"
#include "test/unit/images/test_images.h"

namespace crisp::images::testing {

class FakeRegistry : public RegistryTransport {
 public:
  enum class Auth { kNone, kBasic, kBearer };

  // Requests to any other host fail as if DNS had no answer.
  void AddHost(const std::string& host) {
    std::lock_guard<std::mutex> l(mu_);
    hosts_.insert(host);
  }
  // https:// requests to `host` fail as a plain-HTTP server answers a TLS hello.
  void SetHttpOnly(const std::string& host) {
    std::lock_guard<std::mutex> l(mu_);
    http_only_.insert(host);
  }
  void SetAuth(Auth mode, std::string user = "", std::string pass = "") {
    std::lock_guard<std::mutex> l(mu_);
    auth_ = mode;
    user_ = std::move(user);
    pass_ = std::move(pass);
  }
  void PutBlob(const std::string& data) {
    std::lock_guard<std::mutex> l(mu_);
    blobs_[Sha256Digest(data)] = data;
  }
  // Serves `data` for `digest` (to simulate corruption).
  void OverrideBlob(const std::string& digest, const std::string& data) {
    std::lock_guard<std::mutex> l(mu_);
    blobs_[digest] = data;
  }
  void PutManifest(const std::string& repo, const std::string& ref, const std::string& body,
                   const std::string& media_type) {
    std::lock_guard<std::mutex> l(mu_);
    manifests_[repo + "|" + ref] = {body, media_type};
    manifests_[repo + "|" + Sha256Digest(body)] = {body, media_type};
  }
  void Push(const std::string& repo, const std::string& tag, const TestImage& img) {
    for (const TestLayer& layer : img.layers) PutBlob(layer.blob);
    PutBlob(img.config);
    PutManifest(repo, tag, img.manifest, img.manifest_media_type);
  }
  // While closed, blob GETs block before sending their body.
  void SetGate(bool open) {
    std::lock_guard<std::mutex> l(mu_);
    gate_open_ = open;
    cv_.notify_all();
  }
  // Waits until `n` blob GETs are blocked at the gate.
  void WaitBlocked(int n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return blocked_ >= n; });
  }

  int manifest_gets() const { std::lock_guard<std::mutex> l(mu_); return manifest_gets_; }
  int blob_gets() const { std::lock_guard<std::mutex> l(mu_); return blob_gets_; }
  int blob_gets(const std::string& digest) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = blob_gets_by_digest_.find(digest);
    return it == blob_gets_by_digest_.end() ? 0 : it->second;
  }
  int token_gets() const { std::lock_guard<std::mutex> l(mu_); return token_gets_; }
  std::vector<std::string> urls() const { std::lock_guard<std::mutex> l(mu_); return urls_; }

  absl::StatusOr<HttpResponse> RoundTrip(const HttpRequest& req, const BodySink& sink) override {
    std::unique_lock<std::mutex> l(mu_);
    urls_.push_back(req.url);
    absl::string_view url = req.url;
    size_t sep = url.find("://");
    absl::string_view rest = url.substr(sep + 3);
    std::string host(rest.substr(0, rest.find('/')));
    std::string path(rest.substr(host.size()));
    std::string query;
    if (size_t q = path.find('?'); q != std::string::npos) query = path.substr(q + 1), path.resize(q);
    if (!hosts_.count(host)) return absl::UnavailableError(absl::StrCat(req.url, ": could not resolve host"));
    if (http_only_.count(host) && absl::StartsWith(req.url, "https://"))
      return absl::UnavailableError(absl::StrCat(req.url, ": SSL routines::wrong version number"));
    std::string authz;
    for (const std::string& h : req.headers)
      if (absl::StartsWithIgnoreCase(h, "Authorization: ")) authz = h.substr(15);
    HttpResponse r;
    r.effective_url = req.url;
    if (path == "/token") {
      token_gets_++;
      if (!user_.empty() && authz != BasicValue()) return Status(401, "bad credentials");
      r.status = 200;
      r.body = absl::StrCat("{\"token\":\"", kToken, "\",\"expires_in\":300}");
      return r;
    }
    if (auth_ == Auth::kBasic && authz != BasicValue()) {
      r = Status(401, "unauthorized");
      r.headers.emplace("www-authenticate", "Basic realm=\"fake\"");
      return r;
    }
    if (auth_ == Auth::kBearer && authz != absl::StrCat("Bearer ", kToken)) {
      r = Status(401, "unauthorized");
      r.headers.emplace("www-authenticate",
                        absl::StrCat("Bearer realm=\"http://", host, "/token\",service=\"fake\""));
      return r;
    }
    if (!absl::StartsWith(path, "/v2/")) return Status(404, "not found");
    size_t m = path.find("/manifests/");
    if (m != std::string::npos) {
      manifest_gets_++;
      std::string repo = path.substr(4, m - 4), ref = path.substr(m + 11);
      auto it = manifests_.find(repo + "|" + ref);
      if (it == manifests_.end()) return Status(404, "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}");
      r.status = 200;
      r.headers.emplace("content-type", it->second.second);
      r.body = it->second.first;
      return r;
    }
    size_t b = path.find("/blobs/");
    if (b == std::string::npos) return Status(404, "not found");
    std::string digest = path.substr(b + 7);
    blob_gets_++;
    blob_gets_by_digest_[digest]++;
    auto it = blobs_.find(digest);
    if (it == blobs_.end()) return Status(404, "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\"}]}");
    std::string data = it->second;
    blocked_++;
    cv_.notify_all();
    cv_.wait(l, [&] { return gate_open_; });
    blocked_--;
    l.unlock();
    r.status = 200;
    for (size_t off = 0; off < data.size(); off += 4096) {
      if (req.cancel != nullptr && req.cancel->load()) return absl::CancelledError("cancelled");
      absl::Status s = sink(absl::string_view(data).substr(off, 4096));
      if (!s.ok()) return s;
    }
    return r;
  }

 private:
  static constexpr char kToken[] = "tok-123";
  std::string BasicValue() const {
    return absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(user_, ":", pass_)));
  }
  static HttpResponse Status(int code, std::string body) {
    HttpResponse r;
    r.status = code;
    r.body = std::move(body);
    return r;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> hosts_, http_only_;
  Auth auth_ = Auth::kNone;
  std::string user_, pass_;
  std::map<std::string, std::string> blobs_;
  std::map<std::string, std::pair<std::string, std::string>> manifests_;
  bool gate_open_ = true;
  int blocked_ = 0;
  int manifest_gets_ = 0, blob_gets_ = 0, token_gets_ = 0;
  std::map<std::string, int> blob_gets_by_digest_;
  std::vector<std::string> urls_;
};

// Forwards to a FakeRegistry owned elsewhere (ImageManager owns its transport).
class TransportRef : public RegistryTransport {
 public:
  explicit TransportRef(RegistryTransport* t) : t_(t) {}
  absl::StatusOr<HttpResponse> RoundTrip(const HttpRequest& req, const BodySink& sink) override {
    return t_->RoundTrip(req, sink);
  }

 private:
  RegistryTransport* t_;
};

}  // namespace crisp::images::testing
