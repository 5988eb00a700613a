// redis/queue.hpp — what the worker side of the Redis job queue shares (docs/scale-out.md):
// its options, the jobs this worker holds, script runs with the NOSCRIPT fallback, and the
// producer calls (Submit, Cancel) the gateway and the tests use.
//
// Threads: QueueOptions is a value. HeldJobs is thread-safe (a mutex); the source adds to it, the
// sink removes from it, the heartbeat reads it. The coroutines run on the caller's executor and
// borrow the Connection, which must outlive them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
/// consumer (the earlier attempt ran and only its reply was lost).
Task<core::Result<FinishAnswer>> Finish(Connection& connection, const Keys& keys, FinishParams params,
                                        std::chrono::steady_clock::time_point deadline);

/// A new random job id (a version 4 UUID's text).
std::string NewJobId();

/// `<hostname>:<pid>`: stable for the process, distinct between live workers.
std::string DefaultConsumerName();

/// The job's `policy.executionTimeout` in ms (0: none), as RunPod's request carries it.
std::int64_t ExecutionTimeoutMs(const boost::json::object& request);

}  // namespace sluice::redis
