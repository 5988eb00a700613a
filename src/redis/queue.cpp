// Coroutine TU: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see
// src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "redis/queue.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <random>
#include <utility>
#include <variant>

#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "core/posted_handler.hpp"
#include "http/backoff.hpp"
#include "log/logging.hpp"

namespace sluice::redis {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

std::string NewJobId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  const std::uint64_t high = random(), low = random();
  return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", high >> 32, (high >> 16) & 0xffff, high & 0x0fff,
                     0x8000 | ((low >> 48) & 0x3fff), low & 0xffffffffffffULL);
}

void HeldJobs::Add(const std::string& job_id, const std::string& entry) {
  std::lock_guard lock(mutex_);
  entries_[job_id] = entry;
}

std::optional<std::string> HeldJobs::Take(const std::string& job_id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(job_id);
  if (it == entries_.end()) return std::nullopt;
  std::string entry = std::move(it->second);
  entries_.erase(it);
  return entry;
}

std::optional<std::string> HeldJobs::Entry(const std::string& job_id) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(job_id);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> HeldJobs::Entries() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> entries;
  entries.reserve(entries_.size());
  for (const auto& [job_id, entry] : entries_) entries.push_back(entry);
  return entries;
}

std::size_t HeldJobs::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

Task<core::Result<Reply>> RunScript(Connection& connection, ScriptCall call) {
  core::Result<Reply> reply = co_await connection.Command(call.EvalShaArgv());
  if (reply.ok() && reply->is_error() && reply->str().starts_with("NOSCRIPT")) {
    // A restarted or flushed server: EVAL runs it and loads it again for the next EVALSHA.
    reply = co_await connection.Command(call.EvalArgv());
  }
  if (reply.ok() && reply->is_error()) {
    co_return core::Status::Internal(fmt::format("redis script {}: {}", call.script->name, reply->str()));
  }
  co_return reply;
}

namespace {

// A script's answer in a form the parallel group can default-construct.
using ScriptAnswer = std::variant<Reply, core::Status>;

Task<ScriptAnswer> RunScriptAnswer(Connection& connection, ScriptCall call) {
  core::Result<Reply> reply = co_await RunScript(connection, std::move(call));
  if (!reply.ok()) co_return ScriptAnswer(reply.status());
  co_return ScriptAnswer(std::move(*reply));
}

}  // namespace

Task<std::vector<core::Result<Reply>>> RunScripts(Connection& connection, std::vector<ScriptCall> calls) {
  std::vector<core::Result<Reply>> answers;
  answers.reserve(calls.size());
  if (calls.empty()) co_return answers;
  if (calls.size() == 1) {
    answers.push_back(co_await RunScript(connection, std::move(calls.front())));
    co_return answers;
  }
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  using Operation = decltype(asio::co_spawn(executor, RunScriptAnswer(connection, ScriptCall{}), asio::deferred));
  std::vector<Operation> operations;
  operations.reserve(calls.size());
  for (ScriptCall& call : calls) {
    operations.push_back(asio::co_spawn(executor, RunScriptAnswer(connection, std::move(call)), asio::deferred));
  }
  auto [order, failures, replies] = co_await asio::experimental::make_parallel_group(std::move(operations))
                                        .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
  (void)order;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (failures[i]) {
      answers.push_back(core::Status::Internal("redis script: an exception escaped"));
    } else if (core::Status* failed = std::get_if<core::Status>(&replies[i])) {
      answers.push_back(std::move(*failed));
    } else {
      answers.push_back(std::move(std::get<Reply>(replies[i])));
    }
  }
  co_return answers;
}

Task<core::Status> EnsureGroup(Connection& connection, const Keys& keys) {
  std::vector<std::string> argv{"XGROUP", "CREATE", keys.jobs(), std::string(kGroup), "0", "MKSTREAM"};
  core::Result<Reply> reply = co_await connection.Command(std::move(argv));
  if (!reply.ok()) co_return reply.status();
  if (reply->is_error() && !reply->str().starts_with("BUSYGROUP")) {
    co_return core::Status::Internal(fmt::format("redis XGROUP CREATE {}: {}", keys.jobs(), reply->str()));
  }
  co_return core::Status::Ok();
}

