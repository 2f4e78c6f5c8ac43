// The SPDY/3.1 handlers of the streaming server, driven over socketpairs by
// the test client, with a fake shim (the test plays the process side of
// runtime/stdio_frame.h) and a loopback TCP echo server for port forwarding.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "runtime/stdio_frame.h"
#include "server/streaming/connection.h"
#include "server/streaming/spdy_framing.h"
#include "test/testing/spdy_client.h"

namespace crisp::streaming {
namespace {

using ::testing::HasSubstr;
using runtime::FrameType;
using testing::SpdyClient;

constexpr absl::Duration kTimeout = absl::Seconds(10);

int CountEntries(const char* dir) {
  int n = 0;
  if (DIR* d = opendir(dir)) {
    while (readdir(d) != nullptr) ++n;
    closedir(d);
  }
  return n;
}

std::pair<UniqueFd, UniqueFd> SocketPair() {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

HttpRequest UpgradeRequest(const std::vector<std::string>& protocols, const std::string& path = "/exec/token") {
  HttpRequest r;
  r.method = "GET";
  r.path = path;
  r.headers.emplace("connection", "Upgrade");
  r.headers.emplace("upgrade", "SPDY/3.1");
  for (const std::string& p : protocols) r.headers.emplace("x-stream-protocol-version", p);
  return r;
}

// The process side of an exec/attach as the shim speaks it.
class FakeShim {
 public:
  explicit FakeShim(UniqueFd fd) : fd_(std::move(fd)) {}
  void Send(FrameType type, std::string_view payload) { SendRaw(runtime::EncodeFrame(type, payload)); }
  void SendRaw(const std::string& bytes) {
    ASSERT_EQ(send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }
  void Close() { fd_.reset(); }
  // The next frame, or false on EOF/timeout (then eof() tells which).
  bool Next(FrameType* type, std::string* payload, absl::Duration timeout = kTimeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (!reader_.Next(type, payload)) {
      if (eof_) return false;
      pollfd p{fd_.get(), POLLIN, 0};
      int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (ms <= 0 || poll(&p, 1, ms) <= 0) return false;
      char buf[65536];
      ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      reader_.Feed(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // Collects stdin until kCloseStdin; false if it never comes.
  bool ReadStdinUntilClose(std::string* data) {
    FrameType t;
    std::string p;
    while (Next(&t, &p)) {
      if (t == FrameType::kCloseStdin) return true;
      if (t == FrameType::kStdin) *data += p;
    }
    return false;
  }
  bool WaitEof(absl::Duration timeout = kTimeout) {
    FrameType t;
    std::string p;
    absl::Time deadline = absl::Now() + timeout;
    while (!eof_ && absl::Now() < deadline) Next(&t, &p, deadline - absl::Now());
    return eof_;
  }

 private:
  UniqueFd fd_;
  runtime::FrameReader reader_;
  bool eof_ = false;
};

class SpdyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = CountEntries("/proc/self/fd");
    threads_before_ = CountEntries("/proc/self/task");
    shutdown_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    options_.shutdown_fd = shutdown_.get();
    options_.idle_timeout = absl::Seconds(30);
  }
  void TearDown() override {
    JoinServer();
    shim_.reset();
    shutdown_.reset();
    // Handlers must close every descriptor and leave no thread behind.
    EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before_);
    EXPECT_EQ(CountEntries("/proc/self/task"), threads_before_);
  }
  void JoinServer() {
    if (server_.joinable()) server_.join();
  }

  // Starts ServeSpdyRemoteCommand on a socketpair; the process side is a
  // socketpair whose other end becomes shim_ (or open fails with open_error).
  std::unique_ptr<SpdyClient> StartExec(const StdioOptions& stdio, const std::vector<std::string>& protocols,
                                        absl::Status open_error = absl::OkStatus()) {
    auto [client_end, server_end] = SocketPair();
    session_.options = stdio;
    session_.open = [this, open_error]() -> absl::StatusOr<UniqueFd> {
      if (!open_error.ok()) {
        opened_ = true;
        return open_error;
      }
      auto [a, b] = SocketPair();
      shim_ = std::make_unique<FakeShim>(std::move(b));
      opened_ = true;  // after shim_ is set: Shim() reads it from the test thread
      return std::move(a);
    };
    request_ = UpgradeRequest(protocols);
    server_ = std::thread([this, fd = server_end.release()] {
      ServeSpdyRemoteCommand(UniqueFd(fd), request_, session_, options_);
    });
    absl::StatusOr<std::unique_ptr<SpdyClient>> c =
        SpdyClient::Handshake(std::move(client_end), "/exec/token", protocols, /*send_request=*/false);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Waits until open() has been called and returns the fake shim.
  FakeShim* Shim() {
    absl::Time deadline = absl::Now() + kTimeout;
    while (!opened_ && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    return shim_.get();
  }

  std::unique_ptr<SpdyClient> StartPortForward(std::vector<std::string> protocols = {"portforward.k8s.io"},
                                               std::string leftover = "") {
    auto [client_end, server_end] = SocketPair();
    pf_session_.dial = [](uint16_t port) -> absl::StatusOr<UniqueFd> {
      UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        return absl::UnavailableError(absl::StrCat("dial tcp 127.0.0.1:", port, ": ", std::strerror(errno)));
      }
      return s;
    };
    request_ = UpgradeRequest(protocols, "/portforward/token");
    request_.leftover = std::move(leftover);
    server_ = std::thread([this, fd = server_end.release()] {
      ServeSpdyPortForward(UniqueFd(fd), request_, pf_session_, options_);
    });
    absl::StatusOr<std::unique_ptr<SpdyClient>> c =
        SpdyClient::Handshake(std::move(client_end), "/portforward/token", protocols, /*send_request=*/false);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  int fds_before_ = 0, threads_before_ = 0;
  UniqueFd shutdown_;
  ConnectionOptions options_;
  HttpRequest request_;
  RemoteCommandSession session_;
  PortForwardSession pf_session_;
  std::atomic<bool> opened_{false};
  std::unique_ptr<FakeShim> shim_;
  std::thread server_;
};

// ---------------------------------------------------------------------------
// Framing

TEST(SpdyFramingTest, ControlAndDataFramesRoundTripByteByByte) {
  spdy::HeaderCompressor c;
  std::string wire;
  const spdy::HeaderBlock h1 = {{"streamtype", "stdout"}, {"x-multi", std::string("a\0b", 3)}};
  const spdy::HeaderBlock h2 = {{"streamtype", "stderr"}, {"port", "8080"}, {"requestid", "7"}};
  wire += *spdy::EncodeSynStream(c, 1, 0, 3, spdy::kFlagFin, h1);
  wire += *spdy::EncodeSynReply(c, 3, 0, h2);
  wire += spdy::EncodeData(5, spdy::kFlagFin, "hello");
  wire += spdy::EncodeRstStream(7, spdy::kRstCancel);
  wire += spdy::EncodePing(9);
  wire += spdy::EncodeGoAway(11, 2);
  wire += spdy::EncodeWindowUpdate(13, 4096);
  wire += spdy::EncodeSettings({{7, 65536}});
  wire += *spdy::EncodeHeaders(c, 15, 0, h1);

  spdy::FrameReader r;
  spdy::HeaderDecompressor d;
  std::vector<spdy::Frame> frames;
  spdy::Frame f;
  for (char ch : wire) {  // a byte at a time: the reader must reassemble
    r.Feed(&ch, 1);
    while (r.Next(&f)) frames.push_back(f);
  }
  ASSERT_FALSE(r.error());
  ASSERT_EQ(frames.size(), 9u);

  absl::StatusOr<spdy::SynStream> syn = spdy::ParseSynStream(frames[0], d);
  ASSERT_TRUE(syn.ok()) << syn.status();
  EXPECT_EQ(syn->stream_id, 1u);
  EXPECT_EQ(syn->priority, 3);
  EXPECT_EQ(syn->flags, spdy::kFlagFin);
  EXPECT_EQ(syn->headers, h1);
  EXPECT_EQ(spdy::HeaderValue(syn->headers, "x-multi"), "a");

  absl::StatusOr<spdy::StreamHeaders> reply = spdy::ParseStreamHeaders(frames[1], d);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->stream_id, 3u);
  EXPECT_EQ(reply->headers, h2);

  EXPECT_FALSE(frames[2].control);
  EXPECT_EQ(frames[2].stream_id, 5u);
  EXPECT_EQ(frames[2].flags, spdy::kFlagFin);
  EXPECT_EQ(frames[2].payload, "hello");

  EXPECT_EQ(frames[3].type, static_cast<uint16_t>(spdy::ControlType::kRstStream));
  absl::StatusOr<spdy::StreamIdValue> rst = spdy::ParseStreamIdValue(frames[3]);
  ASSERT_TRUE(rst.ok());
  EXPECT_EQ(rst->stream_id, 7u);
  EXPECT_EQ(rst->value, spdy::kRstCancel);
  EXPECT_EQ(*spdy::ParsePing(frames[4]), 9u);
  EXPECT_EQ(spdy::ParseStreamIdValue(frames[5])->stream_id, 11u);
  EXPECT_EQ(spdy::ParseStreamIdValue(frames[5])->value, 2u);
  EXPECT_EQ(spdy::ParseStreamIdValue(frames[6])->value, 4096u);
  EXPECT_EQ(frames[7].type, static_cast<uint16_t>(spdy::ControlType::kSettings));
  EXPECT_EQ(frames[7].payload.size(), 12u);

  absl::StatusOr<spdy::StreamHeaders> headers = spdy::ParseStreamHeaders(frames[8], d);
  ASSERT_TRUE(headers.ok()) << headers.status();
  EXPECT_EQ(headers->headers, h1);
}

TEST(SpdyFramingTest, HeaderBlocksShareOneZlibContextPerDirection) {
  spdy::HeaderCompressor c;
  const spdy::HeaderBlock h = {{"streamtype", "data"}, {"port", "8080"}, {"requestid", "0"}};
  absl::StatusOr<std::string> first = spdy::EncodeSynStream(c, 1, 0, 0, 0, h);
  absl::StatusOr<std::string> second = spdy::EncodeSynStream(c, 3, 0, 0, 0, h);
  ASSERT_TRUE(first.ok() && second.ok());
  // The second block refers back into the first: much shorter.
  EXPECT_LT(second->size(), first->size());

  spdy::FrameReader r;
  r.Feed(first->data(), first->size());
  r.Feed(second->data(), second->size());
  spdy::Frame f1, f2;
  ASSERT_TRUE(r.Next(&f1));
  ASSERT_TRUE(r.Next(&f2));
  spdy::HeaderDecompressor shared;
  ASSERT_TRUE(spdy::ParseSynStream(f1, shared).ok());
  absl::StatusOr<spdy::SynStream> s2 = spdy::ParseSynStream(f2, shared);
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->headers, h);
  // A fresh context cannot decode the second block alone.
  spdy::HeaderDecompressor fresh;
  EXPECT_FALSE(spdy::ParseSynStream(f2, fresh).ok());
}

TEST(SpdyFramingTest, RejectsOtherVersions) {
  std::string f = spdy::EncodePing(1);
  f[1] = 2;  // SPDY/2
  spdy::FrameReader r;
  r.Feed(f.data(), f.size());
  spdy::Frame frame;
  EXPECT_FALSE(r.Next(&frame));
  EXPECT_TRUE(r.error());
}

// ---------------------------------------------------------------------------
// Negotiation

TEST_F(SpdyTest, NoCommonProtocolIsForbidden) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {"v5.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status_code(), 403);
  EXPECT_THAT(c->response_body(), HasSubstr("unable to negotiate protocol"));
  EXPECT_THAT(c->response_head(), HasSubstr("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));
  JoinServer();
  EXPECT_FALSE(opened_);
}

TEST_F(SpdyTest, MissingProtocolHeaderIsBadRequest) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status_code(), 400);
}

TEST_F(SpdyTest, PrefersTheNewestProtocolBothSpeak) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {"channel.k8s.io", "v3.channel.k8s.io", "bogus"});
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status_code(), 101);
  EXPECT_EQ(c->protocol(), "v3.channel.k8s.io");
  c->Close();  // the client going away before its streams: the handler returns
}

TEST_F(SpdyTest, PortForwardNegotiatesAndAnswersPing) {
  // A client may send frames right behind its request head: the HTTP layer
  // hands them over as leftover.
  std::unique_ptr<SpdyClient> c = StartPortForward({"portforward.k8s.io"}, spdy::EncodePing(5));
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->status_code(), 101);
  EXPECT_EQ(c->protocol(), "portforward.k8s.io");
  ASSERT_TRUE(c->Ping(1).ok());
  ASSERT_TRUE(c->Ping(3).ok());
  ASSERT_TRUE(c->PumpUntil([&] { return c->pings_received().size() == 3; }, kTimeout).ok());
  EXPECT_EQ(c->pings_received(), (std::vector<uint32_t>{5, 1, 3}));
  c->Close();
}

