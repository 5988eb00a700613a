// core/memory_queue.hpp — the in-memory job source: a FIFO of jobs that producers push into and the
// scheduler takes from. Used by tests, by local test mode and by the local job API.
//
// Thread-safe: any thread may `Push` or `Close`; one coroutine at a time may `Take`. The queue owns
// the jobs it holds. It has no limit of its own: callers that must bound it (the job API's
// `--max-queue`) check `size()` first.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

#include "core/job_ports.hpp"
#include "core/posted_handler.hpp"

namespace sluice::core {

class MemoryJobQueue final : public JobSource {
 public:
  MemoryJobQueue() = default;
  MemoryJobQueue(const MemoryJobQueue&) = delete;
  MemoryJobQueue& operator=(const MemoryJobQueue&) = delete;

  /// Appends a job. Returns false, and drops the job, once the queue is closed.
  bool Push(JobRequest job);

  /// Ends the queue: jobs already in it are still taken, then `Take` returns empty.
  void Close();

  /// Removes a queued job by id; returns it, or nothing if it is not (or no longer) queued.
  std::optional<JobRequest> Remove(std::string_view job_id);

  /// Removes every queued job; returns how many.
  std::size_t Clear();

  std::size_t size() const;

  /// Whether a Take is parked waiting for a job (for tests that need that moment).
  bool has_waiting_take() const;

  Task<std::vector<JobRequest>> Take(std::size_t max_jobs) override;

 private:
  using Waiter = PostedHandler<>;

  mutable std::mutex mutex_;
  std::deque<JobRequest> jobs_;     // guarded by mutex_
  std::optional<Waiter> waiter_;    // guarded by mutex_; the Take waiting for a job
  bool closed_ = false;             // guarded by mutex_
};

}  // namespace sluice::core
