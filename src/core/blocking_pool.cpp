#include "core/blocking_pool.hpp"

namespace sluice::core {

BlockingPool::~BlockingPool() { Shutdown(); }

void BlockingPool::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    threads.swap(threads_);
  }
  ready_.notify_all();
  for (std::thread& thread : threads) thread.join();
}

void BlockingPool::Submit(std::function<void()> task) {
  std::unique_lock lock(mutex_);
  tasks_.push_back(std::move(task));
  // Every queued task needs a thread of its own: a blocking handler never yields its thread.
  if (idle_ >= tasks_.size()) {
    lock.unlock();
    ready_.notify_one();
    return;
  }
  threads_.emplace_back([this] { WorkerLoop(); });
}

std::size_t BlockingPool::thread_count() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void BlockingPool::WorkerLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    --idle_;
    if (tasks_.empty()) return;  // stopping, and nothing left to run
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace sluice::core
