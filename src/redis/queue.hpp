// redis/queue.hpp — what the worker side of the Redis job queue shares (docs/scale-out.md):
// its options, the jobs this worker holds, script runs with the NOSCRIPT fallback, finishing jobs
// (alone, or batched by FinishBatch), and the producer calls (Submit, Cancel) the gateway and the
// tests use.
//
// Threads: QueueOptions is a value. HeldJobs is thread-safe (a mutex); the source adds to it, the
// sink removes from it, the heartbeat reads it. The coroutines run on the caller's executor and
// borrow the Connection, which must outlive them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>

#include <sluice/task.hpp>

#include "core/status.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/scripts.hpp"

namespace sluice::redis {

struct QueueOptions {
  std::string queue = "default";
  /// This worker's consumer name in the group, the same for its source, sink and loops; not
  /// empty (DefaultConsumerName() gives host:pid). Two live workers must never share one.
  std::string consumer;
  /// An entry pending this long without a heartbeat belongs to a dead worker and is reclaimed.
  std::chrono::milliseconds visibility_timeout{30000};
  /// A job delivered more often than this ends FAILED; 0: no limit.
  int max_deliveries = 3;
  /// How long a finished job's hash and chunks stay (RunPod keeps /run results 30 min).
  std::chrono::seconds result_ttl{1800};
  /// The BLOCK of the XREADGROUP and cancel reads.
  std::chrono::milliseconds block{2000};
  /// The execution timeout of a job whose request has no `policy.executionTimeout` (the worker's
  /// `--execution-timeout`); none: such a job may run for ever.
  std::optional<std::chrono::steady_clock::duration> default_execution_timeout;
  /// Result writes are retried on connection errors for this long.
  std::chrono::steady_clock::duration finish_deadline = std::chrono::seconds(60);
};

/// The jobs this worker holds, by job id: the stream entry each came in, from the start script
/// (or a reaper's claim) to the finish script. The heartbeat keeps these entries claimed.
class HeldJobs {
 public:
  void Add(const std::string& job_id, const std::string& entry);
  /// The entry of a held job, and forgets it.
  std::optional<std::string> Take(const std::string& job_id);
  std::optional<std::string> Entry(const std::string& job_id) const;
  std::vector<std::string> Entries() const;
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> entries_;  // job id → entry; guarded by mutex_
};

/// Runs a script by EVALSHA, and by EVAL when the server does not know it (NOSCRIPT). A Redis
/// error reply comes back as a failed Status (kInternal) naming the script.
Task<core::Result<Reply>> RunScript(Connection& connection, ScriptCall call);

/// Runs several scripts at once, pipelined on `connection` (one round trip's wait for all of them,
/// not one each); the answers in the order of `calls`, each as RunScript's.
Task<std::vector<core::Result<Reply>>> RunScripts(Connection& connection, std::vector<ScriptCall> calls);

/// Creates the consumer group `workers` on the jobs stream (and the stream), if missing.
Task<core::Status> EnsureGroup(Connection& connection, const Keys& keys);

struct SubmitRequest {
  std::string job_id;             // empty: a random one (UUID) is made
  boost::json::object request;    // the whole request; needs `input`
  std::string webhook;
};
/// Adds a job (hash IN_QUEUE + stream entry, one atomic script) and returns its id. An id that
/// exists already is not queued again and is returned as it is.
Task<core::Result<std::string>> Submit(Connection& connection, const Keys& keys, SubmitRequest request);

/// A producer's cancel: a queued job ends CANCELLED at once (a worker that reads it skips it); a
/// running one is announced on the cancels stream. Returns "cancelled", "signalled", "missing" or
/// the terminal status the job had.
Task<core::Result<std::string>> Cancel(Connection& connection, const Keys& keys, std::string job_id,
                                       std::chrono::seconds result_ttl);

/// Runs the finish script, retrying connection failures with backoff until `deadline`. A retry
/// answered not_pending counts as finished when the job already holds this very result from this
/// consumer (the earlier attempt ran and only its reply was lost). `attempts_made`: tries already
/// made elsewhere (FinishBatch's), which count as earlier attempts.
Task<core::Result<FinishAnswer>> Finish(Connection& connection, const Keys& keys, FinishParams params,
                                        std::chrono::steady_clock::time_point deadline, int attempts_made = 0);

/// Group commit for the finish script: a finish that comes while a batch is in flight waits for
/// it, then goes out together with every other finish that came meanwhile (up to `max_batch`), as
/// one script call. Alone, a finish goes out at once: it never waits for company, only for the
/// call before it. Under load one call ends many jobs, which saves Redis a script call and the
/// worker a round trip per job. Each job's answer is the one redis::Finish would give; when a
/// batch gets no usable answer (connection lost, or a script error part-way), each of its jobs is
/// retried alone by redis::Finish until its own deadline, so one job's failure stays its own.
///
/// Every finish through one FinishBatch must have the same `consumer` and `result_ttl_s` (one
/// sink's). Threads: Finish may be called from any thread; the batches run on `executor`.
/// Borrows `connection`, which must outlive it; destroy it after the io_context has stopped.
class FinishBatch {
 public:
  FinishBatch(boost::asio::any_io_executor executor, Connection& connection, Keys keys, std::size_t max_batch = 64);
  ~FinishBatch();
  FinishBatch(const FinishBatch&) = delete;
  FinishBatch& operator=(const FinishBatch&) = delete;

  Task<core::Result<FinishAnswer>> Finish(FinishParams params, std::chrono::steady_clock::time_point deadline);

  /// Script calls made, and jobs they finished (for tests and the benchmark's figures).
  std::size_t calls() const noexcept { return calls_.load(); }
  std::size_t jobs() const noexcept { return jobs_.load(); }

 private:
  struct Waiter;
  void Join(Waiter waiter);
  Task<void> Flush();
  // Answers every waiting finish with `failure` and lets the next one start a Flush (after an
  // exception, which should not happen: it keeps no waiter hanging).
  void FailWaiting(const core::Status& failure);

  boost::asio::any_io_executor executor_;
  Connection& connection_;
  Keys keys_;
  std::size_t max_batch_;
  std::atomic<std::size_t> calls_{0}, jobs_{0};
  std::mutex mutex_;
  std::deque<Waiter> waiting_;  // guarded by mutex_
  bool flushing_ = false;       // a Flush runs; guarded by mutex_
};

/// A new random job id (a version 4 UUID's text).
std::string NewJobId();

/// `<hostname>:<pid>`: stable for the process, distinct between live workers.
std::string DefaultConsumerName();

/// The job's `policy.executionTimeout` in ms (0: none), as RunPod's request carries it.
std::int64_t ExecutionTimeoutMs(const boost::json::object& request);

}  // namespace sluice::redis