// ---------------------------------------------------------------------------
// remotecommand

TEST_F(SpdyTest, ExecSeparatesOutputsAndPassesStdin) {
  std::unique_ptr<SpdyClient> c =
      StartExec({.stdin = true, .stdout = true, .stderr = true}, {"v4.channel.k8s.io", "v3.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->protocol(), "v4.channel.k8s.io");
  testing::RemoteCommandOptions o{.stdin = true};
  absl::StatusOr<testing::RemoteCommandStreams> ids = testing::OpenRemoteCommandStreams(*c, o);
  ASSERT_TRUE(ids.ok()) << ids.status();
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);

  ASSERT_TRUE(c->Write(ids->stdin, "hello ").ok());
  ASSERT_TRUE(c->Write(ids->stdin, "world", /*fin=*/true).ok());
  std::string in;
  ASSERT_TRUE(shim->ReadStdinUntilClose(&in));
  EXPECT_EQ(in, "hello world");

  shim->Send(FrameType::kStdout, "out1 ");
  shim->Send(FrameType::kStderr, "err1");
  shim->Send(FrameType::kStdout, "out2");
  shim->SendRaw(runtime::EncodeExit(0));
  absl::StatusOr<std::string> out = c->ReadAll(ids->stdout, kTimeout);
  absl::StatusOr<std::string> err = c->ReadAll(ids->stderr, kTimeout);
  absl::StatusOr<std::string> status = c->ReadAll(ids->error, kTimeout);
  ASSERT_TRUE(out.ok() && err.ok() && status.ok());
  EXPECT_EQ(*out, "out1 out2");
  EXPECT_EQ(*err, "err1");
  EXPECT_EQ(nlohmann::json::parse(*status)["status"], "Success");
  EXPECT_TRUE(c->Finished(ids->stdin));  // client-go waits for this to end its stdin copy
  EXPECT_TRUE(c->WaitClosed(kTimeout).ok());
  EXPECT_TRUE(c->goaway_received());
}

TEST_F(SpdyTest, ExecNonZeroExitIsAStatusOnV4) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true, .stderr = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandStreams> ids = testing::OpenRemoteCommandStreams(*c, {});
  ASSERT_TRUE(ids.ok()) << ids.status();
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  shim->Send(FrameType::kStdout, "partial");
  shim->SendRaw(runtime::EncodeExit(3));
  absl::StatusOr<std::string> status = c->ReadAll(ids->error, kTimeout);
  ASSERT_TRUE(status.ok());
  nlohmann::json j = nlohmann::json::parse(*status);
  EXPECT_EQ(j["status"], "Failure");
  EXPECT_EQ(j["reason"], "NonZeroExitCode");
  EXPECT_EQ(j["details"]["causes"][0]["reason"], "ExitCode");
  EXPECT_EQ(j["details"]["causes"][0]["message"], "3");
  EXPECT_EQ(*c->ReadAll(ids->stdout, kTimeout), "partial");
}

