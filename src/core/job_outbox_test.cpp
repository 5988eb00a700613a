#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "core/job_outbox.hpp"

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace sluice::core {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Deliveries that take `delay` each, recorded per job in the order they ended; two I/O threads.
class JobOutboxTest : public ::testing::Test {
 protected:
  JobOutboxTest() {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(30s); });  // watchdog
  }
  ~JobOutboxTest() override {
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) thread.join();
  }

  Task<void> Deliver(const std::string& job_id, int item) {
    std::atomic<int>& running = job_id == "a" ? running_a_ : running_b_;
    EXPECT_EQ(++running, 1) << "one delivery at a time per job";
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(delay_);
    co_await timer.async_wait(asio::use_awaitable);
    --running;
    std::lock_guard lock(mutex_);
    delivered_[job_id].push_back(item);
  }

  bool Drain(std::chrono::milliseconds timeout) {
    std::promise<bool> done;
    asio::co_spawn(io_, outbox_.Drain(timeout), [&done](std::exception_ptr, bool drained) { done.set_value(drained); });
    return done.get_future().get();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  std::chrono::milliseconds delay_{20};
  std::atomic<int> running_a_{0}, running_b_{0};
  std::mutex mutex_;
  std::map<std::string, std::vector<int>> delivered_;
  JobOutbox<int> outbox_{io_.get_executor(), "test",
                         [this](const std::string& job_id, int item) { return Deliver(job_id, item); }};
};

TEST_F(JobOutboxTest, ItemsOfOneJobGoInOrderAndJobsGoConcurrently) {
  const auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(outbox_.Enqueue("a", i, i == 4));
    EXPECT_TRUE(outbox_.Enqueue("b", 10 + i, i == 4));
  }
  EXPECT_TRUE(Drain(5s));
  EXPECT_EQ(outbox_.pending(), 0u);
  EXPECT_EQ(delivered_["a"], (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(delivered_["b"], (std::vector<int>{10, 11, 12, 13, 14}));
  // 5 deliveries of 20 ms per job; the two jobs overlap (a wide bound: 200 ms if they did not).
  EXPECT_LT(std::chrono::steady_clock::now() - began, 190ms);
}

TEST_F(JobOutboxTest, NothingIsTakenAfterTheFinalItem) {
  EXPECT_TRUE(outbox_.Enqueue("a", 1, true));
  EXPECT_FALSE(outbox_.Enqueue("a", 2, false));
  EXPECT_TRUE(Drain(5s));
  EXPECT_EQ(delivered_["a"], (std::vector<int>{1}));
}

TEST_F(JobOutboxTest, DiscardDropsWhatIsQueuedButNotWhatIsBeingDelivered) {
  delay_ = 100ms;
  for (int i = 0; i < 4; ++i) outbox_.Enqueue("a", i, false);
  std::this_thread::sleep_for(30ms);  // the first is being delivered
  EXPECT_EQ(outbox_.Discard("a"), 3u);
  EXPECT_FALSE(outbox_.Enqueue("a", 9, true));
  EXPECT_EQ(outbox_.Discard("never-seen"), 0u);
  EXPECT_TRUE(Drain(5s));
  EXPECT_EQ(delivered_["a"], (std::vector<int>{0}));
}

TEST_F(JobOutboxTest, DrainGivesUpAtItsTimeout) {
  delay_ = 500ms;
  outbox_.Enqueue("a", 1, true);
  EXPECT_FALSE(Drain(50ms));
  EXPECT_EQ(outbox_.pending(), 1u);
  EXPECT_TRUE(Drain(5s));
}

}  // namespace
}  // namespace sluice::core
