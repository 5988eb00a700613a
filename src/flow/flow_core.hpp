// flow/flow_core.hpp — the engine behind sluice::Flow (include/sluice/flow.hpp): the steps'
// bounded queues, the workers that take batches from them as flow::DecideBatch says, the hand-over
// of a finished batch to the next step, deadlines, stop, and the counters behind Flow::metrics.
//
// Threads: every step has `workers` threads of its own. A worker holds its step's mutex only to
// decide and take a batch; it runs the handler and hands the batch on with no lock held, and
// completes tasks (calls their completion) with no lock held. A coroutine handler runs on the
// flow's I/O threads while its worker thread waits for it, so one instance never runs two batches.
// One more thread, the deadline watcher, completes queued tasks whose deadline has passed when no
// worker is free to notice. Lock order: a step's mutex is never held while taking another's.
//
// Ownership: the core borrows every task between `Submit` and its completion; the Flow owns the
// core.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>

#include <sluice/flow.hpp>

#include "flow/batch_decision.hpp"

namespace sluice::detail {

/// Durations of something, in seconds, in buckets from 10 µs to 10 s. Lock-free; thread-safe.
class FlowHistogram {
 public:
  static constexpr std::array<double, 19> kUpperBounds = {
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10};

  void Observe(std::chrono::steady_clock::duration duration) noexcept;
  /// Cumulative counts per bound, then the +Inf count; and the sum in seconds.
  void Read(std::vector<std::uint64_t>& cumulative_counts, double& sum_seconds) const;

 private:
  std::array<std::atomic<std::uint64_t>, kUpperBounds.size() + 1> counts_{};
  std::atomic<std::uint64_t> sum_nanoseconds_{0};
};

class FlowCore;

struct FlowStepRuntime {
  using Clock = std::chrono::steady_clock;

  FlowStepRuntime(FlowCore& core, FlowStep config, std::size_t index);

  /// The worker threads' loop: make the handler, then take batches until the step stops.
  void RunWorker(std::size_t worker);
  /// Hands `tasks` from the previous step to this one: each joins the queue, waiting while it is
  /// full (backpressure for the previous step's workers), or completes at once (past its deadline,
  /// or the step has halted). Completions happen after the lock is released.
  void Accept(std::span<FlowTask* const> tasks);
  /// The first step's entry from Flow::submit: queues `task` and returns kPending, or refuses it
  /// at once without completing it (kRejected when full, kStopped when halted, kTimedOut when its
  /// deadline has passed), status and error set.
  FlowTaskStatus Enqueue(FlowTask& task, Clock::time_point now);
  /// Completes as kTimedOut every queued task whose deadline has passed; returns the earliest
  /// deadline still queued.
  Clock::time_point ExpireQueued(Clock::time_point now);
  /// Completes every queued task as kStopped and tells the workers to leave after their batch.
  void Halt();
  FlowStepMetrics Metrics() const;

  FlowCore& core;
  const FlowStep config;
  const std::size_t index;
  const flow::BatchPolicy policy;
  const std::chrono::microseconds spin;  // FlowOptions::worker_spin

  mutable std::mutex mutex;
  std::condition_variable work_ready;  // a batch may be ready, or the step is halting
  std::condition_variable room_ready;  // the queue has room again, or the step is halting
  std::deque<FlowTask*> queue;
  std::atomic<std::size_t> queued_hint{0};  // queue.size(), for spinning workers to read unlocked
  std::size_t idle_workers = 0;        // waiting on work_ready
  std::size_t waiting_producers = 0;   // waiting on room_ready
  bool halted = false;
  Clock::time_point earliest_deadline = Clock::time_point::max();  // of the queued tasks, or earlier

  // Metrics.
  std::atomic<std::uint64_t> batches{0}, tasks{0}, failed{0}, timed_out{0}, rejected{0};
  std::vector<std::atomic<std::uint64_t>> batch_size_counts;  // index = batch size
  FlowHistogram handler_time;
  FlowHistogram queue_time;

 private:
  // Takes the next batch into `batch` (cleared first), completing expired tasks met on the way.
  // Returns false when the worker should leave.
  bool TakeBatch(std::vector<FlowTask*>& batch, std::vector<FlowTask*>& expired);
  void RunBatch(BatchHandler::Instance& handler, std::vector<FlowTask*>& batch);
  // The decision for the queue's front at `now`; the caller holds the mutex.
  flow::BatchDecision DecideLocked(Clock::time_point now) const;
  // Spins up to `spin`, with the mutex released, until a task may be queued. The caller holds the
  // lock, holds it again on return, and must look at the queue again.
  void SpinForWork(std::unique_lock<std::mutex>& lock);
  // Wakes a worker when the queue's change may let a batch leave; the caller holds the mutex.
  void WakeWorkerLocked(bool was_empty, bool new_deadline);
  // Removes expired tasks into `expired`; the caller holds the mutex.
  void ExpireLocked(Clock::time_point now, std::vector<FlowTask*>& expired);
};

class FlowCore {
 public:
  using Clock = std::chrono::steady_clock;

  explicit FlowCore(FlowOptions options);
  ~FlowCore();

  void AddStep(FlowStep step);
  void Start();
  FlowTaskStatus Submit(FlowTask& task, Clock::time_point deadline, FlowCompletion completion,
                        void* context);
  void Stop(Clock::duration drain);
  bool running() const noexcept { return state_.load(std::memory_order_acquire) == State::kRunning; }
  const FlowOptions& options() const noexcept { return options_; }
  FlowMetrics Metrics() const;

  // For the steps.
  /// Sets `status` (unless the handler already failed the task) and calls its completion.
  void Complete(FlowTask& task, FlowTaskStatus status, std::string error = {});
  /// Moves a finished batch on: failed tasks complete, the rest go to step `next` or complete.
  void Forward(std::vector<FlowTask*>& batch, std::size_t next);
  /// A step's queue may hold a deadline earlier than the watcher's next wake.
  void DeadlineQueued(Clock::time_point deadline);
  boost::asio::io_context& io() { return io_; }

 private:
  enum class State { kNew, kRunning, kStopping, kStopped };

  void WatchDeadlines();
  // One task fewer in the flow.
  void Finished();

  const FlowOptions options_;
  std::vector<std::unique_ptr<FlowStepRuntime>> steps_;
  std::atomic<State> state_{State::kNew};
  std::vector<std::thread> threads_;  // workers, the watcher, the I/O threads

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> io_work_;
  std::vector<std::thread> io_threads_;

  // Tasks submitted and not yet completed; Stop waits for it to reach 0.
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  std::condition_variable all_done_;
  std::once_flag stop_once_;

  std::mutex watch_mutex_;
  std::condition_variable watch_wakeup_;
  std::atomic<Clock::rep> watch_next_{Clock::time_point::max().time_since_epoch().count()};
  bool watch_quit_ = false;

  // Start: workers report their handler made (or the factory's exception).
  std::mutex start_mutex_;
  std::condition_variable started_;
  std::size_t workers_ready_ = 0;
  std::exception_ptr start_error_;
  friend struct FlowStepRuntime;

  std::atomic<std::uint64_t> submitted_{0}, completed_{0}, failed_{0}, timed_out_{0}, rejected_{0},
      stopped_{0};
  FlowHistogram latency_;
};

}  // namespace sluice::detail
