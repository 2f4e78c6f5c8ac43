// The HTTP transport (images/http_transport.h) against in-test servers on
// loopback (test_http_server.h): framing, keep-alive and the pool, redirects
// and credentials, limits, stall and cancel, TLS with a CA made at test time,
// and proxies; plus the URL and proxy rules of images/http_url.h.
#include "images/http_transport.h"

#include <signal.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "images/auth.h"
#include "images/http_url.h"
#include "test/testing/temp_dir.h"
#include "test/testing/test_certs.h"
#include "test/unit/http/test_http_server.h"

namespace crisp::images {
namespace {

using testing::Response;
using testing::ServerConn;
using testing::ServerRequest;
using testing::TestProxy;
using testing::TestServer;

// Tests never take proxies from the environment they run in.
HttpTransportOptions Direct() {
  HttpTransportOptions o;
  o.proxy = http::ProxySettings{};
  return o;
}

HttpRequest Req(const std::string& url, const std::string& method = "GET") {
  HttpRequest r;
  r.url = url;
  r.method = method;
  r.stall_timeout = absl::Seconds(10);
  return r;
}

// A sink that collects the body and counts chunks.
struct Collector {
  std::string body;
  int chunks = 0;
  BodySink Sink() {
    return [this](absl::string_view c) {
      body.append(c.data(), c.size());
      ++chunks;
      return absl::OkStatus();
    };
  }
};

// A handler answering every request with `response`, keeping the connection.
testing::Handler Always(std::string response) {
  return [response](const ServerRequest&, ServerConn& c) { return c.Send(response); };
}

class HttpTransportTest : public crisp::testing::TempDirTest {
 protected:
  static void SetUpTestSuite() { ::signal(SIGPIPE, SIG_IGN); }  // the test servers' writes
  std::unique_ptr<RegistryTransport> t_ = NewHttpTransport(Direct());
};

TEST_F(HttpTransportTest, GetWithContentLength) {
  TestServer s(Always(Response(200, "hello", {"X-Thing: One", "X-Thing: Two", "Content-Type: text/plain"})));
  ASSERT_TRUE(s.ok());
  auto r = t_->RoundTrip(Req(s.Url("/v2/x?a=b")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->Header("content-type"), "text/plain");
  EXPECT_EQ(r->headers.count("x-thing"), 2u);
  EXPECT_EQ(r->effective_url, s.Url("/v2/x?a=b"));
  auto reqs = s.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].target, "/v2/x?a=b");
  EXPECT_EQ(reqs[0].version, "HTTP/1.1");
  EXPECT_EQ(reqs[0].Header("host"), absl::StrCat("127.0.0.1:", s.port()));
  EXPECT_EQ(reqs[0].Header("user-agent"), "crisp/0.1");
  EXPECT_FALSE(reqs[0].Has("accept-encoding"));
  EXPECT_FALSE(reqs[0].Has("content-length"));
}

TEST_F(HttpTransportTest, CallerHeadersAreSentAndReplaceDefaults) {
  TestServer s(Always(Response(200, "")));
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(s.Url("/"));
  req.headers = {"Accept: application/json", "User-Agent:", "X-Other:  spaced value "};
  ASSERT_TRUE(t_->RoundTrip(req, nullptr).ok());
  auto reqs = s.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].Header("accept"), "application/json");
  EXPECT_EQ(reqs[0].headers.count("accept"), 1u);
  EXPECT_FALSE(reqs[0].Has("user-agent"));  // an empty value removes it
  EXPECT_EQ(reqs[0].Header("x-other"), "spaced value");
}

TEST_F(HttpTransportTest, HeadHasNoBodyAndKeepsTheConnection) {
  TestServer s([](const ServerRequest& r, ServerConn& c) {
    // A HEAD answer names the GET body's length but sends no body.
    if (r.method == "HEAD")
      return c.Send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nDocker-Content-Digest: d\r\n\r\n");
    return c.Send(Response(200, "get"));
  });
  ASSERT_TRUE(s.ok());
  auto h = t_->RoundTrip(Req(s.Url("/m"), "HEAD"), nullptr);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "");
  EXPECT_EQ(h->Header("content-length"), "1000");
  auto g = t_->RoundTrip(Req(s.Url("/m")), nullptr);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->body, "get");
  EXPECT_EQ(s.accepts(), 1);
}

TEST_F(HttpTransportTest, PostSendsItsBodyWithContentLength) {
  TestServer s([](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, "got:" + r.body)); });
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(s.Url("/token"), "POST");
  req.headers = {"Content-Type: application/x-www-form-urlencoded"};
  req.body = "grant_type=refresh_token&x=1";
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "got:grant_type=refresh_token&x=1");
  auto reqs = s.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].Header("content-length"), "28");
  EXPECT_FALSE(reqs[0].Has("expect"));
  // An empty POST still says its length.
  req.body.clear();
  ASSERT_TRUE(t_->RoundTrip(req, nullptr).ok());
  EXPECT_EQ(s.requests().back().Header("content-length"), "0");
}

