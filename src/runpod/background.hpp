// runpod/background.hpp — the two loops a RunPod worker runs beside its jobs (runpod.md §4.6, §4.7):
//   - the heartbeat: GET the ping URL at once and then every RUNPOD_PING_INTERVAL, with the ids of
//     the jobs in progress. It runs as a coroutine on the I/O threads, on a fixed schedule (a slow
//     ping does not push the next one back), so handlers on the blocking pool never delay it;
//   - the stop channel: long-polls job-stop and cancels each listed job that is in progress
//     through `cancel` (the scheduler's Cancel); the result sink then posts nothing for it.
//
// Both run until `stop` is set; they notice it after their current request or wait, so the owner
// stops the io_context instead of waiting for a long-poll. Threads: each is one coroutine; they
// borrow the ControlPlane and the flag, which outlive them.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include <sluice/task.hpp>

#include "runpod/control_plane.hpp"

namespace sluice::runpod {

/// Pings until `stop`; a failed ping is logged and the schedule goes on.
Task<void> RunHeartbeat(const ControlPlane& plane, std::chrono::milliseconds interval, const std::atomic<bool>& stop);

struct StopChannelOptions {
  std::chrono::steady_clock::duration poll_timeout = std::chrono::seconds(90);
  /// An answer quicker than this is followed by a wait for the rest of it (runpod-python: 1 s).
  std::chrono::steady_clock::duration min_cycle = std::chrono::seconds(1);
  std::chrono::steady_clock::duration after_too_many_requests = std::chrono::seconds(5);
  http::BackoffPolicy errors{std::chrono::seconds(1), std::chrono::seconds(30), 2.0};
};

/// Long-polls job-stop until `stop`; `cancel(job_id)` returns whether the job was found.
Task<void> RunStopChannel(const ControlPlane& plane, std::function<bool(const std::string&)> cancel,
                          const std::atomic<bool>& stop, StopChannelOptions options = {});

}  // namespace sluice::runpod
