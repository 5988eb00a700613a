#include "runpod/job_source.hpp"


#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/backoff.hpp"
#include "log/logging.hpp"

namespace sluice::runpod {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

long long Milliseconds(Clock::duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

}  // namespace

RunpodJobSource::RunpodJobSource(ControlPlane& plane, Options options)
    : plane_(plane), options_(std::move(options)), pacer_(options_.pacing) {}

void RunpodJobSource::Stop() {
  stopping_.store(true);
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(mutex_);
    timer = wait_timer_;
  }
  // On the timer's own executor (the dispatcher's strand), where Take checks the flag and starts
  // its wait: the cancel cannot fall between the two.
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

Task<std::vector<core::JobRequest>> RunpodJobSource::Take(std::size_t max_jobs) {
  std::shared_ptr<asio::steady_timer> timer;
  {
    auto executor = co_await asio::this_coro::executor;
    std::lock_guard lock(mutex_);
    if (!wait_timer_) wait_timer_ = std::make_shared<asio::steady_timer>(executor);
    timer = wait_timer_;
  }
  const std::size_t wanted = std::max<std::size_t>(1, max_jobs);
  for (;;) {
    if (stopping_.load()) co_return std::vector<core::JobRequest>{};
    const bool in_progress = !plane_.jobs.empty();
    http::ClientRequest request = plane_.Get(TakeUrl(plane_.urls, wanted, in_progress), options_.take_timeout);
    const Clock::time_point started = Clock::now();
    core::Result<http::ClientResponse> answer = co_await plane_.client->Send(std::move(request));
    const Clock::duration elapsed = Clock::now() - started;
    takes_.fetch_add(1);

    TakeAnswer parsed;
    if (!answer.ok()) {
      parsed.kind = TakeAnswer::Kind::kError;
      parsed.error = answer.status().message();
    } else {
      parsed = ParseTakeAnswer(answer->status, answer->header("Content-Type"), answer->body);
    }
    for (const auto& [job_id, why] : parsed.rejected) {
      log::Error(job_id, "{}", why);
      if (options_.reject) options_.reject(job_id, why);
    }

    if (parsed.kind == TakeAnswer::Kind::kJobs) {
      if (!parsed.error.empty()) log::Error("", "{}", parsed.error);  // a batch with broken jobs
      (void)pacer_.After(parsed.kind, elapsed, 0.0);
      const Clock::time_point now = Clock::now();
      for (const core::JobRequest& job : parsed.jobs) {
        const Clock::duration window =
            job.execution_timeout ? Clock::duration(*job.execution_timeout) : plane_.result_window;
        plane_.jobs.Add(job.id, now + window);
        log::Debug(job.id, "Job taken.");
      }
      co_return std::move(parsed.jobs);
    }

    const Clock::duration delay = pacer_.After(parsed.kind, elapsed, http::UniformRandom());
    if (parsed.kind == TakeAnswer::Kind::kError) {
      log::Warn("", "Failed to get job. | {} | retrying in {} ms ({} failures in a row)", parsed.error,
                Milliseconds(delay), pacer_.consecutive_errors());
    } else if (parsed.kind == TakeAnswer::Kind::kTooManyRequests) {
      log::Warn("", "job-take answered 429 Too Many Requests; retrying in {} ms", Milliseconds(delay));
    }
    if (delay <= Clock::duration::zero()) continue;
    if (stopping_.load()) co_return std::vector<core::JobRequest>{};
    timer->expires_after(delay);
    auto [ignored] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ignored;  // cancelled by Stop: the loop head sees the flag
  }
}

}  // namespace sluice::runpod