TEST_F(SpdyTest, ExecNonZeroExitIsTextBeforeV4) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true, .stderr = true}, {"v3.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandStreams> ids = testing::OpenRemoteCommandStreams(*c, {});
  ASSERT_TRUE(ids.ok()) << ids.status();
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  shim->SendRaw(runtime::EncodeExit(3));
  EXPECT_EQ(*c->ReadAll(ids->error, kTimeout), "command terminated with non-zero exit code: exit status 3");
}

TEST_F(SpdyTest, ExecZeroExitWritesNothingBeforeV4) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {"v2.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandResult> r = [&] {
    std::thread shim_side([&] {
      if (FakeShim* shim = Shim()) {
        shim->Send(FrameType::kStdout, "ok\n");
        shim->SendRaw(runtime::EncodeExit(0));
      }
    });
    auto result = testing::RunRemoteCommand(*c, {.stdout = true, .stderr = false});
    shim_side.join();
    return result;
  }();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout, "ok\n");
  EXPECT_EQ(r->error, "");
}

TEST_F(SpdyTest, TtyResizeBecomesResizeFrames) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdin = true, .stdout = true, .tty = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  testing::RemoteCommandOptions o{.stdin = true, .tty = true};
  absl::StatusOr<testing::RemoteCommandStreams> ids = testing::OpenRemoteCommandStreams(*c, o);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->stderr, 0u);
  ASSERT_NE(ids->resize, 0u);
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  // Two sizes in one data frame, then one split across frames.
  ASSERT_TRUE(c->Write(ids->resize, "{\"Width\":80,\"Height\":24}\n{\"Width\":100,\"Height\":50}\n").ok());
  ASSERT_TRUE(c->Write(ids->resize, "{\"Width\":1").ok());
  ASSERT_TRUE(c->Write(ids->resize, "20,\"Height\":40}\n").ok());
  std::vector<std::pair<uint16_t, uint16_t>> sizes;
  FrameType t;
  std::string p;
  while (sizes.size() < 3 && shim->Next(&t, &p)) {
    uint16_t w, h;
    if (t == FrameType::kResize && runtime::DecodeResize(p, &w, &h)) sizes.emplace_back(w, h);
  }
  EXPECT_EQ(sizes, (std::vector<std::pair<uint16_t, uint16_t>>{{80, 24}, {100, 50}, {120, 40}}));
  shim->SendRaw(runtime::EncodeExit(0));
  EXPECT_TRUE(c->ReadAll(ids->error, kTimeout).ok());
}

