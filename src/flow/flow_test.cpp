// Tests of sluice::Flow with real threads: results, batching, failures, deadlines, backpressure,
// stop. Every wait has a watchdog (Completions::WaitAll, RunWithWatchdog), so a hang fails a test
// instead of stalling the suite.
#include <sluice/flow.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

namespace sluice {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kWatchdog = 20s;

// Counts completions of tasks submitted with a callback; WaitAll fails the test on a hang.
class Completions {
 public:
  void Submit(Flow& flow, FlowTask& task, Clock::time_point deadline = Clock::time_point::max()) {
    {
      std::lock_guard lock(mutex_);
      ++expected_;
    }
    flow.async_process(task, deadline, [this](FlowTaskStatus status) {
      std::lock_guard lock(mutex_);
      ++done_;
      ++by_status_[static_cast<int>(status)];
      changed_.notify_all();
    });
  }

  bool WaitAll(std::chrono::milliseconds limit = kWatchdog) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return done_ == expected_; });
  }
  std::size_t Count(FlowTaskStatus status) {
    std::lock_guard lock(mutex_);
    return by_status_[static_cast<int>(status)];
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t expected_ = 0, done_ = 0;
  std::size_t by_status_[8] = {};
};

// A gate a handler can wait at until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
  }
  bool WaitForWaiters(std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWatchdog, [&] { return waiting_ >= n; });
  }
  void Open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  std::size_t waiting_ = 0;
};

void Double(FlowBatch batch) {
  for (FlowTask& task : batch) task.data = task.data.as_int64() * 2;
}

TEST(Flow, OneStepRewritesTheTask) {
  Flow flow;
  flow.add_step({.name = "double", .handler = Double});
  flow.start();
  FlowTask task(boost::json::value(21));
  Completions completions;
  completions.Submit(flow, task);
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_EQ(task.status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(task.data, boost::json::value(42));
  EXPECT_TRUE(task.error().empty());
}

TEST(Flow, StepsRunInOrderAndBytesTravelUntouched) {
  Flow flow;
  flow.add_step({.name = "first", .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) task.data = boost::json::array{task.data, "first"};
                 }});
  flow.add_step({.name = "second", .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) {
                     task.data.as_array().push_back("second");
                     task.bytes += std::string("\0x", 2);
                   }
                 }});
  flow.start();
  FlowTask task(boost::json::value("in"), std::string("\0\1\2", 3));
  Completions completions;
  completions.Submit(flow, task);
  ASSERT_TRUE(completions.WaitAll());
  ASSERT_EQ(task.status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(task.data, (boost::json::array{"in", "first", "second"}));
  EXPECT_EQ(task.bytes, std::string("\0\1\2\0x", 5));
}

TEST(Flow, EveryResultReachesItsOwnTaskUnderConcurrency) {
  Flow flow;
  flow.add_step({.name = "tag", .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) task.data = boost::json::object{{"id", task.data}, {"seen", 1}};
                 },
                 .workers = 3, .max_batch_size = 16});
  flow.add_step({.name = "double", .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) {
                     auto& object = task.data.as_object();
                     object["twice"] = object["id"].as_int64() * 2;
                   }
                 },
                 .workers = 2, .max_batch_size = 32, .queue_capacity = 64});
  flow.start();

  constexpr int kThreads = 8, kPerThread = 2000;
  std::vector<std::deque<FlowTask>> tasks(kThreads);
  Completions completions;
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        FlowTask& task = tasks[t].emplace_back(boost::json::value(t * kPerThread + i));
        completions.Submit(flow, task);
      }
    });
  }
  for (auto& thread : submitters) thread.join();
  ASSERT_TRUE(completions.WaitAll());
  // Capacity 1024 for the first step may reject some under this burst: every other one is right.
  std::size_t completed = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const FlowTask& task = tasks[t][i];
      if (task.status() == FlowTaskStatus::kRejected) continue;
      ASSERT_EQ(task.status(), FlowTaskStatus::kCompleted) << task.error();
      const auto& object = task.data.as_object();
      const std::int64_t id = t * kPerThread + i;
      ASSERT_EQ(object.at("id").as_int64(), id);
      ASSERT_EQ(object.at("twice").as_int64(), 2 * id);
      ++completed;
    }
  }
  EXPECT_GT(completed, 0u);
  EXPECT_EQ(completed + completions.Count(FlowTaskStatus::kRejected), std::size_t{kThreads * kPerThread});
  const FlowMetrics metrics = flow.metrics();
  EXPECT_EQ(metrics.completed, completed);
  EXPECT_EQ(metrics.steps[1].tasks, completed);
}

