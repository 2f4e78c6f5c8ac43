// WebSocket framing and the remotecommand/portforward handlers, over a real
// streaming server with a fake process side (the test plays the shim).
#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "server/streaming/streaming.h"
#include "server/streaming/websocket_frame.h"
#include "test/testing/ws_client.h"
#include "test/unit/server/streaming_test_util.h"

namespace crisp::streaming {
namespace {

using runtime::FrameType;
using testing::PortForwardClient;
using testing::RemoteCommandClient;
using testing::WsClient;
using testutil::FakeProcess;
namespace wsf = streaming::ws;

const uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

TEST(WebSocketFrame, AcceptKeyRfcExample) {
  EXPECT_EQ(wsf::AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketFrame, MaskedHelloMatchesRfc) {
  // RFC 6455 5.7: a single-frame masked text message "Hello".
  std::string f = wsf::EncodeFrame(wsf::kText, "Hello", true, kMask);
  EXPECT_EQ(f, std::string("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11));
  wsf::Decoder d(true, 1 << 20);
  d.Feed(f.data(), f.size());
  wsf::Message m;
  ASSERT_EQ(d.Next(&m), wsf::Decoder::Result::kMessage);
  EXPECT_EQ(m.opcode, wsf::kText);
  EXPECT_EQ(m.payload, "Hello");
  EXPECT_EQ(d.Next(&m), wsf::Decoder::Result::kNeedMore);
}

TEST(WebSocketFrame, ExtendedLengths) {
  for (size_t n : {125u, 126u, 200u, 65535u, 65536u, 70000u}) {
    std::string payload(n, 'x');
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7);
    std::string f = wsf::EncodeFrame(wsf::kBinary, payload, true, kMask);
    uint8_t len7 = static_cast<uint8_t>(f[1]) & 0x7f;
    EXPECT_EQ(len7, n < 126 ? n : n <= 65535 ? 126 : 127) << n;
    EXPECT_EQ(f.size(), payload.size() + 2 + 4 + (n < 126 ? 0 : n <= 65535 ? 2 : 8)) << n;
    // Fed a byte at a time for the first frame header, then the rest.
    wsf::Decoder d(true, 1 << 20);
    wsf::Message m;
    for (size_t i = 0; i < 12; ++i) {
      d.Feed(f.data() + i, 1);
      ASSERT_EQ(d.Next(&m), wsf::Decoder::Result::kNeedMore) << n;
    }
    d.Feed(f.data() + 12, f.size() - 12);
    ASSERT_EQ(d.Next(&m), wsf::Decoder::Result::kMessage) << n;
    EXPECT_EQ(m.payload, payload) << n;
  }
}

TEST(WebSocketFrame, ServerFramesAreUnmasked) {
  std::string f = wsf::EncodeFrame(wsf::kBinary, std::string(300, 'a'));
  EXPECT_EQ(static_cast<uint8_t>(f[0]), 0x82);
  EXPECT_EQ(static_cast<uint8_t>(f[1]), 126);  // no mask bit
  EXPECT_EQ(f.size(), 4u + 300u);
}

TEST(WebSocketFrame, FragmentsWithInterleavedPing) {
  std::string bytes = wsf::EncodeFrame(wsf::kText, "Hel", false, kMask) +
                      wsf::EncodeFrame(wsf::kPing, "p", true, kMask) +
                      wsf::EncodeFrame(wsf::kContinuation, "lo ", false, kMask) +
                      wsf::EncodeFrame(wsf::kContinuation, "world", true, kMask);
  wsf::Decoder d(true, 1 << 20);
  d.Feed(bytes.data(), bytes.size());
  wsf::Message m;
  ASSERT_EQ(d.Next(&m), wsf::Decoder::Result::kMessage);
  EXPECT_EQ(m.opcode, wsf::kPing);
  EXPECT_EQ(m.payload, "p");
  ASSERT_EQ(d.Next(&m), wsf::Decoder::Result::kMessage);
  EXPECT_EQ(m.opcode, wsf::kText);
  EXPECT_EQ(m.payload, "Hello world");
}

TEST(WebSocketFrame, ProtocolErrors) {
  auto decode = [](const std::string& bytes, bool masked, size_t max = 1 << 20) {
    wsf::Decoder d(masked, max);
    d.Feed(bytes.data(), bytes.size());
    wsf::Message m;
    wsf::Decoder::Result r;
    while ((r = d.Next(&m)) == wsf::Decoder::Result::kMessage) {
    }
    return std::make_pair(r, d.error_code());
  };
  // A server must reject unmasked client frames.
  EXPECT_EQ(decode(wsf::EncodeFrame(wsf::kBinary, "x"), true).first, wsf::Decoder::Result::kError);
  // And a client masked server frames.
  EXPECT_EQ(decode(wsf::EncodeFrame(wsf::kBinary, "x", true, kMask), false).first,
            wsf::Decoder::Result::kError);
  EXPECT_EQ(decode(wsf::EncodeFrame(wsf::kContinuation, "x", true, kMask), true).first,
            wsf::Decoder::Result::kError);
  EXPECT_EQ(
      decode(wsf::EncodeFrame(wsf::kText, "a", false, kMask) + wsf::EncodeFrame(wsf::kText, "b", true, kMask),
             true)
          .first,
      wsf::Decoder::Result::kError);
  EXPECT_EQ(decode(wsf::EncodeFrame(wsf::kPing, std::string(126, 'p'), true, kMask), true).first,
            wsf::Decoder::Result::kError);
  EXPECT_EQ(decode(wsf::EncodeFrame(wsf::kPing, "p", false, kMask), true).first,
            wsf::Decoder::Result::kError);
  EXPECT_EQ(decode(wsf::EncodeFrame(0x3, "x", true, kMask), true).first, wsf::Decoder::Result::kError);
  auto big = decode(wsf::EncodeFrame(wsf::kBinary, std::string(100, 'x'), true, kMask), true, 64);
  EXPECT_EQ(big.first, wsf::Decoder::Result::kError);
  EXPECT_EQ(big.second, wsf::kCloseTooBig);
  // Too big across fragments too.
  auto big2 = decode(wsf::EncodeFrame(wsf::kBinary, std::string(40, 'x'), false, kMask) +
                         wsf::EncodeFrame(wsf::kContinuation, std::string(40, 'x'), true, kMask),
                     true, 64);
  EXPECT_EQ(big2.first, wsf::Decoder::Result::kError);
}

TEST(WebSocketFrame, Base64) {
  for (const std::string& s :
       std::vector<std::string>{"", "f", "fo", "foo", "foo\n", std::string("\0\xff\x10", 3)}) {
    std::string d;
    ASSERT_TRUE(wsf::Base64Decode(wsf::Base64Encode(s), &d)) << s;
    EXPECT_EQ(d, s);
  }
  EXPECT_EQ(wsf::Base64Encode("foo\n"), "Zm9vCg==");
  std::string out;
  EXPECT_FALSE(wsf::Base64Decode("Zm9", &out));
  EXPECT_FALSE(wsf::Base64Decode("Zm9*", &out));
}

// ---- over a real server ----

class WebSocketServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Server::Start(ServerOptions{});
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::string Exec(StdioOptions o) {
    auto url = server_->AddExec(RemoteCommandSession{o, proc_.Opener()});
    EXPECT_TRUE(url.ok()) << url.status();
    return url.value_or("");
  }
  std::unique_ptr<RemoteCommandClient> ConnectRc(const std::string& url, std::vector<std::string> protocols) {
    auto c = RemoteCommandClient::Connect(url, protocols);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  FakeProcess proc_;  // outlives the server (which may call its opener)
  std::unique_ptr<Server> server_;
};

nlohmann::json ParseStatus(const std::string& s) { return nlohmann::json::parse(s, nullptr, false); }

TEST_F(WebSocketServerTest, V5StdoutStderrStdinResizeExit0) {
  auto c =
      ConnectRc(Exec({.stdin = true, .stdout = true, .stderr = false, .tty = true}), {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->ws().protocol(), "v5.channel.k8s.io");
  // The kubelet's "established" signal: an empty message on stdout.
  auto first = c->ws().ReadChannel(absl::Seconds(5));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->channel, 1);
  EXPECT_EQ(first->data, "");

  ASSERT_TRUE(c->Stdin("echo hi\n").ok());
  FrameType t;
  std::string p;
  ASSERT_TRUE(proc_.Next(&t, &p));
  EXPECT_EQ(t, FrameType::kStdin);
  EXPECT_EQ(p, "echo hi\n");

  ASSERT_TRUE(c->Resize(120, 40).ok());
  ASSERT_TRUE(proc_.Next(&t, &p));
  ASSERT_EQ(t, FrameType::kResize);
  uint16_t w = 0, h = 0;
  ASSERT_TRUE(runtime::DecodeResize(p, &w, &h));
  EXPECT_EQ(w, 120);
  EXPECT_EQ(h, 40);

  ASSERT_TRUE(c->CloseStdin().ok());
  ASSERT_TRUE(proc_.Next(&t, &p));
  EXPECT_EQ(t, FrameType::kCloseStdin);

  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStdout, "hi\r\n")));
  ASSERT_TRUE(c->WaitForStdout("hi\r\n").ok());
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(0)));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->closed);
  EXPECT_EQ(out->stdout, "hi\r\n");
  auto st = ParseStatus(out->error);
  EXPECT_EQ(st.value("status", ""), "Success") << out->error;
  EXPECT_EQ(c->ws().close_code(), wsf::kCloseNormal);
}

