#pragma once
// Docker Registry HTTP API v2 / OCI distribution client: endpoint choice
// (mirrors, then the registry itself), authentication (Bearer token flow and
// Basic), manifest and blob GETs with verification left to the caller's
// sinks. All network I/O goes through a RegistryTransport.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "images/auth.h"
#include "images/manifest.h"
#include "images/reference.h"
#include "images/transport.h"

namespace crisp::images {

// Per-registry-host settings (crisp.yaml `registry:`), keyed by host[:port]
// as it appears in references ("docker.io", "127.0.0.1:5000").
struct RegistryHostConfig {
  // Endpoints tried in order before the host itself, as URLs whose scheme
  // decides http or https: "http://127.0.0.1:5000", "https://mirror.gcr.io".
  // A mirror serves the same repository paths under /v2/.
  std::vector<std::string> mirrors;
  // Try https without certificate verification, then plain http (as
  // Docker's insecure-registries). Also turns off verification for https
  // mirrors on this host.
  bool insecure = false;
  std::string ca_file;  // extra CA bundle for TLS to this host
  // Credentials used when the pull request brings none.
  std::string username, password, auth, identity_token;
};

// One place a pull may fetch from.
struct Endpoint {
  std::string base_url;  // "https://registry-1.docker.io", no trailing slash
  std::string host;      // host[:port] of base_url
  bool mirror = false;
  bool tls_verify = true;
  std::string ca_file;
  // Credentials from the configuration for this endpoint's host.
  AuthCredentials config_creds;
  // True for the reference's own registry: the pull request's credentials
  // are sent here and nowhere else (as containerd does), so that they never
  // leak to a mirror.
  bool request_creds = false;
};

class RegistryClient {
 public:
  // `transport` must outlive the client.
  RegistryClient(RegistryTransport* transport, std::map<std::string, RegistryHostConfig> hosts,
                 absl::Duration stall_timeout);

  // The endpoints a pull of `ref` tries, in order: the configured mirrors of
  // ref.domain, then the registry itself (docker.io -> registry-1.docker.io):
  // http for loopback hosts; https without verification and then http for
  // insecure hosts; https otherwise. Mirror URLs that cannot be parsed are
  // skipped; an https mirror is verified unless its own host is insecure.
  std::vector<Endpoint> Endpoints(const Reference& ref) const;

  struct FetchedManifest {
    std::string body;
    std::string media_type;  // Content-Type as served
    std::string digest;      // sha256 of body
  };

  // The state of one pull: which endpoint answered, which credentials to
  // use. Not thread-safe for GetManifest; GetBlob may be called from many
  // threads at once.
  class Session {
   public:
    // GETs the manifest or index named `object` (a tag or a digest), trying
    // endpoints in order. A digest object is verified against the body
    // (DATA_LOSS on mismatch). Errors: NOT_FOUND (unknown manifest),
    // UNAUTHENTICATED / PERMISSION_DENIED (credentials missing or
    // rejected), UNAVAILABLE (unreachable), each naming the endpoint. When
    // every endpoint fails, the most specific error is returned with all
    // endpoints' messages.
    absl::StatusOr<FetchedManifest> GetManifest(const std::string& object);

    // GETs blob `desc`, passing the body to `sink` as it arrives (after
    // redirects). The endpoint that served the manifest is tried first;
    // another endpoint is tried only if the previous one failed before
    // delivering any byte. The sink verifies; its errors end the transfer
    // and are returned as they are.
    absl::Status GetBlob(const Descriptor& desc, const BodySink& sink, const std::atomic<bool>* cancel);

    const std::vector<Endpoint>& endpoints() const { return endpoints_; }

   private:
    friend class RegistryClient;
    Session(RegistryClient* client, Reference ref, AuthCredentials creds);
    RegistryClient* client_;
    Reference ref_;
    AuthCredentials creds_;
    std::vector<Endpoint> endpoints_;
    std::atomic<size_t> preferred_{0};
  };

  std::unique_ptr<Session> NewSession(const Reference& ref, const AuthCredentials& creds);

 private:
  // One request with authentication: sends a cached Authorization if there
  // is one; on 401 answers the WWW-Authenticate challenge (Bearer token or
  // Basic) and retries once. A second 401 is UNAUTHENTICATED, 403 is
  // PERMISSION_DENIED; other statuses are returned for the caller to map.
  absl::StatusOr<HttpResponse> Do(const Endpoint& ep, const std::string& repo, const AuthCredentials& creds,
                                  HttpRequest req, const BodySink& sink);
  // Turns a challenge into an Authorization header value (fetching a token
  // for Bearer).
  absl::StatusOr<std::string> Authorize(const Endpoint& ep, const std::string& repo, const AuthCredentials& creds,
                                        const std::string& challenge_header);
  const AuthCredentials& CredsFor(const Endpoint& ep, const AuthCredentials& request) const;

  RegistryTransport* transport_;
  std::map<std::string, RegistryHostConfig> hosts_;
  absl::Duration stall_timeout_;

  struct CachedAuth {
    std::string header;
    absl::Time expires;
  };
  mutable std::mutex mu_;
  std::map<std::string, CachedAuth> auth_cache_;  // endpoint|repo|creds fingerprint -> Authorization
};

}  // namespace crisp::images
