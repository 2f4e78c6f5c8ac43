#include "images/registry_client.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/status.h"
#include "images/digest.h"

namespace crisp::images {
namespace {

// Splits "http://host:port/prefix" into scheme, host and the base URL.
bool ParseEndpointUrl(absl::string_view url, std::string* scheme, std::string* host, std::string* base) {
  size_t sep = url.find("://");
  if (sep == absl::string_view::npos) return false;
  *scheme = absl::AsciiStrToLower(url.substr(0, sep));
  if (*scheme != "http" && *scheme != "https") return false;
  absl::string_view rest = url.substr(sep + 3);
  size_t slash = rest.find('/');
  absl::string_view h = rest.substr(0, slash);
  if (h.empty()) return false;
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  // A mirror may be written with the API prefix; we add /v2 ourselves.
  absl::ConsumeSuffix(&path, "/v2");
  *host = absl::AsciiStrToLower(h);
  *base = absl::StrCat(*scheme, "://", *host, path);
  return true;
}

AuthCredentials CredsOf(const RegistryHostConfig& h) {
  AuthCredentials c;
  c.username = h.username;
  c.password = h.password;
  c.auth = h.auth;
  c.identity_token = h.identity_token;
  return c;
}

// How specific an error is, to choose what to report when every endpoint
// failed: "unreachable" says least, "your credentials were refused" most.
int Specificity(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 0;
    case absl::StatusCode::kNotFound:
      return 1;
    default:
      return 2;
  }
}

// Adds "GET <url>: " unless the message (from the transport) names it already.
absl::Status WithUrl(const absl::Status& s, const std::string& url) {
  if (absl::StrContains(s.message(), url)) return s;
  return Annotate(s, absl::StrCat("GET ", url));
}

absl::Status StatusForHttp(const HttpResponse& r, absl::string_view what) {
  std::string body = r.body.substr(0, 300);
  std::string msg = absl::StrCat(what, ": HTTP ", r.status, body.empty() ? "" : ": ",
                                 absl::StripAsciiWhitespace(body));
  switch (r.status) {
    case 404:
      return absl::NotFoundError(msg);
    case 401:
      return absl::UnauthenticatedError(msg);
    case 403:
      return absl::PermissionDeniedError(msg);
    case 429:
      return absl::ResourceExhaustedError(msg);
    default:
      if (r.status >= 500) return absl::UnavailableError(msg);
      return absl::InternalError(msg);
  }
}

}  // namespace

RegistryClient::RegistryClient(RegistryTransport* transport, std::map<std::string, RegistryHostConfig> hosts,
                               absl::Duration stall_timeout)
    : transport_(transport), hosts_(std::move(hosts)), stall_timeout_(stall_timeout) {}

std::vector<Endpoint> RegistryClient::Endpoints(const Reference& ref) const {
  std::vector<Endpoint> out;
  auto cfg = hosts_.find(ref.domain);
  if (cfg != hosts_.end()) {
    for (const std::string& m : cfg->second.mirrors) {
      Endpoint ep;
      std::string scheme;
      if (!ParseEndpointUrl(m, &scheme, &ep.host, &ep.base_url)) {
        Logger("images")->warn("ignoring mirror \"{}\" of {}: not an http(s) URL", m, ref.domain);
        continue;
      }
      ep.mirror = true;
      auto mc = hosts_.find(ep.host);
      if (mc != hosts_.end()) {
        ep.tls_verify = !mc->second.insecure;
        ep.ca_file = mc->second.ca_file;
        ep.config_creds = CredsOf(mc->second);
      }
      out.push_back(std::move(ep));
    }
  }
  Endpoint self;
  self.host = ref.domain == "docker.io" ? "registry-1.docker.io" : ref.domain;
  bool insecure = cfg != hosts_.end() && cfg->second.insecure;
  self.request_creds = true;
  if (cfg != hosts_.end()) {
    self.ca_file = cfg->second.ca_file;
    self.config_creds = CredsOf(cfg->second);
  }
  if (IsLoopbackHost(ref.domain)) {
    // Docker's rule: loopback registries speak plain HTTP.
    self.base_url = absl::StrCat("http://", self.host);
    out.push_back(std::move(self));
  } else if (insecure) {
    // As Docker does for insecure registries: TLS without verification
    // first, then plain HTTP.
    Endpoint plain = self;
    self.base_url = absl::StrCat("https://", self.host);
    self.tls_verify = false;
    plain.base_url = absl::StrCat("http://", self.host);
    out.push_back(std::move(self));
    out.push_back(std::move(plain));
  } else {
    self.base_url = absl::StrCat("https://", self.host);
    out.push_back(std::move(self));
  }
  return out;
}

std::unique_ptr<RegistryClient::Session> RegistryClient::NewSession(const Reference& ref,
                                                                   const AuthCredentials& creds) {
  return std::unique_ptr<Session>(new Session(this, ref, creds));
}

