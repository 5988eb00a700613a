#include "core/scheduler.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/memory_queue.hpp"

namespace sluice::core {
namespace {
namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Records everything the scheduler reports, in order, thread-safely.
class RecordingSink final : public ResultSink {
 public:
  struct Event {
    std::string kind;  // started, progress, chunk, finished
    std::string job_id;
    json::value payload;
  };

  void OnStarted(const std::string& id) override { Record({"started", id, nullptr}); }
  void OnProgress(const std::string& id, const json::value& update) override {
    Record({"progress", id, update});
  }
  void OnChunk(const std::string& id, const json::value& chunk) override {
    Record({"chunk", id, chunk});
  }
  void OnFinished(const std::string& id, JobOutcome outcome) override {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(outcomes_.count(id), 0u) << "job " << id << " reported finished twice";
    events_.push_back({"finished", id, outcome.result});
    outcomes_.emplace(id, std::move(outcome));
    finished_at_[id] = Clock::now();
    changed_.notify_all();
  }

  bool WaitForFinished(std::size_t count, std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return outcomes_.size() >= count; });
  }
  bool WaitForStarted(const std::string& id, std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] {
      for (const Event& event : events_) {
        if (event.kind == "started" && event.job_id == id) return true;
      }
      return false;
    });
  }

  JobOutcome outcome(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto it = outcomes_.find(id);
    return it == outcomes_.end() ? JobOutcome{JobStatus::kInProgress, {}} : it->second;
  }
  std::vector<Event> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t finished() {
    std::lock_guard lock(mutex_);
    return outcomes_.size();
  }
  Clock::time_point finished_at(const std::string& id) {
    std::lock_guard lock(mutex_);
    return finished_at_.at(id);
  }

 private:
  void Record(Event event) {
    std::lock_guard lock(mutex_);
    EXPECT_EQ(outcomes_.count(event.job_id), 0u) << event.kind << " after finished for " << event.job_id;
    events_.push_back(std::move(event));
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Event> events_;
  std::map<std::string, JobOutcome> outcomes_;
  std::map<std::string, Clock::time_point> finished_at_;
};

JobRequest MakeJob(std::string id, json::value input = json::object{},
                   std::optional<Clock::duration> timeout = std::nullopt) {
  JobRequest job;
  job.id = std::move(id);
  job.request.emplace("id", job.id);
  job.request.emplace("input", std::move(input));
  job.execution_timeout = timeout;
  return job;
}

// One scheduler over an in-memory queue, run on `threads` I/O threads with a watchdog.
class Harness {
 public:
  // The scheduler is told it may run on two I/O threads, so every job gets its own strand; tests
  // then choose to run 1 or 2.
  explicit Harness(Handler handler, SchedulerOptions options = {})
      : scheduler_(io_, std::move(handler), queue_, sink_, WithTwoThreads(std::move(options))) {}

  static SchedulerOptions WithTwoThreads(SchedulerOptions options) {
    options.io_threads = 2;
    return options;
  }

  void Push(JobRequest job) { ASSERT_TRUE(queue_.Push(std::move(job))); }
  void PushMany(int count, json::value input = json::object{}) {
    for (int i = 0; i < count; ++i) Push(MakeJob(fmt::format("job-{}", i), input));
  }

