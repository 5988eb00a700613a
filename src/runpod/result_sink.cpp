// Coroutine-heavy: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames under the
// sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "runpod/result_sink.hpp"

#include <algorithm>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "log/logging.hpp"

namespace sluice::runpod {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kDrainPoll = std::chrono::milliseconds(10);
constexpr auto kSidePostWindow = std::chrono::seconds(30);

std::string Describe(const core::Result<http::ClientResponse>& answer) {
  if (!answer.ok()) return answer.status().message();
  std::string body = answer->body.substr(0, 200);
  return fmt::format("HTTP {} {}", answer->status, body);
}

const char* WhatIs(int kind) {
  switch (kind) {
    case 0: return "progress update";
    case 1: return "stream chunk";
    default: return "result";
  }
}

}  // namespace

RunpodResultSink::RunpodResultSink(ControlPlane& plane, Options options)
    : plane_(plane), options_(std::move(options)) {}

void RunpodResultSink::OnProgress(const std::string& job_id, const json::value& update) {
  Post post;
  post.kind = Post::Kind::kProgress;
  post.url = JobUrl(plane_.urls.done_template, job_id, false);
  post.body = ProgressBody(update);
  Enqueue(job_id, std::move(post));
}

void RunpodResultSink::OnChunk(const std::string& job_id, const json::value& chunk) {
  if (plane_.urls.stream_template.empty()) {
    log::Warn(job_id, "RUNPOD_WEBHOOK_POST_STREAM is not set: the stream chunk is not posted");
    return;
  }
  Post post;
  post.kind = Post::Kind::kChunk;
  post.url = JobUrl(plane_.urls.stream_template, job_id, false);  // isStream=false, as runpod-python
  post.body = StreamBody(chunk);
  Enqueue(job_id, std::move(post));
}

void RunpodResultSink::OnFinished(const std::string& job_id, core::JobOutcome outcome) {
  if (outcome.status == core::JobStatus::kCancelled) {
    // Stopped by the control plane (or at the drain deadline): no result, as in runpod-python.
    {
      std::lock_guard lock(mutex_);
      auto it = outboxes_.find(job_id);
      if (it != outboxes_.end()) {
        pending_.fetch_sub(it->second->posts.size());
        it->second->posts.clear();
        it->second->closed = true;
        if (!it->second->sending) outboxes_.erase(it);
      }
    }
    plane_.jobs.Remove(job_id);
    log::Info(job_id, "Job stopped; no result is posted.");
    return;
  }
  Post post;
  post.kind = Post::Kind::kFinal;
  post.url = JobUrl(plane_.urls.done_template, job_id, options_.streaming_handler);
  post.body = DoneBody(outcome.result);
  Enqueue(job_id, std::move(post));
}

void RunpodResultSink::Reject(const std::string& job_id, const std::string& why) {
  plane_.jobs.Add(job_id, Clock::now() + plane_.result_window);
  json::object result;
  result.emplace("error", why);
  Post post;
  post.kind = Post::Kind::kFinal;
  post.url = JobUrl(plane_.urls.done_template, job_id, false);
  post.body = DoneBody(result);
  Enqueue(job_id, std::move(post));
}

void RunpodResultSink::Enqueue(const std::string& job_id, Post post) {
  std::shared_ptr<Outbox> outbox;
  bool start = false;
  {
    std::lock_guard lock(mutex_);
    std::shared_ptr<Outbox>& slot = outboxes_[job_id];
    if (!slot) slot = std::make_shared<Outbox>();
    if (slot->closed) return;  // nothing after the final result or a stop
    if (post.kind == Post::Kind::kFinal) slot->closed = true;
    slot->posts.push_back(std::move(post));
    pending_.fetch_add(1);
    if (!slot->sending) {
      slot->sending = true;
      start = true;
    }
    outbox = slot;
  }
  if (start) {
    asio::co_spawn(options_.executor, SendAll(job_id, std::move(outbox)), [job_id](std::exception_ptr failure) {
      if (failure) log::LogFailure("RunPod result sink", fmt::format("posting for job {}", job_id), failure);
    });
  }
}

Task<void> RunpodResultSink::SendAll(std::string job_id, std::shared_ptr<Outbox> outbox) {
  for (;;) {
    Post post;
    {
      std::lock_guard lock(mutex_);
      if (outbox->posts.empty()) {
        outbox->sending = false;
        if (outbox->closed) {
          auto it = outboxes_.find(job_id);
          if (it != outboxes_.end() && it->second == outbox) outboxes_.erase(it);
        }
        co_return;
      }
      post = std::move(outbox->posts.front());
      outbox->posts.pop_front();
    }
    co_await Deliver(job_id, post);
    pending_.fetch_sub(1);
    if (post.kind == Post::Kind::kFinal) {
      plane_.jobs.Remove(job_id);
      if (options_.after_final) options_.after_final(job_id);
    }
  }
}

Task<void> RunpodResultSink::Deliver(const std::string& job_id, const Post& post) {
  const bool final = post.kind == Post::Kind::kFinal;
  const Clock::time_point now = Clock::now();
  Clock::time_point deadline = plane_.jobs.ResultDeadline(job_id).value_or(now + plane_.result_window);
  deadline = std::max(deadline, now + plane_.min_result_retry);
  if (!final) deadline = std::min(deadline, now + kSidePostWindow);
  const char* what = WhatIs(static_cast<int>(post.kind));

  http::RetryOptions retry;
  retry.policy = options_.backoff;
  retry.max_attempts = final ? 0 : options_.side_post_attempts;
  retry.deadline = deadline;
  retry.on_retry = [&job_id, what](int number, Clock::duration delay, const core::Result<http::ClientResponse>& answer) {
    log::Warn(job_id, "Posting the {} failed ({}); retry {} in {} ms", what, Describe(answer), number + 1,
              std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  };
  http::ClientRequest request = plane_.Post(post.url, post.body, options_.post_timeout);
  core::Result<http::ClientResponse> answer = co_await http::SendWithRetry(*plane_.client, std::move(request), std::move(retry));
  if (answer.ok() && answer->status >= 200 && answer->status < 300) {
    log::Debug(job_id, "Posted the {} ({}).", what, answer->status);
    co_return;
  }
  if (final) {
    lost_.fetch_add(1);
    log::Error(job_id, "RESULT NOT DELIVERED: the result of job {} could not be posted to {} before its deadline: {}",
               job_id, post.url, Describe(answer));
  } else {
    log::Warn(job_id, "The {} could not be posted: {}", what, Describe(answer));
  }
}

Task<bool> RunpodResultSink::Drain(Clock::duration timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const Clock::time_point deadline = Clock::now() + timeout;
  while (pending_.load() > 0 && Clock::now() < deadline) {
    timer.expires_after(kDrainPoll);
    co_await timer.async_wait(asio::use_awaitable);
  }
  co_return pending_.load() == 0;
}

}  // namespace sluice::runpod
