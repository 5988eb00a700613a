#include "core/blocking_pool.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

namespace sluice::core {
namespace {
using namespace std::chrono_literals;

TEST(BlockingPool, StartsAThreadPerConcurrentTask) {
  BlockingPool pool;
  std::mutex mutex;
  std::condition_variable cv;
  int started = 0;
  bool release = false;
  for (int i = 0; i < 8; ++i) {
    pool.Submit([&] {
      std::unique_lock lock(mutex);
      ++started;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
  }
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return started == 8; }))
        << "watchdog: 8 blocking tasks did not all start at once";
    release = true;
  }
  cv.notify_all();
  pool.Shutdown();
  EXPECT_EQ(pool.thread_count(), 0u) << "Shutdown joined and forgot the threads";
}

TEST(BlockingPool, ReusesIdleThreads) {
  BlockingPool pool;
  std::atomic<int> done{0};
  for (int i = 0; i < 50; ++i) {
    pool.Submit([&] { ++done; });
    // Wait for the task so the next one finds the thread idle.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (done.load() <= i && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }
  EXPECT_EQ(done.load(), 50);
  EXPECT_LE(pool.thread_count(), 2u);
}

TEST(BlockingPool, ShutdownRunsQueuedTasks) {
  std::atomic<int> done{0};
  {
    BlockingPool pool;
    for (int i = 0; i < 20; ++i) pool.Submit([&] { ++done; });
  }
  EXPECT_EQ(done.load(), 20);
}

}  // namespace
}  // namespace sluice::core