  // Starts the scheduler and the I/O threads; they stop when Run() returns.
  void Start(int threads = 1) {
    asio::co_spawn(io_, scheduler_.Run(), [this](std::exception_ptr error) {
      if (error) std::rethrow_exception(error);
      done_.store(true);
    });
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run_for(60s); });
  }

  // Closes the queue and waits for the scheduler to drain; fails the test after `limit`.
  void Finish(std::chrono::milliseconds limit = 30s) {
    queue_.Close();
    const auto deadline = Clock::now() + limit;
    while (!done_.load() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    EXPECT_TRUE(done_.load()) << "watchdog: the scheduler did not drain within " << limit.count() << " ms";
    if (!done_.load()) io_.stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

  ~Harness() {
    if (!threads_.empty()) Finish();
  }

  Scheduler& scheduler() { return scheduler_; }
  RecordingSink& sink() { return sink_; }
  void WaitUntilTakeWaits() {
    const auto deadline = Clock::now() + 10s;
    while (!queue_.has_waiting_take() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(queue_.has_waiting_take()) << "watchdog";
  }
  template <class Function>
  void Post(Function function) {
    asio::post(io_, std::move(function));
  }

 private:
  asio::io_context io_;
  MemoryJobQueue queue_;
  RecordingSink sink_;
  Scheduler scheduler_;
  std::vector<std::thread> threads_;
  std::atomic<bool> done_{false};
};

// Tracks how many handlers run at once.
struct Occupancy {
  std::atomic<int> inside{0};
  std::atomic<int> peak{0};
  void Enter() {
    const int now = ++inside;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  void Leave() { --inside; }
};

// ---------------------------------------------------------------------------------------------
// Results

TEST(Scheduler, BlockingHandlerResultsAreMappedLikeRunpod) {
  Harness harness([](Job& job) -> json::value {
    const std::string mode(job.input().at("mode").as_string());
    if (mode == "ok") return json::object{{"a", 1}};
    if (mode == "error") return json::object{{"error", "bad thing"}, {"x", 1}};
    if (mode == "refresh") return json::object{{"a", 1}, {"refresh_worker", true}};
    if (mode == "empty") return json::object{};
    throw std::runtime_error("exploded");
  });
  for (const char* mode : {"ok", "error", "refresh", "empty", "throw"}) {
    harness.Push(MakeJob(mode, json::object{{"mode", mode}}));
  }
  harness.Start();
  harness.Finish();
  RecordingSink& sink = harness.sink();
  EXPECT_EQ(sink.outcome("ok").status, JobStatus::kCompleted);
  EXPECT_EQ(sink.outcome("ok").result, json::parse(R"({"output":{"a":1}})"));
  EXPECT_EQ(sink.outcome("error").status, JobStatus::kFailed);
  EXPECT_EQ(sink.outcome("error").result, json::parse(R"({"output":{"x":1},"error":"bad thing"})"));
  EXPECT_EQ(sink.outcome("refresh").result, json::parse(R"({"output":{"a":1},"stopPod":true})"));
  EXPECT_EQ(sink.outcome("empty").status, JobStatus::kCompleted);
  EXPECT_EQ(sink.outcome("empty").result, json::object{});
  const JobOutcome thrown = sink.outcome("throw");
  EXPECT_EQ(thrown.status, JobStatus::kFailed);
  const json::value report = json::parse(thrown.result.at("error").as_string());
  EXPECT_EQ(report.at("error_type"), "std::runtime_error");
  EXPECT_EQ(report.at("error_message"), "exploded");
}

TEST(Scheduler, CoroutineHandlersOfEveryResultType) {
  Harness text([](Job&) -> Task<std::string> { co_return "done"; });
  text.Push(MakeJob("a"));
  text.Start();
  text.Finish();
  EXPECT_EQ(text.sink().outcome("a").result, json::parse(R"({"output":"done"})"));

  Harness nothing([](Job&) -> Task<void> { co_return; });
  nothing.Push(MakeJob("b"));
  nothing.Start();
  nothing.Finish();
  EXPECT_EQ(nothing.sink().outcome("b").result, json::parse(R"({"output":null})"));

  Harness thrower([](Job&) -> Task<json::value> {
    co_await sleep_for(1ms);
    throw std::out_of_range("index 7");
  });
  thrower.Push(MakeJob("c"));
  thrower.Start();
  thrower.Finish();
  EXPECT_EQ(thrower.sink().outcome("c").status, JobStatus::kFailed);
  EXPECT_EQ(json::parse(thrower.sink().outcome("c").result.at("error").as_string()).at("error_type"),
            "std::out_of_range");
}

TEST(Scheduler, JobSeesItsIdInputRequestAndWorkerId) {
  Harness harness(
      [](Job& job) -> json::value {
        return json::object{{"id", job.id()},
                            {"input", job.input()},
                            {"webhook", job.request().at("webhook")},
                            {"worker", job.worker_id()}};
      },
      {.worker_id = "worker-7"});
  JobRequest job = MakeJob("j1", json::object{{"x", 1}});
  job.request.emplace("webhook", "http://example.invalid/hook");
  harness.Push(std::move(job));
  harness.Start();
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("j1").result.at("output"),
            json::parse(R"({"id":"j1","input":{"x":1},"webhook":"http://example.invalid/hook","worker":"worker-7"})"));
}

TEST(Scheduler, ConfigLevelRefreshWorkerMarksEveryResult) {
  Harness harness([](Job&) -> json::value { return 1; }, {.refresh_worker = true});
  harness.Push(MakeJob("j"));
  harness.Start();
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("j").result, json::parse(R"({"output":1,"stopPod":true})"));
}

// runpod.md §1.5: the worker is replaced after its first job, so the slot that job gives back
// takes nothing more, even with jobs waiting (the queue would hand out all three at once).
TEST(Scheduler, ConfigLevelRefreshWorkerTakesNoJobAfterTheFirstResult) {
  Harness harness([](Job&) -> json::value { return 1; }, {.refresh_worker = true});
  harness.PushMany(3);
  harness.Start();
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 1u);
  EXPECT_EQ(harness.sink().outcome("job-0").result, json::parse(R"({"output":1,"stopPod":true})"));
}

TEST(Scheduler, ReportsInOrderStartedProgressFinished) {
  Harness harness([](Job& job) -> json::value {
    job.progress(json::object{{"step", 1}});
    job.progress(json::object{{"step", 2}});
    return "final";
  });
  harness.Push(MakeJob("p"));
  harness.Start();
  harness.Finish();
  std::vector<std::string> kinds;
  for (const auto& event : harness.sink().events()) kinds.push_back(event.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"started", "progress", "progress", "finished"}));
  EXPECT_EQ(harness.sink().events()[2].payload, json::parse(R"({"step":2})"));
}