TEST_F(SpdyTest, LargeStdinIsNotStalledByFlowControl) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdin = true, .stdout = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandStreams> ids =
      testing::OpenRemoteCommandStreams(*c, {.stdin = true, .stderr = false});
  ASSERT_TRUE(ids.ok()) << ids.status();
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  std::string big(300 * 1024, 'x');
  for (size_t i = 0; i < big.size(); i += 1000) big[i] = static_cast<char>('a' + (i / 1000) % 26);
  std::string in;
  std::thread reader([&] { shim->ReadStdinUntilClose(&in); });
  ASSERT_TRUE(c->Write(ids->stdin, big, /*fin=*/true).ok());
  reader.join();
  EXPECT_EQ(in, big);
  // The server acknowledged what it consumed, per stream and per connection.
  // A client honouring 64 KiB windows needs at least this much acknowledged
  // to send it all.
  auto acked = [&](uint32_t id) {
    auto it = c->window_updates().find(id);
    return it == c->window_updates().end() ? 0 : it->second;
  };
  EXPECT_TRUE(c->PumpUntil(
                   [&] {
                     return acked(ids->stdin) >= big.size() - spdy::kInitialWindow &&
                            acked(0) >= big.size() - spdy::kInitialWindow;
                   },
                   kTimeout)
                  .ok())
      << acked(ids->stdin) << " " << acked(0);
  shim->SendRaw(runtime::EncodeExit(0));
  EXPECT_TRUE(c->ReadAll(ids->error, kTimeout).ok());
}

