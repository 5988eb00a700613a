#include "api/webhook.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "http/server.hpp"

namespace sluice::api {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The io_context threads stop by themselves after this, whatever happens; every wait of the test
// thread is bounded too, so a hang fails the test instead of the whole run.
constexpr auto kWatchdog = 10s;
// A stalling listener answers after this even if the test never releases it.
constexpr auto kStallLimit = 5s;

// A port on 127.0.0.1 where nothing listens (bound by an acceptor, then released).
std::uint16_t ClosedPort() {
  asio::io_context io;
  const asio::ip::tcp::endpoint any_port(asio::ip::make_address("127.0.0.1"), 0);
  asio::ip::tcp::acceptor acceptor(io, any_port);
  return acceptor.local_endpoint().port();
}

Task<void> Reply(http::ResponseWriter& writer, unsigned status) {
  http::Response response;
  response.status = status;
  // A 204 must not carry a body (Beast refuses to write one).
  if (status != 204) response.body = status < 300 ? R"({"ok":true})" : R"({"error":"test"})";
  co_await writer.Send(std::move(response));
}

// Webhook options for tests: tiny waits between attempts, so retries take milliseconds.
WebhookOptions FastOptions() {
  WebhookOptions options;
  options.backoff = http::BackoffPolicy{1ms, 5ms, 2.0};
  options.attempt_timeout = 2s;
  return options;
}

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Two threads, so that deliveries, their client and the listener really run concurrently.
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(kWatchdog); });
  }

  void TearDown() override {
    release_.store(true);
    if (listener_) {
      auto drained = std::make_shared<std::promise<bool>>();
      auto result = drained->get_future();
      asio::co_spawn(io_, listener_->Drain(2s), [drained](std::exception_ptr failure, bool ok) {
        drained->set_value(!failure && ok);
      });
      EXPECT_EQ(result.wait_for(5s), std::future_status::ready) << "the listener did not drain";
    }
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) thread.join();
    sender_.reset();
    listener_.reset();
  }

  // Starts a listener on an ephemeral port that records each request, then lets `answer` reply.
  void Listen(http::RequestHandler answer) {
    auto handler = [this, answer = std::move(answer)](http::Request& request,
                                                      http::ResponseWriter& writer) -> Task<void> {
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      co_await answer(request, writer);
    };
    listener_ = std::make_unique<http::Server>(io_, std::move(handler));
    const core::Status started = listener_->Start();
    ASSERT_TRUE(started.ok()) << started.message();
  }

  // A listener that answers every request with `status`.
  void ListenAnswering(unsigned status) {
    Listen([status](http::Request&, http::ResponseWriter& writer) -> Task<void> {
      co_await Reply(writer, status);
    });
  }

  // A listener that holds every request until release_ is set, then answers 200.
  void ListenStalling() {
    Listen([this](http::Request&, http::ResponseWriter& writer) -> Task<void> {
      const Clock::time_point give_up = Clock::now() + kStallLimit;
      while (!release_.load() && Clock::now() < give_up) co_await sleep_for(5ms);
      co_await Reply(writer, 200);
    });
  }

  std::string Url(std::string_view path) const {
    return fmt::format("http://127.0.0.1:{}{}", listener_->port(), path);
  }

  WebhookSender& MakeSender(WebhookOptions options) {
    sender_ = std::make_unique<WebhookSender>(io_.get_executor(), std::move(options));
    return *sender_;
  }

  // Runs sender.Drain(timeout) on the io_context; nullopt (and a failure) if it never completes.
  std::optional<bool> Drain(WebhookSender& sender, Clock::duration timeout) {
    auto drained = std::make_shared<std::promise<bool>>();
    auto result = drained->get_future();
    asio::co_spawn(io_, sender.Drain(timeout), [drained](std::exception_ptr failure, bool ok) {
      if (failure) {
        drained->set_exception(failure);
      } else {
        drained->set_value(ok);
      }
    });
    if (result.wait_for(timeout + 5s) != std::future_status::ready) {
      ADD_FAILURE() << "watchdog: Drain did not complete";
      return std::nullopt;
    }
    return result.get();
  }

  // Waits until the listener has seen `count` requests; false after 5 s.
  bool WaitForRequests(std::size_t count) {
    const Clock::time_point give_up = Clock::now() + 5s;
    while (Clock::now() < give_up) {
      if (requests().size() >= count) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  std::vector<http::Request> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  std::unique_ptr<http::Server> listener_;
  std::unique_ptr<WebhookSender> sender_;
  std::atomic<bool> release_{false};
  mutable std::mutex mutex_;
  std::vector<http::Request> requests_;  // guarded by mutex_
};

TEST_F(WebhookTest, PostsTheBodyWithJsonContentType) {
  ListenAnswering(200);
  WebhookSender& sender = MakeSender(FastOptions());
  const std::string body =
      R"({"id":"job-1","status":"COMPLETED","delayTime":3,"executionTime":12,)"
      R"("output":{"text":"héllo \"x\"\n"}})";
  sender.Send("job-1", Url("/hooks/done?token=abc&n=1"), body);
  ASSERT_EQ(Drain(sender, 5s), true);

  EXPECT_EQ(sender.delivered(), 1u);
  EXPECT_EQ(sender.failed(), 0u);
  EXPECT_EQ(sender.pending(), 0u);
  const std::vector<http::Request> seen = requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/hooks/done?token=abc&n=1");
  EXPECT_EQ(seen[0].header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].header("Content-Length"), std::to_string(body.size()));
  EXPECT_EQ(seen[0].header("Host"), fmt::format("127.0.0.1:{}", listener_->port()));
  EXPECT_EQ(seen[0].body, body);
}

