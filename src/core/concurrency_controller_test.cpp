#include "core/concurrency_controller.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::core {
namespace {

using namespace std::chrono_literals;
using Clock = ConcurrencyController::Clock;

TEST(ConcurrencyController, WithoutModifierTheLimitIsFixed) {
  ConcurrencyController controller(4, 1000, nullptr);
  EXPECT_EQ(controller.Update(Clock::time_point{}), 4);
  EXPECT_EQ(controller.Update(Clock::time_point{} + 1h), 4);
  EXPECT_FALSE(controller.has_modifier());
}

TEST(ConcurrencyController, InitialLimitIsClamped) {
  EXPECT_EQ(ConcurrencyController(0, 10, nullptr).limit(), 1);
  EXPECT_EQ(ConcurrencyController(50, 10, nullptr).limit(), 10);
}

TEST(ConcurrencyController, ModifierGetsTheCurrentLimitAndItsResultApplies) {
  std::vector<int> seen;
  ConcurrencyController controller(1, 10, [&](int now) {
    seen.push_back(now);
    return now + 1;
  });
  const Clock::time_point start{};
  EXPECT_EQ(controller.Update(start), 2);
  EXPECT_EQ(controller.Update(start + 100ms), 3);
  EXPECT_EQ(controller.Update(start + 200ms), 4);
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
}

TEST(ConcurrencyController, CalledAtMostOncePerInterval) {
  int calls = 0;
  ConcurrencyController controller(5, 10, [&](int now) {
    ++calls;
    return now;
  });
  const Clock::time_point start{};
  controller.Update(start);
  controller.Update(start + 10ms);
  controller.Update(start + 99ms);
  EXPECT_EQ(calls, 1);
  controller.Update(start + 100ms);
  EXPECT_EQ(calls, 2);
}

TEST(ConcurrencyController, ResultsOutOfRangeKeepTheOldLimitWithAWarning) {
  int next = 0;
  std::vector<std::string> warnings;
  ConcurrencyController controller(
      3, 8, [&](int) { return next; }, 0ms, [&](const std::string& w) { warnings.push_back(w); });
  const Clock::time_point t{};
  next = 0;
  EXPECT_EQ(controller.Update(t), 3);
  next = -5;
  EXPECT_EQ(controller.Update(t), 3);
  next = 9;
  EXPECT_EQ(controller.Update(t), 3);
  next = 8;
  EXPECT_EQ(controller.Update(t), 8);
  next = 1;
  EXPECT_EQ(controller.Update(t), 1);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("0 is below 1"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[2].find("above --max-concurrency 8"), std::string::npos) << warnings[2];
  EXPECT_NE(warnings[2].find("the limit stays 3"), std::string::npos) << warnings[2];
}

TEST(ConcurrencyController, AThrowingModifierKeepsTheOldLimit) {
  bool fail = true;
  std::vector<std::string> warnings;
  ConcurrencyController controller(
      2, 10,
      [&](int now) {
        if (fail) throw std::runtime_error("metrics unavailable");
        return now * 2;
      },
      0ms, [&](const std::string& w) { warnings.push_back(w); });
  EXPECT_EQ(controller.Update(Clock::time_point{}), 2);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("std::runtime_error: metrics unavailable"), std::string::npos);
  fail = false;
  EXPECT_EQ(controller.Update(Clock::time_point{}), 4);
}

TEST(ConcurrencyController, ValidateNamesTheProblem) {
  std::string reason;
  EXPECT_EQ(ConcurrencyController::Validate(5, 10, &reason), 5);
  EXPECT_FALSE(ConcurrencyController::Validate(11, 10, &reason));
  EXPECT_EQ(reason, "11 is above --max-concurrency 10");
  EXPECT_FALSE(ConcurrencyController::Validate(-2, 10, &reason));
  EXPECT_EQ(reason, "-2 is below 1");
}

}  // namespace
}  // namespace sluice::core
