#include "http/client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "http/backoff.hpp"

namespace sluice::http {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;

// A request as the test server saw it on the wire.
struct RawRequest {
  std::string method;
  std::string target;
  std::vector<HeaderField> headers;
  std::string body;

  std::string header(std::string_view name) const {
    for (const HeaderField& header : headers) {
      if (strcasecmp(header.name.c_str(), std::string(name).c_str()) == 0) return header.value;
    }
    return {};
  }
};

// One accepted connection of the test server, driven by a test's script on the server thread.
// Every wait is bounded (the server's stop flag, and 5 s at most), so a broken client fails the
// test instead of hanging it.
class TestConnection {
 public:
  TestConnection(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  // The next request, or nullopt when the peer closed, the server stops, or 5 s pass.
  std::optional<RawRequest> ReadRequest() {
    std::size_t head_end;
    while ((head_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore()) return std::nullopt;
    }
    RawRequest request;
    const std::string head = pending_.substr(0, head_end);
    std::size_t line_end = head.find("\r\n");
    const std::string request_line = head.substr(0, line_end);
    const std::size_t first_space = request_line.find(' ');
    const std::size_t second_space = request_line.find(' ', first_space + 1);
    request.method = request_line.substr(0, first_space);
    request.target = request_line.substr(first_space + 1, second_space - first_space - 1);
    std::size_t content_length = 0;
    while (line_end != std::string::npos) {
      const std::size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end == std::string::npos
                                                      ? std::string::npos
                                                      : line_end - start);
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      request.headers.push_back({line.substr(0, colon), value});
      if (strcasecmp(line.substr(0, colon).c_str(), "Content-Length") == 0) {
        content_length = std::stoul(value);
      }
    }
    pending_.erase(0, head_end + 4);
    while (pending_.size() < content_length) {
      if (!ReadMore()) return std::nullopt;
    }
    request.body = pending_.substr(0, content_length);
    pending_.erase(0, content_length);
    return request;
  }

  void Write(std::string_view data) {
    while (!data.empty()) {
      const ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (sent <= 0) return;
      data.remove_prefix(static_cast<std::size_t>(sent));
    }
  }

  // A complete response with a body; keep-alive unless `close` says otherwise.
  void Respond(int status, std::string_view body, bool close = false) {
    Write(fmt::format("HTTP/1.1 {} Test\r\nContent-Length: {}\r\n{}\r\n{}", status, body.size(),
                      close ? "Connection: close\r\n" : "", body));
  }

  // Waits until the client closes its end (or the server stops).
  void WaitForPeerClose() {
    while (ReadMore()) {
    }
  }

 private:
  bool ReadMore() {
    const Clock::time_point give_up = Clock::now() + 5s;
    while (!stopping_.load() && Clock::now() < give_up) {
      pollfd descriptor{fd_, POLLIN, 0};
      if (::poll(&descriptor, 1, 20) <= 0) continue;
      char buffer[4096];
      const ssize_t received = ::recv(fd_, buffer, sizeof buffer, 0);
      if (received <= 0) return false;
      pending_.append(buffer, static_cast<std::size_t>(received));
      return true;
    }
    return false;
  }

  int fd_;
  const std::atomic<bool>& stopping_;
  std::string pending_;
};

// A tiny HTTP/1.1 server on 127.0.0.1 and an ephemeral port. It accepts connections one after
// another on its own thread and runs the test's script on each; the script answers, drops or
// stalls as the test needs. Requests the script reads are recorded.
class TestServer {
 public:
  using Script = std::function<void(TestServer&, TestConnection&)>;

  explicit TestServer(Script script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int yes = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 16) != 0) {
      ADD_FAILURE() << "test server cannot listen";
    }
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stopping_.store(true);
    thread_.join();
    ::close(listener_);
  }

  std::string Url(std::string_view path_and_query) const {
    return fmt::format("http://127.0.0.1:{}{}", port_, path_and_query);
  }
  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_.load(); }

  // Reads the next request of `connection` and records it.
  std::optional<RawRequest> Next(TestConnection& connection) {
    std::optional<RawRequest> request = connection.ReadRequest();
    if (request) {
      std::lock_guard lock(mutex_);
      requests_.push_back(*request);
    }
    return request;
  }
  std::vector<RawRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  void AcceptLoop() {
    while (!stopping_.load()) {
      pollfd descriptor{listener_, POLLIN, 0};
      if (::poll(&descriptor, 1, 20) <= 0) continue;
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      accepted_.fetch_add(1);
      TestConnection connection(fd, stopping_);
      script_(*this, connection);
      ::close(fd);
    }
  }

  Script script_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  mutable std::mutex mutex_;
  std::vector<RawRequest> requests_;
  std::thread thread_;
};

