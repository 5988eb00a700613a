// Coroutine TU: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see
// src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "redis/job_backend.hpp"

#include <algorithm>
#include <charconv>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include "log/logging.hpp"
#include "redis/queue.hpp"
#include "redis/scripts.hpp"

namespace sluice::redis {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using core::JobStatus;
using core::Result;
using core::Status;

namespace {

constexpr std::size_t kEventsPerRead = 1000;
// Beyond the BLOCK, how long the events read may take before its connection is dropped.
constexpr auto kReadSlack = std::chrono::seconds(5);

Status JobNotFound(std::string_view job_id) { return Status::NotFound(fmt::format("job {} not found", job_id)); }

Status BadReply(std::string_view what, const Reply& reply) {
  return Status::Internal(fmt::format("redis {}: unexpected reply {}", what, reply.Describe()));
}

bool IsText(const Reply& reply) { return reply.is_string() || reply.is_status(); }

std::int64_t Milliseconds(Clock::duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// One entry of the events stream: `id <job> status <S> version <v>` and, for an end,
// `delay_ms <d> execution_ms <e> webhook <0|1>`.
struct Event {
  std::string entry;
  std::string job_id;
  std::string status;
  std::optional<std::int64_t> delay_ms;
  std::optional<std::int64_t> execution_ms;
  bool webhook = false;
};

// An XREAD reply on one stream; false on another shape.
bool ParseEvents(const Reply& reply, std::vector<Event>& out) {
  if (reply.is_nil()) return true;
  if (!reply.is_array()) return false;
  for (const Reply& stream : reply.elements()) {
    if (!stream.is_array() || stream.size() != 2 || !stream[1].is_array()) return false;
    for (const Reply& item : stream[1].elements()) {
      if (!item.is_array() || item.size() != 2 || !IsText(item[0])) return false;
      Event event;
      event.entry = item[0].str();
      if (item[1].is_array()) {
        const Reply& fields = item[1];
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
          if (!IsText(fields[i]) || !IsText(fields[i + 1])) continue;
          const std::string& name = fields[i].str();
          const std::string& value = fields[i + 1].str();
          if (name == "id") event.job_id = value;
          else if (name == "status") event.status = value;
          else if (name == "delay_ms") event.delay_ms = ParseInteger(value);
          else if (name == "execution_ms") event.execution_ms = ParseInteger(value);
          else if (name == "webhook") event.webhook = value == "1";
        }
      }
      out.push_back(std::move(event));
    }
  }
  return true;
}

}  // namespace

// Shared by the backend and its coroutines (the events reader, webhook claims), which hold it
// with shared_from_this, so it lives until the last of them ends.
class RedisJobBackend::Impl : public std::enable_shared_from_this<Impl> {
 public:
  // One coroutine sleeping in WaitForChange or WaitForEnd. `timer` is on the waiter's executor
  // (its connection's strand), where the wake-up's cancel is posted too.
  struct Waiter {
    explicit Waiter(const asio::any_io_executor& executor) : timer(executor) {}
    asio::steady_timer timer;
    std::atomic<bool> woken{false};
    std::atomic<bool> ended{false};  // an end event of its job was seen; never reset
  };

  Impl(asio::any_io_executor executor, Endpoint endpoint, BackendOptions options)
      : executor_(executor),
        options_(std::move(options)),
        keys_(options_.queue),
        commands_(executor, endpoint, options_.connection),
        reader_(executor, std::move(endpoint), options_.connection) {}

  ~Impl() {
    commands_.Close();
    reader_.Close();
  }

  // ---- waiters ----
  std::shared_ptr<Waiter> Register(const std::string& job_id, const asio::any_io_executor& executor) {
    auto waiter = std::make_shared<Waiter>(executor);
    std::lock_guard lock(mutex_);
    waiters_.emplace(job_id, waiter);
    return waiter;
  }

