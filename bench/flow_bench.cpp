// bench/flow_bench.cpp — tasks per second through an in-process sluice::Flow, and the latency of
// one task alone.
//
// Throughput (BM_Flow/steps:S/batch:B): kCallers coroutines on a one-thread io_context (the
// benchmark thread) each loop `co_await flow.process(task)` on a task of their own until kTasks
// tasks have completed; every step has one worker, a no-op blocking handler, max_batch_size B and
// no batch delay (a batch is what is queued when the worker is free). items_per_second is tasks per
// second of wall-clock time, median of kRepetitions.
//
// Latency (BM_FlowLatency, below): one task at a time through a one-step flow.
//
// The reference, in the same run (BM_Reference_ThreadHandOff/batch:B): the same callers hand
// their task pointers to one worker thread through a std::mutex + std::condition_variable queue,
// the worker takes up to B at a time and posts each completion back to the io_context — the bare
// cost of crossing to a worker thread and back, which every in-process flow pays. aqueduct's own
// figures on this machine (aqueduct.md §6) are quoted in docs/performance.md.

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sluice/flow.hpp>
#include <sluice/flow_client.hpp>
#include <sluice/flow_server.hpp>

#include "bench_common.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kTasks = 200'000;
constexpr std::size_t kCallers = 256;
constexpr int kRepetitions = 3;
constexpr std::size_t kLatencySamples = 20'000;

void NoOp(FlowBatch) {}

