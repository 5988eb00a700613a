#include "core/scheduler.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <stop_token>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <fmt/format.h>

#include "core/adjustable_semaphore.hpp"
#include "core/blocking_pool.hpp"
#include "core/concurrency_controller.hpp"

namespace sluice {
namespace asio = boost::asio;
namespace json = boost::json;
using core::JobOutcome;
using core::JobStatus;

namespace detail {

// Everything about one running job: the Job and Stream the handler sees, its strand, its
// cancellation state and the once-only transition to finished. Shared by the handler's completion
// and by the scheduler's registry of running jobs; lives until both let go.
class JobRun : public std::enable_shared_from_this<JobRun> {
 public:
  JobRun(std::shared_ptr<core::Scheduler::Impl> owner, core::JobRequest request,
         asio::any_io_executor executor);

  const std::string& id() const noexcept { return id_; }
  const json::object& request() const noexcept { return request_; }
  const json::value& input() const noexcept { return *input_; }
  const std::string& worker_id() const noexcept;
  bool cancelled() const noexcept { return stop_.stop_requested(); }
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }

  void Progress(json::value update);
  bool Chunk(json::value chunk);

  // Starts the handler; called once, by the dispatcher.
  void Start(std::optional<std::chrono::steady_clock::duration> timeout);

  // Cancels from any thread: the job is reported with `status` on its strand.
  void RequestCancel(JobStatus status);

 private:
  void CancelOnStrand(JobStatus status);
  // The handler has returned (or thrown): decide the outcome unless one was decided already, and
  // give the slot back unless the caller does that itself.
  void Complete(std::exception_ptr thrown, json::value returned, bool release_slot = true);
  // Run a handler's coroutine and complete the job from inside the same thread of execution.
  // They also clear the cancellation state before finishing: Boost 1.81's co_spawn entry point
  // co_awaits once more after the coroutine returns, and would throw operation_aborted outside any
  // try block (terminating the process) if the job had been cancelled.
  static Task<void> Guard(std::shared_ptr<JobRun> self, Task<json::value> handler_task);
  // The completion of the co_spawn: it holds the JobRun, whose signal_ the coroutine's
  // cancellation state points into, until the spawned thread of execution has fully ended.
  static auto KeepAlive(std::shared_ptr<JobRun> self) {
    return [self = std::move(self)](std::exception_ptr thrown) {
      if (thrown) self->OnUncaught();
    };
  }
  // Guard catches everything the handler throws, so an exception here is sluice's own failure.
  void OnUncaught();
  static Task<void> GuardStream(std::shared_ptr<JobRun> self, Task<void> handler_task);
  // Reports the outcome once; later calls do nothing. Returns whether this call reported.
  bool Finish(JobOutcome outcome);
  JobOutcome CancelOutcome() const;

  std::shared_ptr<core::Scheduler::Impl> owner_;
  std::string id_;
  json::object request_;
  const json::value* input_;
  std::optional<std::chrono::steady_clock::duration> timeout_;
  // A strand of its own when several I/O threads run the io_context; the plain executor when one
  // does, which serialises everything already.
  asio::any_io_executor strand_;
  Job job_;
  Stream stream_;
  std::stop_source stop_;
  std::atomic<JobStatus> cancel_status_{JobStatus::kCancelled};

  // Touched only on strand_.
  asio::cancellation_signal signal_;
  // Whether the handler's coroutine may be sent a cancellation. Boost 1.81's co_spawn entry point
  // co_awaits before and after the coroutine outside any try block, so a cancellation emitted in
  // those windows would escape as an exception and terminate the process.
  bool accepts_cancellation_ = false;
  bool started_ = false;
  std::optional<asio::steady_timer> timeout_timer_;

  std::mutex mutex_;
  bool finished_ = false;  // guarded by mutex_
  json::array chunks_;     // guarded by mutex_; kept only when aggregating
};

}  // namespace detail

namespace core {

namespace {
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};
}  // namespace

class Scheduler::Impl : public std::enable_shared_from_this<Scheduler::Impl> {
 public:
  Impl(asio::io_context& io, Handler handler, JobSource& source, ResultSink& sink,
       SchedulerOptions options)
      : io_(io),
        handler_(std::move(handler)),
        source_(source),
        sink_(sink),
        options_(std::move(options)),
        error_context_{options_.hostname, options_.worker_id},
        controller_(options_.concurrency, options_.max_concurrency, options_.concurrency_modifier,
                    options_.modifier_interval, options_.warn),
        semaphore_(static_cast<std::size_t>(controller_.limit())),
        limit_(controller_.limit()),
        dispatch_strand_(asio::make_strand(io)),
        ticker_(dispatch_strand_) {}