// ---------------------------------------------------------------------------------------------
// Streaming

TEST(Scheduler, StreamingChunksArriveInOrderThenTheAggregate) {
  Harness harness(
      [](Job&, Stream& out) -> Task<void> {
        for (int i = 0; i < 3; ++i) {
          json::value chunk = {{"token", i}};  // named: see the GCC 12 note in sluice/stream.hpp
          co_await out.emit(std::move(chunk));
        }
      },
      {.aggregate_stream = true});
  harness.Push(MakeJob("s"));
  harness.Start();
  harness.Finish();
  std::vector<json::value> chunks;
  for (const auto& event : harness.sink().events()) {
    if (event.kind == "chunk") chunks.push_back(event.payload);
  }
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2], json::parse(R"({"token":2})"));
  EXPECT_EQ(harness.sink().outcome("s").status, JobStatus::kCompleted);
  EXPECT_EQ(harness.sink().outcome("s").result,
            json::parse(R"({"output":[{"token":0},{"token":1},{"token":2}]})"));
}

TEST(Scheduler, StreamingWithoutAggregationEndsWithAnEmptyList) {
  Harness harness([](Job&, Stream& out) { out.write("a"); });
  harness.Push(MakeJob("s"));
  harness.Start();
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("s").result, json::parse(R"({"output":[]})"));
}

TEST(Scheduler, AnErrorChunkFailsTheJobAndIsNotStreamed) {
  std::atomic<bool> stopped_at_next_emit{false};
  Harness harness(
      [&](Job&, Stream& out) -> Task<void> {
        co_await out.emit("first");
        try {
          json::value failure = {{"error", "model crashed"}};
          co_await out.emit(std::move(failure));
        } catch (const boost::system::system_error&) {
          stopped_at_next_emit = true;
          throw;
        }
        co_await out.emit("never");
      },
      {.aggregate_stream = true});
  harness.Push(MakeJob("s"));
  harness.Start();
  harness.Finish();
  int chunks = 0;
  for (const auto& event : harness.sink().events()) chunks += event.kind == "chunk";
  EXPECT_EQ(chunks, 1);
  EXPECT_EQ(harness.sink().outcome("s").status, JobStatus::kFailed);
  EXPECT_EQ(harness.sink().outcome("s").result, json::parse(R"({"error":"model crashed"})"));
  EXPECT_TRUE(stopped_at_next_emit.load());
}