TEST_F(HttpTransportTest, ChunkedBodyWithExtensionsAndTrailersToSinkAndBody) {
  std::string big(100000, 'z');
  std::string chunked = absl::StrCat(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5;name=value\r\nhello\r\n", "1\r\n \r\n",
      absl::StrCat(absl::Hex(big.size())), "\r\n", big, "\r\n", "0\r\nX-Trailer: t\r\nOther: u\r\n\r\n");
  TestServer s(Always(chunked));
  ASSERT_TRUE(s.ok());
  Collector c;
  auto r = t_->RoundTrip(Req(s.Url("/blob")), c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(c.body, "hello " + big);
  EXPECT_FALSE(r->headers.count("x-trailer"));  // trailers are skipped
  // Without a sink the body is collected; the connection was kept.
  auto r2 = t_->RoundTrip(Req(s.Url("/blob")), nullptr);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->body, "hello " + big);
  EXPECT_EQ(s.accepts(), 1);
}

TEST_F(HttpTransportTest, ReadToCloseBodyIsNotReused) {
  TestServer s([](const ServerRequest&, ServerConn& c) {
    c.Send("HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\nuntil the end");
    return false;
  });
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 2; ++i) {
    auto r = t_->RoundTrip(Req(s.Url("/")), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "until the end");
  }
  EXPECT_EQ(s.accepts(), 2);
}

TEST_F(HttpTransportTest, ConnectionCloseAndHttp10AreNotReused) {
  TestServer s([](const ServerRequest& r, ServerConn& c) {
    if (r.target == "/close") return c.Send(Response(200, "a", {"Connection: close"}));
    return c.Send("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb");
  });
  ASSERT_TRUE(s.ok());
  for (const char* path : {"/close", "/close", "/old", "/old"}) {
    auto r = t_->RoundTrip(Req(s.Url(path)), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(s.accepts(), 4);
}

TEST_F(HttpTransportTest, InterimResponsesAreSkipped) {
  TestServer s(Always("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" +
                      Response(200, "final", {"X-Final: yes"})));
  ASSERT_TRUE(s.ok());
  auto r = t_->RoundTrip(Req(s.Url("/")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "final");
  EXPECT_EQ(r->Header("x-final"), "yes");
  EXPECT_FALSE(r->headers.count("link"));
}

TEST_F(HttpTransportTest, NoBodyFor204And304) {
  TestServer s([](const ServerRequest& r, ServerConn& c) {
    // Neither carries a body whatever the headers say; the next answer follows at once.
    return c.Send(
        absl::StrCat("HTTP/1.1 ", r.target == "/204" ? "204" : "304", " X\r\nContent-Length: 7\r\n\r\n"));
  });
  ASSERT_TRUE(s.ok());
  for (const char* path : {"/204", "/304", "/204"}) {
    auto r = t_->RoundTrip(Req(s.Url(path)), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "");
  }
  EXPECT_EQ(s.accepts(), 1);
}

TEST_F(HttpTransportTest, KeepAliveReusesOneConnectionAcrossRequestsAndThreads) {
  TestServer s([](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, r.target)); });
  ASSERT_TRUE(s.ok());
  for (int i = 0; i < 3; ++i) {
    auto r = t_->RoundTrip(Req(s.Url(absl::StrCat("/", i))), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, absl::StrCat("/", i));
  }
  EXPECT_EQ(s.accepts(), 1);
  auto reqs = s.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[2].connection, 1);
  EXPECT_EQ(reqs[2].index, 3);
  // Concurrent requests share the pool safely; each gets its own answer.
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 20; ++j) {
        std::string path = absl::StrCat("/t", i, "-", j);
        auto r = t_->RoundTrip(Req(s.Url(path)), nullptr);
        if (r.ok() && r->body == path) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 160);
  EXPECT_LE(s.accepts(), 9);
}

TEST_F(HttpTransportTest, ExpiredIdleConnectionsAreNotReused) {
  HttpTransportOptions o = Direct();
  o.idle_timeout = absl::ZeroDuration();
  auto t = NewHttpTransport(o);
  TestServer s(Always(Response(200, "x")));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(t->RoundTrip(Req(s.Url("/")), nullptr).ok());
  absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(t->RoundTrip(Req(s.Url("/")), nullptr).ok());
  EXPECT_EQ(s.accepts(), 2);
}