  Task<void> Dispatch();
  void Ticker();
  void UpdateLimit();
  // Moves the backlog's first job into the running registry and starts it, holding a slot the
  // caller acquired. Returns false, using no slot, when the backlog is empty.
  bool LaunchNext();

  // Called by JobRun.
  void OnFinished(const detail::JobRun& run, JobOutcome outcome);
  void ReleaseSlot() {
    slots_held_.fetch_sub(1, std::memory_order_relaxed);
    semaphore_.release();
  }

  bool Cancel(std::string_view job_id) {
    std::shared_ptr<detail::JobRun> run;
    {
      std::lock_guard lock(running_mutex_);
      auto it = running_.find(job_id);
      if (it != running_.end()) run = it->second;
    }
    if (!run) return CancelQueued(job_id);
    run->RequestCancel(JobStatus::kCancelled);
    return true;
  }
  bool CancelQueued(std::string_view job_id);

  void Warn(const std::string& warning) const {
    if (options_.warn) options_.warn(warning);
  }

  // Sinks must not throw; if one does anyway, the job still ends and its slot is still released.
  template <class Call>
  void CallSink(Call&& call) noexcept {
    try {
      call();
    } catch (const std::exception& e) {
      Warn(fmt::format("result sink threw (a bug in the sink): {}", e.what()));
    } catch (...) {
      Warn("result sink threw a non-standard exception (a bug in the sink)");
    }
  }

  std::vector<std::string> RunningIds() const {
    std::lock_guard lock(running_mutex_);
    std::vector<std::string> ids;
    ids.reserve(running_.size());
    for (const auto& [id, run] : running_) ids.emplace_back(id);
    return ids;
  }

  asio::io_context& io_;
  const Handler handler_;
  JobSource& source_;
  ResultSink& sink_;
  const SchedulerOptions options_;
  const ErrorReportContext error_context_;
  BlockingPool pool_;

  ConcurrencyController controller_;  // only on dispatch_strand_
  AdjustableSemaphore semaphore_;
  std::atomic<int> limit_;
  std::atomic<std::size_t> slots_held_{0};
  std::atomic<std::size_t> peak_slots_held_{0};
  std::atomic<std::size_t> running_count_{0};
  // Config-level refresh_worker: set when the first job's result is reported, before its slot is
  // given back, so the dispatcher takes no job after it (the worker is about to be replaced).
  std::atomic<bool> refreshing_{false};

  asio::strand<asio::io_context::executor_type> dispatch_strand_;
  asio::steady_timer ticker_;  // only on dispatch_strand_
  bool dispatching_ = false;   // only on dispatch_strand_

  mutable std::mutex running_mutex_;
  // Jobs taken from the source and not yet started: briefly each one, longer when the limit fell
  // while the dispatcher waited in Take.
  std::deque<JobRequest> backlog_;  // guarded by running_mutex_
  std::unordered_map<std::string_view, std::shared_ptr<detail::JobRun>, StringHash> running_;  // guarded by running_mutex_
};

void Scheduler::Impl::UpdateLimit() {
  const int limit = controller_.Update(ConcurrencyController::Clock::now());
  if (limit != limit_.load(std::memory_order_relaxed)) {
    limit_.store(limit, std::memory_order_relaxed);
    semaphore_.set_capacity(static_cast<std::size_t>(limit));
  }
}

// While the dispatcher waits for a slot it makes no decisions, but a modifier that would raise the
// limit must still be heard: the ticker consults it every interval until dispatching ends.
void Scheduler::Impl::Ticker() {
  if (!dispatching_) return;
  ticker_.expires_after(options_.modifier_interval);
  ticker_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || !self->dispatching_) return;
    self->UpdateLimit();
    self->Ticker();
  });
}