TEST_F(SpdyTest, ClientDisconnectClosesTheProcessSide) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdin = true, .stdout = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(testing::OpenRemoteCommandStreams(*c, {.stdin = true, .stderr = false}).ok());
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  c->Close();
  EXPECT_TRUE(shim->WaitEof());
}

TEST_F(SpdyTest, OpenFailureIsReportedOnTheErrorStream) {
  std::unique_ptr<SpdyClient> c =
      StartExec({.stdout = true}, {"v4.channel.k8s.io"}, absl::NotFoundError("container xyz is not running"));
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandResult> r = testing::RunRemoteCommand(*c, {.stdout = true, .stderr = false});
  ASSERT_TRUE(r.ok()) << r.status();
  nlohmann::json j = nlohmann::json::parse(r->error);
  EXPECT_EQ(j["status"], "Failure");
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("container xyz is not running"));
  EXPECT_TRUE(opened_);
}

TEST_F(SpdyTest, OpenFailureIsTextBeforeV4) {
  std::unique_ptr<SpdyClient> c =
      StartExec({.stdout = true}, {"v2.channel.k8s.io"}, absl::NotFoundError("container xyz is not running"));
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandResult> r = testing::RunRemoteCommand(*c, {.stdout = true, .stderr = false});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->error, "container xyz is not running");
}

