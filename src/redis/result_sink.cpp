// Coroutine TU: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see
// src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "redis/result_sink.hpp"

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "log/logging.hpp"

namespace sluice::redis {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

RedisResultSink::RedisResultSink(asio::any_io_executor executor, Connection& commands, QueueOptions options,
                                 HeldJobs& held)
    : executor_(std::move(executor)),
      commands_(commands),
      options_(std::move(options)),
      keys_(options_.queue),
      held_(held),
      finishes_(executor_, commands_, keys_),
      outbox_(executor_, "Redis result sink",
              [this](const std::string& job_id, Write write) { return Deliver(job_id, std::move(write)); }) {}

void RedisResultSink::OnProgress(const std::string& job_id, const json::value& update) {
  Write write;
  write.kind = Write::Kind::kProgress;
  write.json = json::serialize(update);
  Enqueue(job_id, std::move(write));
}

void RedisResultSink::OnChunk(const std::string& job_id, const json::value& chunk) {
  Write write;
  write.kind = Write::Kind::kChunk;
  write.json = json::serialize(chunk);
  Enqueue(job_id, std::move(write));
}

void RedisResultSink::OnFinished(const std::string& job_id, core::JobOutcome outcome) {
  Write write;
  write.kind = Write::Kind::kFinal;
  write.status = std::string(core::ToString(outcome.status));
  write.json = json::serialize(outcome.result);
  Enqueue(job_id, std::move(write));
}

void RedisResultSink::Release(const std::string& job_id) {
  std::lock_guard lock(mutex_);
  released_.insert(job_id);
}

void RedisResultSink::Enqueue(const std::string& job_id, Write write) {
  const bool final = write.kind == Write::Kind::kFinal;
  outbox_.Enqueue(job_id, std::move(write), final);  // nothing after the final result
}

Task<void> RedisResultSink::Deliver(const std::string& job_id, Write write) {
  if (write.kind != Write::Kind::kFinal) {
    const UpdateKind kind = write.kind == Write::Kind::kChunk ? UpdateKind::kChunk : UpdateKind::kProgress;
    const char* what = kind == UpdateKind::kChunk ? "stream chunk" : "progress update";
    ScriptCall call = UpdateCall(keys_, job_id, options_.consumer, kind, std::move(write.json));
    core::Result<Reply> reply = co_await RunScript(commands_, std::move(call));
    if (!reply.ok()) {
      log::Warn(job_id, "The {} could not be written to Redis: {}", what, reply.status().message());
    } else if (reply->is_integer() && reply->integer() == 0) {
      log::Warn(job_id, "The {} was dropped: the job no longer runs under this worker in Redis.", what);
    }
    co_return;
  }

  {
    std::lock_guard lock(mutex_);
    if (released_.erase(job_id) > 0) {
      (void)held_.Take(job_id);  // no longer kept claimed by the heartbeat
      released_count_.fetch_add(1);
      log::Info(job_id, "Job given back to the queue ({} not written): another worker will run it.", write.status);
      co_return;
    }
  }
  const std::optional<std::string> entry = held_.Entry(job_id);
  if (!entry) {
    lost_.fetch_add(1);
    log::Error(job_id, "RESULT NOT WRITTEN: job {} is not held by this worker (no stream entry known)", job_id);
    co_return;
  }
  FinishParams params;
  params.job_id = job_id;
  params.entry = *entry;
  params.consumer = options_.consumer;
  params.status = write.status;
  params.result_json = std::move(write.json);
  params.now_ms = UnixMillis();
  params.result_ttl_s = options_.result_ttl.count();
  core::Result<FinishAnswer> answer = co_await finishes_.Finish(std::move(params), Clock::now() + options_.finish_deadline);
  (void)held_.Take(job_id);
  if (!answer.ok()) {
    lost_.fetch_add(1);
    log::Error(job_id, "RESULT NOT WRITTEN: the result of job {} could not be written to Redis before its deadline: {}",
               job_id, answer.status().message());
    co_return;
  }
  switch (answer->kind) {
    case FinishAnswer::Kind::kFinished:
      written_.fetch_add(1);
      log::Debug(job_id, "Result written ({}).", write.status);
      break;
    case FinishAnswer::Kind::kNotPending:
      dropped_.fetch_add(1);
      log::Warn(job_id, "Late result dropped: the job's stream entry is no longer pending (acknowledged by another "
                        "worker).");
      break;
    case FinishAnswer::Kind::kNotOwner:
      dropped_.fetch_add(1);
      log::Warn(job_id, "Late result dropped: the job's stream entry now belongs to worker {}.", answer->detail);
      break;
    case FinishAnswer::Kind::kTerminal:
      dropped_.fetch_add(1);
      log::Warn(job_id, "Result dropped: the job is {} already.", answer->detail);
      break;
    case FinishAnswer::Kind::kMissing:
      dropped_.fetch_add(1);
      log::Warn(job_id, "Result dropped: the job's hash is gone from Redis.");
      break;
    case FinishAnswer::Kind::kBadReply:
      lost_.fetch_add(1);
      break;
  }
}

Task<bool> RedisResultSink::Drain(Clock::duration timeout) { return outbox_.Drain(timeout); }

}  // namespace sluice::redis
