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
    : plane_(plane),
      options_(std::move(options)),
      outbox_(options_.executor, "RunPod result sink",
              [this](const std::string& job_id, Post post) { return Deliver(job_id, std::move(post)); }) {}

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
    outbox_.Discard(job_id);
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
  const bool final = post.kind == Post::Kind::kFinal;
  outbox_.Enqueue(job_id, std::move(post), final);  // refused after the final result or a stop
}

Task<void> RunpodResultSink::SendPost(const std::string& job_id, const Post& post) {
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

// The final POST done (or given up): the job leaves the in-progress set that pings report.
Task<void> RunpodResultSink::Deliver(const std::string& job_id, Post post) {
  const bool final = post.kind == Post::Kind::kFinal;
  co_await SendPost(job_id, post);
  if (final) {
    plane_.jobs.Remove(job_id);
    if (options_.after_final) options_.after_final(job_id);
  }
}

Task<bool> RunpodResultSink::Drain(Clock::duration timeout) { return outbox_.Drain(timeout); }

}  // namespace sluice::runpod