// A port on 127.0.0.1 where nothing listens (bound, read, released).
std::uint16_t ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

using Answer = core::Result<ClientResponse>;

Task<void> Store(Task<Answer> task, std::optional<Answer>* out) {
  out->emplace(co_await std::move(task));
}

// Runs one client coroutine to its end, with a watchdog: a hang fails the test in 10 s.
Answer Await(asio::io_context& io, Task<Answer> task) {
  std::optional<Answer> answer;
  std::exception_ptr thrown;
  asio::co_spawn(io, Store(std::move(task), &answer), [&thrown](std::exception_ptr error) {
    thrown = error;
  });
  io.restart();
  io.run_for(10s);
  if (thrown) {
    try {
      std::rethrow_exception(thrown);
    } catch (const std::exception& error) {
      ADD_FAILURE() << "the client threw: " << error.what();
    }
    return core::Status::Internal("threw");
  }
  if (!answer) {
    ADD_FAILURE() << "watchdog: the request did not finish within 10 s";
    return core::Status::Internal("watchdog");
  }
  return std::move(*answer);
}

ClientRequest Get(std::string url) {
  ClientRequest request;
  request.url = std::move(url);
  request.timeout = 5s;
  return request;
}

TEST(HttpClient, PostArrivesExactlyAndTheResponseIsReturned) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (!self.Next(connection)) return;
    connection.Write(
        "HTTP/1.1 202 Accepted\r\nX-Reply: yes\r\nContent-Type: text/plain\r\n"
        "Content-Length: 2\r\n\r\nok");
    connection.WaitForPeerClose();
  });
  asio::io_context io;
  Client client(io.get_executor());

  ClientRequest request;
  request.method = "POST";
  request.url = server.Url("/v2/ep1/job-done/pod-1?gpu=H100&isStream=false");
  request.headers = {{"Content-Type", "application/json"},
                     {"X-Request-ID", "job-42"},
                     {"Authorization", "secret-key"}};
  request.body = R"({"output":{"x":1},"status":"COMPLETED"})";
  request.timeout = 5s;
  Answer answer = Await(io, client.Send(request));

  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 202);
  EXPECT_EQ(answer->header("x-reply"), "yes");
  EXPECT_EQ(answer->header("CONTENT-TYPE"), "text/plain");
  EXPECT_EQ(answer->header("missing"), "");
  EXPECT_EQ(answer->body, "ok");

  const std::vector<RawRequest> seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/v2/ep1/job-done/pod-1?gpu=H100&isStream=false");
  EXPECT_EQ(seen[0].header("Host"), fmt::format("127.0.0.1:{}", server.port()));
  EXPECT_EQ(seen[0].header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].header("X-Request-ID"), "job-42");
  EXPECT_EQ(seen[0].header("Authorization"), "secret-key");
  EXPECT_EQ(seen[0].header("Content-Length"), std::to_string(request.body.size()));
  EXPECT_THAT(seen[0].header("User-Agent"), HasSubstr("sluice/"));
  EXPECT_EQ(seen[0].body, request.body);
}

TEST(HttpClient, GetWithoutPathSendsSlash) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (!self.Next(connection)) return;
    connection.Respond(404, "nope");
    connection.WaitForPeerClose();
  });
  asio::io_context io;
  Client client(io.get_executor());
  Answer answer = Await(io, client.Send(Get(server.Url(""))));
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 404);  // an HTTP error is a response, not a failure
  EXPECT_EQ(answer->body, "nope");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].method, "GET");
  EXPECT_EQ(server.requests()[0].target, "/");
}

TEST(HttpClient, ConnectionRefusedIsAClearError) {
  asio::io_context io;
  Client client(io.get_executor());
  const std::uint16_t port = ClosedPort();
  Answer answer = Await(io, client.Send(Get(fmt::format("http://127.0.0.1:{}/x", port))));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(answer.status().message(), HasSubstr(fmt::format("127.0.0.1:{}", port)));
  EXPECT_THAT(answer.status().message(), HasSubstr("connecting"));
  EXPECT_THAT(answer.status().message(), HasSubstr("refused"));
}

TEST(HttpClient, AServerThatNeverAnswersTimesOut) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (!self.Next(connection)) return;
    connection.WaitForPeerClose();  // never answers
  });
  asio::io_context io;
  Client client(io.get_executor());
  ClientRequest request = Get(server.Url("/slow"));
  request.timeout = 200ms;
  const Clock::time_point start = Clock::now();
  Answer answer = Await(io, client.Send(request));
  const Clock::duration elapsed = Clock::now() - start;

  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(answer.status().message(), HasSubstr("timed out after 200 ms"));
  EXPECT_THAT(answer.status().message(), HasSubstr(fmt::format("127.0.0.1:{}", server.port())));
  EXPECT_GE(elapsed, 195ms);
  EXPECT_LT(elapsed, 1s);
}