TEST_F(SpdyTest, AttachEndingWithoutExitIsSuccess) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true, .stderr = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::RemoteCommandStreams> ids = testing::OpenRemoteCommandStreams(*c, {});
  ASSERT_TRUE(ids.ok()) << ids.status();
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  shim->Send(FrameType::kStdout, "last words");
  shim->Close();
  EXPECT_EQ(*c->ReadAll(ids->stdout, kTimeout), "last words");
  EXPECT_EQ(nlohmann::json::parse(*c->ReadAll(ids->error, kTimeout))["status"], "Success");
  EXPECT_TRUE(c->Finished(ids->stderr));
}

TEST_F(SpdyTest, IdleTimeoutClosesBothSides) {
  options_.idle_timeout = absl::Milliseconds(300);
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(testing::OpenRemoteCommandStreams(*c, {.stderr = false}).ok());
  FakeShim* shim = Shim();
  ASSERT_NE(shim, nullptr);
  EXPECT_TRUE(shim->WaitEof(absl::Seconds(5)));
  EXPECT_TRUE(c->WaitClosed(absl::Seconds(5)).ok());
}

TEST_F(SpdyTest, ShutdownEndsTheHandlerPromptly) {
  std::unique_ptr<SpdyClient> c = StartExec({.stdout = true}, {"v4.channel.k8s.io"});
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(testing::OpenRemoteCommandStreams(*c, {.stderr = false}).ok());
  ASSERT_NE(Shim(), nullptr);
  uint64_t one = 1;
  ASSERT_EQ(write(shutdown_.get(), &one, sizeof(one)), 8);
  absl::Time start = absl::Now();
  JoinServer();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_TRUE(shim_->WaitEof());
}

// ---------------------------------------------------------------------------
// portforward