TEST_F(HttpTransportTest, ServerClosingAnIdleConnectionIsNoError) {
  TestServer s(Always(Response(200, "x")));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(t_->RoundTrip(Req(s.Url("/")), nullptr).ok());
  s.CloseConnections();
  auto r = t_->RoundTrip(Req(s.Url("/")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(s.accepts(), 2);
}

TEST_F(HttpTransportTest, ReusedConnectionDyingBeforeTheAnswerIsRetriedOnceOnANewOne) {
  // The server takes the second request on a connection and closes it
  // unanswered: what a client sees when the server times out an idle
  // connection just as the request goes out.
  TestServer s(
      [](const ServerRequest& r, ServerConn& c) { return r.index == 1 && c.Send(Response(200, "ok")); });
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(t_->RoundTrip(Req(s.Url("/1")), nullptr).ok());
  auto r = t_->RoundTrip(Req(s.Url("/2")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "ok");
  EXPECT_EQ(s.accepts(), 2);
  ASSERT_EQ(s.requests().size(), 3u);  // /1, /2 (dropped), /2 again
}

TEST_F(HttpTransportTest, NewConnectionClosedWithoutAnAnswerIsUnavailable) {
  TestServer s([](const ServerRequest&, ServerConn&) { return false; });
  ASSERT_TRUE(s.ok());
  auto r = t_->RoundTrip(Req(s.Url("/x")), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "GET " + s.Url("/x"))) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "connection closed before a response")) << r.status();
  EXPECT_EQ(s.accepts(), 1);  // no retry on a new connection
}

TEST_F(HttpTransportTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    TestServer s(Always(""));
    ASSERT_TRUE(s.ok());
    port = s.port();
  }
  std::string url = absl::StrCat("http://127.0.0.1:", port, "/v2/");
  auto r = t_->RoundTrip(Req(url), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "GET " + url + ": connecting to 127.0.0.1:"))
      << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "refused")) << r.status();
}

TEST_F(HttpTransportTest, UnresolvableHostIsUnavailable) {
  auto r = t_->RoundTrip(Req("http://nonexistent.invalid/v2/"), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "resolving nonexistent.invalid")) << r.status();
}

TEST_F(HttpTransportTest, Ipv6LoopbackAndLocalhostNames) {
  TestServer s6(Always(Response(200, "six")), nullptr, "::1");
  if (!s6.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  auto r = t_->RoundTrip(Req(s6.Url("/")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "six");
  EXPECT_EQ(s6.requests()[0].Header("host"), absl::StrCat("[::1]:", s6.port()));
}

TEST_F(HttpTransportTest, HostNamesResolve) {
  TestServer s(Always(Response(200, "named")));
  ASSERT_TRUE(s.ok());
  auto r = t_->RoundTrip(Req(s.Url("/", "localhost")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "named");
  EXPECT_EQ(s.requests()[0].Header("host"), absl::StrCat("localhost:", s.port()));
}

// Redirects: a blob server on another origin ("localhost" vs "127.0.0.1").
class RedirectTest : public HttpTransportTest {
 protected:
  void SetUp() override {
    HttpTransportTest::SetUp();
    ASSERT_TRUE(store_.ok());
    ASSERT_TRUE(registry_.ok());
  }
  TestServer store_{
      [](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, "blob at " + r.target)); }};
  TestServer registry_{[this](const ServerRequest& r, ServerConn& c) {
    if (r.target == "/v2/blob-elsewhere")
      return c.Send(Response(307, "redirect body", {"Location: " + store_.Url("/data?sig=1", "localhost")}));
    if (r.target == "/v2/blob-here") return c.Send(Response(302, "", {"Location: /v2/data/../blob-final"}));
    if (r.target == "/v2/a/b/rel") return c.Send(Response(301, "", {"Location: ../c?q=1#frag"}));
    if (r.target == "/v2/loop") return c.Send(Response(302, "", {"Location: /v2/loop"}));
    if (r.target == "/v2/ftp") return c.Send(Response(302, "", {"Location: ftp://x/y"}));
    if (r.target == "/post-303") return c.Send(Response(303, "", {"Location: /seen"}));
    if (r.target == "/post-307") return c.Send(Response(307, "", {"Location: /seen"}));
    if (r.target == "/no-location") return c.Send(Response(302, "stay"));
    if (r.target == "/big-redirect")
      return c.Send(Response(302, std::string(200000, 'r'), {"Location: /v2/blob-final"}));
    return c.Send(Response(200, absl::StrCat(r.method, " ", r.target, " ", r.body)));
  }};
};

TEST_F(RedirectTest, CrossOriginRedirectDropsCredentialsAndItsBodyIsNotDelivered) {
  HttpRequest req = Req(registry_.Url("/v2/blob-elsewhere"));
  req.headers = {"Authorization: Bearer secret", "Cookie: c=1", "Accept: */*"};
  Collector c;
  auto r = t_->RoundTrip(req, c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(c.body, "blob at /data?sig=1");
  EXPECT_EQ(r->effective_url, store_.Url("/data?sig=1", "localhost"));
  auto at_store = store_.requests();
  ASSERT_EQ(at_store.size(), 1u);
  EXPECT_FALSE(at_store[0].Has("authorization"));
  EXPECT_FALSE(at_store[0].Has("cookie"));
  EXPECT_EQ(at_store[0].Header("host"), absl::StrCat("localhost:", store_.port()));
  EXPECT_EQ(registry_.requests()[0].Header("authorization"), "Bearer secret");
}

TEST_F(RedirectTest, SameOriginRedirectKeepsCredentials) {
  HttpRequest req = Req(registry_.Url("/v2/blob-here"));
  req.headers = {"Authorization: Bearer secret"};
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "GET /v2/blob-final ");
  auto reqs = registry_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].Header("authorization"), "Bearer secret");
  EXPECT_EQ(registry_.accepts(), 1);  // the redirect's connection was reused
}