TEST(HttpClient, AConnectionDroppedMidBodyIsAnError) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (!self.Next(connection)) return;
    connection.Write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    // returning closes the connection 90 bytes short
  });
  asio::io_context io;
  Client client(io.get_executor());
  Answer answer = Await(io, client.Send(Get(server.Url("/partial"))));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(answer.status().message(), HasSubstr("in the middle of the response"));
  EXPECT_THAT(answer.status().message(), HasSubstr(fmt::format("127.0.0.1:{}", server.port())));
  EXPECT_EQ(server.accepted(), 1);  // a partial answer is never retried as stale
}

TEST(HttpClient, AResponseOverTheLimitIsAnError) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (!self.Next(connection)) return;
    connection.Respond(200, std::string(4096, 'x'));
    connection.WaitForPeerClose();
  });
  asio::io_context io;
  ClientOptions options;
  options.max_response_bytes = 1024;
  Client client(io.get_executor(), options);
  Answer answer = Await(io, client.Send(Get(server.Url("/big"))));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kResourceExhausted);
  EXPECT_THAT(answer.status().message(), HasSubstr("over the limit of 1024 bytes"));
}

TEST(HttpClient, InvalidUrlsAreInvalidArgument) {
  asio::io_context io;
  Client client(io.get_executor());
  for (const std::string url :
       {"not a url", "http://", "/relative/path", "ftp://example.com/file", "ws://example.com/",
        "http://user:pw@example.com/"}) {
    Answer answer = Await(io, client.Send(Get(url)));
    ASSERT_FALSE(answer.ok()) << url;
    EXPECT_EQ(answer.status().code(), core::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(answer.status().message(), HasSubstr(url));
  }
  EXPECT_EQ(client.connections_opened(), 0u);
}

TEST(HttpClient, SequentialRequestsReuseOneConnection) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    while (auto request = self.Next(connection)) connection.Respond(200, request->target);
  });
  asio::io_context io;
  Client client(io.get_executor());
  Answer first = Await(io, client.Send(Get(server.Url("/one"))));
  Answer second = Await(io, client.Send(Get(server.Url("/two"))));
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(first->body, "/one");
  EXPECT_EQ(second->body, "/two");
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_EQ(client.idle_connections(), 1u);
  EXPECT_EQ(server.accepted(), 1);
}

TEST(HttpClient, ConnectionCloseIsNotPooled) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (auto request = self.Next(connection)) connection.Respond(200, "bye", /*close=*/true);
  });
  asio::io_context io;
  Client client(io.get_executor());
  Answer first = Await(io, client.Send(Get(server.Url("/a"))));
  Answer second = Await(io, client.Send(Get(server.Url("/b"))));
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(client.idle_connections(), 0u);
}

TEST(HttpClient, AStalePooledConnectionIsRetriedOnceOnAFreshOne) {
  // Answers with keep-alive, then closes anyway: the pooled connection is stale on reuse.
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (auto request = self.Next(connection)) connection.Respond(200, request->body);
  });
  asio::io_context io;
  Client client(io.get_executor());
  ClientRequest first_request = Get(server.Url("/result"));
  first_request.method = "POST";
  first_request.body = "first";
  Answer first = Await(io, client.Send(first_request));
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(client.idle_connections(), 1u);

  ClientRequest second_request = first_request;
  second_request.body = "second";
  Answer second = Await(io, client.Send(second_request));
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(second->body, "second");
  EXPECT_EQ(client.connections_opened(), 2u);
  EXPECT_EQ(server.accepted(), 2);
}

TEST(HttpClient, ConcurrentRequestsFromSeveralIoThreads) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    if (auto request = self.Next(connection)) connection.Respond(200, request->target, true);
  });
  asio::io_context io;
  Client client(io.get_executor());
  constexpr int kRequests = 8;
  std::vector<std::optional<Answer>> answers(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    asio::co_spawn(io, Store(client.Send(Get(server.Url(fmt::format("/{}", i)))), &answers[i]),
                   [](std::exception_ptr error) { EXPECT_FALSE(error) << "the client threw"; });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&io] { io.run_for(10s); });  // watchdog
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(answers[i].has_value()) << "request " << i << " did not finish";
    ASSERT_TRUE(answers[i]->ok()) << answers[i]->status().message();
    EXPECT_EQ((*answers[i])->body, fmt::format("/{}", i));
  }
  EXPECT_EQ(server.accepted(), kRequests);
}

