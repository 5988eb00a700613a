#include "core/memory_queue.hpp"

#include <chrono>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

namespace sluice::core {
namespace {
namespace asio = boost::asio;
using namespace std::chrono_literals;

JobRequest Job(std::string id) {
  JobRequest job;
  job.id = std::move(id);
  job.request.emplace("input", 1);
  return job;
}

// Runs one Take to completion with a watchdog.
std::vector<JobRequest> TakeNow(MemoryJobQueue& queue, std::size_t max_jobs) {
  asio::io_context io;
  std::vector<JobRequest> taken;
  bool done = false;
  asio::co_spawn(io, queue.Take(max_jobs), [&](std::exception_ptr error, std::vector<JobRequest> jobs) {
    if (error) std::rethrow_exception(error);
    taken = std::move(jobs);
    done = true;
  });
  io.run_for(10s);
  EXPECT_TRUE(done) << "watchdog: Take did not complete";
  return taken;
}

TEST(MemoryJobQueue, TakesUpToMaxInOrder) {
  MemoryJobQueue queue;
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(queue.Push(Job(id)));
  auto first = TakeNow(queue, 2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].id, "a");
  EXPECT_EQ(first[1].id, "b");
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(TakeNow(queue, 5).at(0).id, "c");
}

TEST(MemoryJobQueue, TakeWaitsForAPushFromAnotherThread) {
  MemoryJobQueue queue;
  // The io_context outlives the producer: Take may complete (and run_for return) while the
  // producer is still inside its Push, posting to this io_context (TSan saw it destroyed then).
  asio::io_context io;
  std::vector<JobRequest> taken;
  bool done = false;
  std::thread producer([&] {
    std::this_thread::sleep_for(20ms);
    queue.Push(Job("late"));
  });
  asio::co_spawn(io, queue.Take(4), [&](std::exception_ptr error, std::vector<JobRequest> jobs) {
    if (error) std::rethrow_exception(error);
    taken = std::move(jobs);
    done = true;
  });
  io.run_for(10s);
  producer.join();
  EXPECT_TRUE(done) << "watchdog: Take did not complete";
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, "late");
}

TEST(MemoryJobQueue, CloseDrainsThenEnds) {
  MemoryJobQueue queue;
  queue.Push(Job("a"));
  queue.Close();
  EXPECT_FALSE(queue.Push(Job("refused")));
  EXPECT_EQ(TakeNow(queue, 4).size(), 1u);
  EXPECT_TRUE(TakeNow(queue, 4).empty());
}

TEST(MemoryJobQueue, CloseWakesAWaitingTake) {
  MemoryJobQueue queue;
  std::thread closer([&] {
    std::this_thread::sleep_for(20ms);
    queue.Close();
  });
  EXPECT_TRUE(TakeNow(queue, 4).empty());
  closer.join();
}

TEST(MemoryJobQueue, RemoveAndClear) {
  MemoryJobQueue queue;
  for (const char* id : {"a", "b", "c"}) queue.Push(Job(id));
  auto removed = queue.Remove("b");
  ASSERT_TRUE(removed.has_value());
  EXPECT_EQ(removed->id, "b");
  EXPECT_FALSE(queue.Remove("b").has_value());
  EXPECT_EQ(queue.Clear(), 2u);
  EXPECT_EQ(queue.size(), 0u);
}

}  // namespace
}  // namespace sluice::core
