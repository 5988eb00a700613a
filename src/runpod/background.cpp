// Coroutine-heavy: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames under the
// sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "runpod/background.hpp"


#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sluice/version.hpp>

#include "http/backoff.hpp"
#include "log/logging.hpp"

namespace sluice::runpod {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

Task<void> RunHeartbeat(const ControlPlane& plane, std::chrono::milliseconds interval, const std::atomic<bool>& stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  Clock::time_point next = Clock::now();
  bool failing = false;
  while (!stop.load()) {
    http::ClientRequest request = plane.Get(PingUrl(plane.urls.ping, plane.jobs.Ids(), kVersion), 2 * interval);
    core::Result<http::ClientResponse> answer = co_await plane.client->Send(std::move(request));
    if (!answer.ok() || answer->status >= 400) {
      if (!failing) {
        log::Warn("", "Ping failed: {}", answer.ok() ? fmt::format("HTTP {}", answer->status) : answer.status().message());
      }
      failing = true;
    } else {
      if (failing) log::Info("", "Ping answered again.");
      failing = false;
    }
    // A fixed schedule: the next ping is due one interval after the last was due, not after it
    // was answered; if a slow ping overran, the next goes at once.
    next += interval;
    const Clock::time_point now = Clock::now();
    if (next < now) next = now;
    timer.expires_at(next);
    auto [ignored] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ignored;
  }
}

Task<void> RunStopChannel(const ControlPlane& plane, std::function<bool(const std::string&)> cancel,
                          const std::atomic<bool>& stop, StopChannelOptions options) {
  if (!plane.urls.stop) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  int errors = 0;
  while (!stop.load()) {
    const Clock::time_point started = Clock::now();
    http::ClientRequest request = plane.Get(*plane.urls.stop, options.poll_timeout);
    core::Result<http::ClientResponse> answer = co_await plane.client->Send(std::move(request));
    Clock::duration wait = Clock::duration::zero();
    if (!answer.ok() || (answer->status >= 300 && answer->status != 429)) {
      wait = options.errors.Delay(errors++, http::UniformRandom());
      log::Debug("", "job-stop poll failed: {}", answer.ok() ? fmt::format("HTTP {}", answer->status) : answer.status().message());
    } else if (answer->status == 429) {
      wait = options.after_too_many_requests;
    } else {
      errors = 0;
      for (const std::string& job_id : ParseStopAnswer(answer->status, answer->header("Content-Type"), answer->body)) {
        if (!plane.jobs.Contains(job_id)) continue;
        if (cancel(job_id)) log::Info(job_id, "Stopping job at the control plane's request.");
      }
      wait = options.min_cycle - (Clock::now() - started);
    }
    if (wait <= Clock::duration::zero() || stop.load()) continue;
    timer.expires_after(wait);
    auto [ignored] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ignored;
  }
}

}  // namespace sluice::runpod