// ---------------------------------------------------------------------------------------------
// Concurrency proofs (wide bounds only: timings belong in bench/)

TEST(Scheduler, HundredBlockingOneSecondJobsAtLimit100FinishUnder3s) {
  Occupancy occupancy;
  Harness harness(
      [&](Job&) -> json::value {
        occupancy.Enter();
        std::this_thread::sleep_for(1s);
        occupancy.Leave();
        return nullptr;
      },
      {.concurrency = 100});
  harness.PushMany(100);
  const auto start = Clock::now();
  harness.Start();
  ASSERT_TRUE(harness.sink().WaitForFinished(100, 10s)) << "watchdog";
  const auto elapsed = Clock::now() - start;
  harness.Finish();
  EXPECT_LT(elapsed, 3s);
  EXPECT_GE(elapsed, 1s);
  EXPECT_EQ(occupancy.peak.load(), 100);
}

TEST(Scheduler, TenThousandCoroutineOneSecondJobsAtLimit10000FinishUnder3s) {
  Occupancy occupancy;
  Harness harness(
      [&](Job&) -> Task<json::value> {
        occupancy.Enter();
        co_await sleep_for(1s);
        occupancy.Leave();
        co_return nullptr;
      },
      {.concurrency = 10000, .max_concurrency = 10000});
  harness.PushMany(10000);
  const auto start = Clock::now();
  harness.Start(2);
  ASSERT_TRUE(harness.sink().WaitForFinished(10000, 20s)) << "watchdog";
  const auto elapsed = Clock::now() - start;
  harness.Finish();
  EXPECT_LT(elapsed, 3s);
  EXPECT_LE(occupancy.peak.load(), 10000);
  EXPECT_GT(occupancy.peak.load(), 5000) << "the sleeps did not overlap";
}

TEST(Scheduler, HighWaterMarkNeverExceedsAFixedLimit) {
  Occupancy occupancy;
  Harness harness(
      [&](Job&) -> Task<json::value> {
        occupancy.Enter();
        co_await sleep_for(2ms);
        occupancy.Leave();
        co_return nullptr;
      },
      {.concurrency = 7});
  harness.PushMany(300);
  harness.Start(2);
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 300u);
  EXPECT_EQ(occupancy.peak.load(), 7);
  EXPECT_EQ(harness.scheduler().peak_running(), 7u);
}

TEST(Scheduler, BlockingHighWaterMarkNeverExceedsTheLimit) {
  Occupancy occupancy;
  Harness harness(
      [&](Job&) -> json::value {
        occupancy.Enter();
        std::this_thread::sleep_for(1ms);
        occupancy.Leave();
        return nullptr;
      },
      {.concurrency = 4});
  harness.PushMany(200);
  harness.Start(2);
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 200u);
  EXPECT_LE(occupancy.peak.load(), 4);
  EXPECT_LE(harness.scheduler().peak_running(), 4u);
}