TEST_F(RedirectTest, RelativeLocationResolvesAgainstTheRequest) {
  auto r = t_->RoundTrip(Req(registry_.Url("/v2/a/b/rel")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "GET /v2/a/c?q=1 ");
  EXPECT_EQ(r->effective_url, registry_.Url("/v2/a/c?q=1"));
}

TEST_F(RedirectTest, MethodRules) {
  HttpRequest post = Req(registry_.Url("/post-303"), "POST");
  post.body = "form";
  post.headers = {"Content-Type: application/x-www-form-urlencoded"};
  auto r = t_->RoundTrip(post, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "GET /seen ");
  EXPECT_FALSE(registry_.requests().back().Has("content-type"));
  post.url = registry_.Url("/post-307");
  r = t_->RoundTrip(post, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "POST /seen form");
}

TEST_F(RedirectTest, NotFollowedWhenNotAskedOrWithoutLocation) {
  HttpRequest req = Req(registry_.Url("/v2/blob-here"));
  req.follow_redirects = false;
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->Header("location"), "/v2/data/../blob-final");
  Collector c;
  r = t_->RoundTrip(Req(registry_.Url("/no-location")), c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->body, "stay");
  EXPECT_EQ(c.body, "");
}

TEST_F(RedirectTest, LoopsAndOtherSchemesAreErrors) {
  auto r = t_->RoundTrip(Req(registry_.Url("/v2/loop")), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "too many redirects")) << r.status();
  EXPECT_EQ(registry_.requests().size(), 11u);  // the request and 10 redirects
  r = t_->RoundTrip(Req(registry_.Url("/v2/ftp")), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "unsupported scheme \"ftp\"")) << r.status();
}

TEST_F(RedirectTest, LargeRedirectBodyIsNotReadButFollowed) {
  auto r = t_->RoundTrip(Req(registry_.Url("/big-redirect")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "GET /v2/blob-final ");
  EXPECT_EQ(registry_.accepts(), 2);  // its connection was closed, not drained
}

TEST_F(HttpTransportTest, BodyLimitAndErrorBodies) {
  TestServer s([](const ServerRequest& r, ServerConn& c) {
    if (r.target == "/404") return c.Send(Response(404, "{\"errors\":[]}"));
    return c.Send(Response(200, std::string(5000, 'b')));
  });
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(s.Url("/big"));
  req.max_body_bytes = 4096;
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "larger than 4096 bytes")) << r.status();
  // A sink takes 2xx bodies whatever their size; error bodies go to `body`.
  Collector c;
  r = t_->RoundTrip(req, c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(c.body.size(), 5000u);
  req.url = s.Url("/404");
  r = t_->RoundTrip(req, c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "{\"errors\":[]}");
  EXPECT_EQ(c.body.size(), 5000u);
}

TEST_F(HttpTransportTest, SinkErrorIsReturnedUnchanged) {
  TestServer s(Always(Response(200, std::string(100000, 's'))));
  ASSERT_TRUE(s.ok());
  absl::Status mine = absl::DataLossError("digest mismatch");
  auto r = t_->RoundTrip(Req(s.Url("/")), [&](absl::string_view) { return mine; });
  EXPECT_EQ(r.status(), mine);
}

TEST_F(HttpTransportTest, LargeBodyStreamsInLargeChunks) {
  std::string body(32 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7);
  TestServer s(Always(Response(200, body)));
  ASSERT_TRUE(s.ok());
  Collector c;
  auto r = t_->RoundTrip(Req(s.Url("/")), c.Sink());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(c.body == body);
  EXPECT_GT(body.size() / static_cast<size_t>(c.chunks), 16u << 10) << c.chunks << " chunks";
}