Task<void> Scheduler::Impl::Dispatch() {
  dispatching_ = true;
  if (controller_.has_modifier()) Ticker();
  const std::size_t max_take = std::max<std::size_t>(1, options_.max_jobs_per_take);
  for (;;) {
    UpdateLimit();
    co_await semaphore_.async_acquire(asio::use_awaitable);
    if (refreshing_.load()) {
      // refresh_worker: a result has been reported, so this worker takes nothing more; without
      // this the slot that job gave back would take a new job before the drain began.
      semaphore_.release();
      break;
    }
    // Ask for as many jobs as there are free slots now, but hold only one slot while the source
    // makes us wait: if the limit drops meanwhile, the jobs beyond the first wait for slots of
    // their own instead of all starting at once.
    const std::size_t wanted = std::min(max_take, 1 + semaphore_.available());
    std::vector<JobRequest> jobs;
    try {
      jobs = co_await source_.Take(wanted);
    } catch (const std::exception& e) {
      Warn(fmt::format("job source failed, no more jobs taken: {}", e.what()));
    }
    if (jobs.empty()) {
      semaphore_.release();
      break;
    }
    // Every taken job is parked in the backlog first, where Cancel finds it, and leaves it only
    // to be registered as running, under the same lock: no moment where a job is in neither.
    {
      std::lock_guard lock(running_mutex_);
      for (JobRequest& job : jobs) backlog_.push_back(std::move(job));
    }
    std::size_t slots = 1 + semaphore_.acquire_up_to(jobs.size() - 1);
    for (;;) {
      while (slots > 0 && LaunchNext()) --slots;
      if (slots > 0) {  // the backlog ran dry (jobs in it were cancelled)
        semaphore_.release(slots);
        break;
      }
      {
        std::lock_guard lock(running_mutex_);
        if (backlog_.empty()) break;
      }
      // The limit fell while we waited in Take: the rest wait here for a slot each.
      UpdateLimit();
      co_await semaphore_.async_acquire(asio::use_awaitable);
      slots = 1;
    }
  }
  dispatching_ = false;
  ticker_.cancel();
  co_await semaphore_.async_wait_idle(asio::use_awaitable);
}

bool Scheduler::Impl::LaunchNext() {
  asio::any_io_executor executor = options_.io_threads > 1
                                       ? asio::any_io_executor(asio::make_strand(io_))
                                       : asio::any_io_executor(io_.get_executor());
  std::shared_ptr<detail::JobRun> run;
  std::optional<std::chrono::steady_clock::duration> timeout;
  bool registered = false;
  {
    std::lock_guard lock(running_mutex_);
    if (backlog_.empty()) return false;
    timeout = backlog_.front().execution_timeout;
    run = std::make_shared<detail::JobRun>(shared_from_this(), std::move(backlog_.front()), executor);
    backlog_.pop_front();
    registered = running_.try_emplace(run->id(), run).second;  // the key views the run's own id
  }
  const std::size_t held = slots_held_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::size_t peak = peak_slots_held_.load(std::memory_order_relaxed);
  while (held > peak && !peak_slots_held_.compare_exchange_weak(peak, held)) {
  }
  if (!registered) {
    // The job is running already (a redelivery): its one outcome will be reported by that run.
    Warn(fmt::format("job {} is already running; the second delivery is dropped", run->id()));
    ReleaseSlot();
    return true;
  }
  running_count_.fetch_add(1, std::memory_order_relaxed);
  CallSink([&] { sink_.OnStarted(run->id()); });
  // Start runs on the job's own executor, like a Cancel does, so the two never overlap; a Cancel
  // that comes first only marks the job, and Start then reports it.
  asio::dispatch(executor, [run, timeout] { run->Start(timeout); });
  return true;
}

bool Scheduler::Impl::CancelQueued(std::string_view job_id) {
  std::optional<JobRequest> cancelled;
  {
    std::lock_guard lock(running_mutex_);
    auto it = std::find_if(backlog_.begin(), backlog_.end(),
                           [&](const JobRequest& job) { return job.id == job_id; });
    if (it == backlog_.end()) return false;
    cancelled = std::move(*it);
    backlog_.erase(it);
  }
  CallSink([&] { sink_.OnFinished(cancelled->id, {JobStatus::kCancelled, {}}); });
  return true;
}

void Scheduler::Impl::OnFinished(const detail::JobRun& run, JobOutcome outcome) {
  {
    std::lock_guard lock(running_mutex_);
    auto it = running_.find(run.id());
    if (it != running_.end() && it->second.get() == &run) running_.erase(it);
  }
  running_count_.fetch_sub(1, std::memory_order_relaxed);
  // A stopped job has no result (runpod.md §1.5), so it does not end a refresh_worker worker.
  if (options_.refresh_worker && outcome.status != JobStatus::kCancelled) refreshing_.store(true);
  CallSink([&] { sink_.OnFinished(run.id(), std::move(outcome)); });
}

Scheduler::Scheduler(asio::io_context& io, Handler handler, JobSource& source, ResultSink& sink,
                     SchedulerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(handler), source, sink, std::move(options))) {}

Scheduler::~Scheduler() {
  // Join the pool here, from the owner's thread: the last reference to Impl may otherwise be
  // dropped on a pool thread, which cannot join itself.
  impl_->pool_.Shutdown();
}