TEST(Flow, BatchesFormNearTheMaximumUnderLoad) {
  Gate gate;
  Flow flow;
  flow.add_step({.name = "model",
                 .handler = [&](FlowBatch batch) {
                   if (batch.size() == 1) gate.Wait();  // holds the worker while the queue fills
                 },
                 .max_batch_size = 32, .max_batch_delay = 5ms, .queue_capacity = 4096});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  completions.Submit(flow, tasks.emplace_back());
  ASSERT_TRUE(gate.WaitForWaiters(1));
  for (int i = 0; i < 32 * 40; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  gate.Open();
  ASSERT_TRUE(completions.WaitAll());
  const FlowStepMetrics step = flow.metrics().steps.at(0);
  EXPECT_EQ(step.tasks, 32u * 40 + 1);
  EXPECT_EQ(step.batch_size_counts.at(32), 40u) << "every batch after the first is full";
  EXPECT_EQ(step.batches, 41u);
}

TEST(Flow, ALoneTaskLeavesAfterTheBatchDelay) {
  Flow flow;
  flow.add_step({.name = "model", .handler = Double, .max_batch_size = 32, .max_batch_delay = 100ms});
  flow.start();
  FlowTask task(boost::json::value(1));
  Completions completions;
  const auto start = Clock::now();
  completions.Submit(flow, task);
  ASSERT_TRUE(completions.WaitAll());
  const auto waited = Clock::now() - start;
  EXPECT_EQ(task.status(), FlowTaskStatus::kCompleted);
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(flow.metrics().steps[0].batch_size_counts.at(1), 1u);
}

TEST(Flow, APreferredBatchSizeLeavesAtOnce) {
  Flow flow;
  std::atomic<std::size_t> last_size{0};
  flow.add_step({.name = "model",
                 .handler = [&](FlowBatch batch) { last_size = batch.size(); },
                 .max_batch_size = 32, .max_batch_delay = 10s, .preferred_batch_sizes = {4}});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  const auto start = Clock::now();
  for (int i = 0; i < 4; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_LT(Clock::now() - start, 5s) << "the preferred size waited for the 10 s delay";
  EXPECT_EQ(last_size.load(), 4u);
}

TEST(Flow, AThrowingHandlerFailsOnlyItsBatch) {
  Flow flow;
  flow.add_step({.name = "picky", .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) {
                     if (task.data.as_int64() < 0) throw std::runtime_error("negative input");
                   }
                   Double(batch);
                 }});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  for (int i : {1, -1, 2, -2, 3}) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_EQ(tasks[0].data, boost::json::value(2));
  EXPECT_EQ(tasks[0].status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(tasks[1].status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(tasks[1].error(), "step \"picky\" failed: negative input");
  EXPECT_EQ(tasks[2].status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(tasks[3].status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(tasks[4].status(), FlowTaskStatus::kCompleted);
  EXPECT_TRUE(flow.running());
  EXPECT_EQ(flow.metrics().failed, 2u);
}

TEST(Flow, AHandlerFailsSingleTasksAndLaterStepsSkipThem) {
  std::atomic<int> second_step_tasks{0};
  Flow flow;
  flow.add_step({.name = "validate",
                 .handler = [](FlowBatch batch) {
                   for (FlowTask& task : batch) {
                     if (task.data.as_int64() % 2) task.fail("odd input");
                   }
                 },
                 .max_batch_size = 8});
  flow.add_step({.name = "count", .handler = [&](FlowBatch batch) {
                   second_step_tasks += static_cast<int>(batch.size());
                 }});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  for (int i = 0; i < 10; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  ASSERT_TRUE(completions.WaitAll());
  for (int i = 0; i < 10; ++i) {
    if (i % 2) {
      EXPECT_EQ(tasks[i].status(), FlowTaskStatus::kFailed);
      EXPECT_EQ(tasks[i].error(), "odd input");
    } else {
      EXPECT_EQ(tasks[i].status(), FlowTaskStatus::kCompleted);
    }
  }
  EXPECT_EQ(second_step_tasks.load(), 5);
}

TEST(Flow, ATaskWhoseDeadlinePassesWhileQueuedTimesOutOnTime) {
  Gate gate;
  Flow flow;
  flow.add_step({.name = "slow", .handler = [&](FlowBatch) { gate.Wait(); }});
  flow.start();
  FlowTask blocker, late;
  Completions blocker_done, late_done;
  blocker_done.Submit(flow, blocker);
  ASSERT_TRUE(gate.WaitForWaiters(1));
  const auto start = Clock::now();
  late_done.Submit(flow, late, Clock::now() + 100ms);
  // The only worker is busy: the deadline watcher must end the task.
  ASSERT_TRUE(late_done.WaitAll(5s));
  EXPECT_EQ(late.status(), FlowTaskStatus::kTimedOut);
  EXPECT_NE(late.error().find("deadline passed"), std::string::npos) << late.error();
  EXPECT_GE(Clock::now() - start, 100ms);
  gate.Open();
  ASSERT_TRUE(blocker_done.WaitAll());
  EXPECT_EQ(blocker.status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(flow.metrics().timed_out, 1u);
  EXPECT_EQ(flow.metrics().steps[0].timed_out, 1u);
}

TEST(Flow, ATaskPastItsDeadlineIsNotTaken) {
  Flow flow;
  flow.add_step({.name = "any", .handler = Double});
  flow.start();
  FlowTask task(boost::json::value(1));
  EXPECT_EQ(flow.submit(task, Clock::now() - 1ms, nullptr, nullptr), FlowTaskStatus::kTimedOut);
  EXPECT_EQ(task.status(), FlowTaskStatus::kTimedOut);
}

TEST(Flow, AFullQueueRejectsAtOnce) {
  Gate gate;
  Flow flow;
  flow.add_step({.name = "slow", .handler = [&](FlowBatch) { gate.Wait(); }, .queue_capacity = 4});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  completions.Submit(flow, tasks.emplace_back());
  ASSERT_TRUE(gate.WaitForWaiters(1));
  for (int i = 0; i < 4; ++i) completions.Submit(flow, tasks.emplace_back());
  FlowTask refused;
  const auto start = Clock::now();
  EXPECT_EQ(flow.submit(refused, Clock::time_point::max(), nullptr, nullptr), FlowTaskStatus::kRejected);
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_EQ(refused.error(), "step \"slow\" has 4 tasks queued, its queue_capacity: try again later");
  // Through the awaitable path the refusal completes the handler too (posted, never inline).
  FlowTask refused_too;
  Completions refusal;
  refusal.Submit(flow, refused_too);
  ASSERT_TRUE(refusal.WaitAll());
  EXPECT_EQ(refused_too.status(), FlowTaskStatus::kRejected);
  gate.Open();
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_EQ(completions.Count(FlowTaskStatus::kCompleted), 5u);
  EXPECT_EQ(flow.metrics().steps[0].rejected, 2u);
}

TEST(Flow, ASlowStepHoldsBackTheOneBeforeItWithoutLosingTasks) {
  Flow flow;
  flow.add_step({.name = "fast", .handler = Double, .max_batch_size = 8});
  flow.add_step({.name = "slow",
                 .handler = [](FlowBatch batch) {
                   std::this_thread::sleep_for(1ms);
                   Double(batch);
                 },
                 .max_batch_size = 2, .queue_capacity = 2});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  for (int i = 0; i < 300; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  ASSERT_TRUE(completions.WaitAll());
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(tasks[i].status(), FlowTaskStatus::kCompleted);
    ASSERT_EQ(tasks[i].data, boost::json::value(4 * i));
  }
  EXPECT_LE(flow.metrics().steps[1].batch_size_counts.size(), 3u);
}

TEST(Flow, StopDrainsQueuedTasksAndRefusesNewOnes) {
  Flow flow;
  flow.add_step({.name = "slowish",
                 .handler = [](FlowBatch batch) {
                   std::this_thread::sleep_for(2ms);
                   Double(batch);
                 },
                 .max_batch_size = 4});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  for (int i = 0; i < 40; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  flow.stop(10s);
  EXPECT_FALSE(flow.running());
  ASSERT_TRUE(completions.WaitAll(1s)) << "stop returned before every task completed";
  EXPECT_EQ(completions.Count(FlowTaskStatus::kCompleted), 40u);
  FlowTask late;
  EXPECT_EQ(flow.submit(late, Clock::time_point::max(), nullptr, nullptr), FlowTaskStatus::kStopped);
}

TEST(Flow, StopAfterTheDrainFailsWhatIsStillQueued) {
  Gate gate;
  Flow flow;
  flow.add_step({.name = "stuck", .handler = [&](FlowBatch) { gate.Wait(); }});
  flow.add_step({.name = "after", .handler = Double});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  completions.Submit(flow, tasks.emplace_back(boost::json::value(1)));
  ASSERT_TRUE(gate.WaitForWaiters(1));
  for (int i = 0; i < 5; ++i) completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
  std::thread opener([&] {
    std::this_thread::sleep_for(300ms);  // after the drain has given up
    gate.Open();
  });
  flow.stop(50ms);
  opener.join();
  ASSERT_TRUE(completions.WaitAll(1s));
  // The running batch finished its step but found the next one stopped.
  EXPECT_EQ(completions.Count(FlowTaskStatus::kStopped), 6u);
  EXPECT_EQ(tasks[1].error(), "the flow was stopped");
}

TEST(Flow, TheFactoryMakesOneHandlerPerWorkerOnItsOwnThread) {
  std::mutex mutex;
  std::set<std::thread::id> factory_threads;
  std::atomic<int> instances{0};
  Flow flow;
  flow.add_step({.name = "model",
                 .handler =
                     [&] {
                       {
                         std::lock_guard lock(mutex);
                         factory_threads.insert(std::this_thread::get_id());
                       }
                       const int instance = instances++;
                       return [instance, calls = 0](FlowBatch batch) mutable {
                         ++calls;  // state owned by this worker alone
                         for (FlowTask& task : batch) task.data = instance;
                       };
                     },
                 .workers = 3});
  flow.start();
  EXPECT_EQ(instances.load(), 3);
  EXPECT_EQ(factory_threads.size(), 3u);
  EXPECT_EQ(factory_threads.count(std::this_thread::get_id()), 0u);
  FlowTask task;
  Completions completions;
  completions.Submit(flow, task);
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_TRUE(task.data.is_int64());
  EXPECT_LT(task.data.as_int64(), 3);
}

TEST(Flow, AFactoryThatThrowsFailsStartWithoutHanging) {
  Flow flow;
  flow.add_step({.name = "good", .handler = Double, .workers = 2});
  flow.add_step({.name = "bad", .handler = []() -> BatchHandler::Instance {
                   throw std::runtime_error("model file missing");
                 }});
  try {
    flow.start();
    FAIL() << "start did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "flow step \"bad\" worker 0 could not start: model file missing");
  }
  EXPECT_FALSE(flow.running());
  FlowTask task;
  EXPECT_EQ(flow.submit(task, Clock::time_point::max(), nullptr, nullptr), FlowTaskStatus::kStopped);
}

TEST(Flow, RejectsStepsThatCannotWork) {
  Flow flow;
  EXPECT_THROW(flow.add_step({.name = "", .handler = Double}), std::invalid_argument);
  EXPECT_THROW(flow.add_step({.name = "has space", .handler = Double}), std::invalid_argument);
  EXPECT_THROW(flow.add_step({.name = "none"}), std::invalid_argument);
  EXPECT_THROW(flow.add_step({.name = "zero", .handler = Double, .workers = 0}), std::invalid_argument);
  EXPECT_THROW(flow.add_step({.name = "zero", .handler = Double, .max_batch_size = 0}), std::invalid_argument);
  EXPECT_THROW(flow.add_step({.name = "zero", .handler = Double, .queue_capacity = 0}), std::invalid_argument);
  try {
    flow.add_step({.name = "model", .handler = Double, .max_batch_size = 8, .preferred_batch_sizes = {4, 16}});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "flow step \"model\": preferred batch size 16 is not between 1 and max_batch_size (8)");
  }
  flow.add_step({.name = "model", .handler = Double});
  EXPECT_THROW(flow.add_step({.name = "model", .handler = Double}), std::invalid_argument);
  EXPECT_THROW(Flow(FlowOptions{.name = "bad name"}), std::invalid_argument);
  Flow empty;
  EXPECT_THROW(empty.start(), std::logic_error);
}

TEST(Flow, CoroutineHandlersAndAwaitingCallers) {
  Flow flow;
  flow.add_step({.name = "remote",
                 .handler = [](FlowBatch batch) -> Task<void> {
                   asio::steady_timer timer(co_await asio::this_coro::executor, 1ms);
                   co_await timer.async_wait(asio::use_awaitable);
                   Double(batch);
                 },
                 .workers = 2, .max_batch_size = 8});
  flow.add_step({.name = "plain", .handler = Double});
  flow.start();

  asio::io_context io;
  std::vector<std::int64_t> results(50, -1);
  for (int i = 0; i < 50; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> Task<void> {
          FlowTask task{boost::json::value(i)};
          const FlowTaskStatus status = co_await flow.process(task, 10s);
          if (status == FlowTaskStatus::kCompleted) results[i] = task.data.as_int64();
        },
        asio::detached);
  }
  io.run_for(kWatchdog);
  ASSERT_TRUE(io.stopped()) << "watchdog: callers still waiting";
  for (int i = 0; i < 50; ++i) EXPECT_EQ(results[i], 4 * i);
}

TEST(Flow, ACoroutineHandlerThatThrowsFailsItsBatch) {
  Flow flow;
  flow.add_step({.name = "remote", .handler = [](FlowBatch) -> Task<void> {
                   co_await sleep_for(1ms);
                   throw std::runtime_error("remote model unreachable");
                 }});
  flow.start();
  FlowTask task;
  Completions completions;
  completions.Submit(flow, task);
  ASSERT_TRUE(completions.WaitAll());
  EXPECT_EQ(task.status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(task.error(), "step \"remote\" failed: remote model unreachable");
}

TEST(Flow, SpinningWorkersTakeTasksThatComeWhileTheySpinOrSleep) {
  Flow flow(FlowOptions{.worker_spin = std::chrono::microseconds(200)});
  flow.add_step({.name = "double", .handler = Double, .workers = 2});
  flow.start();
  std::deque<FlowTask> tasks;
  Completions completions;
  // Gaps around the spin's length: some tasks come while a worker spins, some as the spin ends,
  // some after the worker went to sleep. None may be left waiting.
  for (int i = 0; i < 300; ++i) {
    completions.Submit(flow, tasks.emplace_back(boost::json::value(i)));
    std::this_thread::sleep_for(std::chrono::microseconds(50 * (i % 8)));
  }
  ASSERT_TRUE(completions.WaitAll());
  for (int i = 0; i < 300; ++i) EXPECT_EQ(tasks[i].data, boost::json::value(2 * i));
}

TEST(Flow, StatusNames) {
  EXPECT_EQ(to_string(FlowTaskStatus::kCompleted), "COMPLETED");
  EXPECT_EQ(to_string(FlowTaskStatus::kTimedOut), "TIMED_OUT");
  EXPECT_EQ(to_string(FlowTaskStatus::kUnavailable), "UNAVAILABLE");
}

}  // namespace
}  // namespace sluice