TEST_F(HttpTransportTest, MalformedResponsesAreErrors) {
  struct Case {
    std::string response;
    std::string error;
  };
  std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", "folded header line"},
      {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"},
      {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header line"},
      {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "malformed header line"},
      {"ICY 200 OK\r\n\r\n", "malformed status line"},
      {"HTTP/2 200\r\n\r\n", "malformed status line"},
      {"HTTP/1.1 20 OK\r\n\r\n", "malformed status line"},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "invalid Content-Length"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size line"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", "chunk data longer"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "connection closed"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "connection closed after 3 of 10 body bytes"},
      {"HTTP/1.1 200 OK\r\nX-Big: " + std::string(70000, 'h') + "\r\n\r\n", "larger than 64 KiB"},
      {"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the response header"},
      {"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101"},
  };
  for (const Case& k : cases) {
    TestServer s([&](const ServerRequest&, ServerConn& c) {
      c.Send(k.response);
      return false;
    });
    ASSERT_TRUE(s.ok());
    auto r = t_->RoundTrip(Req(s.Url("/")), nullptr);
    ASSERT_FALSE(r.ok()) << k.response.substr(0, 80);
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), k.error)) << r.status();
  }
}

TEST_F(HttpTransportTest, BadRequestsAreInvalidArgument) {
  HttpRequest req = Req("http://127.0.0.1:1/");
  req.headers = {"X-Injected: a\r\nOther: b"};
  EXPECT_TRUE(absl::IsInvalidArgument(t_->RoundTrip(req, nullptr).status()));
  req.headers = {"no colon"};
  EXPECT_TRUE(absl::IsInvalidArgument(t_->RoundTrip(req, nullptr).status()));
  req.headers.clear();
  req.method = "DELETE";
  EXPECT_TRUE(absl::IsInvalidArgument(t_->RoundTrip(req, nullptr).status()));
  for (const char* url :
       {"ftp://x/", "http://", "http://a b/", "http://x:99999/", "http://[::1/", "registry/v2/",
                          "http://user:pass@127.0.0.1:1/"}) {
    auto r = t_->RoundTrip(Req(url), nullptr);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << url << ": " << r.status();
  }
}

TEST_F(HttpTransportTest, StallTimeoutWhileWaitingForTheAnswerAndInTheBody) {
  TestServer s([](const ServerRequest& r, ServerConn& c) {
    if (r.target == "/body") c.Send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
    c.WaitForClose(absl::Seconds(20));
    return false;
  });
  ASSERT_TRUE(s.ok());
  for (const char* path : {"/head", "/body"}) {
    HttpRequest req = Req(s.Url(path));
    req.stall_timeout = absl::Milliseconds(300);
    Collector c;
    absl::Time t0 = absl::Now();
    auto r = t_->RoundTrip(req, c.Sink());
    absl::Duration took = absl::Now() - t0;
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "GET " + s.Url(path))) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "stall timeout")) << r.status();
    EXPECT_GE(took, absl::Milliseconds(290));
    EXPECT_LT(took, absl::Seconds(3));
  }
}

TEST_F(HttpTransportTest, CancelStopsABlockedRequestQuickly) {
  TestServer s([](const ServerRequest&, ServerConn& c) {
    c.Send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
    c.WaitForClose(absl::Seconds(20));
    return false;
  });
  ASSERT_TRUE(s.ok());
  std::atomic<bool> cancel{false};
  HttpRequest req = Req(s.Url("/"));
  req.cancel = &cancel;
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    cancel = true;
  });
  absl::Time t0 = absl::Now();
  Collector c;
  auto r = t_->RoundTrip(req, c.Sink());
  absl::Duration took = absl::Now() - t0;
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
  EXPECT_EQ(c.body, "part");
  EXPECT_LT(took, absl::Milliseconds(1000));
  // Already cancelled: nothing is sent.
  int before = s.accepts();
  EXPECT_TRUE(absl::IsCancelled(t_->RoundTrip(req, nullptr).status()));
  EXPECT_EQ(s.accepts(), before);
}

// TLS against a CA made for the test: the server's certificate names
// localhost, 127.0.0.1 and origin.test.
class HttpsTest : public HttpTransportTest {
 protected:
  void SetUp() override {
    HttpTransportTest::SetUp();
    auto c = crisp::testing::MakeTestCerts(dir_, "server", {"localhost", "origin.test"}, {"127.0.0.1"});
    ASSERT_TRUE(c.ok()) << c.status();
    certs_ = *c;
    auto other = crisp::testing::MakeTestCerts(dir_, "other", {"other.test"}, {});
    ASSERT_TRUE(other.ok()) << other.status();
    other_ = *other;
  }
  HttpRequest TlsReq(const std::string& url) {
    HttpRequest r = Req(url);
    r.ca_file = certs_.ca_cert;
    return r;
  }
  crisp::testing::TestCerts certs_, other_;
};

TEST_F(HttpsTest, VerifiedWithTheCaFileByIpAndByName) {
  TestServer s(
      [](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, "secure " + r.target)); },
      &certs_);
  ASSERT_TRUE(s.ok());
  for (const std::string host : {"127.0.0.1", "localhost", "127.0.0.1"}) {
    auto r = t_->RoundTrip(TlsReq(s.Url("/v2/", host)), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "secure /v2/");
  }
  EXPECT_EQ(s.accepts(), 2);  // one connection per host, reused
  // Chunked over TLS, into a sink.
  TestServer chunked(Always("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n"),
                     &certs_);
  ASSERT_TRUE(chunked.ok());
  Collector c;
  ASSERT_TRUE(t_->RoundTrip(TlsReq(chunked.Url("/")), c.Sink()).ok());
  EXPECT_EQ(c.body, "wxyz");
}

