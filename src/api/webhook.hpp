// api/webhook.hpp — delivers a job's result to the `webhook` URL of its request (docs/job-api.md,
// "Webhooks"): one POST of the status object, retried with backoff, never holding up the job.
//
// How it works: `Send` starts one detached coroutine per delivery and returns. The coroutine POSTs
// the body with `Content-Type: application/json` through `http::SendWithRetry` on the sender's one
// `http::Client` (so deliveries to the same host reuse connections). A 2xx is delivered; a network
// failure, a 429 or a 5xx is retried after an exponential, fully jittered delay (0.5 s doubling to
// at most 30 s, 8 attempts in all by default); any other answer (a 4xx, a 3xx: redirects are not
// followed) is final at once. A delivery that fails is logged at ERROR with the job id, the URL and
// the last answer, because nobody else will ever learn of it; each retry is logged at WARN.
//
// Bounds: at most `max_pending` deliveries are in flight; a Send beyond that is dropped at once
// (logged at ERROR, counted as failed), so an unreachable webhook host cannot make the worker hold
// an unbounded number of bodies. A delivery ends after `max_attempts` attempts of at most
// `attempt_timeout` each, plus the waits between them (about 2.5 minutes with the defaults).
//
// Shutdown: `Drain` waits until no delivery is in flight, up to a timeout (the worker gives it
// 5 s). It does not stop new Sends, and it does not cut the deliveries still running at its
// timeout: they go on until their own last attempt.
//
// Ownership and threads: a WebhookSender is bound to one executor (of an io_context) and may be
// used from any thread: Send, Drain and the counters are thread-safe. Deliveries keep the sender's
// internals (its client, options and counters) alive, so destroying the WebhookSender while they
// run is safe; they finish on their own. The io_context must outlive them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include <sluice/task.hpp>

#include "http/backoff.hpp"

namespace sluice::api {

struct WebhookOptions {
  /// The wait before each retry: a uniform fraction of min(max, initial * 2^retry).
  http::BackoffPolicy backoff{.initial = std::chrono::milliseconds(500),
                              .max = std::chrono::seconds(30)};
  /// Attempts in all, the first included; a value below 1 counts as 1.
  int max_attempts = 8;
  /// For one attempt: connect, TLS, write and read.
  std::chrono::steady_clock::duration attempt_timeout = std::chrono::seconds(10);
  /// Deliveries in flight at most (waiting between attempts included); a Send beyond this is
  /// dropped, logged at ERROR with the job id and counted as failed.
  std::size_t max_pending = 10000;
  /// Uniform in [0, 1) for the jitter; empty means SendWithRetry's per-thread generator. Tests pass
  /// a constant. Called from the delivery coroutines, possibly on several threads at once.
  std::function<double()> random;
};

class WebhookSender {
 public:
  explicit WebhookSender(boost::asio::any_io_executor executor, WebhookOptions options = {});
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  /// POSTs `body` (JSON text) to `url` for the job `job_id` (used in the log lines), in the
  /// background. Returns at once and never waits for the network; the outcome shows only in the
  /// counters and the log. An invalid URL is a failed delivery, logged like any other.
  void Send(std::string job_id, std::string url, std::string body);

  /// Waits, without blocking a thread, until no delivery is in flight, or `timeout` has passed
  /// since the returned task started. True when none was in flight at the end. Deliveries still
  /// running at the timeout go on. Cancelling the awaiting coroutine does not end the wait early
  /// (the timeout does). The task keeps what it needs alive: the WebhookSender may be destroyed
  /// before it has run.
  Task<bool> Drain(std::chrono::steady_clock::duration timeout);

  /// Deliveries answered with a 2xx.
  std::uint64_t delivered() const noexcept;
  /// Deliveries that ended without a 2xx, dropped ones included.
  std::uint64_t failed() const noexcept;
  /// Of the failed: those dropped at Send because `max_pending` were in flight.
  std::uint64_t dropped() const noexcept;
  /// Deliveries in flight now.
  std::size_t pending() const noexcept;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::api
