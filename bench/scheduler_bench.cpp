// bench/scheduler_bench.cpp — no-op jobs per second through core::Scheduler.
//
// Each iteration runs one batch: kJobs requests ({"input": {}}, UUID-shaped ids) are pushed into a
// MemoryJobQueue, the queue is closed, and a Scheduler drains it on an io_context run by ONE thread
// (the benchmark thread), reporting to a sink that counts OnFinished; a batch in which not every job
// finished COMPLETED fails the benchmark. Building the requests and filling the queue are not timed;
// constructing the scheduler, running every job and destroying the scheduler (which joins the
// blocking pool) are. items_per_second is jobs per second of wall-clock time. Each case is repeated
// kRepetitions times and the median is reported, because the machine is shared and noisy.
//
// The references measure the same work without sluice, in the same run:
//   BM_Reference_AsioCoSpawn         co_spawn of an empty coroutine per job on a one-thread
//                                    io_context: the floor for coroutine handlers.
//   BM_Reference_ThreadQueue/limit:L std::function calls handed to one worker thread through a
//                                    std::mutex + std::condition_variable queue, at most L in
//                                    flight, completions counted back under the same mutex: the
//                                    floor for blocking handlers, which cross threads twice a job.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <sluice/handler.hpp>
#include <sluice/job.hpp>
#include <sluice/task.hpp>

#include "bench_common.hpp"
#include "core/job_ports.hpp"
#include "core/memory_queue.hpp"
#include "core/scheduler.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::size_t kJobs = 20'000;
constexpr double kMinTime = 0.3;  // seconds per repetition; each runs at least one whole batch
constexpr int kRepetitions = 3;

// Counts how jobs end. OnFinished may come from pool threads, hence the atomics.
class CountingSink final : public core::ResultSink {
 public:
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override {
    (void)job_id;
    finished.fetch_add(1, std::memory_order_relaxed);
    if (outcome.status != core::JobStatus::kCompleted) not_completed.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<std::size_t> finished{0};
  std::atomic<std::size_t> not_completed{0};
};

void FillQueue(core::MemoryJobQueue& queue, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    core::JobRequest request;
    request.id = JobId(i);
    request.request.emplace("input", json::object());
    queue.Push(std::move(request));
  }
  queue.Close();
}

// One batch through the scheduler, timed by `state` from scheduler construction to destruction.
void RunSchedulerBatches(benchmark::State& state, const Handler& handler) {
  const int limit = static_cast<int>(state.range(0));
  std::size_t peak = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto queue = std::make_unique<core::MemoryJobQueue>();
    FillQueue(*queue, kJobs);
    CountingSink sink;
    std::exception_ptr error;
    state.ResumeTiming();
    {
      asio::io_context io;
      core::Scheduler scheduler(io, handler, *queue, sink,
                                {.concurrency = limit, .max_concurrency = std::max(limit, 1000)});
      asio::co_spawn(io, scheduler.Run(), [&error](std::exception_ptr thrown) { error = thrown; });
      io.run();
      peak = std::max(peak, scheduler.peak_running());
    }
    state.PauseTiming();
    queue.reset();
    state.ResumeTiming();
    if (error) {
      state.SkipWithError("Scheduler::Run threw");
      break;
    }
    if (sink.finished.load() != kJobs || sink.not_completed.load() != 0) {
      state.SkipWithError("not every job finished COMPLETED");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kJobs));
  state.counters["peak_running"] = static_cast<double>(peak);
  state.SetLabel(std::to_string(kJobs) + " jobs/batch");
}

// --- the references -------------------------------------------------------------------------

asio::awaitable<json::value> EmptyCoroutine() { co_return nullptr; }

void BM_Reference_AsioCoSpawn(benchmark::State& state) {
  for (auto _ : state) {
    asio::io_context io;
    std::size_t finished = 0;
    for (std::size_t i = 0; i < kJobs; ++i) {
      asio::co_spawn(io, EmptyCoroutine(), [&finished](std::exception_ptr, json::value) { ++finished; });
    }
    io.run();
    if (finished != kJobs) {
      state.SkipWithError("not every coroutine finished");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kJobs));
  state.SetLabel(std::to_string(kJobs) + " jobs/batch");
}

// One worker thread that runs std::function tasks from a mutex + condvar queue.
class ThreadQueue {
 public:
  ThreadQueue() : thread_([this] { Loop(); }) {}
  ~ThreadQueue() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_one();
    thread_.join();
  }

  // Runs `count` calls of `task` on the worker, at most `window` in flight; returns when all ran.
  std::size_t RunBatch(const std::function<json::value()>& task, std::size_t count, std::size_t window) {
    std::size_t submitted = 0;
    std::unique_lock lock(mutex_);
    const std::size_t base = completed_;
    while (submitted < count) {
      done_.wait(lock, [&] { return submitted - (completed_ - base) < window; });
      tasks_.push_back([&task] { benchmark::DoNotOptimize(task()); });
      ++submitted;
      lock.unlock();
      work_ready_.notify_one();
      lock.lock();
    }
    done_.wait(lock, [&] { return completed_ - base == count; });
    return completed_ - base;
  }

 private:
  void Loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      work_ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
      ++completed_;
      done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable done_;
  std::deque<std::function<void()>> tasks_;
  std::size_t completed_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

void BM_Reference_ThreadQueue(benchmark::State& state) {
  const auto window = static_cast<std::size_t>(state.range(0));
  const std::function<json::value()> task = [] { return json::value(nullptr); };
  ThreadQueue queue;
  for (auto _ : state) {
    if (queue.RunBatch(task, kJobs, window) != kJobs) {
      state.SkipWithError("not every task ran");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kJobs));
  state.SetLabel(std::to_string(kJobs) + " jobs/batch");
}

// --- sluice -----------------------------------------------------------------------------------

void BM_Sluice_Coroutine(benchmark::State& state) {
  const Handler handler = [](Job&) -> Task<json::value> { co_return nullptr; };
  RunSchedulerBatches(state, handler);
}

void BM_Sluice_Blocking(benchmark::State& state) {
  const Handler handler = [](Job&) -> json::value { return nullptr; };
  RunSchedulerBatches(state, handler);
}

void Configure(benchmark::internal::Benchmark* benchmark) {
  benchmark->UseRealTime()
      ->MinTime(kMinTime)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true)
      ->Unit(benchmark::kMillisecond);
}

void Limits(benchmark::internal::Benchmark* benchmark) {
  benchmark->ArgName("limit")->Arg(1)->Arg(8)->Arg(64);
}

BENCHMARK(BM_Reference_AsioCoSpawn)->Apply(Configure);
BENCHMARK(BM_Sluice_Coroutine)->Apply(Limits)->Apply(Configure);
BENCHMARK(BM_Reference_ThreadQueue)->Apply(Limits)->Apply(Configure);
BENCHMARK(BM_Sluice_Blocking)->Apply(Limits)->Apply(Configure);

[[maybe_unused]] const bool kRegistered = [] {
  for (const char* limit : {"1", "8", "64"}) {
    RegisterComparison({std::string("BM_Sluice_Coroutine/limit:") + limit, "BM_Reference_AsioCoSpawn",
                        "items_per_second", "jobs/s"});
  }
  for (const char* limit : {"1", "8", "64"}) {
    RegisterComparison({std::string("BM_Sluice_Blocking/limit:") + limit,
                        std::string("BM_Reference_ThreadQueue/limit:") + limit, "items_per_second",
                        "jobs/s"});
  }
  return true;
}();

}  // namespace
}  // namespace sluice::bench
