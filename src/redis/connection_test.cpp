// Tests of redis::Connection against a real redis-server of the test's own (tests/redis_server.hpp).
// Every wait is bounded: Await() aborts the binary with a message if a command never completes,
// so a hang is a failed test, never a stuck ctest.
#include "redis/connection.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "redis_server.hpp"

namespace sluice::redis {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace std::string_literals;
using Clock = std::chrono::steady_clock;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Answer = core::Result<Reply>;

constexpr auto kWatchdog = 20s;

// Runs `task` to completion on `io` and hands its result back through a future.
template <class T>
std::future<T> Spawn(asio::io_context& io, Task<T> task) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
  auto body = [](Task<T> inner, std::shared_ptr<std::promise<T>> out) -> Task<void> {
    out->set_value(co_await std::move(inner));
  };
  asio::co_spawn(io, body(std::move(task), promise), [promise](std::exception_ptr error) {
    if (error) promise->set_exception(error);
  });
  return future;
}

// The future's value; a future still pending after kWatchdog aborts the test binary.
template <class T>
T Get(std::future<T>& future, const char* what = "a Redis command") {
  if (future.wait_for(kWatchdog) != std::future_status::ready) {
    std::fprintf(stderr, "watchdog: %s did not complete within %lld s\n", what,
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(kWatchdog).count()));
    std::abort();
  }
  return future.get();
}

class RedisConnection : public ::testing::Test {
 protected:
  RedisConnection() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(kWatchdog * 2); });
  }

  ~RedisConnection() override {
    work_.reset();
    for (std::thread& thread : threads_) thread.join();
  }

  void SetUp() override { ASSERT_TRUE(server_.ok()) << server_.error(); }

  std::unique_ptr<Connection> Connect(ConnectionOptions options = {}, int db = 0) {
    auto endpoint = ParseUrl(server_.Url(db));
    EXPECT_TRUE(endpoint.ok()) << endpoint.status().message();
    return std::make_unique<Connection>(io_.get_executor(), *endpoint, std::move(options));
  }

  Answer Do(Connection& connection, std::vector<std::string> argv) {
    auto future = Spawn(io_, connection.Command(std::move(argv)));
    return Get(future);
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  testing::RedisServer server_;
};

TEST_F(RedisConnection, SetGetRoundTrip) {
  auto connection = Connect();
  EXPECT_EQ(Do(*connection, {"SET", "greeting", "hello"}).value(), Reply::Status("OK"));
  EXPECT_EQ(Do(*connection, {"GET", "greeting"}).value(), Reply::String("hello"));
  EXPECT_TRUE(Do(*connection, {"GET", "missing"})->is_nil());
  // An error reply is a reply, not a failed Result.
  const Answer error = Do(*connection, {"INCR", "greeting"});
  ASSERT_TRUE(error.ok()) << error.status().message();
  EXPECT_TRUE(error->is_error());
  EXPECT_THAT(error->str(), HasSubstr("not an integer"));
  EXPECT_EQ(connection->stats().connects, 1u);
}

// A server that answers it cannot serve yet (here BUSY: another client's script is past the time
// limit) did not run the command: that is kUnavailable, which the callers retry, not an answer.
TEST_F(RedisConnection, AServerBusyWithAScriptIsUnavailableNotAnAnswer) {
  auto scripting = Connect();
  auto client = Connect();
  ASSERT_TRUE(Do(*scripting, {"CONFIG", "SET", "lua-time-limit", "50"}).ok());
  ASSERT_TRUE(Do(*client, {"PING"}).ok());
  // Spins for 1.5 s of the server's clock, far past the 50 ms after which others are told BUSY.
  const std::string spin = R"lua(
    local function now() local t = redis.call('TIME') return t[1] * 1e6 + t[2] end
    local start = now()
    while now() - start < 1500000 do end
    return 1)lua";
  auto running = Spawn(io_, scripting->Command({"EVAL", spin, "0"}));
  std::this_thread::sleep_for(300ms);
  const Answer busy = Do(*client, {"GET", "key"});
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(busy.status().message(), HasSubstr("BUSY"));
  EXPECT_EQ(Get(running, "the spinning script").value(), Reply::Integer(1));
  EXPECT_TRUE(Do(*client, {"GET", "key"})->is_nil());  // the same connection serves again
  EXPECT_EQ(client->stats().drops, 0u);
}

