// redis/result_sink.hpp — the scheduler's ResultSink on a Redis Streams queue (docs/scale-out.md):
// progress updates and stream chunks go to the job's hash and chunk list (update script), the
// final outcome to the finish script (the outcomes of jobs that end together in one call:
// redis::FinishBatch), each change with an entry on the events stream.
//
// Fencing: the finish script writes only while the job's stream entry is still pending and owned
// by this consumer, and only if the job has not ended already. A late result (the entry was
// reclaimed by another worker's reaper, or the job ended meanwhile) is dropped and logged; so is
// a progress update or chunk of a job this consumer no longer runs. A CANCELLED outcome is written
// as CANCELLED (with an empty result), TIMED_OUT as TIMED_OUT with its error.
//
// Each job has an outbox: its writes go out one after another in the order the scheduler reported
// them, so chunks arrive in order and progress never lands after the final result. The final
// write is retried with backoff on connection errors until `finish_deadline` (the stream entry
// stays pending meanwhile, and the heartbeat keeps it claimed); updates get one try. The job
// leaves HeldJobs once its final write is done or given up.
//
// Threads: the On* calls come from any thread and only queue; the writes run as coroutines on
// `executor`. Borrows `commands` and `held`, which outlive it; destroy the sink after the
// io_context has stopped running.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <mutex>
#include <unordered_set>

#include <boost/asio/any_io_executor.hpp>

#include "core/job_outbox.hpp"
#include "core/job_ports.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/queue.hpp"

namespace sluice::redis {

class RedisResultSink : public core::ResultSink {
 public:
  RedisResultSink(boost::asio::any_io_executor executor, Connection& commands, QueueOptions options,
                  HeldJobs& held);

  void OnProgress(const std::string& job_id, const boost::json::value& update) override;
  void OnChunk(const std::string& job_id, const boost::json::value& chunk) override;
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override;

  /// Gives the job back to the queue instead of finishing it: its final outcome (a cancellation at
  /// a drain's deadline) is not written, and its stream entry stays pending, so another worker's
  /// reaper takes it after the visibility timeout and runs it again (a delivery more). Call before
  /// the job's OnFinished. Thread-safe.
  void Release(const std::string& job_id);
  /// Jobs given back by Release whose outcome was then skipped.
  std::size_t released() const noexcept { return released_count_.load(); }

  /// Writes queued or in flight.
  std::size_t pending() const noexcept { return outbox_.pending(); }
  /// Final results written, dropped by the fence (late), and lost (Redis unreachable too long).
  std::size_t written() const noexcept { return written_.load(); }
  std::size_t dropped() const noexcept { return dropped_.load(); }
  std::size_t lost() const noexcept { return lost_.load(); }

  /// Waits until nothing is pending or `timeout` passes; true when nothing is pending.
  Task<bool> Drain(std::chrono::steady_clock::duration timeout);

 private:
  struct Write {
    enum class Kind { kProgress, kChunk, kFinal } kind = Kind::kFinal;
    std::string status;  // kFinal
    std::string json;    // the update, the chunk or the result object
  };

  void Enqueue(const std::string& job_id, Write write);
  Task<void> Deliver(const std::string& job_id, Write write);

  boost::asio::any_io_executor executor_;
  Connection& commands_;
  QueueOptions options_;
  Keys keys_;
  HeldJobs& held_;
  FinishBatch finishes_;  // the final writes of concurrent jobs, one script call per batch
  std::atomic<std::size_t> written_{0}, dropped_{0}, lost_{0}, released_count_{0};
  std::mutex mutex_;
  std::unordered_set<std::string> released_;  // jobs given back by Release; guarded by mutex_
  core::JobOutbox<Write> outbox_;  // last: its deliveries use the members above
};

}  // namespace sluice::redis