  void Unregister(const std::string& job_id, const std::shared_ptr<Waiter>& waiter) {
    std::lock_guard lock(mutex_);
    auto [begin, end] = waiters_.equal_range(job_id);
    for (auto it = begin; it != end; ++it) {
      if (it->second == waiter) {
        waiters_.erase(it);
        return;
      }
    }
  }

  static void Wake(const std::shared_ptr<Waiter>& waiter, bool ended = false) {
    if (ended) waiter->ended = true;
    waiter->woken = true;
    asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
  }

  void WakeJob(const std::string& job_id, bool ended) {
    std::lock_guard lock(mutex_);
    auto [begin, end] = waiters_.equal_range(job_id);
    for (auto it = begin; it != end; ++it) Wake(it->second, ended);
  }

  void WakeAll() {
    std::lock_guard lock(mutex_);
    for (auto& [job_id, waiter] : waiters_) Wake(waiter);
  }

  // Sleeps until woken, `until`, or the recheck interval.
  Task<void> Sleep(Waiter& waiter, Clock::time_point until) {
    if (waiter.woken.load() || waiter.ended.load() || stopping_.load()) co_return;
    waiter.timer.expires_at(std::min(until, Clock::now() + options_.recheck));
    co_await waiter.timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // ---- reads ----
  Task<Result<std::optional<core::JobView>>> Read(std::string job_id) {
    std::vector<std::string> argv{"HMGET", keys_.job(job_id)};
    argv.insert(argv.end(), JobFields().begin(), JobFields().end());
    Result<Reply> reply = co_await commands_.Command(std::move(argv));
    if (!reply.ok()) co_return reply.status();
    if (reply->is_array() && reply->size() > 0 && reply->elements()[0].is_nil()) {
      co_return std::optional<core::JobView>();
    }
    core::JobView view;
    if (!ParseJobFields(job_id, *reply, view)) co_return BadReply("HMGET " + keys_.job(job_id), *reply);
    co_return std::optional<core::JobView>(std::move(view));
  }

  // ---- the events reader ----
  Task<Status> Start() {
    std::vector<std::string> ping{"PING"};
    Result<Reply> pong = co_await commands_.Command(std::move(ping), options_.connection.connect_timeout);
    if (!pong.ok()) co_return Status::Unavailable(pong.status().message());
    if (pong->is_error()) co_return Status::Unavailable(fmt::format("redis PING: {}", pong->str()));
    if (Status group = co_await EnsureGroup(commands_, keys_); !group.ok()) co_return group;
    // From the newest event on: a waiter reads its job after registering, so older ones matter not.
    std::vector<std::string> newest{"XREVRANGE", keys_.events(), "+", "-", "COUNT", "1"};
    Result<Reply> last = co_await commands_.Command(std::move(newest));
    if (!last.ok()) co_return last.status();
    last_event_ = "0-0";
    if (last->is_array() && last->size() == 1 && last->elements()[0].is_array() &&
        last->elements()[0].size() == 2 && IsText(last->elements()[0][0])) {
      last_event_ = last->elements()[0][0].str();
    }
    reader_running_ = true;
    asio::co_spawn(executor_, ReadEvents(shared_from_this()), [](std::exception_ptr error) {
      if (error) log::LogFailure("redis events", "the events reader", error);
    });
    co_return Status::Ok();
  }

  static Task<void> ReadEvents(std::shared_ptr<Impl> self) {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    int failures = 0;
    while (!self->stopping_.load()) {
      std::vector<std::string> argv{"XREAD",   "COUNT", std::to_string(kEventsPerRead),
                                    "BLOCK",   std::to_string(self->options_.block.count()),
                                    "STREAMS", self->keys_.events(), self->last_event_};
      Result<Reply> reply = co_await self->reader_.Command(std::move(argv), self->options_.block + kReadSlack);
      if (self->stopping_.load()) break;
      std::vector<Event> events;
      if (!reply.ok() || reply->is_error() || !ParseEvents(*reply, events)) {
        const std::string why = !reply.ok() ? reply.status().message() : reply->Describe();
        if (failures++ == 0) log::Warn("", "Reading the Redis events failed (waiters fall back to rereading): {}", why);
        pause.expires_after(std::chrono::milliseconds(std::min(2000, 100 << std::min(failures, 5))));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (failures > 0) log::Info("", "Reading the Redis events again.");
      failures = 0;
      for (Event& event : events) {
        self->last_event_ = event.entry;
        if (event.job_id.empty()) continue;
        const std::optional<JobStatus> status = core::JobStatusNamed(event.status);
        const bool ended = status && core::IsTerminal(*status);
        self->WakeJob(event.job_id, ended);
        if (ended) self->OnEnded(std::move(event), *status);
      }
    }
    self->reader_running_ = false;
  }

  void OnEnded(Event event, JobStatus status) {
    std::function<void(const core::JobView&)> listener;
    {
      std::lock_guard lock(mutex_);
      listener = listener_;
    }
    if (!listener) return;
    core::JobView view;
    view.id = std::move(event.job_id);
    view.status = status;
    view.delay_ms = event.delay_ms;
    view.execution_ms = event.execution_ms;
    if (!event.webhook) {
      listener(view);
      return;
    }
    asio::co_spawn(executor_, ClaimWebhook(shared_from_this(), std::move(view), std::move(listener)),
                   [](std::exception_ptr error) {
                     if (error) log::LogFailure("redis events", "a webhook claim", error);
                   });
  }

  // Every gateway sees every end; the one whose HSETNX lands sends the webhook.
  static Task<void> ClaimWebhook(std::shared_ptr<Impl> self, core::JobView view,
                                 std::function<void(const core::JobView&)> listener) {
    std::vector<std::string> argv{"HSETNX", self->keys_.job(view.id), "webhook_claimed", "1"};
    Result<Reply> claimed = co_await self->commands_.Command(std::move(argv));
    if (claimed.ok() && claimed->is_integer() && claimed->integer() == 1) {
      Result<std::optional<core::JobView>> full = co_await self->Read(view.id);
      if (full.ok() && *full && core::IsTerminal((*full)->status)) {
        listener(**full);
        co_return;
      }
      log::Warn(view.id, "The job's webhook was not sent: {}",
                full.ok() ? std::string("the job is gone") : full.status().message());
    }
    listener(view);  // the histograms still count it
  }

  Task<void> Stop() {
    stopping_ = true;
    reader_.Close();  // ends a blocked XREAD
    WakeAll();
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const Clock::time_point give_up = Clock::now() + std::chrono::seconds(5);
    while (reader_running_.load() && Clock::now() < give_up) {
      timer.expires_after(std::chrono::milliseconds(5));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::any_io_executor executor_;
  const BackendOptions options_;
  const Keys keys_;
  Connection commands_;
  Connection reader_;  // the blocking events read only
  std::string last_event_;  // the reader's; set by Start before the reader begins
  std::atomic<bool> stopping_{false};
  std::atomic<bool> reader_running_{false};

  std::mutex mutex_;
  std::unordered_multimap<std::string, std::shared_ptr<Waiter>> waiters_;  // guarded by mutex_
  std::function<void(const core::JobView&)> listener_;                     // guarded by mutex_
};

RedisJobBackend::RedisJobBackend(asio::any_io_executor executor, Endpoint endpoint, BackendOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(endpoint), std::move(options))) {}

RedisJobBackend::~RedisJobBackend() {
  impl_->stopping_ = true;
  impl_->reader_.Close();
}

Task<Status> RedisJobBackend::Start() { return impl_->Start(); }

Task<void> RedisJobBackend::Stop() { return impl_->Stop(); }

void RedisJobBackend::SetFinishListener(std::function<void(const core::JobView&)> listener) {
  std::lock_guard lock(impl_->mutex_);
  impl_->listener_ = std::move(listener);
}

Task<Result<std::string>> RedisJobBackend::Submit(core::NewJob job, std::optional<std::string> idempotency_key) {
  Impl& impl = *impl_;
  SubmitParams params;
  params.job_id = NewJobId();
  job.request["id"] = params.job_id;
  params.request_json = json::serialize(job.request);
  params.webhook = std::move(job.webhook);
  params.submitted_ms = UnixMillis();
  params.execution_timeout_ms =
      job.execution_timeout ? Milliseconds(*job.execution_timeout) : ExecutionTimeoutMs(job.request);
  params.queue_ttl_ms = job.ttl ? Milliseconds(*job.ttl) : 0;
  params.max_queue = impl.options_.max_queue;
  if (idempotency_key) params.idempotency_key = std::move(*idempotency_key);
  params.idempotency_ttl_s = impl.options_.result_ttl.count();
  ScriptCall call = SubmitCall(impl.keys_, params);  // named: g++ 12 and co_await
  Result<Reply> reply = co_await RunScript(impl.commands_, std::move(call));
  if (!reply.ok()) co_return reply.status();
  SubmitAnswer answer;
  if (!ParseSubmit(*reply, answer)) co_return BadReply("script submit", *reply);
  switch (answer.kind) {
    case SubmitAnswer::Kind::kQueueFull:
      co_return Status::ResourceExhausted(
          fmt::format("the queue is full: {} jobs are waiting (--max-queue)", impl.options_.max_queue));
    case SubmitAnswer::Kind::kRepeatedKey:
      co_return std::move(answer.job_id);
    case SubmitAnswer::Kind::kQueued:
    case SubmitAnswer::Kind::kExists:
      break;
  }
  co_return std::move(params.job_id);
}

Task<Result<core::JobView>> RedisJobBackend::Find(std::string_view job_id) {
  Result<std::optional<core::JobView>> view = co_await impl_->Read(std::string(job_id));
  if (!view.ok()) co_return view.status();
  if (!*view) co_return JobNotFound(job_id);
  co_return std::move(**view);
}

Task<Result<JobStatus>> RedisJobBackend::Cancel(std::string_view job_id) {
  Impl& impl = *impl_;
  Result<std::string> answer = co_await redis::Cancel(impl.commands_, impl.keys_, std::string(job_id),
                                                      impl.options_.result_ttl);
  if (!answer.ok()) co_return answer.status();
  if (*answer == "cancelled" || *answer == "signalled") co_return JobStatus::kCancelled;
  if (*answer == "missing") co_return JobNotFound(job_id);
  if (const std::optional<JobStatus> status = core::JobStatusNamed(*answer)) co_return *status;
  co_return Status::Internal("redis script cancel: unexpected answer " + *answer);
}

Task<Status> RedisJobBackend::Retry(std::string_view job_id) {
  Impl& impl = *impl_;
  ScriptCall call = RetryCall(impl.keys_, std::string(job_id), UnixMillis(), impl.options_.max_queue);
  Result<Reply> reply = co_await RunScript(impl.commands_, std::move(call));
  if (!reply.ok()) co_return reply.status();
  if (!reply->is_array() || reply->size() == 0 || !IsText(reply->elements()[0])) {
    co_return BadReply("script retry", *reply);
  }
  const std::string& kind = reply->elements()[0].str();
  if (kind == "queued") co_return Status::Ok();
  if (kind == "missing") co_return JobNotFound(job_id);
  if (kind == "full") {
    co_return Status::ResourceExhausted(
        fmt::format("the queue is full: {} jobs are waiting (--max-queue)", impl.options_.max_queue));
  }
  if (kind == "wrong_status" && reply->size() == 2 && IsText(reply->elements()[1])) {
    co_return Status::FailedPrecondition(
        fmt::format("job {} is {}; only FAILED, TIMED_OUT or CANCELLED jobs can be retried", job_id,
                    reply->elements()[1].str()));
  }
  co_return BadReply("script retry", *reply);
}

Task<Result<std::size_t>> RedisJobBackend::Purge() {
  Impl& impl = *impl_;
  ScriptCall call = PurgeCall(impl.keys_, UnixMillis(), impl.options_.result_ttl.count());
  Result<Reply> reply = co_await RunScript(impl.commands_, std::move(call));
  if (!reply.ok()) co_return reply.status();
  if (!reply->is_integer() || reply->integer() < 0) co_return BadReply("script purge", *reply);
  co_return static_cast<std::size_t>(reply->integer());
}

Task<Result<core::StreamRead>> RedisJobBackend::ReadChunks(std::string_view job_id,
                                                           std::optional<std::size_t> from_index) {
  Impl& impl = *impl_;
  const std::int64_t from = from_index ? static_cast<std::int64_t>(*from_index) : -1;
  ScriptCall call = ReadChunksCall(impl.keys_, std::string(job_id), from);
  Result<Reply> reply = co_await RunScript(impl.commands_, std::move(call));
  if (!reply.ok()) co_return reply.status();
  if (reply->is_nil()) co_return JobNotFound(job_id);
  core::StreamRead read;
  if (!reply->is_array() || reply->size() != 3 || !reply->elements()[1].is_array() ||
      !reply->elements()[2].is_integer() || !ParseJobFields(job_id, reply->elements()[0], read.job)) {
    co_return BadReply("script read_chunks", *reply);
  }
  if (!core::IsTerminal(read.job.status)) read.job.result = json::object();  // as JobStore::ReadChunks
  for (const Reply& chunk : reply->elements()[1].elements()) {
    boost::system::error_code ec;
    json::value value = IsText(chunk) ? json::parse(chunk.str(), ec) : json::value();
    if (!IsText(chunk) || ec) co_return BadReply("script read_chunks (a chunk)", chunk);
    read.chunks.push_back(std::move(value));
  }
  read.next_index = static_cast<std::size_t>(reply->elements()[2].integer());
  co_return read;
}

Task<Result<std::uint64_t>> RedisJobBackend::WaitForChange(std::string_view job_id, std::uint64_t seen,
                                                           Clock::time_point deadline) {
  Impl& impl = *impl_;
  const std::string id(job_id);
  const std::shared_ptr<Impl::Waiter> waiter = impl.Register(id, co_await asio::this_coro::executor);
  Result<std::uint64_t> answer = std::uint64_t{0};
  for (;;) {
    waiter->woken = false;
    Result<std::optional<core::JobView>> view = co_await impl.Read(id);
    if (!view.ok()) {
      answer = view.status();
      break;
    }
    const std::uint64_t version = *view ? (*view)->version : 0;
    if (version != seen || Clock::now() >= deadline || impl.stopping_.load()) {
      answer = version;
      break;
    }
    co_await impl.Sleep(*waiter, deadline);
  }
  impl.Unregister(id, waiter);
  co_return answer;
}

// Reads the job when it registers, then again only when an end event of the job arrives (or the
// recheck interval passes, or the deadline): the events of a running job (started, progress,
// chunks) wake it without costing a read.
Task<Result<core::JobView>> RedisJobBackend::WaitForEnd(std::string_view job_id, Clock::time_point deadline) {
  Impl& impl = *impl_;
  const std::string id(job_id);
  const std::shared_ptr<Impl::Waiter> waiter = impl.Register(id, co_await asio::this_coro::executor);
  Result<core::JobView> answer = JobNotFound(id);
  for (;;) {
    waiter->woken = false;
    const Clock::time_point read_at = Clock::now();
    Result<std::optional<core::JobView>> view = co_await impl.Read(id);
    if (!view.ok()) {
      answer = view.status();
      break;
    }
    if (!*view) break;  // unknown, or forgotten meanwhile
    if (core::IsTerminal((*view)->status) || Clock::now() >= deadline || impl.stopping_.load()) {
      answer = std::move(**view);
      break;
    }
    const Clock::time_point recheck_at = read_at + impl.options_.recheck;
    for (;;) {
      co_await impl.Sleep(*waiter, std::min(deadline, recheck_at));
      if (waiter->ended.load() || impl.stopping_.load() || Clock::now() >= std::min(deadline, recheck_at)) break;
      waiter->woken = false;  // a change that is not the end: sleep on
    }
  }
  impl.Unregister(id, waiter);
  co_return answer;
}

Task<Result<core::JobCounts>> RedisJobBackend::Counts(Clock::time_point deadline) {
  Impl& impl = *impl_;
  auto left = [deadline] { return deadline - Clock::now(); };
  if (left() <= Clock::duration::zero()) co_return Status::Unavailable("no time left to ask Redis for the counts");
  std::vector<std::string> counters_argv{"HGETALL", impl.keys_.counts()};
  Result<Reply> counters = co_await impl.commands_.Command(std::move(counters_argv), left());
  if (!counters.ok()) co_return counters.status();
  if (!counters->is_array()) co_return BadReply("HGETALL " + impl.keys_.counts(), *counters);
  core::JobCounts counts;
  auto clamp = [](std::int64_t value) { return static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0)); };
  std::uint64_t started = 0, ended_queued = 0;
  const std::vector<Reply>& fields = counters->elements();
  for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
    if (!IsText(fields[i]) || !IsText(fields[i + 1])) continue;
    const std::string& name = fields[i].str();
    const std::uint64_t value = clamp(ParseInteger(fields[i + 1].str()).value_or(0));
    if (name == "submitted") counts.submitted = value;
    else if (name == "completed") counts.completed = value;
    else if (name == "failed") counts.failed = value;
    else if (name == "cancelled") counts.cancelled = value;
    else if (name == "timed_out") counts.timed_out = value;
    else if (name == "retried") counts.retried = value;
    else if (name == "rejected_queue_full") counts.rejected_queue_full = value;
    else if (name == "started") started = value;
    else if (name == "ended_queued") ended_queued = value;
  }
  // The scripts count moves, one HINCRBY each (scripts.cpp): queued = in − started − ended before
  // starting; running = started − ended after starting.
  const std::uint64_t ended = counts.completed + counts.failed + counts.cancelled + counts.timed_out;
  const auto difference = [](std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; };
  counts.in_queue = difference(counts.submitted + counts.retried, started + ended_queued);
  counts.in_progress = difference(started + ended_queued, ended);

