// redis/background.hpp — the three loops a worker on a Redis queue runs beside its jobs
// (docs/scale-out.md):
//   - the heartbeat, every visibility_timeout/3: re-claims (XCLAIM ... JUSTID, in the heartbeat
//     script, only while still owned) the stream entries of the jobs this worker holds and of the
//     entries waiting to start, so a long job never looks idle to a reaper; and refreshes the
//     worker key `sluice:{q}:worker:<consumer>` = {"running":n,"limit":m} with a TTL of three
//     heartbeats, for /health. Entries found lost (reclaimed by another worker) are logged: their
//     results will be fenced out;
//   - the reaper, every visibility_timeout/2: XAUTOCLAIM entries idle longer than the visibility
//     timeout (their worker died), following the cursor, and hands them to this worker's source,
//     which starts them (failing a job delivered more than max_deliveries times); entries deleted
//     while pending (XAUTOCLAIM's third element) are handed over too, and end FAILED; then trims
//     the jobs stream of the entries every worker is done with (finishing only acknowledges);
//   - the cancel listener: XREAD BLOCK on `sluice:{q}:cancels` from its last entry at start, on a
//     Connection of its own, calling `cancel(job_id)` for each: `source.CancelStarting(id) ||
//     scheduler.Cancel(id)` (false when the job does not run here).
//
// Each runs until `stop` is set and notices it within ~50 ms, or after its current read (at most
// the BLOCK time). Failed commands are logged and the schedule goes on. Threads: each is one
// coroutine; they borrow the connections, the source and the flag, which outlive them.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include <sluice/task.hpp>

#include "redis/connection.hpp"
#include "redis/job_source.hpp"
#include "redis/queue.hpp"

namespace sluice::redis {

struct WorkerLoad {
  int running = 0;
  int limit = 0;
};

/// The heartbeat; `entries` lists the stream entries to keep claimed, `load` the worker's load.
Task<void> RunHeartbeat(Connection& commands, QueueOptions options, std::function<std::vector<std::string>()> entries,
                        std::function<WorkerLoad()> load, const std::atomic<bool>& stop);

/// The entries a heartbeat keeps: the held jobs' and those waiting in the source.
std::function<std::vector<std::string>()> EntriesOf(const HeldJobs& held, const RedisJobSource& source);

/// The reaper; claimed and deleted entries go to `source`.
Task<void> RunReaper(Connection& commands, QueueOptions options, RedisJobSource& source, const std::atomic<bool>& stop);

/// The cancel listener on `reader`, a Connection it alone uses.
Task<void> RunCancelListener(Connection& reader, QueueOptions options, std::function<bool(const std::string&)> cancel,
                             const std::atomic<bool>& stop);

}  // namespace sluice::redis
