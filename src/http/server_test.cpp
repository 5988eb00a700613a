#include "http/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <sluice/version.hpp>

#include "os/close_on_exec.hpp"

namespace sluice::http {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Every blocking client call gives up after this, so a server bug fails a test instead of hanging.
constexpr auto kClientTimeout = 3s;
// The io_context threads stop by themselves after this, whatever happens.
constexpr auto kWatchdog = 30s;

struct ParsedResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The descriptors of this process that are sockets.
std::set<int> OpenSockets() {
  std::set<int> sockets;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ignored;
    const auto target = std::filesystem::read_symlink(entry.path(), ignored);
    if (target.string().rfind("socket:", 0) == 0) sockets.insert(std::stoi(entry.path().filename().string()));
  }
  return sockets;
}

// A blocking HTTP/1.1 client over a POSIX socket, just enough to see what the server does on the
// wire: pipelining, chunks one by one, and the connection closing.
class TestClient {
 public:
  explicit TestClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{};
    timeout.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kClientTimeout).count();
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~TestClient() { Close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }
  int descriptor() const { return fd_; }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  std::optional<ParsedResponse> ReadHead() {
    ParsedResponse response;
    auto status_line = ReadLine();
    if (!status_line || status_line->size() < 12) return std::nullopt;
    response.status = std::stoi(status_line->substr(9, 3));
    for (;;) {
      auto line = ReadLine();
      if (!line) return std::nullopt;
      if (line->empty()) break;
      const auto colon = line->find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string value = line->substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      response.headers[Lower(line->substr(0, colon))] = value;
    }
    return response;
  }

  /// One chunk's payload; "" for the last chunk; nullopt if the stream broke.
  std::optional<std::string> ReadChunk() {
    auto size_line = ReadLine();
    if (!size_line) return std::nullopt;
    const std::size_t size = std::stoul(*size_line, nullptr, 16);
    if (!FillTo(size + 2)) return std::nullopt;
    std::string payload = buffer_.substr(0, size);
    buffer_.erase(0, size + 2);
    return payload;
  }

  std::optional<ParsedResponse> ReadResponse() {
    auto response = ReadHead();
    if (!response) return std::nullopt;
    if (Lower(response->header("transfer-encoding")) == "chunked") {
      for (;;) {
        auto chunk = ReadChunk();
        if (!chunk) return std::nullopt;
        if (chunk->empty()) break;
        response->body += *chunk;
      }
      return response;
    }
    const std::size_t length = std::stoul(response->header("content-length").empty()
                                              ? "0"
                                              : response->header("content-length"));
    if (!FillTo(length)) return std::nullopt;
    response->body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return response;
  }

  /// True when the server closed the connection (end of stream or reset) within the timeout.
  bool WaitClosed() {
    for (;;) {
      char data[4096];
      const ssize_t n = ::recv(fd_, data, sizeof data, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  bool Fill() {
    char data[4096];
    const ssize_t n = ::recv(fd_, data, sizeof data, 0);
    if (n <= 0) return false;
    buffer_.append(data, static_cast<std::size_t>(n));
    return true;
  }
  bool FillTo(std::size_t size) {
    while (buffer_.size() < size) {
      if (!Fill()) return false;
    }
    return true;
  }
  std::optional<std::string> ReadLine() {
    for (;;) {
      const auto end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return line;
      }
      if (!Fill()) return std::nullopt;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return std::string("GET ") + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" +
         std::string(extra_headers) + "\r\n";
}

std::string Post(std::string_view target, std::string_view body) {
  return std::string("POST ") + std::string(target) + " HTTP/1.1\r\nHost: test\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

Task<void> Sleep(std::chrono::steady_clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::use_awaitable);
}

// Answers "METHOD TARGET BODY"; /slow first sleeps 300 ms, /throw throws.
Task<void> EchoHandler(Request& request, ResponseWriter& writer) {
  if (request.target == "/slow") co_await Sleep(300ms);
  if (request.target == "/throw") throw std::runtime_error("boom");
  Response response;
  response.content_type = "text/plain";
  response.headers.push_back(HeaderField{"X-Echo", "yes"});
  response.body = request.method + " " + request.target + " " + request.body;
  co_await writer.Send(std::move(response));
}

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(RequestHandler handler, ServerOptions options = {}) {
    server_ = std::make_unique<Server>(io_, std::move(handler), std::move(options));
    const auto status = server_->Start();
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_NE(server_->port(), 0);
    // Two threads, so that connections really run on their strands concurrently.
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(kWatchdog); });
  }

  void TearDown() override {
    if (server_) {
      EXPECT_TRUE(Drain(2s));
    }
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) thread.join();
    server_.reset();
  }

  bool Drain(std::chrono::steady_clock::duration timeout) {
    auto result = std::make_shared<std::promise<bool>>();
    auto drained = result->get_future();
    asio::co_spawn(io_, server_->Drain(timeout), [result](std::exception_ptr failure, bool ok) {
      result->set_value(!failure && ok);
    });
    if (drained.wait_for(timeout + 3s) != std::future_status::ready) {
      ADD_FAILURE() << "Drain did not complete";
      return false;
    }
    return drained.get();
  }

  std::uint16_t port() const { return server_->port(); }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  std::unique_ptr<Server> server_;
};