  // The fleet: the live workers on the roster, and whether each runs jobs now.
  if (left() <= Clock::duration::zero()) co_return Status::Unavailable("no time left to ask Redis for the workers");
  std::vector<std::string> roster_argv{"ZRANGEBYSCORE", impl.keys_.workers(), std::to_string(UnixMillis()), "+inf"};
  Result<Reply> roster = co_await impl.commands_.Command(std::move(roster_argv), left());
  if (!roster.ok()) co_return roster.status();
  if (!roster->is_array()) co_return BadReply("ZRANGEBYSCORE " + impl.keys_.workers(), *roster);
  counts.workers_idle = 0;
  counts.workers_running = 0;
  if (roster->size() > 0) {
    std::vector<std::string> loads_argv{"MGET"};
    for (const Reply& consumer : roster->elements()) {
      if (IsText(consumer)) loads_argv.push_back(impl.keys_.worker(consumer.str()));
    }
    if (left() <= Clock::duration::zero()) co_return Status::Unavailable("no time left to ask Redis for the workers");
    Result<Reply> loads = co_await impl.commands_.Command(std::move(loads_argv), left());
    if (!loads.ok()) co_return loads.status();
    if (!loads->is_array()) co_return BadReply("MGET of the worker keys", *loads);
    for (const Reply& load : loads->elements()) {
      if (!IsText(load)) continue;  // expired between the two reads
      boost::system::error_code ec;
      const json::value value = json::parse(load.str(), ec);
      const json::value* running = !ec && value.is_object() ? value.as_object().if_contains("running") : nullptr;
      const bool busy = running != nullptr && running->is_int64() && running->as_int64() > 0;
      ++*(busy ? counts.workers_running : counts.workers_idle);
    }
  }
  co_return counts;
}

}  // namespace sluice::redis
