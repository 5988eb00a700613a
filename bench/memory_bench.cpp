// bench/memory_bench.cpp — memory per in-flight coroutine job.
//
// BM_Memory_SluiceSleepingJobs: kJobs requests ({"input": {}}) are queued, the queue is closed and
// a Scheduler with limit kJobs is made; then the heap is trimmed and the baseline taken (RSS from
// /proc/self/statm, and the heap bytes in use from mallinfo2). The io_context (one thread) runs
// until every job's coroutine handler has reached `co_await sluice::sleep_for(30 s)`, and the growth
// divided by kJobs is reported: bytes_per_job (RSS) and heap_bytes_per_job. The requests themselves
// are in the baseline (their JSON moves from the queue into the running jobs; the queue's own
// storage is freed), so the figures are sluice's own cost per job plus the handler's coroutine
// frames and timer. Every job is then cancelled with Scheduler::Cancel and the run drained.
//
// BM_Memory_Reference_AsioSleepingCoroutines: the same growth for kJobs bare asio coroutines, each
// co_spawned on the one-thread io_context and waiting on a steady_timer of its own; they are
// cancelled through their timers afterwards.
//
// Both run a single iteration: the figure is a difference of two snapshots, not a time.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
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

constexpr std::size_t kJobs = 100'000;
constexpr auto kSleep = std::chrono::seconds(30);

struct Snapshot {
  std::size_t resident = 0;
  std::size_t heap = 0;
  static Snapshot Take() { return {ResidentBytes(), HeapBytesInUse()}; }
};

void ReportGrowth(benchmark::State& state, const Snapshot& before, const Snapshot& after) {
  auto per_job = [](std::size_t from, std::size_t to) {
    return (static_cast<double>(to) - static_cast<double>(from)) / static_cast<double>(kJobs);
  };
  state.counters["bytes_per_job"] = per_job(before.resident, after.resident);
  state.counters["heap_bytes_per_job"] = per_job(before.heap, after.heap);
  state.counters["rss_MiB"] = static_cast<double>(after.resident) / (1024.0 * 1024.0);
}

class CountingSink final : public core::ResultSink {
 public:
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override {
    (void)job_id;
    finished.fetch_add(1, std::memory_order_relaxed);
    if (outcome.status == core::JobStatus::kCancelled) cancelled.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<std::size_t> finished{0};
  std::atomic<std::size_t> cancelled{0};
};

std::atomic<std::size_t> g_sleeping{0};  // handlers that have reached their sleep

void BM_Memory_SluiceSleepingJobs(benchmark::State& state) {
  const Handler handler = [](Job&) -> Task<json::value> {
    g_sleeping.fetch_add(1, std::memory_order_relaxed);
    co_await sleep_for(kSleep);
    co_return nullptr;
  };
  for (auto _ : state) {
    std::vector<std::string> ids;
    ids.reserve(kJobs);
    core::MemoryJobQueue queue;
    const Snapshot empty = Snapshot::Take();
    for (std::size_t i = 0; i < kJobs; ++i) {
      core::JobRequest request;
      request.id = JobId(i);
      request.request.emplace("input", json::object());
      ids.push_back(request.id);
      queue.Push(std::move(request));
    }
    queue.Close();
    const Snapshot queued = Snapshot::Take();
    state.counters["request_heap_bytes"] =
        (static_cast<double>(queued.heap) - static_cast<double>(empty.heap)) / kJobs;

    CountingSink sink;
    asio::io_context io;
    core::Scheduler scheduler(io, handler, queue, sink,
                              {.concurrency = static_cast<int>(kJobs),
                               .max_concurrency = static_cast<int>(kJobs)});
    bool run_returned = false;
    std::exception_ptr error;
    g_sleeping = 0;

    TrimHeap();
    const Snapshot before = Snapshot::Take();
    asio::co_spawn(io, scheduler.Run(), [&](std::exception_ptr thrown) {
      run_returned = true;
      error = thrown;
    });
    while (g_sleeping.load(std::memory_order_relaxed) < kJobs && !run_returned) io.run_one();
    io.poll();  // let the last handlers reach their timer wait
    const Snapshot after = Snapshot::Take();
    const std::size_t running = scheduler.running();

    for (const std::string& id : ids) scheduler.Cancel(id);
    io.run();

    ReportGrowth(state, before, after);
    state.counters["running"] = static_cast<double>(running);
    if (error) {
      state.SkipWithError("Scheduler::Run threw");
    } else if (running != kJobs) {
      state.SkipWithError("not every job was running at the measurement");
    } else if (sink.finished.load() != kJobs || sink.cancelled.load() != kJobs) {
      state.SkipWithError("not every job ended CANCELLED");
    }
  }
}

asio::awaitable<void> SleepOnTimer(std::vector<asio::steady_timer*>& timers, std::size_t index,
                                   std::size_t& sleeping) {
  asio::steady_timer timer(co_await asio::this_coro::executor, kSleep);
  timers[index] = &timer;
  ++sleeping;
  auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  (void)ec;
  timers[index] = nullptr;
}

void BM_Memory_Reference_AsioSleepingCoroutines(benchmark::State& state) {
  for (auto _ : state) {
    std::vector<asio::steady_timer*> timers(kJobs, nullptr);
    asio::io_context io;
    std::size_t sleeping = 0;
    std::size_t finished = 0;

    TrimHeap();
    const Snapshot before = Snapshot::Take();
    for (std::size_t i = 0; i < kJobs; ++i) {
      asio::co_spawn(io, SleepOnTimer(timers, i, sleeping), [&finished](std::exception_ptr) { ++finished; });
    }
    while (sleeping < kJobs) io.run_one();
    io.poll();
    const Snapshot after = Snapshot::Take();

    for (asio::steady_timer* timer : timers) {
      if (timer != nullptr) timer->cancel();
    }
    io.run();

    ReportGrowth(state, before, after);
    if (finished != kJobs) state.SkipWithError("not every coroutine finished");
  }
}

BENCHMARK(BM_Memory_Reference_AsioSleepingCoroutines)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Memory_SluiceSleepingJobs)->Iterations(1)->Unit(benchmark::kMillisecond);

[[maybe_unused]] const bool kRegistered = [] {
  RegisterComparison({"BM_Memory_SluiceSleepingJobs", "BM_Memory_Reference_AsioSleepingCoroutines",
                      "bytes_per_job", "RSS B/job"});
  RegisterComparison({"BM_Memory_SluiceSleepingJobs", "BM_Memory_Reference_AsioSleepingCoroutines",
                      "heap_bytes_per_job", "heap B/job"});
  return true;
}();

}  // namespace
}  // namespace sluice::bench