TEST_F(RedisConnection, ValuesAndKeysAreBinarySafe) {
  auto connection = Connect();
  const std::string key = "key\0with\r\nbytes"s;
  std::string value = "a\0b\r\n$3\r\n\xff"s;
  value += std::string(1 << 20, '\0');  // and large: 1 MiB of NULs
  EXPECT_EQ(Do(*connection, {"SET", key, value}).value(), Reply::Status("OK"));
  const Answer got = Do(*connection, {"GET", key});
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_TRUE(got->is_string());
  EXPECT_EQ(got->str().size(), value.size());
  EXPECT_TRUE(got->str() == value);
  EXPECT_EQ(Do(*connection, {"STRLEN", key}).value(), Reply::Integer(static_cast<std::int64_t>(value.size())));
}

// 4 threads, each with its own io_context and 25 coroutines, share one connection: 10,000 INCRs
// in flight together, every one answered once, in the server's order.
TEST_F(RedisConnection, PipelinedIncrementsFromFourThreads) {
  auto connection = Connect();
  constexpr int kThreads = 4;
  constexpr int kCoroutines = 25;
  constexpr int kEach = 100;
  std::mutex mutex;
  std::vector<std::int64_t> values;
  std::vector<std::string> failures;
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&] {
      asio::io_context local;
      for (int c = 0; c < kCoroutines; ++c) {
        asio::co_spawn(
            local,
            [](Connection& shared, std::mutex& guard, std::vector<std::int64_t>& out,
               std::vector<std::string>& errors) -> Task<void> {
              for (int i = 0; i < kEach; ++i) {
                std::vector<std::string> argv{"INCR", "counter"};  // g++ 12: no braces in co_await
                Answer answer = co_await shared.Command(std::move(argv));
                std::lock_guard lock(guard);
                if (answer.ok() && answer->is_integer()) {
                  out.push_back(answer->integer());
                } else {
                  errors.push_back(answer.ok() ? answer->Describe() : answer.status().message());
                }
              }
            }(*connection, mutex, values, failures),
            asio::detached);
      }
      local.run_for(kWatchdog);
    });
  }
  for (std::thread& caller : callers) caller.join();
  ASSERT_TRUE(failures.empty()) << failures.front();
  ASSERT_EQ(values.size(), 10'000u);
  std::sort(values.begin(), values.end());
  for (std::size_t i = 0; i < values.size(); ++i) ASSERT_EQ(values[i], static_cast<std::int64_t>(i + 1));
  EXPECT_EQ(Do(*connection, {"GET", "counter"}).value(), Reply::String("10000"));
  EXPECT_EQ(connection->stats().connects, 1u);
}

