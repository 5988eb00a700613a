#include "core/adjustable_semaphore.hpp"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

namespace sluice::core {
namespace {
namespace asio = boost::asio;
using namespace std::chrono_literals;

// The arithmetic, as pure functions.

TEST(SlotCounter, AcquiresUpToCapacity) {
  SlotCounter counter(3);
  EXPECT_TRUE(counter.try_acquire());
  EXPECT_TRUE(counter.try_acquire(2));
  EXPECT_FALSE(counter.try_acquire());
  EXPECT_EQ(counter.in_use(), 3u);
  EXPECT_EQ(counter.available(), 0u);
}

TEST(SlotCounter, AllOrNothing) {
  SlotCounter counter(3);
  EXPECT_TRUE(counter.try_acquire(2));
  EXPECT_FALSE(counter.try_acquire(2));
  EXPECT_EQ(counter.in_use(), 2u);
  EXPECT_EQ(counter.acquire_up_to(5), 1u);
  EXPECT_EQ(counter.in_use(), 3u);
}

TEST(SlotCounter, GrowWhileBusyFreesSlotsAtOnce) {
  SlotCounter counter(2);
  ASSERT_TRUE(counter.try_acquire(2));
  counter.set_capacity(5);
  EXPECT_EQ(counter.available(), 3u);
  EXPECT_TRUE(counter.try_acquire(3));
}

TEST(SlotCounter, ShrinkWhileBusyNeverPreempts) {
  SlotCounter counter(5);
  ASSERT_TRUE(counter.try_acquire(5));
  counter.set_capacity(2);
  // Held slots stay held: in_use may exceed the capacity for a while.
  EXPECT_EQ(counter.in_use(), 5u);
  EXPECT_EQ(counter.available(), 0u);
  counter.release(2);
  EXPECT_FALSE(counter.try_acquire()) << "3 held against a capacity of 2";
  counter.release(1);
  EXPECT_FALSE(counter.try_acquire()) << "2 held against a capacity of 2";
  counter.release(1);
  EXPECT_TRUE(counter.try_acquire());
  EXPECT_EQ(counter.in_use(), 2u);
}

// The asynchronous semaphore. Each test runs its io_context with a deadline (the watchdog).

void RunWithWatchdog(asio::io_context& io, std::chrono::milliseconds limit = 10s) {
  io.run_for(limit);
  ASSERT_TRUE(io.stopped()) << "watchdog: the io_context still had work after " << limit.count() << " ms";
}

TEST(AdjustableSemaphore, WaitersAreServedInOrderAsSlotsFree) {
  asio::io_context io;
  AdjustableSemaphore semaphore(1);
  ASSERT_TRUE(semaphore.try_acquire());
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) {
    semaphore.async_acquire(asio::bind_executor(io, [&, i](boost::system::error_code ec) {
      EXPECT_FALSE(ec);
      order.push_back(i);
      semaphore.release();
    }));
  }
  EXPECT_EQ(semaphore.waiting(), 3u);
  semaphore.release();
  RunWithWatchdog(io);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(semaphore.in_use(), 0u);
}

TEST(AdjustableSemaphore, CompletionIsNeverInline) {
  asio::io_context io;
  AdjustableSemaphore semaphore(1);
  bool completed = false;
  semaphore.async_acquire(asio::bind_executor(io, [&](boost::system::error_code) { completed = true; }));
  EXPECT_FALSE(completed) << "a free slot still completes through the executor";
  RunWithWatchdog(io);
  EXPECT_TRUE(completed);
}

TEST(AdjustableSemaphore, RaisingCapacityWakesWaiters) {
  asio::io_context io;
  AdjustableSemaphore semaphore(1);
  ASSERT_TRUE(semaphore.try_acquire());
  int granted = 0;
  for (int i = 0; i < 4; ++i) {
    semaphore.async_acquire(asio::bind_executor(io, [&](boost::system::error_code ec) {
      EXPECT_FALSE(ec);
      ++granted;
    }));
  }
  semaphore.set_capacity(3);
  // The two grants are posted by now; the two waiters left keep the io_context busy (outstanding
  // work), so run what is ready rather than until it runs out of work.
  io.poll();
  EXPECT_EQ(granted, 2);
  EXPECT_EQ(semaphore.waiting(), 2u);
  EXPECT_EQ(semaphore.in_use(), 3u);
}

TEST(AdjustableSemaphore, LoweringCapacityMakesNewcomersWait) {
  asio::io_context io;
  AdjustableSemaphore semaphore(4);
  ASSERT_TRUE(semaphore.try_acquire(4));
  semaphore.set_capacity(2);
  bool granted = false;
  semaphore.async_acquire(asio::bind_executor(io, [&](boost::system::error_code) { granted = true; }));
  semaphore.release(2);  // 2 held, capacity 2: still full
  io.poll();
  EXPECT_FALSE(granted);
  semaphore.release();
  io.restart();
  RunWithWatchdog(io);
  EXPECT_TRUE(granted);
}

TEST(AdjustableSemaphore, NewcomersDoNotOvertakeWaiters) {
  asio::io_context io;
  AdjustableSemaphore semaphore(1);
  ASSERT_TRUE(semaphore.try_acquire());
  semaphore.async_acquire(asio::bind_executor(io, [](boost::system::error_code) {}));
  semaphore.set_capacity(1);
  EXPECT_FALSE(semaphore.try_acquire()) << "a waiter is queued";
  EXPECT_EQ(semaphore.acquire_up_to(3), 0u);
  semaphore.release();
  RunWithWatchdog(io);
}

TEST(AdjustableSemaphore, CancelledWaiterLeavesWithoutASlot) {
  asio::io_context io;
  AdjustableSemaphore semaphore(1);
  ASSERT_TRUE(semaphore.try_acquire());
  asio::cancellation_signal signal;
  boost::system::error_code result;
  semaphore.async_acquire(
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, [&](boost::system::error_code ec) { result = ec; })));
  ASSERT_EQ(semaphore.waiting(), 1u);
  signal.emit(asio::cancellation_type::terminal);
  RunWithWatchdog(io);
  EXPECT_EQ(result, asio::error::operation_aborted);
  EXPECT_EQ(semaphore.waiting(), 0u);
  EXPECT_EQ(semaphore.in_use(), 1u);
}

