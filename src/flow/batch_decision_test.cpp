#include "flow/batch_decision.hpp"

#include <vector>

#include <gtest/gtest.h>

namespace sluice::flow {
namespace {
using namespace std::chrono_literals;

const Clock::time_point kStart = Clock::time_point() + 1h;

// `count` tasks enqueued 1 ms apart from kStart, without deadlines.
std::vector<QueuedTask> Tasks(std::size_t count) {
  std::vector<QueuedTask> tasks;
  for (std::size_t i = 0; i < count; ++i) {
    tasks.push_back({kStart + std::chrono::milliseconds(i), std::nullopt});
  }
  return tasks;
}

BatchPolicy Policy(std::size_t max_batch_size, Clock::duration delay, std::vector<std::size_t> preferred = {}) {
  BatchPolicy policy;
  policy.max_batch_size = max_batch_size;
  policy.max_batch_delay = delay;
  policy.preferred_batch_sizes = std::move(preferred);
  return policy;
}

TEST(BatchDecision, AnEmptyQueueWaitsForATask) {
  const BatchDecision decision = DecideBatch({}, kStart, Policy(32, 5ms));
  EXPECT_EQ(decision.dispatch, 0u);
  EXPECT_FALSE(decision.wake_at.has_value());
}

TEST(BatchDecision, AFullBatchLeavesAtOnce) {
  const auto tasks = Tasks(32);
  const BatchDecision decision = DecideBatch(tasks, kStart + 31ms, Policy(32, 1s));
  EXPECT_EQ(decision.dispatch, 32u);
  EXPECT_FALSE(decision.wake_at.has_value());
}

TEST(BatchDecision, MoreThanAFullBatchSendsOneFullBatch) {
  const auto tasks = Tasks(70);
  EXPECT_EQ(DecideBatch(tasks, kStart + 70ms, Policy(32, 1s)).dispatch, 32u);
}

TEST(BatchDecision, APartialBatchWaitsForTheOldestTasksDelay) {
  const auto tasks = Tasks(5);
  const BatchDecision decision = DecideBatch(tasks, kStart + 4ms, Policy(32, 10ms));
  EXPECT_EQ(decision.dispatch, 0u);
  ASSERT_TRUE(decision.wake_at.has_value());
  EXPECT_EQ(*decision.wake_at, kStart + 10ms);  // the oldest was enqueued at kStart
}

TEST(BatchDecision, APartialBatchLeavesOnceTheOldestHasWaitedTheDelay) {
  const auto tasks = Tasks(5);
  EXPECT_EQ(DecideBatch(tasks, kStart + 10ms, Policy(32, 10ms)).dispatch, 5u);
  EXPECT_EQ(DecideBatch(tasks, kStart + 1s, Policy(32, 10ms)).dispatch, 5u);
}

TEST(BatchDecision, ALoneTaskLeavesAfterTheDelay) {
  const auto tasks = Tasks(1);
  const BatchDecision waiting = DecideBatch(tasks, kStart, Policy(32, 2ms));
  EXPECT_EQ(waiting.dispatch, 0u);
  EXPECT_EQ(waiting.wake_at, kStart + 2ms);
  EXPECT_EQ(DecideBatch(tasks, kStart + 2ms, Policy(32, 2ms)).dispatch, 1u);
}

TEST(BatchDecision, ZeroDelayMeansWhateverIsQueuedLeavesAtOnce) {
  const auto tasks = Tasks(3);
  EXPECT_EQ(DecideBatch(tasks, kStart + 2ms, Policy(32, 0ms)).dispatch, 3u);
}

TEST(BatchDecision, MaxBatchSizeOneSendsEveryTaskAlone) {
  const auto tasks = Tasks(4);
  EXPECT_EQ(DecideBatch(tasks, kStart, Policy(1, 1s)).dispatch, 1u);
}

TEST(BatchDecision, TheLargestPreferredSizeHeldLeavesAtOnce) {
  const BatchPolicy policy = Policy(32, 1s, {16, 8});  // any order
  const auto ten = Tasks(10);
  EXPECT_EQ(DecideBatch(ten, kStart + 10ms, policy).dispatch, 8u);
  const auto twenty = Tasks(20);
  EXPECT_EQ(DecideBatch(twenty, kStart + 20ms, policy).dispatch, 16u);
  const auto seven = Tasks(7);
  const BatchDecision waiting = DecideBatch(seven, kStart + 7ms, policy);
  EXPECT_EQ(waiting.dispatch, 0u) << "below every preferred size, the delay applies";
  EXPECT_EQ(waiting.wake_at, kStart + 1s);
}

TEST(BatchDecision, PreferredSizesOutsideOneToMaxAreIgnored) {
  const auto tasks = Tasks(5);
  const BatchDecision decision = DecideBatch(tasks, kStart + 5ms, Policy(4, 1s, {0, 64}));
  EXPECT_EQ(decision.dispatch, 4u) << "the full batch of 4, not a preferred size";
}

TEST(BatchDecision, AnEarlierDeadlineInTheBatchWakesSooner) {
  auto tasks = Tasks(3);
  tasks[2].deadline = kStart + 4ms;
  const BatchDecision waiting = DecideBatch(tasks, kStart + 3ms, Policy(32, 10ms));
  EXPECT_EQ(waiting.dispatch, 0u);
  EXPECT_EQ(waiting.wake_at, kStart + 4ms);
  EXPECT_EQ(DecideBatch(tasks, kStart + 4ms, Policy(32, 10ms)).dispatch, 3u)
      << "the task with no time left takes the others along";
}

TEST(BatchDecision, ADeadlineLaterThanTheDelayChangesNothing) {
  auto tasks = Tasks(2);
  tasks[0].deadline = kStart + 1h;
  EXPECT_EQ(DecideBatch(tasks, kStart + 1ms, Policy(32, 10ms)).wake_at, kStart + 10ms);
}

}  // namespace
}  // namespace sluice::flow