TEST_F(HttpsTest, UnknownCaFailsWithOpenSslsReason) {
  TestServer s(Always(Response(200, "x")), &certs_);
  ASSERT_TRUE(s.ok());
  auto r = t_->RoundTrip(Req(s.Url("/v2/")), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_TRUE(
      absl::StrContains(r.status().message(), "GET " + s.Url("/v2/") + ": TLS handshake with 127.0.0.1:"))
      << r.status();
  EXPECT_TRUE(
      absl::StrContains(r.status().message(), "certificate verify failed: unable to get local issuer"))
      << r.status();
  // Another CA does not help.
  HttpRequest req = Req(s.Url("/v2/"));
  req.ca_file = other_.ca_cert;
  EXPECT_TRUE(absl::IsUnavailable(t_->RoundTrip(req, nullptr).status()));
  // A CA file that is not there.
  req.ca_file = dir_ + "/missing.pem";
  auto m = t_->RoundTrip(req, nullptr);
  EXPECT_TRUE(absl::IsFailedPrecondition(m.status())) << m.status();
  EXPECT_TRUE(absl::StrContains(m.status().message(), "missing.pem")) << m.status();
}

TEST_F(HttpsTest, WrongHostNameOrIpIsRejected) {
  TestServer s(Always(Response(200, "x")), &other_);
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(s.Url("/", "localhost"));
  req.ca_file = other_.ca_cert;
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "certificate verify failed: hostname mismatch"))
      << r.status();
  req.url = s.Url("/", "127.0.0.1");
  r = t_->RoundTrip(req, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "certificate verify failed: IP address mismatch"))
      << r.status();
}

TEST_F(HttpsTest, NoVerificationForInsecureHosts) {
  TestServer s(Always(Response(200, "insecure")), &other_);
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(s.Url("/"));
  req.tls_verify = false;
  auto r = t_->RoundTrip(req, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "insecure");
  // A verifying request never picks up that unverified connection.
  req.tls_verify = true;
  EXPECT_FALSE(t_->RoundTrip(req, nullptr).ok());
}

TEST_F(HttpsTest, PlainHttpToATlsPortFailsCleanly) {
  TestServer s(Always(Response(200, "x")), &certs_);
  ASSERT_TRUE(s.ok());
  HttpRequest req = Req(absl::StrCat("http://127.0.0.1:", s.port(), "/"));
  req.stall_timeout = absl::Seconds(2);
  auto r = t_->RoundTrip(req, nullptr);
  EXPECT_FALSE(r.ok() && r->status == 200) << r.status();
}

TEST_F(HttpsTest, StallDuringTheHandshake) {
  // A plain server that never answers: the ClientHello goes unanswered.
  TestServer s([](const ServerRequest&, ServerConn& c) {
    c.WaitForClose(absl::Seconds(20));
    return false;
  });
  ASSERT_TRUE(s.ok());
  HttpRequest req = TlsReq(absl::StrCat("https://127.0.0.1:", s.port(), "/"));
  req.stall_timeout = absl::Milliseconds(300);
  auto r = t_->RoundTrip(req, nullptr);
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "TLS handshake")) << r.status();
}

class ProxyTest : public HttpsTest {
 protected:
  std::unique_ptr<RegistryTransport> Via(const TestProxy& p, const std::string& userinfo = "",
                                         const std::string& no_proxy = "") {
    HttpTransportOptions o;
    std::string proxy = absl::StrCat(userinfo.empty() ? "" : userinfo + "@", "127.0.0.1:", p.port());
    o.proxy.http_proxy = "http://" + proxy;
    o.proxy.https_proxy = proxy;  // no scheme: http
    o.proxy.no_proxy = no_proxy;
    return NewHttpTransport(o);
  }
};

TEST_F(ProxyTest, HttpGoesAsAbsoluteFormWithProxyCredentials) {
  TestServer origin(
      [](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, "via " + r.target)); });
  ASSERT_TRUE(origin.ok());
  TestProxy proxy(BasicAuthHeaderValue("pu", "p:w@d"));
  ASSERT_TRUE(proxy.ok());
  auto t = Via(proxy, "pu:p%3Aw%40d");
  auto r = t->RoundTrip(Req(origin.Url("/v2/x?y=1", "origin.test")), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "via /v2/x?y=1");
  auto seen = proxy.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].target, origin.Url("/v2/x?y=1", "origin.test"));
  EXPECT_EQ(seen[0].Header("host"), absl::StrCat("origin.test:", origin.port()));
  EXPECT_FALSE(origin.requests()[0].Has("proxy-authorization"));
  // Wrong credentials: the proxy's 407 is the answer.
  auto bad = Via(proxy, "pu:wrong");
  auto r407 = bad->RoundTrip(Req(origin.Url("/", "origin.test")), nullptr);
  ASSERT_TRUE(r407.ok()) << r407.status();
  EXPECT_EQ(r407->status, 407);
}

