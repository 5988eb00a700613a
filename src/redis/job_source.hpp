// redis/job_source.hpp — the scheduler's JobSource on a Redis Streams queue (docs/scale-out.md):
// `Take(n)` reads up to n new entries of `sluice:{q}:jobs` in the group `workers` (as many as
// there are free slots) and starts each: it skips a job already ended (cancelled while queued),
// fails one delivered more than `max_deliveries` times, and marks the rest IN_PROGRESS under this
// consumer. While jobs are queued, one take script call reads and starts a whole batch; when none
// is, the read blocks (XREADGROUP ... COUNT n BLOCK ... >) and a start script runs per entry.
//
// Before new entries it hands out, in this order: this consumer's own pending entries (read from
// ID 0 at the first Take and again after a connection error, since a read whose reply was lost
// left its entries pending here), and the entries the reaper claimed (`HandOut`). An entry of a
// job this worker already holds is never handed out twice. Each started job enters HeldJobs with
// its entry, where the heartbeat keeps it claimed and the sink finds it.
//
// `Stop()` ends taking: a read in flight finishes (its entries are started and run: they are
// pending here already), and the next Take returns nothing, so the scheduler drains; a backoff
// wait is cut short. Entries handed out by the reaper and not yet started stay pending, and
// another worker's reaper takes them after the visibility timeout.
//
// Connections: the blocking read has a Connection of its own (made here from the endpoint; a
// BLOCK holds up its connection); the scripts go over `commands`, shared with the sink and the
// background loops. Errors (Redis down, restarting) are logged and retried with backoff.
//
// Threads: `Take` is called by the scheduler's dispatcher, one call at a time; `Stop` and
// `HandOut` from any thread. Borrows `commands` and `held`, which outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/job_ports.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/queue.hpp"

namespace sluice::redis {

class RedisJobSource : public core::JobSource {
 public:
  RedisJobSource(boost::asio::any_io_executor executor, Endpoint endpoint, Connection& commands,
                 QueueOptions options, HeldJobs& held, ConnectionOptions connection = {});
  ~RedisJobSource() override;

  Task<std::vector<core::JobRequest>> Take(std::size_t max_jobs) override;

  /// Ends taking (see the file comment). Thread-safe, idempotent.
  void Stop();
  bool stopped() const noexcept { return stopping_.load(); }

  /// Entries the reaper claimed for this consumer; started by a later Take.
  void HandOut(std::vector<StreamEntry> entries);
  /// A cancel (from the cancel listener) for a job this source has started in Redis but not yet
  /// returned from Take, where Scheduler::Cancel cannot see it: the job ends CANCELLED instead of
  /// being handed to the scheduler. True when it was such a job. Wire the listener as
  /// `source.CancelStarting(id) || scheduler.Cancel(id)`, in this order: a job leaves this state
  /// only by being returned to the scheduler, which parks it where Cancel finds it.
  bool CancelStarting(const std::string& job_id);
  /// The entries handed out and not yet started: the heartbeat keeps them claimed too.
  std::vector<std::string> WaitingEntries() const;

  /// Counters (tests, logs): jobs started, entries skipped (ended, missing, owned elsewhere or
  /// already held), jobs failed at start (max deliveries, deleted entries, bad requests).
  std::size_t started() const noexcept { return started_.load(); }
  std::size_t skipped() const noexcept { return skipped_.load(); }
  std::size_t failed() const noexcept { return failed_.load(); }

 private:
  // The take script: up to `wanted` new entries read and started in one call (none when nothing
  // is queued).
  Task<core::Result<std::vector<TakenEntry>>> TakeQueued(std::size_t wanted);
  // Starts entries this consumer holds pending (a start script each, pipelined).
  Task<std::vector<core::JobRequest>> StartAll(std::vector<StreamEntry> entries);
  // The entries the take script read and started.
  Task<std::vector<core::JobRequest>> StartTaken(std::vector<TakenEntry> taken);
  // One start answer: a started job joins `jobs`; the others are counted and logged.
  Task<void> Accept(StreamEntry entry, const StartAnswer& answer, std::vector<core::JobRequest>& jobs);
  // The end of a Take: the jobs cancelled meanwhile end CANCELLED; the rest are returned.
  Task<std::vector<core::JobRequest>> Release(std::vector<core::JobRequest> jobs);
  Task<void> DropEntryWithoutId(const StreamEntry& entry);
  // After a failed read or take ("Reading", "Taking"): logs, marks what must be redone, backs off.
  Task<void> ReadFailed(const char* doing, const std::string& why);
  Task<bool> ReadOwnPending();
  Task<void> Pause(std::chrono::steady_clock::duration delay);
  Task<void> FailJob(const std::string& job_id, const std::string& entry, const std::string& error, bool fence);

  Connection& commands_;
  QueueOptions options_;
  Keys keys_;
  HeldJobs& held_;
  std::unique_ptr<Connection> reader_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> started_{0}, skipped_{0}, failed_{0};
  // Only in Take (one call at a time):
  bool group_ready_ = false;
  bool own_pending_read_ = false;
  int errors_in_a_row_ = 0;

  mutable std::mutex mutex_;
  std::deque<StreamEntry> handed_out_;                    // guarded by mutex_
  std::set<std::string> starting_;   // started in Redis by the running Take; guarded by mutex_
  std::set<std::string> cancelled_;  // of those, cancelled meanwhile; guarded by mutex_
  std::shared_ptr<boost::asio::steady_timer> wait_timer_;  // guarded by mutex_
};

}  // namespace sluice::redis