TEST(Scheduler, ModifierGrowsAndShrinksTheLimitWhileBusyWithoutPreempting) {
  std::atomic<int> target{8};
  std::atomic<int> modifier_calls{0};
  std::atomic<bool> in_modifier{false};
  std::atomic<int> concurrent_modifier_calls{0};
  Occupancy occupancy;
  std::atomic<bool> shrunk_and_drained{false};
  std::atomic<int> violations{0};
  std::atomic<int> cancelled_or_failed{0};
  Harness* harness_pointer = nullptr;

  Harness harness(
      [&](Job&) -> Task<json::value> {
        occupancy.Enter();
        if (shrunk_and_drained.load() && occupancy.inside.load() > 2) ++violations;
        co_await sleep_for(5ms);
        occupancy.Leave();
        co_return nullptr;
      },
      {.concurrency = 1,
       .concurrency_modifier =
           [&](int now) {
             if (in_modifier.exchange(true)) ++concurrent_modifier_calls;
             ++modifier_calls;
             const int next = now < target.load() ? now + 1 : now > target.load() ? target.load() : now;
             in_modifier = false;
             return next;
           },
       .modifier_interval = 1ms});
  harness_pointer = &harness;
  harness.PushMany(2000);
  harness.Start(2);

  // Phase 1: the limit climbs from 1 to 8 while jobs run.
  const auto deadline = Clock::now() + 10s;
  while (occupancy.peak.load() < 8 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(occupancy.peak.load(), 8) << "the limit never reached 8";
  EXPECT_EQ(harness.scheduler().limit(), 8);

  // Phase 2: shrink to 2. Running jobs finish; once at most 2 are running, never more again.
  target = 2;
  while (!(harness_pointer->scheduler().limit() == 2 && harness_pointer->scheduler().running() <= 2) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(100us);
  }
  ASSERT_EQ(harness.scheduler().limit(), 2);
  shrunk_and_drained = true;
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 2000u);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(concurrent_modifier_calls.load(), 0);
  EXPECT_GT(modifier_calls.load(), 8);
  EXPECT_EQ(cancelled_or_failed.load(), 0);
}

TEST(Scheduler, ABurstAfterTheLimitFellWhileIdleStillRespectsIt) {
  std::atomic<int> target{8};
  Occupancy occupancy;
  Harness harness(
      [&](Job&) -> Task<json::value> {
        occupancy.Enter();
        co_await sleep_for(20ms);
        occupancy.Leave();
        co_return nullptr;
      },
      {.concurrency = 8,
       .concurrency_modifier = [&](int) { return target.load(); },
       .modifier_interval = 1ms});
  harness.Start(2);
  // Once the dispatcher waits in Take (asking for 8 jobs), the limit falls to 1.
  harness.WaitUntilTakeWaits();
  target = 1;
  const auto deadline = Clock::now() + 10s;
  while (harness.scheduler().limit() != 1 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(harness.scheduler().limit(), 1);
  harness.PushMany(8);
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 8u);
  EXPECT_EQ(occupancy.peak.load(), 1);
}

TEST(Scheduler, AJobWaitingForASlotCanBeCancelled) {
  std::atomic<int> target{4};
  std::atomic<bool> release{false};
  Harness harness(
      [&](Job&) -> Task<json::value> {
        while (!release.load()) co_await sleep_for(1ms);
        co_return nullptr;
      },
      {.concurrency = 4,
       .concurrency_modifier = [&](int) { return target.load(); },
       .modifier_interval = 1ms});
  harness.Start();
  harness.WaitUntilTakeWaits();  // asking for 4 jobs
  target = 1;
  const auto deadline = Clock::now() + 10s;
  while (harness.scheduler().limit() != 1 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  // Pushed from one handler on the I/O thread, so the waiting Take sees all three at once: job-0
  // runs, job-1 and job-2 wait in the scheduler for a slot.
  harness.Post([&] { harness.PushMany(3); });
  ASSERT_TRUE(harness.sink().WaitForStarted("job-0", 10s));
  EXPECT_TRUE(harness.scheduler().Cancel("job-2"));
  ASSERT_TRUE(harness.sink().WaitForFinished(1, 10s));
  EXPECT_EQ(harness.sink().outcome("job-2").status, JobStatus::kCancelled);
  release = true;
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("job-1").status, JobStatus::kCompleted);
  for (const auto& event : harness.sink().events()) {
    EXPECT_FALSE(event.kind == "started" && event.job_id == "job-2") << "job-2 never started";
  }
}

