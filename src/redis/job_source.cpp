// Coroutine TU: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see
// src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "redis/job_source.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "http/backoff.hpp"
#include "log/logging.hpp"

namespace sluice::redis {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kOwnPendingBatch = 1000;
// The most jobs one take script reads and starts: Redis runs a script alone, so a call of a
// worker with thousands of free slots is cut into calls of a few milliseconds at most.
constexpr std::size_t kTakeBatchLimit = 256;
const http::BackoffPolicy kReadBackoff{std::chrono::milliseconds(100), std::chrono::seconds(5), 2.0};

}  // namespace

RedisJobSource::RedisJobSource(asio::any_io_executor executor, Endpoint endpoint, Connection& commands,
                               QueueOptions options, HeldJobs& held, ConnectionOptions connection)
    : commands_(commands),
      options_(std::move(options)),
      keys_(options_.queue),
      held_(held),
      reader_(std::make_unique<Connection>(std::move(executor), std::move(endpoint), std::move(connection))) {}

RedisJobSource::~RedisJobSource() = default;

void RedisJobSource::Stop() {
  stopping_.store(true);
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(mutex_);
    timer = wait_timer_;
  }
  // On the timer's executor (the dispatcher's), where Take checks the flag before each wait.
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
}

void RedisJobSource::HandOut(std::vector<StreamEntry> entries) {
  std::lock_guard lock(mutex_);
  for (StreamEntry& entry : entries) handed_out_.push_back(std::move(entry));
}

bool RedisJobSource::CancelStarting(const std::string& job_id) {
  std::lock_guard lock(mutex_);
  if (starting_.count(job_id) == 0) return false;
  cancelled_.insert(job_id);
  return true;
}

std::vector<std::string> RedisJobSource::WaitingEntries() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> entries;
  for (const StreamEntry& entry : handed_out_) {
    if (!entry.job_id.empty()) entries.push_back(entry.entry);
  }
  return entries;
}

Task<void> RedisJobSource::Pause(Clock::duration delay) {
  std::shared_ptr<asio::steady_timer> timer;
  {
    auto executor = co_await asio::this_coro::executor;
    std::lock_guard lock(mutex_);
    if (!wait_timer_) wait_timer_ = std::make_shared<asio::steady_timer>(executor);
    timer = wait_timer_;
  }
  if (stopping_.load()) co_return;
  timer->expires_after(delay);
  auto [ignored] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  (void)ignored;  // cancelled by Stop
}

Task<bool> RedisJobSource::ReadOwnPending() {
  // XREADGROUP with an ID other than `>` reads this consumer's pending entries after that ID.
  std::string after = "0";
  std::vector<StreamEntry> pending;
  for (;;) {
    std::vector<std::string> argv{"XREADGROUP", "GROUP", std::string(kGroup), options_.consumer, "COUNT",
                                  std::to_string(kOwnPendingBatch), "STREAMS", keys_.jobs(), after};
    core::Result<Reply> reply = co_await commands_.Command(std::move(argv));
    if (!reply.ok()) {
      log::Warn("", "Reading this worker's pending Redis entries failed: {}", reply.status().message());
      co_return false;
    }
    std::vector<StreamEntry> batch;
    if (reply->is_error() || !ParseReadGroup(*reply, batch)) {
      log::Warn("", "Reading this worker's pending Redis entries failed: {}", reply->Describe());
      if (reply->is_error() && reply->str().starts_with("NOGROUP")) group_ready_ = false;
      co_return false;
    }
    if (batch.empty()) break;
    after = batch.back().entry;
    for (StreamEntry& entry : batch) pending.push_back(std::move(entry));
  }
  std::size_t count = 0;
  {
    std::lock_guard lock(mutex_);
    for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
      if (!it->job_id.empty() && held_.Entry(it->job_id) == it->entry) continue;  // running here
      handed_out_.push_front(std::move(*it));
      ++count;
    }
  }
  if (count > 0) log::Info("", "{} entries of the Redis queue were pending for this worker; running them again", count);
  co_return true;
}

