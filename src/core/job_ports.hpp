// core/job_ports.hpp — the seams between the scheduler and the outside world.
//
// The scheduler knows nothing of HTTP, RunPod or Redis. Jobs reach it through a `JobSource` it
// pulls from, as many at a time as it has free slots; everything it learns about a job leaves
// through a `ResultSink`. Each mode of the worker (local test, the HTTP job API, the RunPod
// control plane, a Redis queue) is one source and one sink; `memory_queue.hpp` holds the in-memory
// pair used by tests, local test mode and the local job API.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <sluice/task.hpp>

namespace sluice::core {

/// A job's lifecycle as RunPod names it. The first two are transient, the rest terminal.
enum class JobStatus { kInQueue, kInProgress, kCompleted, kFailed, kCancelled, kTimedOut };

std::string_view ToString(JobStatus status) noexcept;
/// The status whose ToString is `name`; none for any other text.
std::optional<JobStatus> JobStatusNamed(std::string_view name) noexcept;
inline bool IsTerminal(JobStatus status) noexcept {
  return status != JobStatus::kInQueue && status != JobStatus::kInProgress;
}

/// One job as it enters the scheduler.
struct JobRequest {
  std::string id;
  /// The whole request; its `input` member is present and not null (sources reject others).
  boost::json::object request;
  /// After this long in progress the job is cancelled and ends TIMED_OUT.
  std::optional<std::chrono::steady_clock::duration> execution_timeout;
};

/// How a job ended: a terminal status and the result object (`output`, `error`, `stopPod`; see
/// result_mapping.hpp). CANCELLED carries an empty result; TIMED_OUT an `error` saying so.
struct JobOutcome {
  JobStatus status = JobStatus::kCompleted;
  boost::json::object result;
};

/// Where the scheduler gets jobs. Implementations are owned by the mode that uses them and outlive
/// the scheduler's `Run()`.
class JobSource {
 public:
  virtual ~JobSource() = default;

  /// Waits until at least one job is available, then returns between 1 and `max_jobs` of them
  /// (`max_jobs` >= 1). Returns an empty vector once the source is exhausted: no job will ever
  /// come again, and the scheduler drains and stops. Called by one coroutine at a time. A source
  /// must not hand out a job whose id is still running: such a second delivery is dropped.
  virtual Task<std::vector<JobRequest>> Take(std::size_t max_jobs) = 0;
};

/// Where the scheduler reports. Calls for one job come in this order: `OnStarted`, then any number
/// of `OnProgress`/`OnChunk`, then exactly one `OnFinished`, after which none comes for that job.
/// A job cancelled after it was taken but before it started gets only `OnFinished` (CANCELLED).
/// Implementations must not throw (the scheduler logs and ignores it if one does).
/// Calls for different jobs come concurrently from any thread, so implementations are thread-safe.
/// They should return quickly: they run on the I/O threads or the handler's pool thread.
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual void OnStarted(const std::string& job_id) { (void)job_id; }
  virtual void OnProgress(const std::string& job_id, const boost::json::value& update) {
    (void)job_id;
    (void)update;
  }
  virtual void OnChunk(const std::string& job_id, const boost::json::value& chunk) {
    (void)job_id;
    (void)chunk;
  }
  virtual void OnFinished(const std::string& job_id, JobOutcome outcome) = 0;
};

}  // namespace sluice::core
