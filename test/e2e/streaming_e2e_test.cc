// Exec, Attach and PortForward against a real crispd: the RPC answers a URL
// on crispd's streaming server and a client speaks SPDY/3.1 (as crictl and
// kubelet's proxy do) or WebSocket (kubectl's newer clients) to it.
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "test/e2e/container_fixture.h"
#include "test/testing/spdy_client.h"
#include "test/testing/ws_client.h"

namespace crisp::e2e {
namespace {

using crisp::testing::ParseUrl;
using crisp::testing::RemoteCommandClient;
using crisp::testing::SpdyClient;

class StreamingTest : public ContainerTest {
 protected:
  std::string ExecUrl(const std::string& id, const std::vector<std::string>& cmd, bool in, bool tty) {
    cri::ExecRequest req;
    req.set_container_id(id);
    for (const auto& a : cmd) req.add_cmd(a);
    req.set_stdin(in);
    req.set_stdout(true);
    req.set_stderr(!tty);
    req.set_tty(tty);
    cri::ExecResponse resp;
    grpc::Status s = c().Runtime(&RStub::Exec, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.url();
  }
  std::string AttachUrl(const std::string& id) {
    cri::AttachRequest req;
    req.set_container_id(id);
    req.set_stdin(true);
    req.set_stdout(true);
    req.set_stderr(true);
    cri::AttachResponse resp;
    grpc::Status s = c().Runtime(&RStub::Attach, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.url();
  }
  std::string PortForwardUrl(const std::string& pod, int port) {
    cri::PortForwardRequest req;
    req.set_pod_sandbox_id(pod);
    req.add_port(port);
    cri::PortForwardResponse resp;
    grpc::Status s = c().Runtime(&RStub::PortForward, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.url();
  }
  absl::StatusOr<std::unique_ptr<SpdyClient>> Spdy(const std::string& url, const std::string& protocol) {
    auto u = ParseUrl(url);
    if (!u.ok()) return u.status();
    auto cl = SpdyClient::Connect(u->host, u->port, u->path, {protocol});
    if (cl.ok() && (*cl)->status_code() != 101)
      return absl::InternalError(absl::StrCat("no upgrade: ", (*cl)->response_head()));
    return cl;
  }
  static bool UrlIsLocal(const std::string& url) { return absl::StartsWith(url, "http://127.0.0.1:"); }
};

TEST_F(StreamingTest, ExecOverSpdyWithAndWithoutTty) {
  std::string id = RunContainer(Config("sleeper", "exec sleep 1000"));
  // No tty: stdin in, stdout and stderr apart, the exit code in the v4 status.
  std::string url = ExecUrl(id, {"sh", "-c", "cat; echo oops >&2; exit 3"}, true, false);
  ASSERT_TRUE(UrlIsLocal(url)) << url;
  auto cl = Spdy(url, "v4.channel.k8s.io");
  ASSERT_TRUE(cl.ok()) << cl.status();
  crisp::testing::RemoteCommandOptions o;
  o.stdin = true;
  o.stdin_data = "hello from stdin\n";
  auto r = crisp::testing::RunRemoteCommand(**cl, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout, "hello from stdin\n");
  EXPECT_EQ(r->stderr, "oops\n");
  EXPECT_NE(r->error.find("NonZeroExitCode"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find("\"3\""), std::string::npos) << r->error;
  // The token was single-use.
  auto again = ParseUrl(url);
  ASSERT_TRUE(again.ok());
  auto second = SpdyClient::Connect(again->host, again->port, again->path, {"v4.channel.k8s.io"});
  EXPECT_TRUE(!second.ok() || (*second)->status_code() == 404);

  // tty: one output stream, and a resize reaches the terminal.
  // The terminal is the container's own /dev/pts/N (ttyname works inside).
  url = ExecUrl(id, {"sh", "-c", "sleep 1; stty size; tty"}, true, true);
  cl = Spdy(url, "v4.channel.k8s.io");
  ASSERT_TRUE(cl.ok()) << cl.status();
  crisp::testing::RemoteCommandOptions t;
  t.stdin = true;
  t.tty = true;
  t.stderr = false;
  t.close_stdin = false;
  t.resizes = {{123, 45}};
  r = crisp::testing::RunRemoteCommand(**cl, t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->stdout.find("45 123"), std::string::npos) << r->stdout;
  EXPECT_NE(r->stdout.find("/dev/pts/"), std::string::npos) << r->stdout;
  EXPECT_NE(r->error.find("Success"), std::string::npos) << r->error;
}

TEST_F(StreamingTest, ExecOverWebSocketWithAndWithoutTty) {
  std::string id = RunContainer(Config("sleeper", "exec sleep 1000"));
  auto ws = RemoteCommandClient::Connect(ExecUrl(id, {"sh", "-c", "cat; echo oops >&2; exit 5"}, true, false));
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ((*ws)->ws().protocol(), "v5.channel.k8s.io");
  ASSERT_TRUE((*ws)->Stdin("over websocket\n").ok());
  ASSERT_TRUE((*ws)->CloseStdin().ok());
  auto out = (*ws)->Wait(absl::Seconds(20));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->stdout, "over websocket\n");
  EXPECT_EQ(out->stderr, "oops\n");
  EXPECT_NE(out->error.find("\"5\""), std::string::npos) << out->error;

  ws = RemoteCommandClient::Connect(ExecUrl(id, {"sh", "-c", "sleep 1; stty size"}, true, true),
                                    {"v4.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Resize(99, 33).ok());
  out = (*ws)->Wait(absl::Seconds(20));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->stdout.find("33 99"), std::string::npos) << out->stdout;
  EXPECT_NE(out->error.find("Success"), std::string::npos) << out->error;
}

// A client that goes away ends its exec process.
TEST_F(StreamingTest, DisconnectingEndsTheExecProcess) {
  std::string id = RunContainer(Config("sleeper", "exec sleep 1000"));
  auto ws = RemoteCommandClient::Connect(ExecUrl(id, {"sh", "-c", "echo started; exec sleep 4242"}, false, false));
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->WaitForStdout("started").ok());
  cri::ExecSyncRequest req;
  req.set_container_id(id);
  for (const char* a : {"sh", "-c", "ps -o args | grep -c '^sleep 4242' || true"}) req.add_cmd(a);
  cri::ExecSyncResponse running;
  ASSERT_TRUE(c().Runtime(&RStub::ExecSync, req, &running).ok());
  ASSERT_EQ(running.stdout(), "1\n") << "the exec'd process is visible while its client is there";
  (*ws)->ws().Disconnect();
  std::string count;
  for (int i = 0; i < 50; ++i) {
    cri::ExecSyncResponse resp;
    ASSERT_TRUE(c().Runtime(&RStub::ExecSync, req, &resp).ok());
    count = resp.stdout();
    if (count == "0\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(count, "0\n");
}

TEST_F(StreamingTest, AttachOverSpdyAndWebSocket) {
  auto cfg = Config("attached", "echo ready; while read l; do echo got:$l; done");
  cfg.set_stdin(true);
  std::string id = RunContainer(cfg);
  // SPDY: stdin goes to the container's stdin, its output comes back live.
  auto cl = Spdy(AttachUrl(id), "v4.channel.k8s.io");
  ASSERT_TRUE(cl.ok()) << cl.status();
  crisp::testing::RemoteCommandOptions o;
  o.stdin = true;
  auto streams = crisp::testing::OpenRemoteCommandStreams(**cl, o);
  ASSERT_TRUE(streams.ok()) << streams.status();
  ASSERT_TRUE((*cl)->Write(streams->stdin, "one\n").ok());
  auto got = (*cl)->ReadAtLeast(streams->stdout, 8, absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "got:one\n");
  (*cl)->Close();
  // WebSocket: the same container, a second attach.
  auto ws = RemoteCommandClient::Connect(AttachUrl(id));
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Stdin("two\n").ok());
  EXPECT_TRUE((*ws)->WaitForStdout("got:two").ok()) << (*ws)->output().stdout;
  (*ws)->ws().Disconnect();
  EXPECT_TRUE(Stop(id, 0).ok());
}

// busybox httpd in the pod's network namespace, reached through PortForward.
TEST_F(StreamingTest, PortForwardToAPodOverSpdyAndWebSocket) {
  std::string id =
      RunContainer(Config("web", "mkdir -p /tmp/www && echo hello-from-pod > /tmp/www/index.html && "
                                 "exec httpd -f -p 8080 -h /tmp/www"));
  const std::string request = "GET /index.html HTTP/1.0\r\n\r\n";
  std::string body;
  // The server needs a moment to listen.
  for (int i = 0; i < 50 && body.find("hello-from-pod") == std::string::npos; ++i) {
    auto ws = crisp::testing::PortForwardClient::Connect(PortForwardUrl(pod_, 8080), {8080});
    ASSERT_TRUE(ws.ok()) << ws.status();
    ASSERT_TRUE((*ws)->Send(0, request).ok());
    auto r = (*ws)->Read(0, 1, absl::Seconds(2));
    if (r.ok()) body = *r;
    for (int j = 0; j < 20 && r.ok() && body.find("hello-from-pod") == std::string::npos; ++j) {
      r = (*ws)->Read(0, 1, absl::Milliseconds(200));
      if (r.ok()) body += *r;
    }
    if (body.find("hello-from-pod") == std::string::npos) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(body.find("hello-from-pod"), std::string::npos) << "over WebSocket: " << body;

  auto cl = Spdy(PortForwardUrl(pod_, 8080), "portforward.k8s.io");
  ASSERT_TRUE(cl.ok()) << cl.status();
  auto pair = crisp::testing::OpenPortForward(**cl, 8080, "0");
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE((*cl)->Write(pair->data, request).ok());
  auto all = (*cl)->ReadAll(pair->data, absl::Seconds(10));  // httpd closes after one answer
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_NE(all->find("hello-from-pod"), std::string::npos) << "over SPDY: " << *all;

  // Nothing listens on 9: the error stream says so.
  auto pair2 = crisp::testing::OpenPortForward(**cl, 9, "1");
  ASSERT_TRUE(pair2.ok()) << pair2.status();
  auto err = (*cl)->ReadAll(pair2->error, absl::Seconds(10));
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_NE(err->find("9"), std::string::npos) << *err;
  EXPECT_TRUE(Stop(id, 0).ok());
}

// A host-network pod forwards to localhost in the host's namespace.
TEST_F(StreamingTest, PortForwardToAHostNetworkPod) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lfd, 4), 0);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  int port = ntohs(a.sin_port);
  std::thread server([lfd] {
    int c = ::accept(lfd, nullptr, nullptr);
    if (c < 0) return;
    char buf[16];
    ssize_t n = ::read(c, buf, sizeof buf);
    if (n > 0) (void)!::write(c, "host:", 5), (void)!::write(c, buf, n);
    ::close(c);
  });
  auto p = Pod("hostnet");
  p.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(cri::NODE);
  std::string pod;
  ASSERT_TRUE(c().RunPodSandbox(p, &pod).ok());
  auto ws = crisp::testing::PortForwardClient::Connect(PortForwardUrl(pod, port), {static_cast<uint16_t>(port)});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Send(0, "ping").ok());
  auto r = (*ws)->Read(0, 9, absl::Seconds(10));
  EXPECT_TRUE(r.ok() && *r == "host:ping") << (r.ok() ? *r : r.status().ToString());
  (*ws)->ws().Disconnect();
  ::shutdown(lfd, SHUT_RDWR);
  server.join();
  ::close(lfd);
  EXPECT_TRUE(c().StopPodSandbox(pod).ok());
  EXPECT_TRUE(c().RemovePodSandbox(pod).ok());
}

TEST_F(StreamingTest, BadRequestsAreClearErrors) {
  EnsurePod();
  cri::ExecRequest req;
  req.set_container_id("0123456789abcdef");
  req.add_cmd("true");
  req.set_stdout(true);
  cri::ExecResponse resp;
  EXPECT_EQ(c().Runtime(&RStub::Exec, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  req.set_stdout(false);
  EXPECT_EQ(c().Runtime(&RStub::Exec, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  req.set_tty(true);
  req.set_stderr(true);
  EXPECT_EQ(c().Runtime(&RStub::Exec, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  cri::PortForwardRequest pf;
  pf.set_pod_sandbox_id(pod_);
  pf.add_port(70000);
  cri::PortForwardResponse pfr;
  EXPECT_EQ(c().Runtime(&RStub::PortForward, pf, &pfr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  pf.set_pod_sandbox_id("0123456789abcdef");
  pf.clear_port();
  EXPECT_EQ(c().Runtime(&RStub::PortForward, pf, &pfr).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace crisp::e2e