Task<std::vector<core::JobRequest>> RedisJobSource::Take(std::size_t max_jobs) {
  const std::size_t wanted = std::max<std::size_t>(1, max_jobs);
  for (;;) {
    if (stopping_.load()) co_return std::vector<core::JobRequest>{};
    if (!group_ready_) {
      core::Status created = co_await EnsureGroup(commands_, keys_);
      if (!created.ok()) {
        const Clock::duration delay = kReadBackoff.Delay(errors_in_a_row_++, http::UniformRandom());
        log::Warn("", "Creating the Redis consumer group failed: {}", created.message());
        co_await Pause(delay);
        continue;
      }
      group_ready_ = true;
    }
    if (!own_pending_read_) {
      if (!co_await ReadOwnPending()) {
        co_await Pause(kReadBackoff.Delay(errors_in_a_row_++, http::UniformRandom()));
        continue;
      }
      own_pending_read_ = true;
    }

    std::vector<StreamEntry> entries;
    {
      std::lock_guard lock(mutex_);
      while (!handed_out_.empty() && entries.size() < wanted) {
        entries.push_back(std::move(handed_out_.front()));
        handed_out_.pop_front();
      }
    }
    if (entries.empty()) {
      // While jobs are queued, the take script reads and starts a batch in one call; only when
      // none is queued does the worker block in XREADGROUP below, starting what it returns with
      // a start script per entry.
      core::Result<std::vector<TakenEntry>> taken = co_await TakeQueued(wanted);
      if (!taken.ok()) {
        const std::string why = taken.status().message();  // named: g++ 12 and co_await
        co_await ReadFailed("Taking", why);
        continue;
      }
      errors_in_a_row_ = 0;
      if (!taken->empty()) {
        std::vector<core::JobRequest> jobs = co_await StartTaken(std::move(*taken));
        if (!jobs.empty()) co_return jobs;
        continue;
      }
      std::vector<std::string> argv{"XREADGROUP", "GROUP",
                                    std::string(kGroup), options_.consumer,
                                    "COUNT", std::to_string(wanted),
                                    "BLOCK", std::to_string(options_.block.count()),
                                    "STREAMS", keys_.jobs(),
                                    ">"};
      core::Result<Reply> reply = co_await reader_->Command(std::move(argv), options_.block + std::chrono::seconds(10));
      if (!reply.ok() || reply->is_error() || !ParseReadGroup(*reply, entries)) {
        const std::string why = !reply.ok() ? reply.status().message() : reply->Describe();
        co_await ReadFailed("Reading", why);
        continue;
      }
      errors_in_a_row_ = 0;
      if (entries.empty()) continue;  // the BLOCK ended without entries
    }
    std::vector<core::JobRequest> jobs = co_await StartAll(std::move(entries));
    if (!jobs.empty()) co_return jobs;
  }
}