Task<void> Scheduler::Run() {
  co_await asio::co_spawn(impl_->dispatch_strand_, impl_->Dispatch(), asio::use_awaitable);
}

bool Scheduler::Cancel(std::string_view job_id) { return impl_->Cancel(job_id); }
int Scheduler::limit() const noexcept { return impl_->limit_.load(std::memory_order_relaxed); }
std::size_t Scheduler::running() const noexcept {
  return impl_->running_count_.load(std::memory_order_relaxed);
}
std::size_t Scheduler::peak_running() const noexcept {
  return impl_->peak_slots_held_.load(std::memory_order_relaxed);
}
std::vector<std::string> Scheduler::running_ids() const { return impl_->RunningIds(); }

}  // namespace core

namespace detail {

JobRun::JobRun(std::shared_ptr<core::Scheduler::Impl> owner, core::JobRequest request,
               asio::any_io_executor executor)
    : owner_(std::move(owner)),
      id_(std::move(request.id)),
      request_(std::move(request.request)),
      input_(nullptr),
      strand_(std::move(executor)),
      job_(*this),
      stream_(*this) {
  static const json::value kNull;
  auto it = request_.find("input");
  input_ = it != request_.end() ? &it->value() : &kNull;
}

const std::string& JobRun::worker_id() const noexcept { return owner_->options_.worker_id; }

void JobRun::Progress(json::value update) {
  std::lock_guard lock(mutex_);
  if (finished_ || cancelled()) return;  // a cancelled job is over, even before it is reported
  owner_->CallSink([&] { owner_->sink_.OnProgress(id_, update); });
}

bool JobRun::Chunk(json::value chunk) {
  std::unique_lock lock(mutex_);
  if (finished_ || cancelled()) return false;
  if (chunk.is_object()) {
    json::object& object = chunk.get_object();
    if (auto it = object.find("error"); it != object.end() && core::IsTruthy(it->value())) {
      // runpod-python ends the job with this error and does not stream the chunk.
      json::object result;
      result.emplace("error", core::PythonStr(it->value()));
      lock.unlock();
      Finish({JobStatus::kFailed, std::move(result)});
      RequestCancel(JobStatus::kFailed);
      return false;
    }
  }
  owner_->CallSink([&] { owner_->sink_.OnChunk(id_, chunk); });
  if (owner_->options_.aggregate_stream) chunks_.push_back(std::move(chunk));
  return true;
}

void JobRun::Start(std::optional<std::chrono::steady_clock::duration> timeout) {
  auto self = shared_from_this();
  started_ = true;
  timeout_ = timeout;
  if (cancelled()) return Complete(nullptr, nullptr);  // cancelled before it could start
  if (timeout) {
    timeout_timer_.emplace(strand_, *timeout);
    timeout_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto run = weak.lock()) run->CancelOnStrand(JobStatus::kTimedOut);
    });
  }
  const Handler& handler = owner_->handler_;
  try {
    switch (handler.kind()) {
      case Handler::Kind::kCoroutine:
        asio::co_spawn(strand_, Guard(self, handler.coroutine()(job_)),
                       asio::bind_cancellation_slot(signal_.slot(), KeepAlive(self)));
        return;
      case Handler::Kind::kStreaming:
        asio::co_spawn(strand_, GuardStream(self, handler.streaming()(job_, stream_)),
                       asio::bind_cancellation_slot(signal_.slot(), KeepAlive(self)));
        return;
      case Handler::Kind::kBlocking:
        owner_->pool_.Submit(
            [self] {
              if (self->cancelled()) return self->Complete(nullptr, nullptr, false);
              try {
                json::value returned = self->owner_->handler_.blocking()(self->job_);
                self->Complete(nullptr, std::move(returned), false);
              } catch (...) {
                self->Complete(std::current_exception(), nullptr, false);
              }
            },
            [self] { self->owner_->ReleaseSlot(); });
        return;
      case Handler::Kind::kBlockingStreaming:
        owner_->pool_.Submit(
            [self] {
              if (self->cancelled()) return self->Complete(nullptr, nullptr, false);
              try {
                self->owner_->handler_.blocking_streaming()(self->job_, self->stream_);
                self->Complete(nullptr, nullptr, false);
              } catch (...) {
                self->Complete(std::current_exception(), nullptr, false);
              }
            },
            [self] { self->owner_->ReleaseSlot(); });
        return;
      case Handler::Kind::kNone:
        throw std::logic_error("no handler configured");
    }
  } catch (...) {
    // The handler threw before its coroutine was even created.
    Complete(std::current_exception(), nullptr);
  }
}