void BM_Flow(benchmark::State& state) {
  const auto steps = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<std::size_t>(state.range(1));
  std::size_t total = 0;
  for (auto _ : state) {
    Flow flow;
    for (std::size_t s = 0; s < steps; ++s) {
      flow.add_step({.name = "step" + std::to_string(s), .handler = NoOp, .max_batch_size = batch,
                     .queue_capacity = 4096});
    }
    flow.start();
    asio::io_context io(1);
    std::size_t started = 0, failed = 0;
    for (std::size_t c = 0; c < kCallers; ++c) {
      asio::co_spawn(
          io,
          [&]() -> Task<void> {
            FlowTask task;
            while (started < kTasks) {
              ++started;
              const FlowTaskStatus status = co_await flow.process(task);
              if (status != FlowTaskStatus::kCompleted) ++failed;
            }
          },
          asio::detached);
    }
    io.run();
    flow.stop();
    if (failed > 0) state.SkipWithError("tasks did not complete");
    total += kTasks;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_Flow)
    ->ArgNames({"steps", "batch"})
    ->Args({1, 1})
    ->Args({1, 32})
    ->Args({2, 1})
    ->Args({2, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// The reference: one worker thread, a mutex + condition variable queue, completions posted back.
void BM_Reference_ThreadHandOff(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  std::size_t total = 0;
  for (auto _ : state) {
    asio::io_context io(1);
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::pair<int*, std::function<void()>>> queue;
    bool quit = false;
    std::thread worker([&] {
      std::vector<std::function<void()>> taken;
      for (;;) {
        {
          std::unique_lock lock(mutex);
          ready.wait(lock, [&] { return quit || !queue.empty(); });
          if (queue.empty()) return;
          const std::size_t n = std::min(batch, queue.size());
          for (std::size_t i = 0; i < n; ++i) taken.push_back(std::move(queue[i].second));
          queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
        }
        for (auto& done : taken) asio::post(io, std::move(done));
        taken.clear();
      }
    });
    std::size_t started = 0;
    auto work = asio::make_work_guard(io);
    std::function<void()> submit_one;
    std::size_t finished = 0;
    int dummy = 0;
    submit_one = [&] {
      if (started == kTasks) return;
      ++started;
      std::lock_guard lock(mutex);
      queue.emplace_back(&dummy, [&] {
        if (++finished == kTasks) work.reset();
        submit_one();
      });
      ready.notify_one();
    };
    for (std::size_t c = 0; c < kCallers; ++c) asio::post(io, submit_one);
    io.run();
    {
      std::lock_guard lock(mutex);
      quit = true;
      ready.notify_one();
    }
    worker.join();
    total += kTasks;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_Reference_ThreadHandOff)
    ->ArgNames({"batch"})
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// Through the Unix socket (BM_FlowSocket/steps:S/batch:B): the same flow served by a FlowServer
// (its own io_context and thread) in this process; kSocketCallers coroutines on the benchmark
// thread each send requests of kTasksPerFrame tasks through one FlowClient (4 pooled
// connections) until kSocketTasks tasks have completed. The reference is the in-process figure.
constexpr std::size_t kSocketTasks = 200'000;
constexpr std::size_t kTasksPerFrame = 32;
constexpr std::size_t kSocketCallers = 32;

void BM_FlowSocket(benchmark::State& state) {
  const auto steps = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<std::size_t>(state.range(1));
  const std::string socket_path =
      (std::filesystem::temp_directory_path() / ("sluice-flow-bench-" + std::to_string(::getpid()) + ".sock")).string();
  std::size_t total = 0;
  for (auto _ : state) {
    asio::io_context server_io(1);
    Flow flow;
    for (std::size_t s = 0; s < steps; ++s) {
      flow.add_step({.name = "step" + std::to_string(s), .handler = NoOp, .max_batch_size = batch,
                     .queue_capacity = 8192});
    }
    flow.start();
    FlowServer server(server_io, flow, FlowServerOptions{.socket_path = socket_path});
    server.start();
    auto server_work = asio::make_work_guard(server_io);
    std::thread server_thread([&] { server_io.run(); });

    asio::io_context io(1);
    std::size_t failed = 0;
    auto client = std::make_unique<FlowClient>(io.get_executor(), socket_path);
    std::size_t started = 0, callers_left = kSocketCallers;
    for (std::size_t c = 0; c < kSocketCallers; ++c) {
      asio::co_spawn(
          io,
          [&]() -> Task<void> {
            std::vector<FlowTask> tasks(kTasksPerFrame);
            while (started < kSocketTasks) {
              started += kTasksPerFrame;
              co_await client->process(tasks);
              for (const FlowTask& task : tasks) failed += task.status() != FlowTaskStatus::kCompleted;
            }
            // The last caller closes the client; its connections' readers end, and io.run returns.
            if (--callers_left == 0) client.reset();
          },
          asio::detached);
    }
    io.run();
    server.stop(std::chrono::seconds(5));
    flow.stop();
    server_work.reset();
    server_thread.join();
    if (failed > 0) state.SkipWithError("tasks did not complete");
    total += kSocketTasks;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_FlowSocket)
    ->ArgNames({"steps", "batch"})
    ->Args({1, 1})
    ->Args({1, 32})
    ->Args({2, 1})
    ->Args({2, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1)
    ->Repetitions(kRepetitions)
    ->ReportAggregatesOnly(true);

// Latency (BM_FlowLatency/caller:C/spin:S): one task at a time through a one-step flow at batch
// 1, kLatencySamples round trips. caller:0 is a coroutine awaiting `flow.process` on an idle
// one-thread io_context (so each result also wakes the caller's thread); caller:1 is a thread
// that submits with a callback and spins on a flag (the flow's own latency). spin:S is
// FlowOptions::worker_spin in microseconds.
void BM_FlowLatency(benchmark::State& state) {
  const bool spinning_caller = state.range(0) == 1;
  const std::chrono::microseconds spin(state.range(1));
  std::vector<double> micros;
  micros.reserve(kLatencySamples);
  for (auto _ : state) {
    Flow flow(FlowOptions{.worker_spin = spin});
    flow.add_step({.name = "step", .handler = NoOp});
    flow.start();
    FlowTask task;
    if (spinning_caller) {
      std::atomic<bool> done{false};
      auto completion = [](FlowTask&, void* flag) {
        static_cast<std::atomic<bool>*>(flag)->store(true, std::memory_order_release);
      };
      for (std::size_t i = 0; i < kLatencySamples; ++i) {
        done.store(false, std::memory_order_relaxed);
        const auto start = Clock::now();
        flow.submit(task, Clock::time_point::max(), completion, &done);
        while (!done.load(std::memory_order_acquire)) {
        }
        micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      }
    } else {
      asio::io_context io(1);
      asio::co_spawn(
          io,
          [&]() -> Task<void> {
            for (std::size_t i = 0; i < kLatencySamples; ++i) {
              const auto start = Clock::now();
              co_await flow.process(task);
              micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
            }
          },
          asio::detached);
      io.run();
    }
  }
  std::sort(micros.begin(), micros.end());
  state.counters["p50_us"] = micros[micros.size() / 2];
  state.counters["p99_us"] = micros[micros.size() * 99 / 100];
}
BENCHMARK(BM_FlowLatency)
    ->ArgNames({"caller", "spin"})
    ->Args({0, 0})
    ->Args({0, 50})
    ->Args({1, 0})
    ->Args({1, 50})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

const bool registered = [] {
  for (const char* batch : {"1", "32"}) {
    const std::string reference = std::string("BM_Reference_ThreadHandOff/batch:") + batch;
    for (const char* steps : {"1", "2"}) {
      const std::string in_process = std::string("BM_Flow/steps:") + steps + "/batch:" + batch;
      RegisterComparison(
          {.subject = in_process, .reference = reference, .counter = "items_per_second", .unit = "tasks/s"});
      RegisterComparison({.subject = std::string("BM_FlowSocket/steps:") + steps + "/batch:" + batch,
                          .reference = in_process,
                          .counter = "items_per_second",
                          .unit = "tasks/s"});
    }
  }
  return true;
}();

}  // namespace
}  // namespace sluice::bench