TEST_F(WebhookTest, RetriesServerErrorsThenDelivers) {
  auto answered = std::make_shared<std::atomic<int>>(0);
  Listen([answered](http::Request&, http::ResponseWriter& writer) -> Task<void> {
    const int number = ++*answered;
    co_await Reply(writer, number <= 2 ? 500 : 200);
  });
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-2", Url("/hook"), R"({"id":"job-2"})");
  ASSERT_EQ(Drain(sender, 5s), true);

  EXPECT_EQ(requests().size(), 3u);
  for (const http::Request& request : requests()) EXPECT_EQ(request.body, R"({"id":"job-2"})");
  EXPECT_EQ(sender.delivered(), 1u);
  EXPECT_EQ(sender.failed(), 0u);
}

TEST_F(WebhookTest, TooManyRequestsIsRetried) {
  auto answered = std::make_shared<std::atomic<int>>(0);
  Listen([answered](http::Request&, http::ResponseWriter& writer) -> Task<void> {
    const int number = ++*answered;
    co_await Reply(writer, number == 1 ? 429 : 204);
  });
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-3", Url("/hook"), "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(requests().size(), 2u);
  EXPECT_EQ(sender.delivered(), 1u);  // every 2xx is a delivery
}

TEST_F(WebhookTest, AClientErrorIsNotRetried) {
  ListenAnswering(400);
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-4", Url("/hook"), "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(requests().size(), 1u);
  EXPECT_EQ(sender.delivered(), 0u);
  EXPECT_EQ(sender.failed(), 1u);
  EXPECT_EQ(sender.dropped(), 0u);
}

