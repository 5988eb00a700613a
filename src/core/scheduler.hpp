// core/scheduler.hpp — runs jobs from a JobSource concurrently under an adjustable limit and reports
// them to a ResultSink. It is the heart of every worker mode.
//
// How it works: one dispatcher coroutine (on its own strand) waits for free slots of an
// AdjustableSemaphore, takes up to that many jobs from the source, and starts each one:
//   - coroutine and streaming handlers are spawned on the I/O threads, each job on its own strand
//     (when more than one thread runs the io_context). A coroutine starts at once, inside the
//     dispatch, and runs until its first co_await: a job that never suspends costs no queueing;
//   - blocking handlers run on the BlockingPool, which grows with the limit.
// Before each dispatch decision, and every `modifier_interval` while it waits, the dispatcher asks
// the ConcurrencyController for the limit, and resizes the semaphore; lowering it never interrupts
// running jobs. A job holds its slot until its handler has really returned, even after it was
// reported cancelled or timed out, so the limit also bounds the threads a blocking handler keeps busy.
//
// Cancellation and timeouts: `Cancel(id)` or an expired `execution_timeout` reports the job
// CANCELLED or TIMED_OUT at once, stops its `Job::stop_token()`, and emits terminal cancellation
// to its coroutine (which then throws at its next co_await). A blocking handler finishes in its own
// time; its result is discarded.
//
// Ownership and threads: the scheduler borrows the io_context, the source and the sink, which must
// outlive it. `Run()` is awaited once; it returns after the source is exhausted and every job has
// ended. All other members are thread-safe. Destroy the scheduler only after `Run()` has returned.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include <sluice/handler.hpp>
#include <sluice/task.hpp>

#include "core/job_ports.hpp"
#include "core/result_mapping.hpp"

namespace sluice::core {

struct SchedulerOptions {
  int concurrency = 1;                         // the initial limit
  int max_concurrency = 1000;                  // the modifier may not go above it
  std::function<int(int)> concurrency_modifier;
  std::chrono::steady_clock::duration modifier_interval = std::chrono::milliseconds(100);
  std::size_t max_jobs_per_take = 64;          // at most this many jobs asked of the source at once
  /// How many threads run the io_context. With more than one, each job gets a strand of its own
  /// so that its coroutine and its cancellation never run at the same time.
  std::size_t io_threads = 1;
  bool aggregate_stream = false;               // final output of a streaming job lists its chunks
  /// Every result gets stopPod: true, and once the first result (not a cancellation) is reported
  /// no more jobs are taken: Run() ends when the jobs already taken have ended.
  bool refresh_worker = false;
  std::string worker_id = "unknown";
  std::string hostname = "unknown";            // for exception reports
  /// Called with each warning (a modifier result ignored); may be empty.
  std::function<void(const std::string&)> warn;
};

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& io, Handler handler, JobSource& source, ResultSink& sink,
            SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Dispatches until the source is exhausted, then waits for every started job to end.
  Task<void> Run();

  /// Cancels a running job. Returns false if no job with that id is running.
  bool Cancel(std::string_view job_id);

  /// The concurrency limit in force.
  int limit() const noexcept;
  /// Jobs started and not yet reported finished.
  std::size_t running() const noexcept;
  /// The most jobs that held a slot at the same moment since the scheduler was made.
  std::size_t peak_running() const noexcept;
  /// The ids of the running jobs (RunPod's ping reports them).
  std::vector<std::string> running_ids() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::core
