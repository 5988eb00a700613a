// The harness of the Redis queue tests (tests/redis_queue_test.cpp, tests/redis_backend_test.cpp):
// a redis-server of the test's own, I/O threads, a client connection, and in-process workers
// (source, sink, scheduler and background loops, as `--queue` wires them). Every wait is bounded
// by a watchdog that aborts the test binary rather than hang CI.
#pragma once

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sluice/handler.hpp>
#include <sluice/job.hpp>

#include "core/scheduler.hpp"
#include "redis/background.hpp"
#include "redis/connection.hpp"
#include "redis/job_source.hpp"
#include "redis/queue.hpp"
#include "redis/result_sink.hpp"
#include "redis_server.hpp"

namespace sluice::redis::harness {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline constexpr auto kWatchdog = 30s;

template <class T>
std::future<T> Spawn(asio::io_context& io, Task<T> task) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> future = promise->get_future();
  auto body = [](Task<T> inner, std::shared_ptr<std::promise<T>> out) -> Task<void> {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(inner);
      out->set_value();
    } else {
      out->set_value(co_await std::move(inner));
    }
  };
  asio::co_spawn(io, body(std::move(task), promise), [promise](std::exception_ptr error) {
    if (error) promise->set_exception(error);
  });
  return future;
}

template <class T>
T Get(std::future<T>& future, const char* what) {
  if (future.wait_for(kWatchdog) != std::future_status::ready) {
    std::fprintf(stderr, "watchdog: %s did not complete within 30 s\n", what);
    std::abort();
  }
  return future.get();
}

// One worker: its connections, source, sink, scheduler and background loops.
struct Worker {
  Worker(asio::io_context& io, const Endpoint& endpoint, QueueOptions queue_options, Handler handler,
         int concurrency)
      : io(io),
        options(std::move(queue_options)),
        commands(io.get_executor(), endpoint),
        cancel_reader(io.get_executor(), endpoint),
        source(io.get_executor(), endpoint, commands, options, held),
        sink(io.get_executor(), commands, options, held),
        scheduler(io, std::move(handler), source, sink, SchedulerFor(concurrency)) {}

  // A test that failed before Stop() still drains the scheduler before destroying it.
  ~Worker() {
    if (run.valid()) Stop();
  }

  static core::SchedulerOptions SchedulerFor(int concurrency) {
    core::SchedulerOptions scheduler_options;
    scheduler_options.concurrency = concurrency;
    scheduler_options.io_threads = 2;
    return scheduler_options;
  }

  void Start() {
    run = Spawn(io, scheduler.Run());
    loops.push_back(Spawn(io, RunHeartbeat(commands, options, EntriesOf(held, source),
                                           [this] {
                                             return WorkerLoad{static_cast<int>(scheduler.running()),
                                                               scheduler.limit()};
                                           },
                                           stop)));
    loops.push_back(Spawn(io, RunReaper(commands, options, source, stop)));
    loops.push_back(Spawn(io, RunCancelListener(cancel_reader, options,
                                                [this](const std::string& id) {
                                                  return source.CancelStarting(id) || scheduler.Cancel(id);
                                                },
                                                stop)));
  }

  void Stop() {
    source.Stop();
    Get(run, "the scheduler's drain");
    auto drained = Spawn(io, sink.Drain(10s));
    EXPECT_TRUE(Get(drained, "the sink's drain"));
    stop.store(true);
    for (auto& loop : loops) Get(loop, "a background loop");
    loops.clear();
  }

  asio::io_context& io;
  QueueOptions options;
  HeldJobs held;
  Connection commands;
  Connection cancel_reader;
  RedisJobSource source;
  RedisResultSink sink;
  core::Scheduler scheduler;
  std::atomic<bool> stop{false};
  std::future<void> run;
  std::vector<std::future<void>> loops;
};