Task<core::Result<std::string>> Submit(Connection& connection, const Keys& keys, SubmitRequest request) {
  if (!request.request.contains("input") || request.request.at("input").is_null()) {
    co_return core::Status::InvalidArgument("a job needs a non-null \"input\"");
  }
  SubmitParams params;
  params.job_id = request.job_id.empty() ? NewJobId() : std::move(request.job_id);
  request.request["id"] = params.job_id;
  params.request_json = json::serialize(request.request);
  params.webhook = std::move(request.webhook);
  params.submitted_ms = UnixMillis();
  params.execution_timeout_ms = ExecutionTimeoutMs(request.request);
  ScriptCall call = SubmitCall(keys, params);  // named: g++ 12 and co_await
  core::Result<Reply> reply = co_await RunScript(connection, std::move(call));
  if (!reply.ok()) co_return reply.status();
  SubmitAnswer answer;
  if (!ParseSubmit(*reply, answer)) {
    co_return core::Status::Internal("redis script submit: unexpected reply " + reply->Describe());
  }
  co_return params.job_id;
}

Task<core::Result<std::string>> Cancel(Connection& connection, const Keys& keys, std::string job_id,
                                       std::chrono::seconds result_ttl) {
  ScriptCall call = CancelCall(keys, job_id, UnixMillis(), result_ttl.count());
  core::Result<Reply> reply = co_await RunScript(connection, std::move(call));
  if (!reply.ok()) co_return reply.status();
  if (!reply->is_string() && !reply->is_status()) {
    co_return core::Status::Internal("redis script cancel: unexpected reply " + reply->Describe());
  }
  co_return reply->str();
}

namespace {

// The single answer of a one-job finish reply, or why there is none.
core::Result<FinishAnswer> OneAnswer(const Reply& reply) {
  std::vector<FinishAnswer> answers;
  if (!ParseFinishReply(reply, 1, answers)) {
    return core::Status::Internal("redis script finish: unexpected reply " + reply.Describe());
  }
  return std::move(answers.front());
}

}  // namespace

