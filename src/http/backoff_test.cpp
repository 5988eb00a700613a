#include "http/backoff.hpp"

#include <chrono>
#include <limits>

#include <gtest/gtest.h>

namespace sluice::http {
namespace {

using namespace std::chrono_literals;

TEST(Backoff, DelayIsTheRandomFractionOfTheExponentialCeiling) {
  const BackoffPolicy policy{100ms, 10s, 2.0};
  EXPECT_EQ(policy.Delay(0, 1.0), 100ms);
  EXPECT_EQ(policy.Delay(1, 1.0), 200ms);
  EXPECT_EQ(policy.Delay(2, 1.0), 400ms);
  EXPECT_EQ(policy.Delay(3, 0.5), 400ms);
  EXPECT_EQ(policy.Delay(2, 0.25), 100ms);
  EXPECT_EQ(policy.Delay(5, 0.0), 0ms);  // full jitter reaches down to zero
}

TEST(Backoff, DelayIsCappedAtMax) {
  const BackoffPolicy policy{100ms, 1s, 2.0};
  EXPECT_EQ(policy.Delay(4, 1.0), 1s);  // 1.6 s capped
  EXPECT_EQ(policy.Delay(4, 0.5), 500ms);
  // Far beyond any representable growth: saturates at max instead of overflowing.
  EXPECT_EQ(policy.Delay(10'000, 1.0), 1s);
  EXPECT_EQ(policy.Delay(std::numeric_limits<int>::max(), 0.5), 500ms);
}

TEST(Backoff, OutOfRangeInputsAreClamped) {
  const BackoffPolicy policy{100ms, 1s, 2.0};
  EXPECT_EQ(policy.Delay(0, 7.0), 100ms);
  EXPECT_EQ(policy.Delay(0, -1.0), 0ms);
  EXPECT_EQ(policy.Delay(0, std::numeric_limits<double>::quiet_NaN()), 0ms);
  EXPECT_EQ(policy.Delay(-3, 1.0), 100ms);
  const BackoffPolicy shrinking{100ms, 1s, 0.5};
  EXPECT_EQ(shrinking.Delay(3, 1.0), 100ms);  // a multiplier below 1 counts as 1
}

TEST(Backoff, ConstantPolicy) {
  const BackoffPolicy policy{20ms, 20ms, 1.0};
  for (int retry = 0; retry < 10; ++retry) EXPECT_EQ(policy.Delay(retry, 1.0), 20ms);
}

TEST(Backoff, DefaultRetryPredicate) {
  auto response = [](int status) {
    ClientResponse answer;
    answer.status = status;
    return core::Result<ClientResponse>(answer);
  };
  EXPECT_TRUE(IsRetryable(response(500)));
  EXPECT_TRUE(IsRetryable(response(503)));
  EXPECT_TRUE(IsRetryable(response(599)));
  EXPECT_TRUE(IsRetryable(response(429)));
  EXPECT_FALSE(IsRetryable(response(200)));
  EXPECT_FALSE(IsRetryable(response(204)));
  EXPECT_FALSE(IsRetryable(response(301)));
  EXPECT_FALSE(IsRetryable(response(400)));
  EXPECT_FALSE(IsRetryable(response(404)));
  EXPECT_TRUE(IsRetryable(core::Status::Unavailable("127.0.0.1:1: connecting failed")));
  EXPECT_FALSE(IsRetryable(core::Status::InvalidArgument("invalid URL")));
  EXPECT_FALSE(IsRetryable(core::Status::ResourceExhausted("too big")));
}

}  // namespace
}  // namespace sluice::http