TEST(Scheduler, CancelRacingTheStartKeepsTheReportOrder) {
  // The sink cancels each job from OnStarted, on two I/O threads: the cancel then races the
  // job's start. Every job must still report started before finished, exactly once each.
  class CancellingSink final : public ResultSink {
   public:
    Scheduler* scheduler = nullptr;
    std::mutex mutex;
    std::map<std::string, std::vector<std::string>> events;
    std::atomic<int> finished{0};
    void OnStarted(const std::string& id) override {
      {
        std::lock_guard lock(mutex);
        events[id].push_back("started");
      }
      scheduler->Cancel(id);
    }
    void OnFinished(const std::string& id, JobOutcome outcome) override {
      std::lock_guard lock(mutex);
      events[id].push_back(std::string(ToString(outcome.status)));
      ++finished;
    }
  };
  asio::io_context io;
  MemoryJobQueue queue;
  CancellingSink sink;
  Scheduler scheduler(io,
                      [](Job&) -> Task<json::value> {
                        co_await sleep_for(10s);
                        co_return nullptr;
                      },
                      queue, sink, {.concurrency = 64, .io_threads = 2});
  sink.scheduler = &scheduler;
  for (int i = 0; i < 500; ++i) queue.Push(MakeJob(fmt::format("job-{}", i)));
  queue.Close();
  std::atomic<bool> done{false};
  asio::co_spawn(io, scheduler.Run(), [&](std::exception_ptr) { done = true; });
  std::thread second([&] { io.run_for(30s); });
  io.run_for(30s);
  second.join();
  ASSERT_TRUE(done.load()) << "watchdog";
  EXPECT_EQ(sink.finished.load(), 500);
  for (const auto& [id, events] : sink.events) {
    EXPECT_EQ(events, (std::vector<std::string>{"started", "CANCELLED"})) << id;
  }
}