Task<core::Result<FinishAnswer>> Finish(Connection& connection, const Keys& keys, FinishParams params,
                                        Clock::time_point deadline, int attempts_made) {
  const http::BackoffPolicy backoff{std::chrono::milliseconds(50), std::chrono::seconds(2), 2.0};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int attempt = attempts_made;; ++attempt) {
    ScriptCall call = FinishCall(keys, params);  // named: g++ 12 and co_await
    core::Result<Reply> reply = co_await RunScript(connection, std::move(call));
    if (reply.ok()) {
      core::Result<FinishAnswer> answer = OneAnswer(*reply);
      if (!answer.ok()) co_return answer;
      if (attempt > 0 && answer->kind == FinishAnswer::Kind::kNotPending) {
        // An earlier attempt may have run and lost only its reply (the server went away after
        // executing it): then the job holds exactly what this write would have written.
        std::vector<std::string> argv{"HMGET", keys.job(params.job_id), "status", "owner", "result"};
        core::Result<Reply> now = co_await connection.Command(std::move(argv));
        if (now.ok() && now->is_array() && now->size() == 3 && (*now)[0].is_string() && (*now)[1].is_string() &&
            (*now)[2].is_string() && (*now)[0].str() == params.status && (*now)[1].str() == params.consumer &&
            (*now)[2].str() == params.result_json) {
          answer->kind = FinishAnswer::Kind::kFinished;
        }
      }
      co_return answer;
    }
    // Only a missing answer (no connection) is retried; the script is idempotent (a second run
    // after a lost reply finds the entry acknowledged and answers not_pending: see above).
    if (reply.status().code() != core::StatusCode::kUnavailable) co_return reply.status();
    const Clock::duration delay = backoff.Delay(attempt, http::UniformRandom());
    if (Clock::now() + delay >= deadline) co_return reply.status();
    log::Warn(params.job_id, "Writing the result to Redis failed ({}); retrying", reply.status().message());
    timer.expires_after(delay);
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// A finish waiting for its batch: its parameters (in the waiting coroutine's frame, which stays
// until `done` is posted) and its completion.
struct FinishBatch::Waiter {
  const FinishParams* params = nullptr;
  core::PostedHandler<core::Result<FinishAnswer>> done;
};

FinishBatch::FinishBatch(asio::any_io_executor executor, Connection& connection, Keys keys, std::size_t max_batch)
    : executor_(std::move(executor)), connection_(connection), keys_(std::move(keys)),
      max_batch_(std::max<std::size_t>(1, max_batch)) {}

FinishBatch::~FinishBatch() = default;

Task<core::Result<FinishAnswer>> FinishBatch::Finish(FinishParams params, Clock::time_point deadline) {
  const FinishParams* mine = &params;
  // Named, not a temporary inside the co_await expression: g++ 12 and co_await.
  auto joined = asio::async_initiate<decltype(asio::use_awaitable), void(core::Result<FinishAnswer>)>(
      [this, mine](auto handler) {
        Join(Waiter{mine, core::PostedHandler<core::Result<FinishAnswer>>(std::move(handler))});
      },
      asio::use_awaitable);
  core::Result<FinishAnswer> answer = co_await std::move(joined);
  if (answer.ok()) co_return answer;
  // The batch got no usable answer: none came (connection lost), or a script error stopped it
  // part-way (Redis keeps what the script wrote before the error: the jobs before the failing one
  // are finished, the rest not). Each job alone from here, as redis::Finish retries it; a job the
  // batch did write is recognised by its retry (not_pending, with this very result).
  core::Result<FinishAnswer> retried =
      co_await redis::Finish(connection_, keys_, std::move(params), deadline, /*attempts_made=*/1);
  co_return retried;
}

void FinishBatch::Join(Waiter waiter) {
  bool lead = false;
  {
    std::lock_guard lock(mutex_);
    waiting_.push_back(std::move(waiter));
    lead = !std::exchange(flushing_, true);
  }
  if (!lead) return;  // the running Flush takes it with the next batch
  try {
    asio::co_spawn(executor_, Flush(), [this](std::exception_ptr failure) {
      if (failure) FailWaiting(core::Status::Internal("finishing jobs in Redis: " + log::DescribeException(failure)));
    });
  } catch (...) {
    FailWaiting(core::Status::Internal("finishing jobs in Redis: " + log::DescribeException(std::current_exception())));
  }
}

void FinishBatch::FailWaiting(const core::Status& failure) {
  // No waiter is left without an answer, and the next Finish starts a Flush again.
  std::deque<Waiter> waiting;
  {
    std::lock_guard lock(mutex_);
    waiting.swap(waiting_);
    flushing_ = false;
  }
  log::Error("", "{}", failure.message());
  for (Waiter& waiter : waiting) waiter.done.Post(failure);
}

Task<void> FinishBatch::Flush() {
  for (;;) {
    std::vector<Waiter> batch;
    {
      std::lock_guard lock(mutex_);
      if (waiting_.empty()) {
        flushing_ = false;
        co_return;
      }
      const std::size_t count = std::min(max_batch_, waiting_.size());
      batch.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        batch.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
    }
    // Whatever happens to this call, each waiter of the batch gets an answer.
    core::Result<Reply> reply = core::Status::Internal("redis script finish: not sent");
    try {
      std::vector<const FinishParams*> params;
      params.reserve(batch.size());
      for (const Waiter& waiter : batch) params.push_back(waiter.params);
      ScriptCall call = FinishCall(keys_, params);  // named: g++ 12 and co_await
      reply = co_await RunScript(connection_, std::move(call));
    } catch (...) {
      reply = core::Status::Internal("redis script finish: " + log::DescribeException(std::current_exception()));
    }
    calls_.fetch_add(1);
    jobs_.fetch_add(batch.size());
    std::vector<FinishAnswer> answers;
    if (reply.ok() && ParseFinishReply(*reply, batch.size(), answers)) {
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done.Post(std::move(answers[i]));
      continue;
    }
    const core::Status failed =
        !reply.ok() ? reply.status() : core::Status::Internal("redis script finish: unexpected reply " + reply->Describe());
    for (Waiter& waiter : batch) waiter.done.Post(failed);
  }
}

std::string DefaultConsumerName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "localhost");
  return fmt::format("{}:{}", host, static_cast<long>(::getpid()));
}

std::int64_t ExecutionTimeoutMs(const json::object& request) {
  const json::value* policy = request.if_contains("policy");
  if (policy == nullptr || !policy->is_object()) return 0;
  const json::value* timeout = policy->get_object().if_contains("executionTimeout");
  if (timeout == nullptr) return 0;
  if (timeout->is_int64()) return std::max<std::int64_t>(0, timeout->get_int64());
  if (timeout->is_uint64()) return static_cast<std::int64_t>(timeout->get_uint64());
  if (timeout->is_double() && timeout->get_double() > 0) return static_cast<std::int64_t>(timeout->get_double());
  return 0;
}

}  // namespace sluice::redis
