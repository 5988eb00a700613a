// JobApi over a backend that cannot answer (as a Redis backend whose Redis is down will): every
// route that needs the backend answers 503 with a JSON error naming the problem, and /health and
// /metrics give Counts a deadline. In-process: an http::Server on 127.0.0.1 and a blocking socket.
#include "api/job_api.hpp"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace sluice::api {
namespace {
namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Every call fails as a backend whose store is unreachable does; Counts records its deadline.
class UnreachableBackend final : public core::JobBackend {
 public:
  static core::Status Down() { return core::Status::Unavailable("Redis at 127.0.0.1:1 is unreachable"); }

  Task<core::Result<std::string>> Submit(core::NewJob, std::optional<std::string> key) override {
    if (key) {
      std::lock_guard lock(mutex_);
      last_key_ = *key;
    }
    co_return Down();
  }
  Task<core::Result<core::JobView>> Find(std::string_view) override { co_return Down(); }
  Task<core::Result<core::JobStatus>> Cancel(std::string_view) override { co_return Down(); }
  Task<core::Status> Retry(std::string_view) override { co_return Down(); }
  Task<core::Result<std::size_t>> Purge() override { co_return Down(); }
  Task<core::Result<core::StreamRead>> ReadChunks(std::string_view, std::optional<std::size_t>) override {
    co_return Down();
  }
  Task<core::Result<std::uint64_t>> WaitForChange(std::string_view, std::uint64_t, Clock::time_point) override {
    co_return Down();
  }
  Task<core::Result<core::JobView>> WaitForEnd(std::string_view, Clock::time_point) override { co_return Down(); }
  Task<core::Result<core::JobCounts>> Counts(Clock::time_point deadline) override {
    counts_wait = deadline - Clock::now();
    co_return Down();
  }

  std::string last_key() const {
    std::lock_guard lock(mutex_);
    return last_key_;
  }
  std::atomic<Clock::duration> counts_wait{Clock::duration::zero()};

 private:
  mutable std::mutex mutex_;
  std::string last_key_;
};

// One request on a fresh connection (Connection: close); the raw response.
std::string Exchange(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return response;
}

std::string Request(std::string_view method, std::string_view target, std::string_view headers = "",
                    std::string_view body = "") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" +
         std::string(headers) + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

class JobApiBackendDown : public ::testing::Test {
 protected:
  void SetUp() override {
    JobApiOptions options;
    options.counts_deadline = 1500ms;
    api_ = std::make_unique<JobApi>(backend_, webhooks_, std::move(options), WorkerGauges{});
    http::ServerOptions server_options;
    server_options.host = "127.0.0.1";
    server_options.port = 0;
    server_ = std::make_unique<http::Server>(
        io_, [this](http::Request& request, http::ResponseWriter& writer) { return api_->Handle(request, writer); },
        std::move(server_options));
    const core::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.message();
    thread_ = std::thread([this] { io_.run_for(30s); });
  }
  void TearDown() override {
    if (server_) {
      server_->Stop();
      auto drained = std::make_shared<std::promise<bool>>();
      std::future<bool> done = drained->get_future();
      asio::co_spawn(io_, server_->Drain(2s),
                     [drained](std::exception_ptr failure, bool ok) { drained->set_value(!failure && ok); });
      EXPECT_EQ(done.wait_for(5s), std::future_status::ready) << "the server did not drain";
    }
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // Expects a 503 whose body is {"error": "...Redis...unreachable"}.
  void Expect503(const std::string& response, std::string_view what) {
    EXPECT_TRUE(response.starts_with("HTTP/1.1 503")) << what << "\n" << response;
    const std::size_t blank = response.find("\r\n\r\n");
    ASSERT_NE(blank, std::string::npos) << what << "\n" << response;
    boost::system::error_code ec;
    const boost::json::value body = boost::json::parse(response.substr(blank + 4), ec);
    ASSERT_FALSE(ec) << what << "\n" << response;
    ASSERT_TRUE(body.is_object() && body.as_object().size() == 1 && body.as_object().contains("error"))
        << what << "\n" << response;
    EXPECT_EQ(body.at("error").as_string(), "Redis at 127.0.0.1:1 is unreachable") << what;
  }

  std::uint16_t port() const { return server_->port(); }

  asio::io_context io_;
  // Without it the I/O thread may leave as soon as Stop() closes the acceptor, before Drain is spawned.
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  UnreachableBackend backend_;
  WebhookSender webhooks_{io_.get_executor()};
  std::unique_ptr<JobApi> api_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(JobApiBackendDown, EveryRouteThatNeedsTheBackendAnswers503NamingTheProblem) {
  Expect503(Exchange(port(), Request("POST", "/run", "X-Idempotency-Key: k1\r\n", R"({"input":1})")), "/run");
  EXPECT_EQ(backend_.last_key(), "k1") << "the key reaches the backend";
  Expect503(Exchange(port(), Request("POST", "/runsync", "", R"({"input":1})")), "/runsync");
  Expect503(Exchange(port(), Request("GET", "/status/some-id")), "/status");
  Expect503(Exchange(port(), Request("POST", "/cancel/some-id")), "/cancel");
  Expect503(Exchange(port(), Request("POST", "/retry/some-id")), "/retry");
  Expect503(Exchange(port(), Request("POST", "/purge-queue")), "/purge-queue");
  Expect503(Exchange(port(), Request("GET", "/stream/some-id")), "/stream");
  Expect503(Exchange(port(), Request("GET", "/stream/some-id", "Accept: text/event-stream\r\n")), "/stream (SSE)");
  Expect503(Exchange(port(), Request("GET", "/health")), "/health");
  Expect503(Exchange(port(), Request("GET", "/metrics")), "/metrics");
}

TEST_F(JobApiBackendDown, HealthGivesTheBackendItsDeadline) {
  Expect503(Exchange(port(), Request("GET", "/health")), "/health");
  const Clock::duration wait = backend_.counts_wait.load();
  EXPECT_GT(wait, 1s) << "JobApiOptions::counts_deadline is 1.5 s";
  EXPECT_LE(wait, 1500ms);
}

TEST_F(JobApiBackendDown, ABadRequestIsStill400WithoutAskingTheBackend) {
  const std::string response = Exchange(port(), Request("POST", "/run", "", R"({"nothing":1})"));
  EXPECT_TRUE(response.starts_with("HTTP/1.1 400")) << response;
  const std::string long_key = Exchange(
      port(), Request("POST", "/run", "X-Idempotency-Key: " + std::string(300, 'k') + "\r\n", R"({"input":1})"));
  EXPECT_TRUE(long_key.starts_with("HTTP/1.1 400")) << long_key;
  EXPECT_TRUE(backend_.last_key().empty());
}

}  // namespace
}  // namespace sluice::api
