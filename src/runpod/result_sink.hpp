// runpod/result_sink.hpp — the scheduler's ResultSink on RunPod's control plane (runpod.md §1.4,
// §1.5, §4.5): a job's result to job-done, a streaming handler's chunks to job-stream and its final
// result to job-done with isStream=true, progress updates to job-done as IN_PROGRESS.
//
// Each job has an outbox: its POSTs go out one after another in the order the scheduler reported
// them, so chunks arrive in order and a progress update never lands after the final result
// (runpod-python #250). The final result is posted exactly once, retried with backoff and jitter
// on network errors, 429 and 5xx until the job's deadline (ControlPlane::result_window), and if it
// still fails, logged as an error naming the job. Chunks and progress get a few tries. A stopped
// (cancelled) job gets no result, as in runpod-python; its queued chunks are dropped.
// When the final POST is done (or given up), the job leaves ControlPlane::jobs and `after_final`
// is called (refresh_worker drains the worker there).
//
// Threads: the On* calls come from any thread (scheduler contract) and only queue; the POSTs run
// as coroutines on `executor`. Borrows the ControlPlane, which outlives it; destroy the sink after
// the io_context has stopped running.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "core/job_outbox.hpp"
#include "core/job_ports.hpp"
#include "http/backoff.hpp"
#include "runpod/control_plane.hpp"

namespace sluice::runpod {

class RunpodResultSink : public core::ResultSink {
 public:
  struct Options {
    boost::asio::any_io_executor executor;
    /// The handler streams: its final result goes to job-done with isStream=true.
    bool streaming_handler = false;
    http::BackoffPolicy backoff{std::chrono::milliseconds(200), std::chrono::seconds(10), 2.0};
    std::chrono::steady_clock::duration post_timeout = std::chrono::seconds(30);
    /// Attempts for a chunk or a progress update.
    int side_post_attempts = 3;
    /// Called on the executor after a job's final POST, with the job id; may be empty.
    std::function<void(const std::string& job_id)> after_final;
  };

  RunpodResultSink(ControlPlane& plane, Options options);

  void OnProgress(const std::string& job_id, const boost::json::value& update) override;
  void OnChunk(const std::string& job_id, const boost::json::value& chunk) override;
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override;

  /// Answers a job that cannot run (no input) with `{"error": why}`.
  void Reject(const std::string& job_id, const std::string& why);

  /// POSTs queued or in flight.
  std::size_t pending() const noexcept { return outbox_.pending(); }
  /// Final results that could not be delivered.
  std::size_t lost() const noexcept { return lost_.load(); }

  /// Waits until nothing is pending or `timeout` passes; true when nothing is pending.
  Task<bool> Drain(std::chrono::steady_clock::duration timeout);

 private:
  struct Post {
    enum class Kind { kProgress, kChunk, kFinal } kind = Kind::kFinal;
    std::string url;
    std::string body;
  };
  void Enqueue(const std::string& job_id, Post post);
  Task<void> Deliver(const std::string& job_id, Post post);
  Task<void> SendPost(const std::string& job_id, const Post& post);

  ControlPlane& plane_;
  Options options_;
  std::atomic<std::size_t> lost_{0};
  core::JobOutbox<Post> outbox_;  // last: its deliveries use the members above
};

}  // namespace sluice::runpod