// The job queue's shape (redis-streams.md): a group, an entry, a group read, an ack.
TEST_F(RedisConnection, StreamRoundTripOverResp2) {
  auto connection = Connect();
  EXPECT_EQ(Do(*connection, {"XGROUP", "CREATE", "jobs:q", "workers", "$", "MKSTREAM"}).value(),
            Reply::Status("OK"));
  const Answer again = Do(*connection, {"XGROUP", "CREATE", "jobs:q", "workers", "$", "MKSTREAM"});
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->is_error());
  EXPECT_THAT(again->str(), HasSubstr("BUSYGROUP"));

  const Answer added = Do(*connection, {"XADD", "jobs:q", "*", "id", "job-1", "payload", R"({"x":1})"});
  ASSERT_TRUE(added.ok() && added->is_string()) << (added.ok() ? added->Describe() : added.status().message());
  const std::string entry_id = added->str();

  const Answer read =
      Do(*connection, {"XREADGROUP", "GROUP", "workers", "w1", "COUNT", "10", "STREAMS", "jobs:q", ">"});
  ASSERT_TRUE(read.ok()) << read.status().message();
  // [[stream, [[entry id, [field, value, ...]]]]]
  ASSERT_TRUE(read->is_array()) << read->Describe();
  ASSERT_EQ(read->size(), 1u);
  const Reply& stream = (*read)[0];
  EXPECT_EQ(stream[0].str(), "jobs:q");
  ASSERT_EQ(stream[1].size(), 1u);
  const Reply& entry = stream[1][0];
  EXPECT_EQ(entry[0].str(), entry_id);
  EXPECT_EQ(entry[1], Reply::Array({Reply::String("id"), Reply::String("job-1"), Reply::String("payload"),
                                    Reply::String(R"({"x":1})")}));

  // Nothing new for this group; the entry is pending until acknowledged.
  EXPECT_TRUE(Do(*connection, {"XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "jobs:q", ">"})->is_nil());
  EXPECT_EQ(Do(*connection, {"XACK", "jobs:q", "workers", entry_id}).value(), Reply::Integer(1));
  EXPECT_EQ(Do(*connection, {"XPENDING", "jobs:q", "workers"}).value()[0], Reply::Integer(0));
}

TEST_F(RedisConnection, AuthAndSelectOnConnect) {
  auto admin = Connect();
  ASSERT_EQ(Do(*admin, {"CONFIG", "SET", "requirepass", "s3cr@t"}).value(), Reply::Status("OK"));

  auto endpoint = ParseUrl("redis://:s3cr%40t@127.0.0.1:" + std::to_string(server_.port()) + "/2");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
  Connection authed(io_.get_executor(), *endpoint);
  EXPECT_EQ(Do(authed, {"SET", "where", "db2"}).value(), Reply::Status("OK"));
  EXPECT_EQ(Do(authed, {"SELECT", "0"}).value(), Reply::Status("OK"));
  EXPECT_TRUE(Do(authed, {"GET", "where"})->is_nil());  // it went to db 2
  EXPECT_EQ(Do(authed, {"SELECT", "2"}).value(), Reply::Status("OK"));
  EXPECT_EQ(Do(authed, {"GET", "where"}).value(), Reply::String("db2"));

  endpoint->password = "wrong";
  ConnectionOptions options;
  options.reconnect.initial = 10ms;
  Connection rejected(io_.get_executor(), *endpoint, options);
  const Answer denied = Do(rejected, {"PING"});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(denied.status().message(), HasSubstr("AUTH rejected"));
  EXPECT_THAT(denied.status().message(), ::testing::Not(HasSubstr("wrong")));

  EXPECT_EQ(Do(authed, {"CONFIG", "SET", "requirepass", ""}).value(), Reply::Status("OK"));
}

// DEBUG SLEEP holds the server; the command's deadline drops the connection, failing what was
// pipelined behind it too, and the next command reconnects.
TEST_F(RedisConnection, CommandTimeoutDropsTheConnectionAndTheNextCommandReconnects) {
  auto connection = Connect();
  ASSERT_EQ(Do(*connection, {"PING"}).value(), Reply::Status("PONG"));
  const Clock::time_point start = Clock::now();
  auto sleeping = Spawn(io_, connection->Command({"DEBUG", "SLEEP", "1"}, 200ms));
  std::this_thread::sleep_for(50ms);
  auto behind = Spawn(io_, connection->Command({"PING"}));  // 10 s of its own, but queued behind
  const Answer slept = Get(sleeping);
  const Answer pinged = Get(behind);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(slept.ok());
  EXPECT_EQ(slept.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(slept.status().message(),
              AllOf(HasSubstr("redis 127.0.0.1:"), HasSubstr("DEBUG timed out after 200 ms")));
  ASSERT_FALSE(pinged.ok());
  EXPECT_THAT(pinged.status().message(), HasSubstr("DEBUG timed out after 200 ms"));
  EXPECT_LT(elapsed, 800ms);

  // The server still sleeps; the new connection's PING is answered once it wakes.
  EXPECT_EQ(Do(*connection, {"PING"}).value(), Reply::Status("PONG"));
  EXPECT_EQ(connection->stats().drops, 1u);
  EXPECT_EQ(connection->stats().connects, 2u);
  EXPECT_EQ(connection->stats().connect_failures, 0u);
}

TEST_F(RedisConnection, ServerStoppedFailsCommandsAndRestartedServesThemAgain) {
  ConnectionOptions options;
  options.reconnect.initial = 20ms;
  options.reconnect.max = 100ms;
  options.command_timeout = 2s;
  auto connection = Connect(options);
  ASSERT_EQ(Do(*connection, {"SET", "kept", "yes"}).value(), Reply::Status("OK"));

  ASSERT_TRUE(server_.Stop());
  const Clock::time_point stopped = Clock::now();
  for (int i = 0; i < 3; ++i) {
    const Answer answer = Do(*connection, {"GET", "kept"});
    ASSERT_FALSE(answer.ok()) << answer->Describe();
    EXPECT_EQ(answer.status().code(), core::StatusCode::kUnavailable);
    EXPECT_THAT(answer.status().message(), HasSubstr("redis 127.0.0.1:" + std::to_string(server_.port())));
  }
  EXPECT_LT(Clock::now() - stopped, 1s);  // errors, not waits

  ASSERT_TRUE(server_.Restart()) << server_.error();
  std::optional<Answer> answer;
  const Clock::time_point deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    answer = Do(*connection, {"GET", "kept"});
    if (answer->ok()) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(answer && answer->ok()) << answer->status().message();
  EXPECT_EQ(answer->value(), Reply::String("yes"));  // appendonly: the data survived the restart
  EXPECT_GE(connection->stats().connect_failures, 1u);
  EXPECT_EQ(connection->stats().connects, 2u);
}

TEST_F(RedisConnection, ClosedPortIsAClearErrorQuicklyAndBacksOff) {
  const std::uint16_t port = testing::PickFreePort();
  ASSERT_NE(port, 0);
  Endpoint endpoint;
  endpoint.host = "127.0.0.1";
  endpoint.port = port;
  ConnectionOptions options;
  options.reconnect.initial = 2s;
  options.random = [] { return 1.0; };  // no jitter: the next attempt is 2 s after the failure
  Connection connection(io_.get_executor(), endpoint, options);

  const Clock::time_point start = Clock::now();
  const Answer refused = Do(connection, {"PING"});
  EXPECT_LT(Clock::now() - start, 1s);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(),
              AllOf(HasSubstr("redis 127.0.0.1:" + std::to_string(port)), HasSubstr("refused")));

  // Within the backoff a command that cannot wait for the next attempt fails at once, without
  // another connect.
  auto hurried = Spawn(io_, connection.Command({"PING"}, 100ms));
  const Answer again = Get(hurried);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(), AllOf(HasSubstr("refused"), HasSubstr("next connect attempt in")));
  EXPECT_EQ(connection.stats().connect_failures, 1u);
}

TEST_F(RedisConnection, HostThatCannotBeResolvedIsNamed) {
  Endpoint endpoint;
  endpoint.host = "no such host";  // not a valid DNS name: fails without asking a DNS server
  ConnectionOptions options;
  options.connect_timeout = 2s;
  Connection connection(io_.get_executor(), endpoint, options);
  const Answer answer = Do(connection, {"PING"});
  ASSERT_FALSE(answer.ok());
  EXPECT_THAT(answer.status().message(), AnyOf(HasSubstr("cannot resolve host 'no such host'"),
                                               HasSubstr("connect timed out")));
}

TEST_F(RedisConnection, CloseFailsPendingAndLaterCommands) {
  auto connection = Connect();
  ASSERT_EQ(Do(*connection, {"PING"}).value(), Reply::Status("PONG"));
  auto sleeping = Spawn(io_, connection->Command({"DEBUG", "SLEEP", "0.5"}));
  std::this_thread::sleep_for(50ms);
  const Clock::time_point start = Clock::now();
  connection->Close();
  const Answer closed = Get(sleeping);
  EXPECT_LT(Clock::now() - start, 300ms);
  ASSERT_FALSE(closed.ok());
  EXPECT_EQ(closed.status().code(), core::StatusCode::kFailedPrecondition);
  EXPECT_THAT(closed.status().message(), HasSubstr("closed"));
  const Answer later = Do(*connection, {"PING"});
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.status().code(), core::StatusCode::kFailedPrecondition);
}

// Destroying the connection with commands in flight completes them (with errors) and leaves no
// callback behind; sanitizer builds check the "no use after free" part.
TEST_F(RedisConnection, DestroyedWithCommandsInFlight) {
  auto connection = Connect();
  ASSERT_EQ(Do(*connection, {"PING"}).value(), Reply::Status("PONG"));
  std::vector<std::future<Answer>> answers;
  for (int i = 0; i < 100; ++i) answers.push_back(Spawn(io_, connection->Command({"INCR", "n"})));
  answers.push_back(Spawn(io_, connection->Command({"DEBUG", "SLEEP", "0.3"})));
  connection.reset();
  for (auto& answer : answers) {
    const Answer got = Get(answer);
    if (!got.ok()) {
      EXPECT_THAT(got.status().message(), HasSubstr("closed"));
    }
  }
}

}  // namespace
}  // namespace sluice::redis