TEST_F(WebSocketServerTest, V4StderrAndExit3) {
  auto c = ConnectRc(Exec({.stdin = false, .stdout = true, .stderr = true}), {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStdout, "out")));
  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStderr, "err")));
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(3)));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->stdout, "out");
  EXPECT_EQ(out->stderr, "err");
  auto st = ParseStatus(out->error);
  ASSERT_TRUE(st.is_object()) << out->error;
  EXPECT_EQ(st["status"], "Failure");
  EXPECT_EQ(st["reason"], "NonZeroExitCode");
  EXPECT_EQ(st["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(st["details"]["causes"][0]["message"], "3");
}

TEST_F(WebSocketServerTest, V1ProtocolStatusIsText) {
  auto c = ConnectRc(Exec({.stdout = true}), {"channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(3)));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->error, "command terminated with non-zero exit code: exit status 3");
}

TEST_F(WebSocketServerTest, V1ProtocolSuccessSendsNoStatus) {
  auto c = ConnectRc(Exec({.stdout = true}), {"channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(0)));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->closed);
  EXPECT_EQ(out->error, "");
}

TEST_F(WebSocketServerTest, CommandThatCouldNotRun) {
  auto c = ConnectRc(Exec({.stdout = true}), {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(-1, "executable file not found in $PATH: foo")));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  auto st = ParseStatus(out->error);
  EXPECT_EQ(st.value("status", ""), "Failure");
  EXPECT_NE(st.value("message", "").find("executable file not found"), std::string::npos) << out->error;
}

TEST_F(WebSocketServerTest, Base64Protocol) {
  auto c = ConnectRc(Exec({.stdin = true, .stdout = true}), {"v4.base64.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->ws().base64());
  // Raw check of the wire format: text frames, '1' + base64.
  auto m = c->ws().ReadMessage(absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opcode, wsf::kText);
  EXPECT_EQ(m->payload, "1");  // the empty "established" message
  ASSERT_TRUE(c->Stdin("foo\n").ok());
  FrameType t;
  std::string p;
  ASSERT_TRUE(proc_.Next(&t, &p));
  EXPECT_EQ(t, FrameType::kStdin);
  EXPECT_EQ(p, "foo\n");
  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStdout, "\n")));
  m = c->ws().ReadMessage(absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->opcode, wsf::kText);
  EXPECT_EQ(m->payload, "1Cg==");
  ASSERT_TRUE(proc_.Send(runtime::EncodeExit(0)));
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(ParseStatus(out->error).value("status", ""), "Success");
}

TEST_F(WebSocketServerTest, NoProtocolHeaderMeansBinaryChannels) {
  auto c = ConnectRc(Exec({.stdout = true}), {});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->ws().protocol(), "");
  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStdout, "x")));
  ASSERT_TRUE(c->WaitForStdout("x").ok());
}

