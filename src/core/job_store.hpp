// core/job_store.hpp — the job API's memory: every job from submission until its result is
// forgotten, the queue the scheduler takes from, and the place the scheduler reports to.
//
// A job's life: Submit puts it IN_QUEUE; the scheduler's Take hands it out; OnStarted makes it
// IN_PROGRESS; OnFinished makes it terminal (COMPLETED, FAILED, CANCELLED, TIMED_OUT). A queued job
// may also end without running: cancelled, purged, or expired by its `ttl` (TIMED_OUT). A terminal
// result is kept `result_ttl`, and at most `max_results` of them (the oldest are forgotten first),
// so memory stays bounded however long the worker runs. A FAILED, TIMED_OUT or CANCELLED job may be
// retried: it goes back to the queue under its id with its request; a COMPLETED job drops its
// request, so it cannot.
//
// Waiting: `WaitForChange` lets a coroutine sleep until a job changes (a status, a chunk) without
// polling and without a thread; /runsync and the Server-Sent Events stream use it.
//
// The job API reaches it through the JobBackend port (job_backend.hpp, which also defines the
// NewJob, JobView, StreamRead and JobCounts it uses), answered by MemoryJobBackend
// (memory_job_backend.hpp); the scheduler through JobSource and ResultSink.
//
// The store knows nothing of HTTP. Cancelling a job that the scheduler already holds goes through
// the canceller given to `SetCanceller` (Scheduler::Cancel); what happens to it then comes back
// through OnFinished.
//
// Threads: every member is thread-safe; one mutex guards the state, and callbacks (the finish
// listener, waking waiters, the canceller) are called after it is released, in that order. `Take` is awaited by
// one coroutine at a time. The store must outlive the scheduler that uses it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <sluice/task.hpp>

#include "core/job_backend.hpp"
#include "core/job_ports.hpp"
#include "core/status.hpp"

namespace sluice::core {

struct JobStoreOptions {
  using Duration = std::chrono::steady_clock::duration;
  /// Jobs waiting at most; Submit beyond it is kResourceExhausted (HTTP 429).
  std::size_t max_queue = 10000;
  /// How long a terminal job is kept after it ended.
  Duration result_ttl = std::chrono::minutes(30);
  /// Terminal jobs kept at most; the oldest are forgotten first.
  std::size_t max_results = 250000;
  /// The execution timeout of a job whose request names none; empty for no limit.
  std::optional<Duration> default_execution_timeout;
  /// The clock, replaceable in tests; empty means steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> now;
};

class JobStore final : public JobSource, public ResultSink {
 public:
  using Clock = std::chrono::steady_clock;

  explicit JobStore(JobStoreOptions options = {});
  ~JobStore() override;
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  /// Wiring, done before jobs flow. The canceller cancels a job the scheduler holds (true when it
  /// knew the job). The finish listener is called once per terminal transition, with the job's
  /// final view (its result included only when the job has a webhook); it must be thread-safe
  /// and quick (it runs on I/O or handler threads).
  void SetCanceller(std::function<bool(std::string_view job_id)> canceller);
  void SetFinishListener(std::function<void(const JobView&)> listener);

  /// Queues a job under a new id (a random UUID) and returns the id. kResourceExhausted when
  /// `max_queue` jobs wait already; kUnavailable once the store is closed.
  Result<std::string> Submit(NewJob job);

  /// The job now, or nothing when unknown or forgotten.
  std::optional<JobView> Find(std::string_view job_id);

  /// Cancels a job: a queued one ends CANCELLED at once; one the scheduler holds is cancelled
  /// there (its CANCELLED comes back through OnFinished, shortly). Returns the status to report:
  /// CANCELLED, or the terminal status the job already had. kNotFound for an unknown id.
  Result<JobStatus> Cancel(std::string_view job_id);

  /// Queues a FAILED, TIMED_OUT or CANCELLED job again under its id. kNotFound, or
  /// kFailedPrecondition naming the job's status.
  Status Retry(std::string_view job_id);

  /// Removes every queued job (each ends CANCELLED); returns how many.
  std::size_t Purge();

  /// The chunks a streaming job emitted from `from_index` on, with its state. With `from_index`
  /// empty, the chunks not returned by an earlier call that also passed no index (RunPod's "new
  /// since the last /stream"), and that shared position advances.
  std::optional<StreamRead> ReadChunks(std::string_view job_id, std::optional<std::size_t> from_index);

  /// Suspends until the job's version differs from `seen`, the job is forgotten, or `deadline`
  /// passes; returns at once when it differs already. Returns the version then (0 when the job is
  /// unknown). The calling coroutine must run on a strand or a single-threaded executor: it is
  /// woken by a post to that executor.
  Task<std::uint64_t> WaitForChange(std::string_view job_id, std::uint64_t seen, Clock::time_point deadline);

  /// Suspends until the job has ended, is forgotten, or `deadline` passes (returns at once when it
  /// has ended already); other changes do not wake it. Returns the job then, with its result, or
  /// nothing when it is unknown. Same executor rule as WaitForChange. /runsync waits here.
  Task<std::optional<JobView>> WaitForEnd(std::string_view job_id, Clock::time_point deadline);

  /// Stops accepting jobs: Submit is kUnavailable from now on; queued jobs are still taken, then
  /// Take returns empty and the scheduler stops.
  void Close();

  /// Ends every job that has not ended: queued ones CANCELLED at once, running ones through the
  /// canceller. Used at the drain deadline.
  void CancelAll();

  /// Forgets the results past `result_ttl` now. Every call that looks jobs up does this too; an
  /// idle worker calls it now and then (the job API: every second) so memory is given back.
  void ForgetExpired();

  JobCounts counts() const;

  /// The options it was made with, `now` filled in (steady_clock::now when none was given).
  const JobStoreOptions& options() const noexcept;

  // JobSource: hands out queued jobs in submission order, skipping (and expiring) those whose
  // ttl has passed.
  Task<std::vector<JobRequest>> Take(std::size_t max_jobs) override;

  // ResultSink.
  void OnStarted(const std::string& job_id) override;
  void OnProgress(const std::string& job_id, const boost::json::value& update) override;
  void OnChunk(const std::string& job_id, const boost::json::value& chunk) override;
  void OnFinished(const std::string& job_id, JobOutcome outcome) override;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::core
