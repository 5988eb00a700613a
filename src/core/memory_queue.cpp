#include "core/memory_queue.hpp"

#include <algorithm>

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::core {
namespace asio = boost::asio;

bool MemoryJobQueue::Push(JobRequest job) {
  std::optional<Waiter> waiter;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    jobs_.push_back(std::move(job));
    waiter.swap(waiter_);
  }
  if (waiter) waiter->Post();
  return true;
}

void MemoryJobQueue::Close() {
  std::optional<Waiter> waiter;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    waiter.swap(waiter_);
  }
  if (waiter) waiter->Post();
}

std::optional<JobRequest> MemoryJobQueue::Remove(std::string_view job_id) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(jobs_.begin(), jobs_.end(),
                         [&](const JobRequest& job) { return job.id == job_id; });
  if (it == jobs_.end()) return std::nullopt;
  JobRequest removed = std::move(*it);
  jobs_.erase(it);
  return removed;
}

std::size_t MemoryJobQueue::Clear() {
  std::lock_guard lock(mutex_);
  const std::size_t removed = jobs_.size();
  jobs_.clear();
  return removed;
}

std::size_t MemoryJobQueue::size() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

bool MemoryJobQueue::has_waiting_take() const {
  std::lock_guard lock(mutex_);
  return waiter_.has_value();
}

Task<std::vector<JobRequest>> MemoryJobQueue::Take(std::size_t max_jobs) {
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (!jobs_.empty()) {
        const std::size_t count = std::min(max_jobs, jobs_.size());
        std::vector<JobRequest> taken;
        taken.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
          taken.push_back(std::move(jobs_.front()));
          jobs_.pop_front();
        }
        co_return taken;
      }
      if (closed_) co_return std::vector<JobRequest>{};
    }
    // Park until a Push or Close. The check above and the parking below are two critical
    // sections, so the initiation re-checks and completes at once if something arrived between.
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [this](auto handler) {
          Waiter waiter(std::move(handler));
          std::unique_lock lock(mutex_);
          if (!jobs_.empty() || closed_) {
            lock.unlock();
            waiter.Post();
            return;
          }
          waiter_.emplace(std::move(waiter));
        },
        asio::use_awaitable);
  }
}

}  // namespace sluice::core