// A loopback TCP echo server: echoes as it reads and, when a client
// half-closes, finishes the echo and closes. One thread, stopped by eventfd.
class EchoServer {
 public:
  EchoServer() {
    listener_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(listener_.get(), 16), 0);
    socklen_t len = sizeof(a);
    getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    stop_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    thread_ = std::thread([this] { Run(); });
  }
  ~EchoServer() {
    uint64_t one = 1;
    (void)!write(stop_.get(), &one, sizeof(one));
    thread_.join();
  }
  uint16_t port() const { return port_; }
  int accepted() {
    absl::MutexLock l(&mu_);
    return accepted_;
  }

 private:
  void Run() {
    std::vector<UniqueFd> conns;
    while (true) {
      std::vector<pollfd> p = {{stop_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
      for (const UniqueFd& c : conns) p.push_back({c.get(), POLLIN, 0});
      if (poll(p.data(), p.size(), -1) < 0) return;
      if (p[0].revents) return;
      if (p[1].revents & POLLIN) {
        conns.emplace_back(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        absl::MutexLock l(&mu_);
        ++accepted_;
      }
      for (size_t i = 2; i < p.size(); ++i) {
        if (!p[i].revents) continue;
        char buf[65536];
        ssize_t n = recv(p[i].fd, buf, sizeof(buf), 0);
        if (n > 0) {
          (void)!send(p[i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
        } else {
          for (UniqueFd& c : conns) {
            if (c.get() == p[i].fd) c.reset();
          }
        }
      }
      std::erase_if(conns, [](const UniqueFd& c) { return !c.valid(); });
    }
  }
  UniqueFd listener_, stop_;
  uint16_t port_ = 0;
  absl::Mutex mu_;
  int accepted_ = 0;
  std::thread thread_;
};

TEST_F(SpdyTest, PortForwardTwoConcurrentPairsAndHalfClose) {
  EchoServer echo;
  std::unique_ptr<SpdyClient> c = StartPortForward();
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->status_code(), 101);
  absl::StatusOr<testing::PortForwardPair> a = testing::OpenPortForward(*c, echo.port(), "0");
  absl::StatusOr<testing::PortForwardPair> b = testing::OpenPortForward(*c, echo.port(), "1");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(c->Write(a->data, "ping-a").ok());
  ASSERT_TRUE(c->Write(b->data, "ping-b").ok());
  EXPECT_EQ(*c->ReadAtLeast(b->data, 6, kTimeout), "ping-b");
  EXPECT_EQ(*c->ReadAtLeast(a->data, 6, kTimeout), "ping-a");
  EXPECT_EQ(echo.accepted(), 2);

  // Half-close a: the echo server sees EOF, closes, and the pair ends with
  // FIN on both streams and no error; b is unaffected.
  ASSERT_TRUE(c->Write(a->data, "bye", /*fin=*/true).ok());
  EXPECT_EQ(*c->ReadAll(a->data, kTimeout), "bye");
  EXPECT_EQ(*c->ReadAll(a->error, kTimeout), "");
  EXPECT_TRUE(c->Finished(a->error));
  ASSERT_TRUE(c->Write(b->data, "still here").ok());
  EXPECT_EQ(*c->ReadAtLeast(b->data, 10, kTimeout), "still here");
  EXPECT_FALSE(c->Finished(b->data));

  // Large transfer on b.
  std::string big(200 * 1024, 'q');
  ASSERT_TRUE(c->Write(b->data, big, /*fin=*/true).ok());
  EXPECT_EQ(c->ReadAll(b->data, kTimeout)->size(), big.size());
  c->Close();
}

TEST_F(SpdyTest, PortForwardDialFailureIsReportedOnTheErrorStream) {
  // A port nobody listens on: bind and close to find one.
  uint16_t closed_port;
  {
    EchoServer probe;
    closed_port = probe.port();
  }
  std::unique_ptr<SpdyClient> c = StartPortForward();
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::PortForwardPair> p = testing::OpenPortForward(*c, closed_port, "5");
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::string> message = c->ReadAll(p->error, kTimeout);
  ASSERT_TRUE(message.ok());
  EXPECT_THAT(*message, HasSubstr(absl::StrCat("error forwarding port ", closed_port)));
  EXPECT_THAT(*message, HasSubstr("refused"));
  EXPECT_TRUE(c->ReadAll(p->data, kTimeout).ok());
  EXPECT_TRUE(c->Finished(p->data));
  c->Close();
}

TEST_F(SpdyTest, PortForwardRejectsBadStreams) {
  std::unique_ptr<SpdyClient> c = StartPortForward();
  ASSERT_NE(c, nullptr);
  absl::StatusOr<uint32_t> no_port = c->OpenStream({{"streamtype", "data"}, {"requestid", "1"}});
  absl::StatusOr<uint32_t> bad_type = c->OpenStream({{"streamtype", "video"}, {"port", "80"}, {"requestid", "1"}});
  absl::StatusOr<uint32_t> port_zero = c->OpenStream({{"streamtype", "data"}, {"port", "0"}, {"requestid", "1"}});
  ASSERT_TRUE(no_port.ok() && bad_type.ok() && port_zero.ok());
  for (uint32_t id : {*no_port, *bad_type, *port_zero}) {
    ASSERT_TRUE(c->WaitReplied(id, kTimeout).ok());
    EXPECT_TRUE(c->WasReset(id)) << id;
  }
  c->Close();
}

TEST_F(SpdyTest, PortForwardClientResetClosesThePair) {
  EchoServer echo;
  std::unique_ptr<SpdyClient> c = StartPortForward();
  ASSERT_NE(c, nullptr);
  absl::StatusOr<testing::PortForwardPair> a = testing::OpenPortForward(*c, echo.port(), "0");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(c->Write(a->data, "x").ok());
  EXPECT_EQ(*c->ReadAtLeast(a->data, 1, kTimeout), "x");
  ASSERT_TRUE(c->Reset(a->data).ok());
  // The connection stays usable: a new pair works.
  absl::StatusOr<testing::PortForwardPair> b = testing::OpenPortForward(*c, echo.port(), "1");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(c->Write(b->data, "y").ok());
  EXPECT_EQ(*c->ReadAtLeast(b->data, 1, kTimeout), "y");
  c->Close();
}

TEST_F(SpdyTest, PortForwardEndsWhenTheClientCloses) {
  EchoServer echo;
  std::unique_ptr<SpdyClient> c = StartPortForward();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(testing::OpenPortForward(*c, echo.port(), "0").ok());
  ASSERT_TRUE(c->GoAway().ok());
  JoinServer();  // returns without the client closing the socket
  c->Close();
}

}  // namespace
}  // namespace crisp::streaming