TEST_F(HttpServerTest, AnswersGetAndEchoesPost) {
  StartServer(EchoHandler);
  TestClient client(port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Get("/hello")));
  auto get = client.ReadResponse();
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "GET /hello ");
  EXPECT_EQ(get->header("server"), std::string("sluice/") + kVersion);
  EXPECT_EQ(get->header("content-type"), "text/plain");
  EXPECT_EQ(get->header("content-length"), "11");
  EXPECT_EQ(get->header("x-echo"), "yes");

  ASSERT_TRUE(client.Send(Post("/echo", R"({"input": 1})")));
  auto post = client.ReadResponse();
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 200);
  EXPECT_EQ(post->body, R"(POST /echo {"input": 1})");
}

// A handler that starts a subprocess must not hand it the worker's sockets (os/close_on_exec.hpp):
// the listening socket and each accepted one are close-on-exec.
TEST_F(HttpServerTest, ItsSocketsAreNotInheritedBySubprocesses) {
  const std::set<int> before = OpenSockets();
  StartServer(EchoHandler);
  TestClient client(port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send(Get("/hello")));
  ASSERT_TRUE(client.ReadResponse());
  int checked = 0;
  for (int descriptor : OpenSockets()) {
    if (before.count(descriptor) || descriptor == client.descriptor()) continue;
    EXPECT_TRUE(os::IsCloseOnExec(descriptor)) << "socket descriptor " << descriptor;
    ++checked;
  }
  EXPECT_GE(checked, 2) << "the listening socket and the accepted one";
}

TEST_F(HttpServerTest, DefaultsToJsonContentType) {
  StartServer([](Request&, ResponseWriter& writer) -> Task<void> {
    Response response;
    response.body = R"({"ok":true})";
    co_await writer.Send(std::move(response));
  });
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->header("content-type"), "application/json");
  EXPECT_EQ(response->body, R"({"ok":true})");
}

TEST_F(HttpServerTest, KeepsTheConnectionAlive) {
  StartServer(EchoHandler);
  TestClient client(port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.Send(Post("/n", std::to_string(i))));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response) << "request " << i;
    EXPECT_EQ(response->body, "POST /n " + std::to_string(i));
  }
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(HttpServerTest, ClosesAfterConnectionCloseAndHttp10) {
  StartServer(EchoHandler);
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send(Get("/", "Connection: close\r\n")));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(Lower(response->header("connection")), "close");
    EXPECT_TRUE(client.WaitClosed());
  }
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send("GET /old HTTP/1.0\r\n\r\n"));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "GET /old ");
    EXPECT_TRUE(client.WaitClosed());
  }
}

TEST_F(HttpServerTest, AnswersPipelinedRequestsInOrder) {
  StartServer(EchoHandler);
  TestClient client(port());
  // The slow one first: its answer must still come first.
  ASSERT_TRUE(client.Send(Post("/slow", "one") + Post("/fast", "two")));
  auto first = client.ReadResponse();
  auto second = client.ReadResponse();
  ASSERT_TRUE(first);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->body, "POST /slow one");
  EXPECT_EQ(second->body, "POST /fast two");
}

