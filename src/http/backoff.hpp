// http/backoff.hpp — exponential backoff with full jitter, and `SendWithRetry`, which resends an
// HTTP request under it (webhooks: decisions.md §3; RunPod's result POST: runpod.md §4.5).
//
// BackoffPolicy is a pure function of the retry number and a random number the caller passes in,
// so tests are deterministic. "Full jitter" (a uniform delay between 0 and the exponential ceiling)
// spreads retries from many workers instead of having them hit a recovering server in step.
//
// SendWithRetry never blocks a thread: it waits on Asio timers between attempts, so one I/O
// thread can retry any number of webhooks while jobs run.
//
// Threads: BackoffPolicy and RetryOptions are values. SendWithRetry runs on the caller's coroutine;
// the callbacks in RetryOptions are called there, never concurrently for one call.
#pragma once

#include <chrono>
#include <functional>
#include <optional>

#include <sluice/task.hpp>

#include "core/status.hpp"
#include "http/client.hpp"

namespace sluice::http {

struct BackoffPolicy {
  std::chrono::steady_clock::duration initial = std::chrono::milliseconds(100);
  std::chrono::steady_clock::duration max = std::chrono::seconds(30);
  double multiplier = 2.0;

  /// The delay before retry number `retry` (0 for the first retry, after the first attempt
  /// failed): `uniform_0_1 * min(max, initial * multiplier^retry)`. `uniform_0_1` is clamped to
  /// [0, 1]; a multiplier below 1 counts as 1, and a negative retry as 0.
  std::chrono::steady_clock::duration Delay(int retry, double uniform_0_1) const;
};

/// The default retry predicate: network failures (kUnavailable: DNS, refused, reset, timeout,
/// dropped mid-response), 429 and every 5xx. Invalid requests, oversized responses and other
/// statuses are final.
bool IsRetryable(const core::Result<ClientResponse>& result);

/// A uniform random number in [0, 1) from a per-thread generator: the jitter every backoff of the
/// worker draws (SendWithRetry's default, the RunPod take pacer and stop channel).
double UniformRandom();

struct RetryOptions {
  BackoffPolicy policy;
  /// Attempts in all, the first included; 0 means no limit (then set a deadline).
  int max_attempts = 3;
  /// No attempt starts, and no wait ends, after it; each attempt's timeout is cut to fit.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  /// Whether an answer deserves another attempt; empty means IsRetryable.
  std::function<bool(const core::Result<ClientResponse>&)> retry_on;
  /// Uniform in [0, 1); empty means a per-thread std::mt19937_64. Tests pass a constant.
  std::function<double()> random;
  /// Called before each wait, with the retry number, its delay and the answer being retried
  /// (logging, tests); may be empty.
  std::function<void(int retry, std::chrono::steady_clock::duration delay,
                     const core::Result<ClientResponse>& answer)>
      on_retry;
};

/// Sends `request` until an answer is not retryable (success included), the attempts are used up,
/// or the next attempt would start after the deadline, waiting `policy.Delay(retry, random())`
/// between attempts. Returns the last answer: a response (maybe a 5xx) or a failed Status.
/// A deadline already passed before the first attempt is an Unavailable Status naming the URL.
Task<core::Result<ClientResponse>> SendWithRetry(Client& client, ClientRequest request,
                                                 RetryOptions options);

}  // namespace sluice::http
