// core/job_backend.hpp — the job API's port to wherever its jobs are kept.
//
// The job API (api::JobApi) turns HTTP requests into calls on a `JobBackend` and its answers into
// RunPod's JSON; it never sees how jobs are stored. Two backends fill the port: the in-memory one
// (`MemoryJobBackend` over `JobStore`, memory_job_backend.hpp), used by `--rp_serve_api`, and a
// Redis one (issue #6) that keeps jobs in Redis so that many gateways and workers share them.
// Every call is a coroutine, because a remote backend answers over the network; the memory one
// answers at once.
//
// Failures: an expected answer about a job (unknown id, a full queue, a job in the wrong state) is a
// Status with the code the HTTP edge maps (kNotFound 404, kResourceExhausted 429,
// kFailedPrecondition 409, kUnavailable 503); a backend that cannot answer at all (Redis down or
// too slow) answers kUnavailable with a message naming the problem, and the API turns it into a 503.
// Backends do not throw for these.
//
// Threads: every member may be called concurrently from any number of coroutines on any threads.
// Arguments passed by reference or view (job ids) must stay valid until the call's Task completes,
// which a caller that `co_await`s at once guarantees. The two waits are awaited on a strand or a
// single-threaded executor (JobStore's rule: they are woken by a post to it). The caller owns the
// backend and keeps it alive while any call is pending.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <sluice/task.hpp>

#include "core/job_ports.hpp"
#include "core/status.hpp"

namespace sluice::core {

/// A job as submitted: the request (with a non-null `input`; the caller checked) and its options.
struct NewJob {
  boost::json::object request;
  std::string webhook;  // empty: none
  std::optional<std::chrono::steady_clock::duration> execution_timeout;
  /// How long it may wait in the queue before it expires (TIMED_OUT).
  std::optional<std::chrono::steady_clock::duration> ttl;
};

/// A job as seen from outside at one moment.
struct JobView {
  std::string id;
  JobStatus status = JobStatus::kInQueue;
  std::optional<std::int64_t> delay_ms;      // once started: submission to start
  std::optional<std::int64_t> execution_ms;  // once ended after starting: start to end
  /// Terminal: the result (`output` or `error`). IN_PROGRESS: `output` holds the latest progress
  /// update, if any, as RunPod shows it.
  boost::json::object result;
  std::string webhook;
  std::uint64_t version = 0;  // grows with every change; see WaitForChange
};

/// Chunks of a streaming job and its state, read by /stream.
struct StreamRead {
  JobView job;  // without the result, unless terminal
  std::vector<boost::json::value> chunks;
  std::size_t next_index = 0;  // the index after the last chunk returned
};

/// Totals since the backend was made, and what it holds now.
struct JobCounts {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t timed_out = 0;
  std::uint64_t retried = 0;
  std::uint64_t rejected_queue_full = 0;
  std::uint64_t rejected_closed = 0;
  std::size_t in_queue = 0;
  std::size_t in_progress = 0;  // handed to a scheduler and not yet ended
  std::size_t retained = 0;     // terminal jobs kept
  /// The workers serving the queue, idle and running jobs, when the backend knows them (a Redis
  /// queue's fleet); unset, /health reports this process's own scheduler.
  std::optional<std::size_t> workers_idle;
  std::optional<std::size_t> workers_running;
};

class JobBackend {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~JobBackend() = default;

  /// Queues a job under a new id and returns the id. kResourceExhausted when the queue is full;
  /// kUnavailable when the backend takes no jobs (draining, or unreachable).
  /// With an idempotency key (`X-Idempotency-Key`), a key seen within the result TTL returns the
  /// id of the job first submitted with it, and queues nothing; a submission that failed leaves no
  /// key behind.
  virtual Task<Result<std::string>> Submit(NewJob job, std::optional<std::string> idempotency_key) = 0;

  /// The job now, with its result. kNotFound when unknown or forgotten.
  virtual Task<Result<JobView>> Find(std::string_view job_id) = 0;

  /// Cancels a job; the status to report: CANCELLED, or the terminal status it already had.
  /// kNotFound for an unknown id. A running job's CANCELLED is recorded shortly after.
  virtual Task<Result<JobStatus>> Cancel(std::string_view job_id) = 0;

  /// Queues a FAILED, TIMED_OUT or CANCELLED job again under its id. kNotFound, or
  /// kFailedPrecondition naming the job's status, or kResourceExhausted.
  virtual Task<Status> Retry(std::string_view job_id) = 0;

  /// Removes every queued job (each ends CANCELLED); how many.
  virtual Task<Result<std::size_t>> Purge() = 0;

  /// A streaming job's chunks from `from_index` on, with its state (JobStore::ReadChunks: with no
  /// index, the chunks new since the last call that passed none). kNotFound when unknown.
  virtual Task<Result<StreamRead>> ReadChunks(std::string_view job_id, std::optional<std::size_t> from_index) = 0;

  /// Suspends until the job's version differs from `seen`, the job is forgotten, or `deadline`
  /// passes; the version then (0 when the job is unknown).
  virtual Task<Result<std::uint64_t>> WaitForChange(std::string_view job_id, std::uint64_t seen,
                                                    Clock::time_point deadline) = 0;

  /// Suspends until the job has ended, is forgotten, or `deadline` passes; the job then, with its
  /// result once ended. kNotFound when it is unknown. /runsync waits here.
  virtual Task<Result<JobView>> WaitForEnd(std::string_view job_id, Clock::time_point deadline) = 0;

  /// The totals, for /health and /metrics. Answers by `deadline`, kUnavailable if it cannot: a
  /// health check must not hang on a slow backend.
  virtual Task<Result<JobCounts>> Counts(Clock::time_point deadline) = 0;
};

}  // namespace sluice::core