Task<void> JobRun::Guard(std::shared_ptr<JobRun> self, Task<json::value> handler_task) {
  std::exception_ptr thrown;
  json::value returned;
  if (!self->cancelled()) {  // a cancel that came before the start is not delivered: see below
    self->accepts_cancellation_ = true;
    try {
      returned = co_await std::move(handler_task);
    } catch (...) {
      thrown = std::current_exception();
    }
    self->accepts_cancellation_ = false;
    co_await asio::this_coro::reset_cancellation_state();
  }
  self->Complete(thrown, std::move(returned));
}

Task<void> JobRun::GuardStream(std::shared_ptr<JobRun> self, Task<void> handler_task) {
  std::exception_ptr thrown;
  if (!self->cancelled()) {
    self->accepts_cancellation_ = true;
    try {
      co_await std::move(handler_task);
    } catch (...) {
      thrown = std::current_exception();
    }
    self->accepts_cancellation_ = false;
    co_await asio::this_coro::reset_cancellation_state();
  }
  self->Complete(thrown, nullptr);
}

void JobRun::OnUncaught() { owner_->Warn(fmt::format("job {}: its coroutine ended with an uncaught exception", id_)); }

void JobRun::RequestCancel(JobStatus status) {
  asio::post(strand_, [self = shared_from_this(), status] { self->CancelOnStrand(status); });
}

void JobRun::CancelOnStrand(JobStatus status) {
  if (stop_.stop_requested()) return;
  cancel_status_.store(status);
  stop_.request_stop();
  if (!started_) return;  // Start has not run yet; it reports the cancellation itself
  if (timeout_timer_) timeout_timer_->cancel();
  Finish(CancelOutcome());
  if (accepts_cancellation_) signal_.emit(asio::cancellation_type::terminal);
}

JobOutcome JobRun::CancelOutcome() const {
  const JobStatus status = cancel_status_.load();
  JobOutcome outcome{status, {}};
  if (status == JobStatus::kTimedOut) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*timeout_).count();
    outcome.result.emplace("error", fmt::format("job timed out: execution timeout of {} ms exceeded", ms));
  }
  return outcome;
}

void JobRun::Complete(std::exception_ptr thrown, json::value returned, bool release_slot) {
  const core::SchedulerOptions& options = owner_->options_;
  if (stop_.stop_requested()) {
    Finish(CancelOutcome());  // a no-op unless the handler returned before the cancel was reported
  } else if (thrown) {
    Finish({JobStatus::kFailed,
            core::MapException(thrown, owner_->error_context_, options.refresh_worker)});
  } else if (owner_->handler_.is_streaming()) {
    json::object result;
    {
      std::lock_guard lock(mutex_);
      result.emplace("output", std::move(chunks_));
    }
    if (options.refresh_worker) result.emplace("stopPod", true);
    Finish({JobStatus::kCompleted, std::move(result)});
  } else {
    json::object result = core::MapReturnValue(std::move(returned), options.refresh_worker);
    const JobStatus status = core::IsFailure(result) ? JobStatus::kFailed : JobStatus::kCompleted;
    Finish({status, std::move(result)});
  }
  if (timeout_timer_) {
    // The timer belongs to the strand; cancel it there so a long timeout does not keep the job.
    asio::post(strand_, [self = shared_from_this()] { self->timeout_timer_->cancel(); });
  }
  if (release_slot) owner_->ReleaseSlot();
}

bool JobRun::Finish(JobOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return false;
    finished_ = true;
  }
  owner_->OnFinished(*this, std::move(outcome));
  return true;
}

}  // namespace detail

// The public Job and Stream forward to their JobRun.

const std::string& Job::id() const noexcept { return run_.id(); }
const json::value& Job::input() const noexcept { return run_.input(); }
const json::object& Job::request() const noexcept { return run_.request(); }
const std::string& Job::worker_id() const noexcept { return run_.worker_id(); }
void Job::progress(json::value update) { run_.Progress(std::move(update)); }
bool Job::cancelled() const noexcept { return run_.cancelled(); }
std::stop_token Job::stop_token() const noexcept { return run_.stop_token(); }

Task<void> Stream::emit(json::value chunk) {
  if (!run_.Chunk(std::move(chunk))) {
    throw boost::system::system_error(asio::error::operation_aborted, "stream closed");
  }
  co_return;
}

bool Stream::write(json::value chunk) { return run_.Chunk(std::move(chunk)); }

}  // namespace sluice