TEST(Scheduler, ABadOrThrowingModifierKeepsTheLimitAndJobsRun) {
  std::atomic<int> calls{0};
  std::vector<std::string> warnings;
  std::mutex warnings_mutex;
  Harness harness([](Job&) -> Task<json::value> {
    co_await sleep_for(1ms);
    co_return nullptr;
  },
                  {.concurrency = 3,
                   .concurrency_modifier =
                       [&](int) -> int {
                         switch (calls++ % 3) {
                           case 0: return 0;
                           case 1: return 5000;
                           default: throw std::runtime_error("no metrics");
                         }
                       },
                   .modifier_interval = 1ms,
                   .warn =
                       [&](const std::string& warning) {
                         std::lock_guard lock(warnings_mutex);
                         warnings.push_back(warning);
                       }});
  harness.PushMany(200);
  harness.Start();
  harness.Finish();
  EXPECT_EQ(harness.sink().finished(), 200u);
  EXPECT_EQ(harness.scheduler().limit(), 3);
  EXPECT_GE(calls.load(), 3);
  std::lock_guard lock(warnings_mutex);
  ASSERT_GE(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("0 is below 1"), std::string::npos);
  EXPECT_NE(warnings[1].find("5000 is above --max-concurrency 1000"), std::string::npos);
  EXPECT_NE(warnings[2].find("no metrics"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Cancellation and timeouts

TEST(Scheduler, RunningCoroutineIsCancelledAtItsNextCoAwait) {
  std::atomic<bool> aborted_at_co_await{false};
  std::atomic<bool> resumed_after_sleep{false};
  std::atomic<bool> entered{false};
  Harness harness([&](Job&) -> Task<json::value> {
    entered = true;
    try {
      co_await sleep_for(30s);
      resumed_after_sleep = true;
    } catch (const boost::system::system_error& error) {
      aborted_at_co_await = error.code() == asio::error::operation_aborted;
      throw;
    }
    co_return "finished normally";
  });
  harness.Push(MakeJob("long"));
  harness.Start();
  const auto deadline = Clock::now() + 10s;
  while (!entered.load() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(entered.load()) << "watchdog";
  EXPECT_EQ(harness.scheduler().running_ids(), std::vector<std::string>{"long"});
  const auto cancel_time = Clock::now();
  EXPECT_TRUE(harness.scheduler().Cancel("long"));
  ASSERT_TRUE(harness.sink().WaitForFinished(1, 10s)) << "watchdog";
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("long").status, JobStatus::kCancelled);
  EXPECT_EQ(harness.sink().outcome("long").result, json::object{});
  EXPECT_LT(harness.sink().finished_at("long") - cancel_time, 1s);
  EXPECT_TRUE(aborted_at_co_await.load());
  EXPECT_FALSE(resumed_after_sleep.load());
  EXPECT_FALSE(harness.scheduler().Cancel("long")) << "no longer running";
}

TEST(Scheduler, CancelledBlockingHandlerSeesItAndItsResultIsDiscarded) {
  std::atomic<bool> saw_cancel{false};
  std::atomic<bool> stop_callback_ran{false};
  std::atomic<bool> entered{false};
  Harness harness([&](Job& job) -> json::value {
    entered = true;
    std::stop_callback on_stop(job.stop_token(), [&] { stop_callback_ran = true; });
    const auto deadline = Clock::now() + 10s;
    while (!job.cancelled() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    saw_cancel = job.cancelled();
    job.progress("too late");  // ignored: the job is already reported
    return json::object{{"late", true}};
  });
  harness.Push(MakeJob("b"));
  harness.Start();
  const auto deadline = Clock::now() + 10s;
  while (!entered.load() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(entered.load()) << "watchdog";
  EXPECT_TRUE(harness.scheduler().Cancel("b"));
  harness.Finish();
  EXPECT_TRUE(saw_cancel.load());
  EXPECT_TRUE(stop_callback_ran.load());
  EXPECT_EQ(harness.sink().outcome("b").status, JobStatus::kCancelled);
  EXPECT_EQ(harness.sink().outcome("b").result, json::object{});
  for (const auto& event : harness.sink().events()) EXPECT_NE(event.kind, "progress");
}

TEST(Scheduler, ExecutionTimeoutEndsAJobTimedOut) {
  Harness harness(
      [](Job&) -> Task<json::value> {
        co_await sleep_for(30s);
        co_return nullptr;
      },
      {.concurrency = 2});
  harness.Push(MakeJob("slow", json::object{}, 50ms));
  harness.Push(MakeJob("fast-enough", json::object{}, 20s));
  harness.Start();
  ASSERT_TRUE(harness.sink().WaitForFinished(1, 10s)) << "watchdog";
  ASSERT_TRUE(harness.sink().WaitForStarted("fast-enough", 10s));
  EXPECT_EQ(harness.sink().outcome("slow").status, JobStatus::kTimedOut);
  EXPECT_EQ(harness.sink().outcome("slow").result.at("error"),
            "job timed out: execution timeout of 50 ms exceeded");
  harness.scheduler().Cancel("fast-enough");
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("fast-enough").status, JobStatus::kCancelled);
}

TEST(Scheduler, AJobThatFinishesInTimeIsNotKeptByItsTimeout) {
  Harness harness([](Job&) -> json::value { return "quick"; });
  harness.Push(MakeJob("q", json::object{}, 3600s));
  harness.Start();
  harness.Finish(5s);  // drains although the hour-long timer was armed
  EXPECT_EQ(harness.sink().outcome("q").status, JobStatus::kCompleted);
}

TEST(Scheduler, ABlockingJobCancelledBeforeItBeganNeverRunsItsHandler) {
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  Harness harness(
      [&](Job&) -> json::value {
        ++calls;
        while (!release.load()) std::this_thread::sleep_for(1ms);
        return nullptr;
      },
      {.concurrency = 2});
  harness.Push(MakeJob("first"));
  harness.Push(MakeJob("second"));
  harness.Start();
  ASSERT_TRUE(harness.sink().WaitForStarted("second", 10s));
  // Both jobs hold a slot; the pool may not have begun "second" yet. Cancel it, then let it go.
  EXPECT_TRUE(harness.scheduler().Cancel("second"));
  ASSERT_TRUE(harness.sink().WaitForFinished(1, 10s));
  release = true;
  harness.Finish();
  EXPECT_EQ(harness.sink().outcome("second").status, JobStatus::kCancelled);
  EXPECT_EQ(harness.sink().outcome("first").status, JobStatus::kCompleted);
  EXPECT_LE(calls.load(), 2);
}

TEST(Scheduler, CancelOfAnUnknownJobIsFalse) {
  Harness harness([](Job&) -> json::value { return nullptr; });
  harness.Start();
  EXPECT_FALSE(harness.scheduler().Cancel("nope"));
  harness.Finish();
}

}  // namespace
}  // namespace sluice::core