TEST(AdjustableSemaphore, WaitIdleCompletesWhenTheLastSlotIsReleased) {
  asio::io_context io;
  AdjustableSemaphore semaphore(2);
  ASSERT_TRUE(semaphore.try_acquire(2));
  bool idle = false;
  semaphore.async_wait_idle(asio::bind_executor(io, [&](boost::system::error_code) { idle = true; }));
  semaphore.release();
  io.poll();
  EXPECT_FALSE(idle);
  semaphore.release();
  io.restart();
  RunWithWatchdog(io);
  EXPECT_TRUE(idle);
}

TEST(AdjustableSemaphore, ManyThreadsNeverExceedTheCapacity) {
  asio::io_context io;
  constexpr int kCapacity = 3;
  constexpr int kAcquires = 2000;
  AdjustableSemaphore semaphore(kCapacity);
  std::atomic<int> inside{0};
  std::atomic<int> peak{0};
  std::atomic<int> done{0};
  for (int i = 0; i < kAcquires; ++i) {
    semaphore.async_acquire(asio::bind_executor(io, [&](boost::system::error_code ec) {
      ASSERT_FALSE(ec);
      const int now = ++inside;
      int seen = peak.load();
      while (now > seen && !peak.compare_exchange_weak(seen, now)) {
      }
      --inside;
      ++done;
      semaphore.release();
    }));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run_for(10s); });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(done.load(), kAcquires);
  EXPECT_LE(peak.load(), kCapacity);
  EXPECT_EQ(semaphore.in_use(), 0u);
}

}  // namespace
}  // namespace sluice::core