const AuthCredentials& RegistryClient::CredsFor(const Endpoint& ep, const AuthCredentials& request) const {
  if (ep.request_creds && !request.empty()) return request;
  return ep.config_creds;
}

absl::StatusOr<std::string> RegistryClient::Authorize(const Endpoint& ep, const std::string& repo,
                                                      const AuthCredentials& creds,
                                                      const std::string& challenge_header) {
  if (!creds.registry_token.empty()) return absl::StrCat("Bearer ", creds.registry_token);
  std::vector<AuthChallenge> challenges = ParseWwwAuthenticate(challenge_header);
  auto [user, pass] = creds.UserPass();
  const AuthChallenge* bearer = nullptr;
  const AuthChallenge* basic = nullptr;
  for (const AuthChallenge& c : challenges) {
    if (c.scheme == "bearer" && bearer == nullptr) bearer = &c;
    if (c.scheme == "basic" && basic == nullptr) basic = &c;
  }
  if (bearer != nullptr) {
    auto realm = bearer->params.find("realm");
    if (realm == bearer->params.end() || realm->second.empty())
      return absl::UnauthenticatedError(absl::StrCat(ep.base_url, ": Bearer challenge without a realm"));
    std::string service, scope = absl::StrCat("repository:", repo, ":pull");
    if (auto it = bearer->params.find("service"); it != bearer->params.end()) service = it->second;
    if (auto it = bearer->params.find("scope"); it != bearer->params.end() && !it->second.empty())
      scope = it->second;
    HttpRequest req;
    req.tls_verify = ep.tls_verify;
    req.ca_file = ep.ca_file;
    req.stall_timeout = stall_timeout_;
    req.max_body_bytes = 1 << 20;
    if (!creds.identity_token.empty()) {
      // OAuth2 refresh-token grant, as Docker does with identity tokens.
      req.method = "POST";
      req.url = realm->second;
      req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
      req.body = absl::StrCat("grant_type=refresh_token&client_id=crisp&refresh_token=",
                              UrlEncode(creds.identity_token), "&service=", UrlEncode(service),
                              "&scope=", UrlEncode(scope));
    } else {
      req.url = absl::StrCat(realm->second, absl::StrContains(realm->second, '?') ? "&" : "?",
                             "service=", UrlEncode(service), "&scope=", UrlEncode(scope));
      if (!user.empty() || !pass.empty())
        req.headers.push_back(absl::StrCat("Authorization: ", BasicAuthHeaderValue(user, pass)));
    }
    auto resp = transport_->RoundTrip(req, nullptr);
    if (!resp.ok()) return Annotate(resp.status(), "fetching a registry token");
    if (resp->status == 401 || resp->status == 403) {
      std::string msg = absl::StrCat("token server ", realm->second, " refused ",
                                     creds.empty() ? "anonymous access" : "the credentials", " (HTTP ",
                                     resp->status, ") for ", scope);
      return resp->status == 401 ? absl::UnauthenticatedError(msg) : absl::PermissionDeniedError(msg);
    }
    if (resp->status < 200 || resp->status >= 300) return StatusForHttp(*resp, "fetching a registry token");
    ASSIGN_OR_RETURN(TokenResponse tok, ParseTokenResponse(resp->body));
    return absl::StrCat("Bearer ", tok.token);
  }
  if (basic != nullptr) {
    if (user.empty() && pass.empty())
      return absl::UnauthenticatedError(
          absl::StrCat(ep.base_url, " requires authentication (Basic) and no credentials were given"));
    return BasicAuthHeaderValue(user, pass);
  }
  return absl::UnauthenticatedError(
      absl::StrCat(ep.base_url, " requires authentication with an unsupported challenge: \"", challenge_header, "\""));
}

absl::StatusOr<HttpResponse> RegistryClient::Do(const Endpoint& ep, const std::string& repo,
                                                const AuthCredentials& creds, HttpRequest req, const BodySink& sink) {
  std::string key = absl::StrCat(ep.base_url, "|", repo, "|", creds.Fingerprint());
  std::string cached;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = auth_cache_.find(key);
    if (it != auth_cache_.end() && it->second.expires > absl::Now()) cached = it->second.header;
  }
  req.tls_verify = ep.tls_verify;
  req.ca_file = ep.ca_file;
  req.stall_timeout = stall_timeout_;
  const size_t base_headers = req.headers.size();
  if (!cached.empty()) req.headers.push_back(absl::StrCat("Authorization: ", cached));
  ASSIGN_OR_RETURN(HttpResponse resp, transport_->RoundTrip(req, sink));
  if (resp.status == 401) {
    std::string challenge;
    for (auto [it, end] = resp.headers.equal_range("www-authenticate"); it != end; ++it)
      absl::StrAppend(&challenge, challenge.empty() ? "" : ", ", it->second);
    ASSIGN_OR_RETURN(std::string header, Authorize(ep, repo, creds, challenge));
    req.headers.resize(base_headers);
    req.headers.push_back(absl::StrCat("Authorization: ", header));
    ASSIGN_OR_RETURN(resp, transport_->RoundTrip(req, sink));
    if (resp.status == 401)
      return absl::UnauthenticatedError(absl::StrCat(ep.base_url, " rejected ",
                                                     creds.empty() ? "anonymous access" : "the credentials",
                                                     " for ", repo, " (HTTP 401)"));
    if (resp.status >= 200 && resp.status < 300) {
      // Tokens are short-lived; reuse for less than the 60 s every token
      // server grants at least, so we never send an expired one.
      std::lock_guard<std::mutex> l(mu_);
      auth_cache_[key] = CachedAuth{header, absl::Now() + absl::Seconds(50)};
    }
  }
  if (resp.status == 403)
    return absl::PermissionDeniedError(absl::StrCat(ep.base_url, " denied access to ", repo, " (HTTP 403)"));
  return resp;
}

