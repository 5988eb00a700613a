// runpod/job_source.hpp — the scheduler's JobSource on RunPod's control plane: `Take(n)` long-polls
// job-take for one job, or job-take-batch for up to n when n slots are free (runpod.md §4.3).
//
// Each taken job enters `ControlPlane::jobs` (so `job_in_progress` and the ping see it) with the
// deadline for its result. Empty answers (204, 400, no JSON) are taken again at once when the
// server long-polled, errors and 429 after a backoff with jitter (TakePacer), never in a hot loop.
// A job that has an id but no input is handed to `reject` to be answered with an error.
//
// `Stop()` (SIGTERM, refresh_worker) ends taking: a take in flight is finished, not abandoned,
// since the control plane may have handed out a job in it, and its jobs still run; the next
// `Take` returns nothing, and the scheduler drains. A backoff wait is cut short.
//
// Threads: `Take` is called by the scheduler's dispatcher, one call at a time; `Stop` from any
// thread. Borrows the ControlPlane, which outlives it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/job_ports.hpp"
#include "runpod/control_plane.hpp"

namespace sluice::runpod {

class RunpodJobSource : public core::JobSource {
 public:
  struct Options {
    /// Longer than any long-poll the control plane holds (runpod-python: 90 s).
    std::chrono::steady_clock::duration take_timeout = std::chrono::seconds(90);
    TakePacer::Options pacing;
    /// Called with a job id and why it cannot run; may be empty.
    std::function<void(const std::string& job_id, const std::string& error)> reject;
  };

  RunpodJobSource(ControlPlane& plane, Options options);

  Task<std::vector<core::JobRequest>> Take(std::size_t max_jobs) override;

  /// Ends taking (see the file comment). Thread-safe, idempotent.
  void Stop();
  bool stopped() const noexcept { return stopping_.load(); }

  /// Takes answered so far (tests, logs).
  std::size_t takes() const noexcept { return takes_.load(); }

 private:
  ControlPlane& plane_;
  Options options_;
  TakePacer pacer_;  // only in Take
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> takes_{0};

  std::mutex mutex_;
  // The backoff timer, made on the dispatcher's executor at the first Take; Stop cancels it there.
  std::shared_ptr<boost::asio::steady_timer> wait_timer_;  // guarded by mutex_
};

}  // namespace sluice::runpod
