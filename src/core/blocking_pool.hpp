// core/blocking_pool.hpp — the threads blocking handlers run on.
//
// A blocking handler holds its thread for the whole job, so the pool must have a thread for every
// blocking job the concurrency limit lets run at once. Rather than sizing it up front, `Submit`
// starts a new thread whenever no idle one is waiting: the pool grows with the limit as jobs
// arrive, and never beyond the highest number of tasks that were queued or running at once (the
// scheduler bounds that by the limit). Threads are kept once started.
//
// Thread-safe. The destructor calls Shutdown().
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::core {

class BlockingPool {
 public:
  BlockingPool() = default;
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  /// Runs `task` on a pool thread, starting a new thread if none is idle, then `then` on the same
  /// thread once it counts as idle again: work that `then` makes possible (the scheduler gives
  /// the job's slot back there) reuses this thread instead of starting another. Neither may throw.
  /// Throws std::system_error, having queued nothing, if a needed thread cannot be started.
  void Submit(std::function<void()> task, std::function<void()> then = nullptr);

  /// Runs every task already submitted, then joins all threads. Idempotent; must not be called
  /// from a pool thread. No task may be submitted afterwards.
  void Shutdown();

  /// How many threads the pool has started.
  std::size_t thread_count() const;

 private:
  void WorkerLoop();

  mutable std::mutex mutex_;
  std::condition_variable ready_;
  struct Work {
    std::function<void()> task;
    std::function<void()> then;
  };
  std::deque<Work> tasks_;                   // guarded by mutex_
  std::vector<std::thread> threads_;         // guarded by mutex_
  std::size_t idle_ = 0;                     // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
};

}  // namespace sluice::core
