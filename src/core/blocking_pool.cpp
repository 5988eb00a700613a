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

void BlockingPool::Submit(std::function<void()> task, std::function<void()> then) {
  std::unique_lock lock(mutex_);
  // Every queued task needs a thread of its own: a blocking handler never yields its thread.
  if (idle_ >= tasks_.size() + 1) {
    tasks_.push_back({std::move(task), std::move(then)});
    lock.unlock();
    ready_.notify_one();
    return;
  }
  // Start the thread before queueing: if it cannot be created, this throws and the task is not
  // left behind to run later. The new thread waits for the lock we hold.
  threads_.emplace_back([this] { WorkerLoop(); });
  tasks_.push_back({std::move(task), std::move(then)});
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
    Work work = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    work.task();
    if (work.then) {
      // Counted idle before `then` runs, so a Submit it causes finds this thread.
      lock.lock();
      ++idle_;
      lock.unlock();
      work.then();
      lock.lock();
      --idle_;
    } else {
      lock.lock();
    }
  }
}

}  // namespace sluice::core