TEST_F(ProxyTest, HttpsGoesThroughAConnectTunnelAndVerifiesTheOrigin) {
  TestServer origin(
      [](const ServerRequest& r, ServerConn& c) { return c.Send(Response(200, "tunnel " + r.target)); },
      &certs_);
  ASSERT_TRUE(origin.ok());
  TestProxy proxy(BasicAuthHeaderValue("u", "p"));
  ASSERT_TRUE(proxy.ok());
  auto t = Via(proxy, "u:p");
  for (int i = 0; i < 2; ++i) {
    auto r = t->RoundTrip(TlsReq(origin.Url("/v2/", "origin.test")), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "tunnel /v2/");
  }
  auto seen = proxy.requests();
  ASSERT_EQ(seen.size(), 1u);  // one tunnel, kept alive for both requests
  EXPECT_EQ(seen[0].method, "CONNECT");
  EXPECT_EQ(seen[0].target, absl::StrCat("origin.test:", origin.port()));
  EXPECT_EQ(seen[0].Header("proxy-authorization"), BasicAuthHeaderValue("u", "p"));
  EXPECT_EQ(origin.requests()[0].Header("host"), absl::StrCat("origin.test:", origin.port()));
  // Through the tunnel the certificate is checked against the origin's name.
  TestServer wrong(Always(Response(200, "x")), &other_);
  ASSERT_TRUE(wrong.ok());
  HttpRequest req = Req(wrong.Url("/", "origin.test"));
  req.ca_file = other_.ca_cert;
  auto r = t->RoundTrip(req, nullptr);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "hostname mismatch")) << r.status();
  // A refused CONNECT is an error naming the proxy's answer.
  auto bad = Via(proxy, "u:wrong");
  auto r407 = bad->RoundTrip(TlsReq(origin.Url("/v2/", "origin.test")), nullptr);
  EXPECT_TRUE(absl::IsUnavailable(r407.status())) << r407.status();
  EXPECT_TRUE(absl::StrContains(r407.status().message(), "HTTP 407")) << r407.status();
}

TEST_F(ProxyTest, NoProxyAndLoopbackGoDirect) {
  TestServer origin(Always(Response(200, "direct")));
  ASSERT_TRUE(origin.ok());
  TestProxy proxy;
  ASSERT_TRUE(proxy.ok());
  // Loopback addresses and localhost never use the proxy.
  auto t = Via(proxy);
  for (const char* host : {"127.0.0.1", "localhost"}) {
    auto r = t->RoundTrip(Req(origin.Url("/", host)), nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "direct");
  }
  // A NO_PROXY match is resolved here, not by the proxy: origin.test does not resolve.
  auto bypass = Via(proxy, "", "example.com, .test");
  auto r = bypass->RoundTrip(Req(origin.Url("/", "origin.test")), nullptr);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "resolving origin.test")) << r.status();
  EXPECT_TRUE(proxy.requests().empty());
}

TEST(HttpUrl, Parse) {
  auto u = http::ParseUrl("HTTPS://Registry.Example.com:5000/v2/a b?q=ü#frag");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "registry.example.com");
  EXPECT_EQ(u->port, 5000);
  EXPECT_EQ(u->target, "/v2/a%20b?q=%C3%BC");
  EXPECT_EQ(u->Authority(), "registry.example.com:5000");
  u = http::ParseUrl("http://[::1]/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->Authority(), "[::1]");
  EXPECT_EQ(u->HostPort(), "[::1]:80");
  u = http::ParseUrl("https://h?x");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->target, "/?x");
  EXPECT_EQ(u->String(), "https://h/?x");
  for (const char* bad :
       {"h/x", "file:///etc", "http://:80/", "http://h:0/", "http://h:x/", "http://[zz]/", "http://h%/"})
    EXPECT_FALSE(http::ParseUrl(bad).ok()) << bad;
}