// --- SendWithRetry against the test server ---

TEST(HttpClientRetry, RetriesServerErrorsWithTheBackoffDelays) {
  std::atomic<int> answered{0};
  TestServer server([&answered](TestServer& self, TestConnection& connection) {
    while (self.Next(connection)) {
      const int number = ++answered;
      connection.Respond(number < 3 ? 500 : 200, number < 3 ? "busy" : "done");
    }
  });
  asio::io_context io;
  Client client(io.get_executor());
  RetryOptions options;
  options.policy = {10ms, 1s, 2.0};
  options.max_attempts = 5;
  options.random = [] { return 0.5; };
  std::vector<Clock::duration> delays;
  std::vector<int> retried_statuses;
  options.on_retry = [&](int retry, Clock::duration delay, const Answer& retried) {
    EXPECT_EQ(retry, static_cast<int>(delays.size()));
    delays.push_back(delay);
    retried_statuses.push_back(retried.ok() ? retried->status : -1);
  };
  const Clock::time_point start = Clock::now();
  Answer answer = Await(io, SendWithRetry(client, Get(server.Url("/hook")), options));
  const Clock::duration elapsed = Clock::now() - start;

  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->body, "done");
  EXPECT_EQ(server.requests().size(), 3u);
  ASSERT_EQ(delays.size(), 2u);
  EXPECT_EQ(delays[0], options.policy.Delay(0, 0.5));
  EXPECT_EQ(delays[1], options.policy.Delay(1, 0.5));
  EXPECT_EQ(delays[0], 5ms);
  EXPECT_EQ(delays[1], 10ms);
  EXPECT_EQ(retried_statuses, (std::vector<int>{500, 500}));
  EXPECT_GE(elapsed, 15ms);
}

TEST(HttpClientRetry, ABadRequestIsNotRetried) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    while (self.Next(connection)) connection.Respond(400, "bad");
  });
  asio::io_context io;
  Client client(io.get_executor());
  RetryOptions options;
  options.policy = {5ms, 20ms, 2.0};
  options.max_attempts = 5;
  int retries = 0;
  options.on_retry = [&](int, Clock::duration, const Answer&) { ++retries; };
  Answer answer = Await(io, SendWithRetry(client, Get(server.Url("/hook")), options));
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 400);
  EXPECT_EQ(retries, 0);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(HttpClientRetry, TheDeadlineStopsRetrying) {
  TestServer server([](TestServer& self, TestConnection& connection) {
    while (self.Next(connection)) connection.Respond(503, "down");
  });
  asio::io_context io;
  Client client(io.get_executor());
  RetryOptions options;
  options.policy = {20ms, 20ms, 1.0};
  options.max_attempts = 0;  // only the deadline stops it
  options.random = [] { return 1.0; };
  const Clock::time_point start = Clock::now();
  options.deadline = start + 100ms;
  Answer answer = Await(io, SendWithRetry(client, Get(server.Url("/hook")), options));
  const Clock::duration elapsed = Clock::now() - start;
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 503);  // the last answer
  EXPECT_LE(elapsed, 150ms);  // it never waits past the deadline (50 ms for a late timer)
  const std::size_t attempts = server.requests().size();
  EXPECT_GE(attempts, 2u);
  EXPECT_LE(attempts, 5u);  // 20 ms apart within 100 ms
}

TEST(HttpClientRetry, NetworkErrorsAreRetriedUntilTheAttemptsAreUsedUp) {
  asio::io_context io;
  Client client(io.get_executor());
  RetryOptions options;
  options.policy = {1ms, 2ms, 2.0};
  options.max_attempts = 3;
  int retries = 0;
  options.on_retry = [&](int, Clock::duration, const Answer&) { ++retries; };
  const std::uint16_t port = ClosedPort();
  Answer answer = Await(
      io, SendWithRetry(client, Get(fmt::format("http://127.0.0.1:{}/", port)), options));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kUnavailable);
  EXPECT_EQ(retries, 2);
}

TEST(HttpClientRetry, InvalidUrlsAreNotRetried) {
  asio::io_context io;
  Client client(io.get_executor());
  RetryOptions options;
  int retries = 0;
  options.on_retry = [&](int, Clock::duration, const Answer&) { ++retries; };
  Answer answer = Await(io, SendWithRetry(client, Get("gopher://example.com/"), options));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), core::StatusCode::kInvalidArgument);
  EXPECT_EQ(retries, 0);
}

}  // namespace
}  // namespace sluice::http
