#include "http/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

namespace sluice::http {
using Clock = std::chrono::steady_clock;

double UniformRandom() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

Clock::duration BackoffPolicy::Delay(int retry, double uniform_0_1) const {
  if (initial <= Clock::duration::zero()) return Clock::duration::zero();
  const double fraction = std::isnan(uniform_0_1) ? 0.0 : std::clamp(uniform_0_1, 0.0, 1.0);
  const double growth = std::max(multiplier, 1.0);
  const double max_ticks = static_cast<double>(std::max(max.count(), Clock::rep{0}));
  // In doubles, so that a large retry number saturates at max instead of overflowing.
  const double ceiling_ticks =
      std::min(max_ticks, static_cast<double>(std::max(initial.count(), Clock::rep{0})) *
                              std::pow(growth, std::max(retry, 0)));
  return Clock::duration(static_cast<Clock::rep>(fraction * ceiling_ticks));
}

bool IsRetryable(const core::Result<ClientResponse>& result) {
  if (!result.ok()) return result.status().code() == core::StatusCode::kUnavailable;
  return result->status == 429 || (result->status >= 500 && result->status <= 599);
}

Task<core::Result<ClientResponse>> SendWithRetry(Client& client, ClientRequest request,
                                                 RetryOptions options) {
  const Clock::duration attempt_timeout = request.timeout;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  std::optional<core::Result<ClientResponse>> previous;
  for (int attempt = 1;; ++attempt) {
    if (options.deadline) {
      const Clock::duration left = *options.deadline - Clock::now();
      if (left <= Clock::duration::zero()) {
        // A timer may wake a little after the deadline it was set to end before.
        if (previous) co_return std::move(*previous);
        co_return core::Status::Unavailable(
            fmt::format("{} {}: the retry deadline passed before an attempt", request.method,
                        request.url));
      }
      request.timeout = std::min(attempt_timeout, left);
    }
    core::Result<ClientResponse> answer = co_await client.Send(request);
    const bool retryable = options.retry_on ? options.retry_on(answer) : IsRetryable(answer);
    if (!retryable) co_return answer;
    if (options.max_attempts > 0 && attempt >= options.max_attempts) co_return answer;

    const int retry = attempt - 1;
    const Clock::duration delay =
        options.policy.Delay(retry, options.random ? options.random() : UniformRandom());
    if (options.deadline && Clock::now() + delay >= *options.deadline) co_return answer;
    if (options.on_retry) options.on_retry(retry, delay, answer);
    previous.emplace(std::move(answer));
    timer.expires_after(delay);
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
}

}  // namespace sluice::http