TEST_F(WebSocketServerTest, PicksTheClientsFirstSupportedProtocol) {
  auto c = ConnectRc(Exec({.stdout = true}), {"bogus.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->ws().protocol(), "v4.channel.k8s.io");
}

TEST_F(WebSocketServerTest, UnsupportedProtocolIs400AndDoesNotRunTheCommand) {
  auto c = RemoteCommandClient::Connect(Exec({.stdout = true}), {"v3.channel.k8s.io"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("400"), std::string::npos) << c.status();
  EXPECT_FALSE(proc_.opened());
}

TEST_F(WebSocketServerTest, StdinOnlyWhenRequested) {
  auto c = ConnectRc(Exec({.stdin = false, .stdout = true}), {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Stdin("ignored").ok());
  ASSERT_TRUE(c->CloseStdin().ok());
  FrameType t;
  std::string p;
  EXPECT_FALSE(proc_.Next(&t, &p, absl::Milliseconds(300)));
}

TEST_F(WebSocketServerTest, FragmentedStdinAndPing) {
  auto c = ConnectRc(Exec({.stdin = true, .stdout = true}), {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  auto& ws = c->ws();
  ASSERT_TRUE(ws.SendFrame(wsf::kBinary, std::string("\0ab", 3), false).ok());
  ASSERT_TRUE(ws.SendFrame(wsf::kPing, "hello?").ok());
  ASSERT_TRUE(ws.SendFrame(wsf::kContinuation, "cd", true).ok());
  FrameType t;
  std::string p;
  ASSERT_TRUE(proc_.Next(&t, &p));
  EXPECT_EQ(t, FrameType::kStdin);
  EXPECT_EQ(p, "abcd");
  bool pong = false;
  for (int i = 0; i < 3 && !pong; ++i) {
    auto m = ws.ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << m.status();
    pong = m->opcode == wsf::kPong && m->payload == "hello?";
  }
  EXPECT_TRUE(pong);
}

TEST_F(WebSocketServerTest, UnmaskedClientFrameClosesWith1002) {
  auto c = ConnectRc(Exec({.stdin = true, .stdout = true}), {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->ws().SendRaw(wsf::EncodeFrame(wsf::kBinary, std::string("\0x", 2))).ok());
  for (;;) {
    auto m = c->ws().ReadMessage(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << m.status();
    if (m->opcode == wsf::kClose) break;
  }
  EXPECT_EQ(c->ws().close_code(), wsf::kCloseProtocolError);
  EXPECT_TRUE(proc_.WaitEof());
}

TEST_F(WebSocketServerTest, ClientDisconnectClosesTheProcessSide) {
  auto c = ConnectRc(Exec({.stdin = true, .stdout = true}), {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->ws().ReadChannel(absl::Seconds(5)).ok());
  ASSERT_TRUE(proc_.opened());
  c->ws().Disconnect();
  EXPECT_TRUE(proc_.WaitEof());
  for (int i = 0; i < 100 && server_->ActiveStreams() > 0; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(server_->ActiveStreams(), 0u);
}

TEST_F(WebSocketServerTest, ClientCloseHandshakeClosesTheProcessSide) {
  auto c = ConnectRc(Exec({.stdout = true}), {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->ws().Close().ok());
  EXPECT_EQ(c->ws().close_code(), wsf::kCloseNormal);
  EXPECT_TRUE(proc_.WaitEof());
}

TEST_F(WebSocketServerTest, AttachEndsWithSuccessWhenTheSocketCloses) {
  auto url = server_->AddAttach(RemoteCommandSession{{.stdout = true}, proc_.Opener()});
  ASSERT_TRUE(url.ok());
  auto c = ConnectRc(*url, {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(proc_.Send(runtime::EncodeFrame(FrameType::kStdout, "bye")));
  ASSERT_TRUE(c->WaitForStdout("bye").ok());
  proc_.Close();
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->stdout, "bye");
  EXPECT_EQ(ParseStatus(out->error).value("status", ""), "Success");
}

TEST_F(WebSocketServerTest, OpenFailureIsReportedOnTheErrorChannel) {
  auto url = server_->AddExec(RemoteCommandSession{{.stdout = true}, []() -> absl::StatusOr<UniqueFd> {
                                                     return absl::NotFoundError("container is gone");
                                                   }});
  ASSERT_TRUE(url.ok());
  auto c = ConnectRc(*url, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  auto out = c->Wait();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->error.find("container is gone"), std::string::npos) << out->error;
}

TEST_F(WebSocketServerTest, FramesRightBehindTheUpgradeRequestAreServed) {
  // A client may pipeline its first frame with the request (the server hands
  // the handler those bytes as HttpRequest::leftover).
  auto url = testing::ParseUrl(Exec({.stdin = true, .stdout = true}));
  ASSERT_TRUE(url.ok());
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(url->port);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  std::string bytes = "GET " + url->path +
                      " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n" +
                      wsf::EncodeFrame(wsf::kBinary, std::string("\0early", 6), true, kMask);
  ASSERT_EQ(::send(fd.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  FrameType t;
  std::string p;
  ASSERT_TRUE(proc_.Next(&t, &p));
  EXPECT_EQ(t, FrameType::kStdin);
  EXPECT_EQ(p, "early");
}

TEST(WebSocketIdle, IdleStreamIsClosed) {
  FakeProcess proc;
  ServerOptions o;
  o.idle_timeout = absl::Milliseconds(300);
  auto s = Server::Start(o);
  ASSERT_TRUE(s.ok());
  auto url = (*s)->AddExec(RemoteCommandSession{{.stdout = true}, proc.Opener()});
  ASSERT_TRUE(url.ok());
  auto c = RemoteCommandClient::Connect(*url);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::Time t0 = absl::Now();
  auto out = (*c)->Wait(absl::Seconds(5));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->closed);
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(250));
  EXPECT_TRUE(proc.WaitEof());
}

TEST_F(WebSocketServerTest, PortForwardTwoPorts) {
  testutil::EchoServer a("A:"), b("B:");
  auto url = server_->AddPortForward(PortForwardSession{{}, testutil::LoopbackDialer()});
  ASSERT_TRUE(url.ok());
  auto pf = PortForwardClient::Connect(*url, {a.port(), b.port()});
  ASSERT_TRUE(pf.ok()) << pf.status();
  EXPECT_EQ((*pf)->ws().protocol(), "v4.channel.k8s.io");
  // Dialed eagerly: each echo server greets with its tag.
  auto ga = (*pf)->Read(0, 2);
  ASSERT_TRUE(ga.ok()) << ga.status();
  EXPECT_EQ(*ga, "A:");
  auto gb = (*pf)->Read(1, 2);
  ASSERT_TRUE(gb.ok()) << gb.status();
  EXPECT_EQ(*gb, "B:");
  ASSERT_TRUE((*pf)->Send(0, "ping-a").ok());
  ASSERT_TRUE((*pf)->Send(1, "ping-b").ok());
  auto ra = (*pf)->Read(0, 6);
  auto rb = (*pf)->Read(1, 6);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(*ra, "ping-a");
  EXPECT_EQ(*rb, "ping-b");
  std::string big(300000, 'z');
  ASSERT_TRUE((*pf)->Send(1, big).ok());
  auto rbig = (*pf)->Read(1, big.size());
  ASSERT_TRUE(rbig.ok()) << rbig.status();
  EXPECT_EQ(*rbig, big);
  EXPECT_EQ(a.connections(), 1);
  EXPECT_EQ(b.connections(), 1);
  EXPECT_TRUE((*pf)->ws().Close().ok());
}

TEST_F(WebSocketServerTest, PortForwardDialFailureGoesToTheErrorChannel) {
  uint16_t closed_port = 0;
  { testutil::ListenLoopback(&closed_port); }  // bound, then closed: nothing listens
  auto url = server_->AddPortForward(PortForwardSession{{}, testutil::LoopbackDialer()});
  ASSERT_TRUE(url.ok());
  auto pf = PortForwardClient::Connect(*url, {closed_port});
  ASSERT_TRUE(pf.ok()) << pf.status();
  auto e = (*pf)->ReadError(0);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_NE(e->find("error forwarding port"), std::string::npos) << *e;
}

TEST_F(WebSocketServerTest, PortForwardBadPortsAre400) {
  for (std::string q : {"", "?port=0", "?port=65536", "?port=abc", "?port=", "?port=80&port=-1"}) {
    auto url = server_->AddPortForward(PortForwardSession{{}, testutil::LoopbackDialer()});
    ASSERT_TRUE(url.ok());
    auto c = WsClient::ConnectUrl(*url + q, {"v4.channel.k8s.io"});
    ASSERT_FALSE(c.ok()) << q;
    EXPECT_NE(c.status().message().find("400"), std::string::npos) << q << ": " << c.status();
  }
}

}  // namespace
}  // namespace crisp::streaming