Task<void> RedisJobSource::ReadFailed(const char* doing, const std::string& why) {
  if (why.find("NOGROUP") != std::string::npos) group_ready_ = false;  // the group is gone: make it again
  // A read or take whose reply was lost may have left entries pending here: read them again.
  own_pending_read_ = false;
  const Clock::duration delay = kReadBackoff.Delay(errors_in_a_row_++, http::UniformRandom());
  log::Warn("", "{} jobs from Redis failed: {} | retrying in {} ms", doing, why,
            std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  co_await Pause(delay);
}

Task<core::Result<std::vector<TakenEntry>>> RedisJobSource::TakeQueued(std::size_t wanted) {
  TakeParams params;
  params.consumer = options_.consumer;
  params.count = std::min(wanted, kTakeBatchLimit);
  params.now_ms = UnixMillis();
  params.max_deliveries = options_.max_deliveries;
  params.result_ttl_s = options_.result_ttl.count();
  ScriptCall call = TakeCall(keys_, params);  // named: g++ 12 and co_await
  core::Result<Reply> reply = co_await RunScript(commands_, std::move(call));
  if (!reply.ok()) co_return reply.status();
  std::vector<TakenEntry> taken;
  if (!ParseTake(*reply, taken)) co_return core::Status::Internal("redis script take: unexpected reply " + reply->Describe());
  co_return taken;
}

Task<void> RedisJobSource::FailJob(const std::string& job_id, const std::string& entry, const std::string& error,
                                   bool fence) {
  failed_.fetch_add(1);
  log::Error(job_id, "{}", error);
  json::object result;
  result.emplace("error", error);
  FinishParams params;
  params.job_id = job_id;
  params.entry = entry;
  params.consumer = options_.consumer;
  params.status = "FAILED";
  params.result_json = json::serialize(result);
  params.now_ms = UnixMillis();
  params.result_ttl_s = options_.result_ttl.count();
  params.fence = fence;
  core::Result<FinishAnswer> answer =
      co_await Finish(commands_, keys_, std::move(params), Clock::now() + options_.finish_deadline);
  if (!answer.ok()) log::Error(job_id, "Could not mark the job FAILED in Redis: {}", answer.status().message());
}

Task<void> RedisJobSource::DropEntryWithoutId(const StreamEntry& entry) {
  // Deleted while pending (trimmed, or XDEL by hand): find its job by the entries hash.
  std::vector<std::string> argv{"HGET", keys_.entries(), entry.entry};
  core::Result<Reply> owner = co_await commands_.Command(std::move(argv));
  if (owner.ok() && owner->is_string()) {
    const std::string why = "the job's queue entry was deleted before it ran";
    co_await FailJob(owner->str(), entry.entry, why, false);
    co_return;
  }
  std::vector<std::string> ack{"XACK", keys_.jobs(), std::string(kGroup), entry.entry};
  (void)co_await commands_.Command(std::move(ack));
  skipped_.fetch_add(1);
  log::Warn("", "Redis entry {} has no job id; acknowledged and dropped", entry.entry);
}

Task<std::vector<core::JobRequest>> RedisJobSource::StartAll(std::vector<StreamEntry> entries) {
  std::vector<core::JobRequest> jobs;
  jobs.reserve(entries.size());
  std::vector<StreamEntry> to_start;
  std::vector<ScriptCall> calls;
  for (StreamEntry& entry : entries) {
    if (entry.job_id.empty()) {
      co_await DropEntryWithoutId(entry);
      continue;
    }
    if (held_.Entry(entry.job_id) ||
        std::any_of(to_start.begin(), to_start.end(), [&](const StreamEntry& other) { return other.job_id == entry.job_id; })) {
      skipped_.fetch_add(1);  // running here already (a second delivery to this worker)
      continue;
    }
    StartParams params;
    params.job_id = entry.job_id;
    params.entry = entry.entry;
    params.consumer = options_.consumer;
    params.now_ms = UnixMillis();
    params.max_deliveries = options_.max_deliveries;
    params.result_ttl_s = options_.result_ttl.count();
    calls.push_back(StartCall(keys_, params));
    to_start.push_back(std::move(entry));
  }
  // The start scripts of one read go out pipelined: one round trip's wait, not one per entry.
  std::vector<core::Result<Reply>> replies = co_await RunScripts(commands_, std::move(calls));
  for (std::size_t i = 0; i < to_start.size(); ++i) {
    core::Result<Reply>& reply = replies[i];
    if (!reply.ok()) {
      // The entry stays pending here; it is read again with the own pending entries.
      log::Warn(to_start[i].job_id, "Starting the job in Redis failed: {}", reply.status().message());
      own_pending_read_ = false;
      continue;
    }
    const StartAnswer answer = ParseStart(*reply);
    if (answer.kind == StartAnswer::Kind::kBadReply) {
      log::Error(to_start[i].job_id, "Starting the job: unexpected reply {}", reply->Describe());
      continue;
    }
    co_await Accept(std::move(to_start[i]), answer, jobs);
  }
  std::vector<core::JobRequest> released = co_await Release(std::move(jobs));
  co_return released;
}

Task<std::vector<core::JobRequest>> RedisJobSource::StartTaken(std::vector<TakenEntry> taken) {
  std::vector<core::JobRequest> jobs;
  jobs.reserve(taken.size());
  for (TakenEntry& item : taken) {
    if (item.entry.job_id.empty()) {
      co_await DropEntryWithoutId(item.entry);
    } else if (held_.Entry(item.entry.job_id)) {
      // Started in Redis under a second entry while it runs here: this run's result ends it; the
      // entry stays pending until the reaper's start finds the job ended.
      skipped_.fetch_add(1);
      log::Warn(item.entry.job_id, "Job read again under entry {} while it runs here; left to the reaper.",
                item.entry.entry);
    } else {
      co_await Accept(std::move(item.entry), item.answer, jobs);
    }
  }
  std::vector<core::JobRequest> released = co_await Release(std::move(jobs));
  co_return released;
}

Task<void> RedisJobSource::Accept(StreamEntry entry, const StartAnswer& answer, std::vector<core::JobRequest>& jobs) {
  switch (answer.kind) {
    case StartAnswer::Kind::kStarted: {
      json::error_code error;
      json::value request = json::parse(answer.request, error);
      if (error || !request.is_object() || !request.get_object().contains("input") ||
          request.get_object().at("input").is_null()) {
        const std::string why = "the job's request is not a JSON object with an \"input\"";
        co_await FailJob(entry.job_id, entry.entry, why, true);
        break;
      }
      core::JobRequest job;
      job.id = entry.job_id;
      job.request = std::move(request.get_object());
      job.request["id"] = job.id;
      const std::int64_t timeout_ms = ExecutionTimeoutMs(job.request);
      if (timeout_ms > 0) {
        job.execution_timeout = std::chrono::milliseconds(timeout_ms);
      } else {
        job.execution_timeout = options_.default_execution_timeout;
      }
      held_.Add(job.id, entry.entry);
      {
        std::lock_guard lock(mutex_);
        starting_.insert(job.id);
      }
      started_.fetch_add(1);
      if (answer.deliveries > 1) log::Info(job.id, "Job delivered again (delivery {}).", answer.deliveries);
      jobs.push_back(std::move(job));
      break;
    }
    case StartAnswer::Kind::kFailed:
      failed_.fetch_add(1);
      log::Error(entry.job_id, "Job FAILED: {}", answer.detail);
      break;
    case StartAnswer::Kind::kTerminal:
      skipped_.fetch_add(1);
      log::Info(entry.job_id, "Job skipped: it is {} already.", answer.detail);
      break;
    case StartAnswer::Kind::kMissing:
      skipped_.fetch_add(1);
      log::Warn(entry.job_id, "Job skipped: its hash is gone (expired or deleted).");
      break;
    case StartAnswer::Kind::kNotOwner:
      skipped_.fetch_add(1);
      log::Info(entry.job_id, "Job skipped: its entry is no longer pending for this worker.");
      break;
    case StartAnswer::Kind::kBadReply:
      break;  // reported by the caller, which has the reply
  }
}

Task<std::vector<core::JobRequest>> RedisJobSource::Release(std::vector<core::JobRequest> jobs) {
  // Jobs cancelled while this Take ran end here; the others go to the scheduler, out of reach of
  // CancelStarting from now on.
  std::set<std::string> cancelled;
  {
    std::lock_guard lock(mutex_);
    starting_.clear();
    cancelled.swap(cancelled_);
  }
  if (cancelled.empty()) co_return jobs;
  std::vector<core::JobRequest> kept;
  for (core::JobRequest& job : jobs) {
    if (cancelled.count(job.id) == 0) {
      kept.push_back(std::move(job));
      continue;
    }
    FinishParams params;
    params.job_id = job.id;
    params.entry = held_.Take(job.id).value_or(std::string());
    params.consumer = options_.consumer;
    params.status = "CANCELLED";
    params.result_json = "{}";
    params.now_ms = UnixMillis();
    params.result_ttl_s = options_.result_ttl.count();
    log::Info(job.id, "Job cancelled before it ran.");
    core::Result<FinishAnswer> answer =
        co_await Finish(commands_, keys_, std::move(params), Clock::now() + options_.finish_deadline);
    if (!answer.ok()) log::Error(job.id, "Could not mark the job CANCELLED in Redis: {}", answer.status().message());
  }
  co_return kept;
}

}  // namespace sluice::redis
