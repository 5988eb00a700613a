// runpod/jobs_in_progress.hpp — the jobs this worker has taken from RunPod and not yet answered:
// what job-take's `job_in_progress` flag and the ping's `job_id` list report (runpod.md §4.3, §4.6),
// and the deadline until which each job's result POST is retried.
//
// A job enters when the job source takes it and leaves when the result sink has posted its final
// result (or given up), or when it was stopped (no result is posted for a stopped job), as
// runpod-python's JobsProgress does.
//
// Thread-safe: the source, the sink, the heartbeat and the stop channel use it from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice::runpod {

class JobsInProgress {
 public:
  using Clock = std::chrono::steady_clock;

  /// Adds a job with the time until which its result may still be posted. A job already present
  /// keeps its first deadline.
  void Add(const std::string& job_id, Clock::time_point result_deadline) {
    std::lock_guard lock(mutex_);
    jobs_.try_emplace(job_id, result_deadline);
  }
  void Remove(const std::string& job_id) {
    std::lock_guard lock(mutex_);
    jobs_.erase(job_id);
  }
  bool Contains(const std::string& job_id) const {
    std::lock_guard lock(mutex_);
    return jobs_.count(job_id) != 0;
  }
  std::optional<Clock::time_point> ResultDeadline(const std::string& job_id) const {
    std::lock_guard lock(mutex_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return std::nullopt;
    return it->second;
  }
  bool empty() const {
    std::lock_guard lock(mutex_);
    return jobs_.empty();
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return jobs_.size();
  }
  /// The ids, in no particular order.
  std::vector<std::string> Ids() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> ids;
    ids.reserve(jobs_.size());
    for (const auto& [id, deadline] : jobs_) ids.push_back(id);
    return ids;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Clock::time_point> jobs_;  // guarded by mutex_
};

}  // namespace sluice::runpod