TEST(HttpUrl, ResolveLocation) {
  auto base = http::ParseUrl("https://reg.io:5000/v2/lib/blobs/sha?x=1");
  ASSERT_TRUE(base.ok());
  struct Case {
    const char* location;
    const char* want;
  } cases[] = {
      {"https://s3.example/bucket/o?sig=a", "https://s3.example/bucket/o?sig=a"},
      {"//cdn.example/p", "https://cdn.example/p"},
      {"/v2/other", "https://reg.io:5000/v2/other"},
      {"other", "https://reg.io:5000/v2/lib/blobs/other"},
      {"../../x/./y", "https://reg.io:5000/v2/x/y"},
      {"../../../../..", "https://reg.io:5000/"},
      {"?y=2", "https://reg.io:5000/v2/lib/blobs/sha?y=2"},
      {"", "https://reg.io:5000/v2/lib/blobs/sha?x=1"},
      {"a b#f", "https://reg.io:5000/v2/lib/blobs/a%20b"},
      {"http://Other:8080/a/../b", "http://other:8080/b"},
  };
  for (const Case& c : cases) {
    auto u = http::ResolveLocation(*base, c.location);
    ASSERT_TRUE(u.ok()) << c.location << ": " << u.status();
    EXPECT_EQ(u->String(), c.want) << c.location;
  }
  EXPECT_FALSE(http::ResolveLocation(*base, "ftp://x/").ok());
  EXPECT_FALSE(http::ResolveLocation(*base, "javascript:alert(1)").ok());
}

TEST(HttpProxy, NoProxyRules) {
  auto url = [](const char* u) { return *http::ParseUrl(u); };
  struct Case {
    const char* no_proxy;
    const char* url;
    bool bypass;
  } cases[] = {
      {"", "http://registry.example.com/", false},
      {"", "http://localhost:5000/", true},
      {"", "http://127.0.0.2/", true},
      {"", "http://[::1]/", true},
      {"*", "http://registry.example.com/", true},
      {"example.com", "http://example.com/", true},
      {"example.com", "http://registry.example.com/", true},
      {"example.com", "http://badexample.com/", false},
      {".example.com", "http://registry.example.com/", true},
      {".example.com", "http://example.com/", false},
      {"*.example.com", "http://a.example.com/", true},
      {" Other.org , EXAMPLE.com ", "http://registry.example.com/", true},
      {"example.com:5000", "http://example.com:5000/", true},
      {"example.com:5000", "http://example.com/", false},
      {"10.0.0.0/8", "http://10.1.2.3/", true},
      {"10.0.0.0/8", "http://11.1.2.3/", false},
      {"10.0.0.0/8", "http://ten.example/", false},
      {"192.168.1.10", "http://192.168.1.10:5000/", true},
      {"192.168.1.10:80", "http://192.168.1.10:5000/", false},
      {"fd00::/8", "http://[fd12::1]/", true},
      {"[fd12::1]:5000", "http://[fd12::1]:5000/", true},
      {"fd12::1", "http://[fd12::1]/", true},
  };
  for (const Case& c : cases)
    EXPECT_EQ(http::BypassesProxy(c.no_proxy, url(c.url)), c.bypass) << c.no_proxy << " / " << c.url;
}

TEST(HttpProxy, SettingsAndCredentials) {
  http::ProxySettings s;
  s.http_proxy = "proxy.corp:3128";
  s.https_proxy = "http://user:p%40ss@proxy.corp";
  auto p = http::ProxyFor(s, *http::ParseUrl("http://registry.example.com/"));
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  EXPECT_EQ((*p)->HostPort(), "proxy.corp:3128");
  EXPECT_EQ(http::ProxyAuthorization(**p), "");
  p = http::ProxyFor(s, *http::ParseUrl("https://registry.example.com/"));
  ASSERT_TRUE(p.ok() && p->has_value()) << p.status();
  EXPECT_EQ((*p)->HostPort(), "proxy.corp:80");
  EXPECT_EQ(http::ProxyAuthorization(**p), BasicAuthHeaderValue("user", "p@ss"));
  s.https_proxy = "socks5://user:secret@proxy.corp:1080";
  p = http::ProxyFor(s, *http::ParseUrl("https://registry.example.com/"));
  EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << p.status();
  EXPECT_FALSE(absl::StrContains(p.status().message(), "secret")) << p.status();
}

TEST(HttpProxy, FromEnvironmentPrefersUpperCase) {
  // Each test runs in its own process under ctest; restore anyway.
  const char* names[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"};
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  for (const char* n : names) {
    const char* v = std::getenv(n);
    saved.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
    ::unsetenv(n);
  }
  ::setenv("http_proxy", "lower:1", 1);
  ::setenv("HTTPS_PROXY", "upper:2", 1);
  ::setenv("https_proxy", "lower:2", 1);
  ::setenv("no_proxy", "a.b", 1);
  http::ProxySettings s = http::ProxySettings::FromEnvironment();
  EXPECT_EQ(s.http_proxy, "lower:1");
  EXPECT_EQ(s.https_proxy, "upper:2");
  EXPECT_EQ(s.no_proxy, "a.b");
  for (const auto& [n, v] : saved) {
    if (v) {
      ::setenv(n.c_str(), v->c_str(), 1);
    } else {
      ::unsetenv(n.c_str());
    }
  }
}

}  // namespace
}  // namespace crisp::images