RegistryClient::Session::Session(RegistryClient* client, Reference ref, AuthCredentials creds)
    : client_(client), ref_(std::move(ref)), creds_(std::move(creds)), endpoints_(client->Endpoints(ref_)) {}

absl::StatusOr<RegistryClient::FetchedManifest> RegistryClient::Session::GetManifest(const std::string& object) {
  std::vector<absl::Status> errors;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const Endpoint& ep = endpoints_[i];
    std::string url = absl::StrCat(ep.base_url, "/v2/", ref_.path, "/manifests/", object);
    HttpRequest req;
    req.url = url;
    req.headers.push_back(absl::StrCat("Accept: ", kManifestAccept));
    req.max_body_bytes = kMaxManifestBytes;
    absl::StatusOr<FetchedManifest> result;
    auto resp = client_->Do(ep, ref_.path, client_->CredsFor(ep, creds_), req, nullptr);
    if (!resp.ok()) {
      result = WithUrl(resp.status(), url);
    } else if (resp->status < 200 || resp->status >= 300) {
      result = StatusForHttp(*resp, absl::StrCat("GET ", url));
    } else {
      FetchedManifest m;
      m.body = std::move(resp->body);
      m.media_type = resp->Header("content-type");
      m.digest = Sha256Digest(m.body);
      if (absl::StartsWith(object, "sha256:") && m.digest != object) {
        result = absl::DataLossError(
            absl::StrCat("manifest ", object, " from ", ep.base_url, ": digest mismatch: content hashes to ", m.digest));
      } else {
        preferred_ = i;
        return m;
      }
    }
    Logger("images")->info("manifest {}@{} from {}: {}", ref_.Name(), object, ep.base_url,
                           result.status().ToString());
    errors.push_back(result.status());
  }
  const absl::Status* best = &errors.back();
  for (const absl::Status& e : errors)
    if (Specificity(e) > Specificity(*best)) best = &e;
  if (errors.size() == 1) return *best;
  std::vector<std::string> msgs;
  for (const absl::Status& e : errors) msgs.emplace_back(e.message());
  return absl::Status(best->code(), absl::StrCat("every endpoint failed: ", absl::StrJoin(msgs, "; ")));
}

absl::Status RegistryClient::Session::GetBlob(const Descriptor& desc, const BodySink& sink,
                                              const std::atomic<bool>* cancel) {
  size_t first = preferred_.load();
  absl::Status last;
  for (size_t k = 0; k < endpoints_.size(); ++k) {
    const Endpoint& ep = endpoints_[(first + k) % endpoints_.size()];
    std::string url = absl::StrCat(ep.base_url, "/v2/", ref_.path, "/blobs/", desc.digest);
    HttpRequest req;
    req.url = url;
    req.follow_redirects = true;
    req.cancel = cancel;
    req.max_body_bytes = 64 << 10;  // error bodies only
    uint64_t delivered = 0;
    BodySink counting = [&](absl::string_view chunk) {
      delivered += chunk.size();
      return sink(chunk);
    };
    auto resp = client_->Do(ep, ref_.path, client_->CredsFor(ep, creds_), req, counting);
    if (resp.ok() && resp->status >= 200 && resp->status < 300) return absl::OkStatus();
    last = resp.ok() ? StatusForHttp(*resp, absl::StrCat("GET ", url)) : WithUrl(resp.status(), url);
    // Bytes already went to the sink (and maybe on to the unpacker): they
    // cannot be taken back, so another endpoint cannot take over.
    if (delivered > 0) return last;
    // The sink's own verdict (e.g. a size limit) is final too.
    if (!resp.ok() && resp.status().code() == absl::StatusCode::kDataLoss) return last;
    if (resp.ok() || !absl::IsCancelled(resp.status())) {
      Logger("images")->info("blob {} from {}: {}", desc.digest, ep.base_url, last.ToString());
      continue;
    }
    return last;
  }
  return last;
}

}  // namespace crisp::images
