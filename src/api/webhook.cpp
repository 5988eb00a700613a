#include "api/webhook.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "core/status.hpp"
#include "http/client.hpp"
#include "log/logging.hpp"

namespace sluice::api {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Answer = core::Result<http::ClientResponse>;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// A response body quoted in a log line is cut here: it is there to hint at the cause, and an error
// page can be megabytes.
constexpr std::size_t kMaxQuotedBody = 256;

long long Milliseconds(Clock::duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// The answer as a log line names it: "HTTP 503: <body>" or the failure's message.
std::string Describe(const Answer& answer) {
  if (!answer.ok()) return answer.status().message();
  const std::string& body = answer->body;
  if (body.empty()) return fmt::format("HTTP {}", answer->status);
  if (body.size() <= kMaxQuotedBody) return fmt::format("HTTP {}: {}", answer->status, body);
  return fmt::format("HTTP {}: {}...", answer->status,
                     std::string_view(body).substr(0, kMaxQuotedBody));
}

bool IsDelivered(const Answer& answer) {
  return answer.ok() && answer->status >= 200 && answer->status <= 299;
}

// now + timeout without overflowing for a huge timeout (Clock::duration::max() means "no limit").
Clock::time_point DeadlineAfter(Clock::duration timeout) {
  const Clock::time_point now = Clock::now();
  if (timeout <= Clock::duration::zero()) return now;
  if (timeout >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

}  // namespace

class WebhookSender::Impl {
 public:
  Impl(asio::any_io_executor executor, WebhookOptions options)
      : executor_(executor),
        strand_(asio::make_strand(executor)),
        options_(Normalised(std::move(options))),
        client_(executor) {}

  // Counts a delivery in if fewer than max_pending are in flight. Not fetch_add-then-undo: a
  // rejected Send must never make the count pass through a value a Drain could see.
  bool TryAdmit() noexcept {
    std::size_t in_flight = pending_.load(std::memory_order_relaxed);
    do {
      if (in_flight >= options_.max_pending) return false;
    } while (!pending_.compare_exchange_weak(in_flight, in_flight + 1, std::memory_order_acq_rel,
                                             std::memory_order_relaxed));
    return true;
  }

  // Ends one admitted delivery. The outcome is counted before the delivery leaves `pending_`, so a
  // Drain that returns true sees every outcome.
  void Finish(bool delivered) {
    (delivered ? delivered_ : failed_).fetch_add(1, std::memory_order_relaxed);
    Release();
  }

  // Takes one delivery out of pending_, and wakes the Drains when none is left.
  void Release() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::lock_guard lock(mutex_);
    // Timers are woken on the strand their Drain waits on: a steady_timer is not thread-safe.
    for (auto& waiter : drain_waiters_) asio::post(strand_, [waiter] { waiter->cancel(); });
  }

  void Drop(const std::string& job_id, const std::string& url) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    dropped_.fetch_add(1, std::memory_order_relaxed);
    log::Error(job_id, "webhook to {} dropped: {} deliveries are already in flight", url,
               options_.max_pending);
  }

  static Task<bool> Deliver(std::shared_ptr<Impl> self, std::string job_id, std::string url,
                            std::string body);
  static Task<bool> Drain(std::shared_ptr<Impl> self, Clock::duration timeout);

  const asio::any_io_executor executor_;
  // Drain's timers are used on this strand only.
  const asio::strand<asio::any_io_executor> strand_;
  const WebhookOptions options_;
  http::Client client_;

  std::atomic<std::size_t> pending_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> dropped_{0};

  std::mutex mutex_;
  // Protected by mutex_: the timers of the Drains now waiting, cancelled when pending_ reaches 0.
  std::vector<std::shared_ptr<asio::steady_timer>> drain_waiters_;

 private:
  static WebhookOptions Normalised(WebhookOptions options) {
    // SendWithRetry reads 0 attempts as "no limit", which a delivery without a deadline must not
    // get.
    options.max_attempts = std::max(options.max_attempts, 1);
    return options;
  }

  Task<bool> DrainOnStrand(Clock::time_point deadline);
};

Task<bool> WebhookSender::Impl::Deliver(std::shared_ptr<Impl> self, std::string job_id,
                                        std::string url, std::string body) {
  const WebhookOptions& options = self->options_;
  http::ClientRequest request;
  request.method = "POST";
  request.url = url;
  request.headers.push_back(http::HeaderField{"Content-Type", "application/json"});
  request.body = std::move(body);
  request.timeout = options.attempt_timeout;

  int attempts = 1;
  http::RetryOptions retry;
  retry.policy = options.backoff;
  retry.max_attempts = options.max_attempts;
  retry.random = options.random;
  // Runs inside SendWithRetry on this coroutine, so the references stay valid.
  retry.on_retry = [&attempts, &job_id, &url, &options](int, Clock::duration delay,
                                                        const Answer& answer) {
    log::Warn(job_id, "webhook to {}: attempt {} of {} failed ({}); retrying in {} ms", url,
              attempts, options.max_attempts, Describe(answer), Milliseconds(delay));
    ++attempts;
  };

  // Named first: g++ 12 miscompiles temporaries built inside a co_await expression.
  Answer answer = co_await http::SendWithRetry(self->client_, std::move(request), std::move(retry));
  if (IsDelivered(answer)) {
    log::Debug(job_id, "webhook delivered to {} (HTTP {}, attempt {})", url, answer->status,
               attempts);
    co_return true;
  }
  if (http::IsRetryable(answer)) {
    log::Error(job_id, "webhook to {} failed after {} attempt(s), giving up: {}", url, attempts,
               Describe(answer));
  } else {
    log::Error(job_id, "webhook to {} failed after {} attempt(s), not retryable: {}", url,
               attempts, Describe(answer));
  }
  co_return false;
}

Task<bool> WebhookSender::Impl::Drain(std::shared_ptr<Impl> self, Clock::duration timeout) {
  const Clock::time_point deadline = DeadlineAfter(timeout);
  // On the strand, where the timer lives. Bound to an empty cancellation slot: emitting the
  // caller's cancellation into a co_spawned coroutine can terminate the process in Boost 1.81, and
  // the deadline ends the wait anyway.
  auto token = asio::bind_cancellation_slot(asio::cancellation_slot(), kNoThrow);
  auto [failure, drained] = co_await asio::co_spawn(self->strand_, self->DrainOnStrand(deadline),
                                                    token);
  if (failure) std::rethrow_exception(failure);
  co_return drained;
}

Task<bool> WebhookSender::Impl::DrainOnStrand(Clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(strand_, deadline);
  {
    std::lock_guard lock(mutex_);
    if (pending_.load(std::memory_order_acquire) == 0) co_return true;
    drain_waiters_.push_back(timer);
  }
  // Woken early (cancelled) whenever pending_ reaches 0; it may have risen again since.
  for (;;) {
    co_await timer->async_wait(kNoThrow);
    std::lock_guard lock(mutex_);
    const bool drained = pending_.load(std::memory_order_acquire) == 0;
    if (drained || Clock::now() >= deadline) {
      std::erase(drain_waiters_, timer);
      co_return drained;
    }
  }
}

// ---------------------------------------------------------------------------------------------

WebhookSender::WebhookSender(asio::any_io_executor executor, WebhookOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {}

WebhookSender::~WebhookSender() = default;

void WebhookSender::Send(std::string job_id, std::string url, std::string body) {
  if (!impl_->TryAdmit()) {
    impl_->Drop(job_id, url);
    return;
  }
  try {
    auto delivery = Impl::Deliver(impl_, job_id, std::move(url), std::move(body));
    asio::co_spawn(impl_->executor_, std::move(delivery),
                   [impl = impl_, job_id](std::exception_ptr failure, bool delivered) {
                     if (failure) {
                       // Deliver reports every failed answer itself; this is the last guard.
                       delivered = false;
                       try {
                         std::rethrow_exception(failure);
                       } catch (const std::exception& error) {
                         log::Error(job_id, "webhook delivery failed: {}", error.what());
                       } catch (...) {
                         log::Error(job_id, "webhook delivery failed with an unknown exception");
                       }
                     }
                     impl->Finish(delivered);
                   });
  } catch (...) {
    // Nothing was started (allocation failed): leave the count as it was, and tell the caller.
    impl_->Release();
    throw;
  }
}

Task<bool> WebhookSender::Drain(std::chrono::steady_clock::duration timeout) {
  // Not a coroutine itself: impl_ is copied into the task now, not when it starts.
  return Impl::Drain(impl_, timeout);
}

std::uint64_t WebhookSender::delivered() const noexcept {
  return impl_->delivered_.load(std::memory_order_relaxed);
}

std::uint64_t WebhookSender::failed() const noexcept {
  return impl_->failed_.load(std::memory_order_relaxed);
}

std::uint64_t WebhookSender::dropped() const noexcept {
  return impl_->dropped_.load(std::memory_order_relaxed);
}

std::size_t WebhookSender::pending() const noexcept {
  return impl_->pending_.load(std::memory_order_acquire);
}

}  // namespace sluice::api