TEST_F(WebhookTest, ServerErrorsUseUpTheAttempts) {
  ListenAnswering(503);
  WebhookOptions options = FastOptions();
  options.max_attempts = 3;
  WebhookSender& sender = MakeSender(options);
  sender.Send("job-5", Url("/hook"), "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(requests().size(), 3u);
  EXPECT_EQ(sender.failed(), 1u);
}

TEST_F(WebhookTest, AnUnreachableUrlFailsAfterMaxAttempts) {
  WebhookOptions options = FastOptions();
  options.max_attempts = 4;
  // SendWithRetry draws one random number per wait, so the draws count the retries: a refused
  // connection leaves no trace a listener could count.
  auto draws = std::make_shared<std::atomic<int>>(0);
  options.random = [draws] {
    ++*draws;
    return 1.0;
  };
  WebhookSender& sender = MakeSender(options);
  sender.Send("job-6", fmt::format("http://127.0.0.1:{}/hook", ClosedPort()), "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(draws->load(), 3);  // 4 attempts, 3 waits between them
  EXPECT_EQ(sender.delivered(), 0u);
  EXPECT_EQ(sender.failed(), 1u);
}

TEST_F(WebhookTest, AnInvalidUrlFailsAtOnce) {
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-7", "ftp://example.com/hook", "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(sender.failed(), 1u);
}

TEST_F(WebhookTest, DrainWithNothingInFlightIsTrueAtOnce) {
  WebhookSender& sender = MakeSender(FastOptions());
  const Clock::time_point start = Clock::now();
  EXPECT_EQ(Drain(sender, 5s), true);
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(WebhookTest, DrainReturnsTrueOnceAllEnded) {
  ListenAnswering(200);
  WebhookSender& sender = MakeSender(FastOptions());
  constexpr int kDeliveries = 20;
  for (int i = 0; i < kDeliveries; ++i) {
    sender.Send(fmt::format("job-{}", i), Url(fmt::format("/hook/{}", i)), "{}");
  }
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(sender.pending(), 0u);
  EXPECT_EQ(sender.delivered(), static_cast<std::uint64_t>(kDeliveries));
  EXPECT_EQ(requests().size(), static_cast<std::size_t>(kDeliveries));
}

TEST_F(WebhookTest, DrainReturnsFalseAtItsTimeoutWhileAListenerStalls) {
  ListenStalling();
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-8", Url("/hook"), "{}");
  ASSERT_TRUE(WaitForRequests(1));

  const Clock::time_point start = Clock::now();
  EXPECT_EQ(Drain(sender, 100ms), false);
  const Clock::duration waited = Clock::now() - start;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(sender.pending(), 1u);  // the delivery goes on

  release_.store(true);
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(sender.delivered(), 1u);
}

TEST_F(WebhookTest, ADeliveryRunsUntilItsOwnTimeoutAfterDrainGaveUp) {
  ListenStalling();
  WebhookOptions options = FastOptions();
  options.max_attempts = 1;
  options.attempt_timeout = 300ms;
  WebhookSender& sender = MakeSender(options);
  sender.Send("job-9", Url("/hook"), "{}");
  EXPECT_EQ(Drain(sender, 50ms), false);
  ASSERT_EQ(Drain(sender, 5s), true);  // the attempt's timeout ends it, not the listener
  EXPECT_EQ(sender.delivered(), 0u);
  EXPECT_EQ(sender.failed(), 1u);
}

TEST_F(WebhookTest, SendsBeyondMaxPendingAreDropped) {
  ListenStalling();
  WebhookOptions options = FastOptions();
  options.max_pending = 2;
  WebhookSender& sender = MakeSender(options);
  sender.Send("job-a", Url("/hook/a"), "{}");
  sender.Send("job-b", Url("/hook/b"), "{}");
  sender.Send("job-c", Url("/hook/c"), "{}");
  // Counted at once, before any network activity.
  EXPECT_EQ(sender.pending(), 2u);
  EXPECT_EQ(sender.dropped(), 1u);
  EXPECT_EQ(sender.failed(), 1u);

  release_.store(true);
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(sender.delivered(), 2u);
  EXPECT_EQ(sender.failed(), 1u);
  const std::vector<http::Request> seen = requests();
  ASSERT_EQ(seen.size(), 2u);
  for (const http::Request& request : seen) EXPECT_NE(request.target, "/hook/c");

  // Room again once they ended.
  sender.Send("job-d", Url("/hook/d"), "{}");
  ASSERT_EQ(Drain(sender, 5s), true);
  EXPECT_EQ(sender.delivered(), 3u);
}

TEST_F(WebhookTest, TheSenderMayBeDestroyedWhileDeliveriesRun) {
  auto answered = std::make_shared<std::promise<bool>>();
  auto sent = answered->get_future();
  Listen([answered](http::Request&, http::ResponseWriter& writer) -> Task<void> {
    co_await sleep_for(50ms);
    http::Response response;
    response.body = "{}";
    const bool sent = co_await writer.Send(std::move(response));
    answered->set_value(sent);
  });
  WebhookSender& sender = MakeSender(FastOptions());
  sender.Send("job-e", Url("/hook"), "{}");
  // The task owns what it needs: it may outlive the sender, which goes before either runs.
  Task<bool> drain = sender.Drain(5s);
  sender_.reset();

  auto drained = std::make_shared<std::promise<bool>>();
  auto result = drained->get_future();
  asio::co_spawn(io_, std::move(drain), [drained](std::exception_ptr failure, bool ok) {
    drained->set_value(!failure && ok);
  });
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(result.get());
  ASSERT_EQ(sent.wait_for(1s), std::future_status::ready);
  EXPECT_TRUE(sent.get());
}

}  // namespace
}  // namespace sluice::api