class RedisQueueFixture : public ::testing::Test {
 protected:
  RedisQueueFixture() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(kWatchdog * 2); });
  }

  ~RedisQueueFixture() override {
    workers_.clear();
    client_.reset();
    work_.reset();
    std::this_thread::sleep_for(50ms);  // the connections' Close runs on the I/O threads
    io_.stop();  // closed connections leave nothing; this only ends run_for early
    for (std::thread& thread : threads_) thread.join();
  }

  void SetUp() override {
    ASSERT_TRUE(server_.ok()) << server_.error();
    auto endpoint = ParseUrl(server_.Url());
    ASSERT_TRUE(endpoint.ok()) << endpoint.status().message();
    endpoint_ = *endpoint;
    client_ = std::make_unique<Connection>(io_.get_executor(), endpoint_);
    auto group = Spawn(io_, EnsureGroup(*client_, keys_));
    ASSERT_TRUE(Get(group, "XGROUP CREATE").ok());
  }

  QueueOptions Options(std::string consumer) const {
    QueueOptions options;
    options.consumer = std::move(consumer);
    options.visibility_timeout = 30s;
    options.block = 200ms;
    return options;
  }

  Worker& AddWorker(QueueOptions options, Handler handler, int concurrency = 4) {
    workers_.push_back(std::make_unique<Worker>(io_, endpoint_, std::move(options), std::move(handler), concurrency));
    return *workers_.back();
  }

  Reply Do(std::vector<std::string> argv) {
    auto future = Spawn(io_, client_->Command(std::move(argv)));
    core::Result<Reply> reply = Get(future, "a Redis command");
    EXPECT_TRUE(reply.ok()) << reply.status().message();
    return reply.ok() ? *reply : Reply();
  }

  std::string SubmitJob(std::string id, json::value input) {
    SubmitRequest request;
    request.job_id = std::move(id);
    request.request.emplace("input", std::move(input));
    auto future = Spawn(io_, Submit(*client_, keys_, std::move(request)));
    core::Result<std::string> submitted = Get(future, "Submit");
    EXPECT_TRUE(submitted.ok()) << submitted.status().message();
    return submitted.ok() ? *submitted : std::string();
  }

  std::map<std::string, std::string> Hash(const std::string& job_id) {
    std::map<std::string, std::string> fields;
    const Reply reply = Do({"HGETALL", keys_.job(job_id)});
    for (std::size_t i = 0; i + 1 < reply.size(); i += 2) fields[reply[i].str()] = reply[i + 1].str();
    return fields;
  }

  std::map<std::string, sluice::testing::CommandStat> CommandStats() {
    return sluice::testing::ParseCommandStats(Do({"INFO", "commandstats"}).str());
  }

  std::string StatusOf(const std::string& job_id) { return Hash(job_id)["status"]; }

  // Runs the reaper's trim of the jobs stream now; how many entries it dropped.
  std::int64_t Trim() {
    auto trimmed = Spawn(io_, RunScript(*client_, TrimCall(keys_)));
    core::Result<Reply> reply = Get(trimmed, "the trim script");
    EXPECT_TRUE(reply.ok() && reply->is_integer()) << (reply.ok() ? reply->Describe() : reply.status().message());
    return reply.ok() && reply->is_integer() ? reply->integer() : -1;
  }

  // Polls `done` every 20 ms; false after `limit`.
  bool WaitFor(const std::function<bool()>& done, Clock::duration limit = 15s) {
    const Clock::time_point deadline = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

  std::int64_t PendingCount() { return Do({"XPENDING", keys_.jobs(), std::string(kGroup)})[0].integer(); }

  // A consumer that reads entries and then "dies": it never finishes them.
  std::vector<StreamEntry> ReadAsDeadConsumer(const std::string& consumer, int count) {
    std::vector<StreamEntry> entries;
    const Reply reply = Do({"XREADGROUP", "GROUP", std::string(kGroup), consumer, "COUNT", std::to_string(count),
                            "STREAMS", keys_.jobs(), ">"});
    EXPECT_TRUE(ParseReadGroup(reply, entries)) << reply.Describe();
    return entries;
  }

  // Reads `count` entries as `consumer` and starts their jobs, as its source would have; the
  // entries, in order.
  std::vector<std::string> ReadAndStartAs(const std::string& consumer, int count) {
    std::vector<std::string> entries;
    for (const StreamEntry& read : ReadAsDeadConsumer(consumer, count)) {
      StartParams start;
      start.job_id = read.job_id;
      start.entry = read.entry;
      start.consumer = consumer;
      auto started = Spawn(io_, RunScript(*client_, StartCall(keys_, start)));
      EXPECT_EQ(ParseStart(Get(started, "start").value()).kind, StartAnswer::Kind::kStarted);
      entries.push_back(read.entry);
    }
    return entries;
  }

  static Handler Echo(std::atomic<int>* calls = nullptr) {
    return [calls](Job& job) -> Task<json::value> {
      if (calls != nullptr) calls->fetch_add(1);
      co_return job.input();
    };
  }

  // Sleeps `input.sleep_ms`, cancellably, then echoes.
  static Handler Sleeper(std::atomic<int>* calls = nullptr) {
    return [calls](Job& job) -> Task<json::value> {
      if (calls != nullptr) calls->fetch_add(1);
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::milliseconds(job.input().as_object().at("sleep_ms").to_number<int>()));
      co_await timer.async_wait(asio::use_awaitable);
      co_return job.input();
    };
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  sluice::testing::RedisServer server_;
  Endpoint endpoint_;
  Keys keys_;
  std::unique_ptr<Connection> client_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace sluice::redis::harness