TEST_F(HttpServerTest, RejectsABodyOverThePerRequestLimitAndCloses) {
  ServerOptions options;
  options.body_limit = [](const RequestHead& head) -> std::size_t {
    return head.target == "/small" ? 10 : 1000;
  };
  StartServer(EchoHandler, options);
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send(Post("/large", std::string(100, 'x'))));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
  }
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send(Post("/small", std::string(100, 'x'))));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->body, R"({"error":"request body is over the limit of 10 bytes"})");
    EXPECT_EQ(response->header("content-type"), "application/json");
    EXPECT_TRUE(client.WaitClosed());
  }
  {  // A chunked body has no Content-Length: the limit applies as it arrives.
    TestClient client(port());
    ASSERT_TRUE(client.Send(
        "POST /small HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_TRUE(client.WaitClosed());
  }
}

TEST_F(HttpServerTest, AnswersExpectContinueBeforeTheBodyIsSent) {
  StartServer(EchoHandler);
  TestClient client(port());
  ASSERT_TRUE(client.Send("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  auto interim = client.ReadHead();  // sent before the body exists, or this read would wait
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.Send("hello"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "POST /e hello");
}

TEST_F(HttpServerTest, AnswersHeadWithoutABody) {
  StartServer(EchoHandler);
  TestClient client(port());
  ASSERT_TRUE(client.Send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto head = client.ReadHead();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-length"), "8");  // "HEAD /h "
  // The next response follows at once: no body bytes came between.
  ASSERT_TRUE(client.Send(Get("/next")));
  auto next = client.ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "GET /next ");
}

TEST_F(HttpServerTest, RejectsMalformedRequestsAndCloses) {
  StartServer(EchoHandler);
  TestClient client(port());
  ASSERT_TRUE(client.Send("GET / HTTP/1.1\r\nthis is no header\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(response->body.rfind(R"({"error":"malformed HTTP request: )", 0), 0u) << response->body;
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, RejectsAHeadOverTheLimit) {
  ServerOptions options;
  options.max_header_bytes = 256;
  StartServer(EchoHandler, options);
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/", "X-Big: " + std::string(1000, 'y') + "\r\n")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, ClosesAStalledClientAtTheHeaderDeadline) {
  ServerOptions options;
  options.header_timeout = 200ms;
  StartServer(EchoHandler, options);
  TestClient client(port());
  ASSERT_TRUE(client.Send("GET / HTTP/1.1\r\nHost: te"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.WaitClosed());
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 2s);
}

TEST_F(HttpServerTest, ClosesAnIdleKeepAliveConnection) {
  ServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(EchoHandler, options);
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/")));
  ASSERT_TRUE(client.ReadResponse());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(HttpServerTest, AnswersAThrowingHandlerWith500AndKeepsServing) {
  StartServer(EchoHandler);
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send(Get("/throw")));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 500);
    EXPECT_EQ(response->body, R"({"error":"internal error: boom"})");
  }
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/after")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, AnswersAHandlerThatSendsNothingWith500) {
  StartServer([](Request&, ResponseWriter&) -> Task<void> { co_return; });
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500);
}

TEST_F(HttpServerTest, ReadDeadlinesDoNotCutASlowHandler) {
  ServerOptions options;
  options.header_timeout = 100ms;
  options.body_timeout = 100ms;
  options.idle_timeout = 100ms;
  StartServer(EchoHandler, options);
  TestClient client(port());
  ASSERT_TRUE(client.Send(Post("/slow", "patience")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "POST /slow patience");
}

TEST_F(HttpServerTest, StreamsChunksAsTheyAreSent) {
  std::atomic<bool> second_sent{false};
  StartServer([&second_sent](Request& request, ResponseWriter& writer) -> Task<void> {
    if (request.target != "/stream") {
      // Only /stream streams: a later request must not touch second_sent, which dies with the test.
      Response plain;  // named: g++ 12 mishandles braced temporaries inside co_await
      plain.body = "{}";
      co_await writer.Send(std::move(plain));
      co_return;
    }
    co_await writer.StartStream();
    co_await writer.SendChunk("data: one\n\n");
    co_await Sleep(200ms);
    second_sent = true;
    co_await writer.SendChunk("data: two\n\n");
    co_await writer.EndStream();
  });
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/stream", "Accept: text/event-stream\r\n")));
  auto head = client.ReadHead();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-type"), "text/event-stream");
  EXPECT_EQ(Lower(head->header("transfer-encoding")), "chunked");
  EXPECT_EQ(head->header("content-length"), "");
  EXPECT_EQ(client.ReadChunk(), "data: one\n\n");
  EXPECT_FALSE(second_sent) << "the first chunk arrived only with the second";
  EXPECT_EQ(client.ReadChunk(), "data: two\n\n");
  EXPECT_EQ(client.ReadChunk(), "");
  // The connection stays usable after a complete stream.
  ASSERT_TRUE(client.Send(Get("/again")));
  auto again = client.ReadHead();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(HttpServerTest, StopFinishesInFlightRequestsAndClosesIdleOnes) {
  StartServer(EchoHandler);
  TestClient idle(port());
  ASSERT_TRUE(idle.Send(Get("/fast")));
  ASSERT_TRUE(idle.ReadResponse());
  TestClient slow(port());
  ASSERT_TRUE(slow.Send(Get("/slow")));
  TestClient half(port());  // a request whose head is still arriving when Stop comes
  ASSERT_TRUE(half.Send("GET /late HTTP/1.1\r\n"));
  std::this_thread::sleep_for(100ms);  // the slow request is in its handler now

  server_->Stop();
  EXPECT_TRUE(idle.WaitClosed());
  ASSERT_TRUE(half.Send("Host: test\r\n\r\n"));
  auto refused = half.ReadResponse();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->body, R"({"error":"server is shutting down"})");
  EXPECT_EQ(Lower(refused->header("connection")), "close");
  half.Close();  // else the server lingers a second for it to close

  auto response = slow.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "GET /slow ");
  EXPECT_EQ(Lower(response->header("connection")), "close");
  EXPECT_TRUE(slow.WaitClosed());

  bool refused_new = false;  // the acceptor closes asynchronously: give it a moment
  for (int i = 0; i < 100 && !refused_new; ++i) {
    refused_new = !TestClient(port()).connected();
    if (!refused_new) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused_new);
  EXPECT_TRUE(Drain(2s));
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(HttpServerTest, DrainClosesWhatIsLeftAtTheDeadline) {
  StartServer([](Request&, ResponseWriter& writer) -> Task<void> {
    co_await Sleep(1s);
    Response response;
    co_await writer.Send(std::move(response));
  });
  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/")));
  std::this_thread::sleep_for(50ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(Drain(100ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 900ms);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(HttpServerTest, AHandlerLearnsTheClientLeftAndFinishes) {
  auto outcome = std::make_shared<std::promise<std::pair<bool, bool>>>();
  StartServer([outcome](Request& request, ResponseWriter& writer) -> Task<void> {
    Response response;
    if (request.target != "/slow") {
      co_await writer.Send(std::move(response));
      co_return;
    }
    co_await Sleep(300ms);
    const bool gone = writer.client_gone();
    const bool sent = co_await writer.Send(std::move(response));
    outcome->set_value({gone, sent});
  });
  {
    TestClient client(port());
    ASSERT_TRUE(client.Send(Get("/slow")));
    std::this_thread::sleep_for(50ms);
  }  // the client leaves while the handler waits
  auto finished = outcome->get_future();
  ASSERT_EQ(finished.wait_for(3s), std::future_status::ready);
  const auto [gone, sent] = finished.get();
  EXPECT_TRUE(gone);
  EXPECT_FALSE(sent);

  TestClient client(port());
  ASSERT_TRUE(client.Send(Get("/fast")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, ReportsABindFailureNamingHostAndPort) {
  StartServer(EchoHandler);
  ServerOptions options;
  options.port = port();
  Server second(io_, EchoHandler, options);
  const auto status = second.Start();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), core::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(port())), std::string::npos)
      << status.message();
}

}  // namespace
}  // namespace sluice::http
