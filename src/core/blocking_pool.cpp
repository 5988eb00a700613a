#include "core/blocking_pool.hpp"

namespace sluice::core {

namespace {
// How long an idle thread stays awake for the next task: longer than the gap between the jobs of
// a busy stream, far shorter than a scheduler tick.
constexpr auto kSpinFor = std::chrono::microseconds(50);

// Tells the CPU this is a spin-wait: it saves power and lets a sibling hyper-thread run.
inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

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
    queued_.store(tasks_.size(), std::memory_order_release);
    // A spinner takes one task without being woken; a sleeper is needed only beyond that.
    const bool wake = tasks_.size() > spinning_;
    lock.unlock();
    if (wake) ready_.notify_one();
    return;
  }
  // Start the thread before queueing: if it cannot be created, this throws and the task is not
  // left behind to run later. The new thread waits for the lock we hold.
  threads_.emplace_back([this] { WorkerLoop(); });
  tasks_.push_back({std::move(task), std::move(then)});
  queued_.store(tasks_.size(), std::memory_order_release);
}

std::size_t BlockingPool::thread_count() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void BlockingPool::WorkerLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    if (tasks_.empty() && !stopping_ && spinning_ == 0) {
      ++spinning_;
      lock.unlock();
      const auto give_up = std::chrono::steady_clock::now() + kSpinFor;
      while (queued_.load(std::memory_order_acquire) == 0) {
        for (int i = 0; i < 64; ++i) CpuRelax();
        if (std::chrono::steady_clock::now() >= give_up) break;
      }
      lock.lock();
      --spinning_;
    }
    ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    --idle_;
    if (tasks_.empty()) return;  // stopping, and nothing left to run
    Work work = std::move(tasks_.front());
    tasks_.pop_front();
    queued_.store(tasks_.size(), std::memory_order_release);
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
