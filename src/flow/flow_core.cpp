#include "flow/flow_core.hpp"

#include <algorithm>
#include <cctype>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <fmt/format.h>

#include "flow/flow_registry.hpp"
#include "log/logging.hpp"

namespace sluice::detail {
namespace {

using Clock = std::chrono::steady_clock;

void CheckName(const std::string& name, std::string_view what) {
  const bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-';
  });
  if (!valid) {
    throw std::invalid_argument(fmt::format(
        "{} name \"{}\" is not valid: use letters, digits, '_' and '-' (at least one)", what, name));
  }
}

void CheckStep(const FlowStep& step) {
  CheckName(step.name, "flow step");
  auto fail = [&](std::string_view problem) {
    throw std::invalid_argument(fmt::format("flow step \"{}\": {}", step.name, problem));
  };
  if (!step.handler) fail("has no handler");
  if (step.workers == 0) fail("workers must be at least 1");
  if (step.max_batch_size == 0) fail("max_batch_size must be at least 1");
  if (step.queue_capacity == 0) fail("queue_capacity must be at least 1");
  if (step.max_batch_delay.count() < 0) fail("max_batch_delay must not be negative");
  for (const std::size_t size : step.preferred_batch_sizes) {
    if (size == 0 || size > step.max_batch_size) {
      fail(fmt::format("preferred batch size {} is not between 1 and max_batch_size ({})", size,
                       step.max_batch_size));
    }
  }
}

flow::BatchPolicy PolicyOf(const FlowStep& step) {
  return flow::BatchPolicy{.max_batch_size = step.max_batch_size,
                           .max_batch_delay = step.max_batch_delay,
                           .preferred_batch_sizes = step.preferred_batch_sizes};
}

}  // namespace

// ---- FlowHistogram ---------------------------------------------------------------------------

void FlowHistogram::Observe(Clock::duration duration) noexcept {
  const auto nanoseconds = std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count());
  const double seconds = static_cast<double>(nanoseconds) * 1e-9;
  std::size_t bucket = 0;
  while (bucket < kUpperBounds.size() && seconds > kUpperBounds[bucket]) ++bucket;
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_nanoseconds_.fetch_add(static_cast<std::uint64_t>(nanoseconds), std::memory_order_relaxed);
}

void FlowHistogram::Read(std::vector<std::uint64_t>& cumulative_counts, double& sum_seconds) const {
  cumulative_counts.assign(counts_.size(), 0);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    cumulative_counts[i] = running;
  }
  sum_seconds = static_cast<double>(sum_nanoseconds_.load(std::memory_order_relaxed)) * 1e-9;
}

// ---- FlowStepRuntime -------------------------------------------------------------------------

FlowStepRuntime::FlowStepRuntime(FlowCore& core, FlowStep config, std::size_t index)
    : core(core),
      config(std::move(config)),
      index(index),
      policy(PolicyOf(this->config)),
      spin(core.options().worker_spin),
      batch_size_counts(this->config.max_batch_size + 1) {}

flow::BatchDecision FlowStepRuntime::DecideLocked(Clock::time_point now) const {
  // The decision looks at the front of the queue only: at most one batch's worth.
  if (queue.size() >= policy.max_batch_size) return flow::BatchDecision{.dispatch = policy.max_batch_size};
  std::array<flow::QueuedTask, 64> small;
  std::vector<flow::QueuedTask> large;
  std::span<flow::QueuedTask> front;
  if (queue.size() <= small.size()) {
    front = std::span(small.data(), queue.size());
  } else {
    large.resize(queue.size());
    front = large;
  }
  for (std::size_t i = 0; i < front.size(); ++i) {
    const FlowTask& task = *queue[i];
    front[i].enqueued_at = task.enqueued_at_;
    front[i].deadline = task.deadline_ == Clock::time_point::max()
                            ? std::nullopt
                            : std::optional<Clock::time_point>(task.deadline_);
  }
  return flow::DecideBatch(front, now, policy);
}

void FlowStepRuntime::ExpireLocked(Clock::time_point now, std::vector<FlowTask*>& expired) {
  if (now < earliest_deadline) return;
  Clock::time_point earliest = Clock::time_point::max();
  const std::size_t before = expired.size();
  std::erase_if(queue, [&](FlowTask* task) {
    if (task->deadline_ <= now) {
      expired.push_back(task);
      return true;
    }
    earliest = std::min(earliest, task->deadline_);
    return false;
  });
  earliest_deadline = earliest;
  queued_hint.store(queue.size(), std::memory_order_relaxed);
  if (expired.size() != before && waiting_producers > 0) room_ready.notify_all();
}

Clock::time_point FlowStepRuntime::ExpireQueued(Clock::time_point now) {
  std::vector<FlowTask*> expired;
  Clock::time_point earliest;
  {
    std::lock_guard lock(mutex);
    ExpireLocked(now, expired);
    earliest = earliest_deadline;
    // A worker waiting for its batch's delay must see that the front changed.
    if (!expired.empty() && idle_workers > 0) work_ready.notify_all();
  }
  timed_out.fetch_add(expired.size(), std::memory_order_relaxed);
  for (FlowTask* task : expired) {
    core.Complete(*task, FlowTaskStatus::kTimedOut,
                  fmt::format("deadline passed while queued for step \"{}\"", config.name));
  }
  return earliest;
}

void FlowStepRuntime::Accept(std::span<FlowTask* const> incoming) {
  std::vector<FlowTask*> late;  // past their deadline on arrival; completed after the lock
  Clock::time_point earliest_new = Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  std::size_t next = 0;
  {
    std::unique_lock lock(mutex);
    while (next < incoming.size() && !halted) {
      if (queue.size() >= config.queue_capacity) {
        if (idle_workers > 0) work_ready.notify_all();
        ++waiting_producers;
        room_ready.wait(lock, [&] { return halted || queue.size() < config.queue_capacity; });
        --waiting_producers;
        continue;
      }
      const bool was_empty = queue.empty();
      const std::size_t take = std::min(config.queue_capacity - queue.size(), incoming.size() - next);
      bool new_deadline = false;
      for (std::size_t i = 0; i < take; ++i) {
        FlowTask* task = incoming[next + i];
        if (task->deadline_ <= now) {
          late.push_back(task);
          continue;
        }
        task->enqueued_at_ = now;
        if (task->deadline_ < earliest_deadline) {
          earliest_deadline = task->deadline_;
          earliest_new = std::min(earliest_new, task->deadline_);
          new_deadline = true;
        }
        queue.push_back(task);
      }
      next += take;
      queued_hint.store(queue.size(), std::memory_order_relaxed);
      WakeWorkerLocked(was_empty, new_deadline);
    }
  }
  if (earliest_new != Clock::time_point::max()) core.DeadlineQueued(earliest_new);
  if (!late.empty()) {
    timed_out.fetch_add(late.size(), std::memory_order_relaxed);
    for (FlowTask* task : late) {
      core.Complete(*task, FlowTaskStatus::kTimedOut,
                    fmt::format("deadline passed before step \"{}\"", config.name));
    }
  }
  // What is left found the step halted.
  for (; next < incoming.size(); ++next) {
    core.Complete(*incoming[next], FlowTaskStatus::kStopped, "the flow was stopped");
  }
}

FlowTaskStatus FlowStepRuntime::Enqueue(FlowTask& task, Clock::time_point now) {
  bool new_earliest = false;
  {
    std::lock_guard lock(mutex);
    if (halted) {
      task.status_ = FlowTaskStatus::kStopped;
      task.error_ = "the flow is stopping";
      return task.status_;
    }
    if (queue.size() >= config.queue_capacity) {
      rejected.fetch_add(1, std::memory_order_relaxed);
      task.status_ = FlowTaskStatus::kRejected;
      task.error_ = fmt::format("step \"{}\" has {} tasks queued, its queue_capacity: try again later",
                                config.name, config.queue_capacity);
      return task.status_;
    }
    if (task.deadline_ <= now) {
      timed_out.fetch_add(1, std::memory_order_relaxed);
      task.status_ = FlowTaskStatus::kTimedOut;
      task.error_ = "the deadline had passed when the task was submitted";
      return task.status_;
    }
    task.status_ = FlowTaskStatus::kPending;
    task.enqueued_at_ = now;
    queue.push_back(&task);
    queued_hint.store(queue.size(), std::memory_order_relaxed);
    if (task.deadline_ < earliest_deadline) {
      earliest_deadline = task.deadline_;
      new_earliest = true;
    }
    WakeWorkerLocked(queue.size() == 1, new_earliest);
  }
  if (new_earliest) core.DeadlineQueued(task.deadline_);
  return FlowTaskStatus::kPending;
}

void FlowStepRuntime::WakeWorkerLocked(bool was_empty, bool new_deadline) {
  // Wake a worker when there may be a batch to decide on: the queue was empty (workers sleep
  // without a timer then), enough is queued for a batch to leave at once, or a deadline may come
  // before the time a waiting worker set itself. Otherwise a worker waiting out a batch's delay
  // decides again when its own timer fires.
  if (idle_workers == 0) return;
  const std::size_t size = queue.size();
  const bool preferred = std::find(policy.preferred_batch_sizes.begin(), policy.preferred_batch_sizes.end(),
                                   size) != policy.preferred_batch_sizes.end();
  if (!(was_empty || size >= policy.max_batch_size || preferred || new_deadline)) return;
  if (idle_workers > 1 && size > policy.max_batch_size) {
    work_ready.notify_all();
  } else {
    work_ready.notify_one();
  }
}

void FlowStepRuntime::SpinForWork(std::unique_lock<std::mutex>& lock) {
  // Waking a sleeping thread on another CPU costs tens of microseconds on a virtual machine; a
  // worker that keeps its CPU for a moment takes the next task at once. Reads only the hint, so
  // that producers never wait for the spinner.
  lock.unlock();
  const Clock::time_point until = Clock::now() + spin;
  for (unsigned round = 0;; ++round) {
    if (queued_hint.load(std::memory_order_relaxed) > 0) break;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (round % 64 == 63 && Clock::now() >= until) break;
  }
  lock.lock();
}

bool FlowStepRuntime::TakeBatch(std::vector<FlowTask*>& batch, std::vector<FlowTask*>& expired) {
  batch.clear();
  std::unique_lock lock(mutex);
  bool spun = false;  // since the queue was last seen empty: spin once, then sleep
  for (;;) {
    if (queue.empty()) {
      if (halted) return false;
      if (spin.count() > 0 && !spun) {
        spun = true;
        SpinForWork(lock);
        continue;  // look again under the lock: a task may have come as the spin ended
      }
      spun = false;
      ++idle_workers;
      work_ready.wait(lock);
      --idle_workers;
      continue;
    }
    const Clock::time_point now = Clock::now();
    ExpireLocked(now, expired);
    if (queue.empty()) continue;
    const flow::BatchDecision decision = halted ? flow::BatchDecision{.dispatch = std::min(queue.size(), policy.max_batch_size)}
                                                : DecideLocked(now);
    if (decision.dispatch > 0) {
      const auto end = queue.begin() + static_cast<std::ptrdiff_t>(decision.dispatch);
      batch.assign(queue.begin(), end);
      queue.erase(queue.begin(), end);
      queued_hint.store(queue.size(), std::memory_order_relaxed);
      if (waiting_producers > 0) room_ready.notify_all();
      // Another idle worker may take what is left.
      if (!queue.empty() && idle_workers > 0) work_ready.notify_one();
      return true;
    }
    ++idle_workers;
    work_ready.wait_until(lock, decision.wake_at.value_or(now + std::chrono::milliseconds(100)));
    --idle_workers;
  }
}

void FlowStepRuntime::RunBatch(BatchHandler::Instance& handler, std::vector<FlowTask*>& batch) {
  const FlowBatch view(batch, config.name);
  const Clock::time_point started = Clock::now();
  // Why the batch failed, if it did. The coroutine's exception is described on the I/O thread
  // that ends it: the exception object is freed there, and a reference to it handed to this
  // thread would be a race in TSan's eyes (the exception_ptr's count lives in uninstrumented
  // libstdc++).
  std::optional<std::string> error;
  if (auto* blocking = std::get_if<BatchHandler::Blocking>(&handler)) {
    try {
      (*blocking)(view);
    } catch (...) {
      error = log::DescribeException(std::current_exception());
    }
  } else if (auto* coroutine = std::get_if<BatchHandler::Coroutine>(&handler)) {
    // The coroutine runs on the flow's I/O threads; this worker waits so that its instance never
    // runs two batches at once.
    std::promise<std::optional<std::string>> done;
    auto finished = done.get_future();
    try {
      boost::asio::co_spawn(core.io(), (*coroutine)(view), [&done](std::exception_ptr e) {
        done.set_value(e ? std::optional<std::string>(log::DescribeException(e)) : std::nullopt);
      });
      error = finished.get();
    } catch (...) {
      error = log::DescribeException(std::current_exception());  // threw before its first co_await
    }
  }
  const Clock::time_point ended = Clock::now();
  handler_time.Observe(ended - started);
  batches.fetch_add(1, std::memory_order_relaxed);
  tasks.fetch_add(batch.size(), std::memory_order_relaxed);
  batch_size_counts[std::min(batch.size(), batch_size_counts.size() - 1)].fetch_add(
      1, std::memory_order_relaxed);
  std::uint64_t failures = 0;
  std::string message;
  if (error) {
    message = fmt::format("step \"{}\" failed: {}", config.name, *error);
    log::Warn("", "flow {}: {} (batch of {} tasks)", core.options().name, message, batch.size());
  }
  for (FlowTask* task : batch) {
    queue_time.Observe(started - task->enqueued_at_);
    if (error && !task->failed()) task->fail(message);
    if (task->failed()) ++failures;
  }
  failed.fetch_add(failures, std::memory_order_relaxed);
}

void FlowStepRuntime::RunWorker(std::size_t worker) {
  BatchHandler::Instance handler;
  {
    std::exception_ptr error;
    try {
      handler = config.handler.make_instance();
      if (std::holds_alternative<std::monostate>(handler)) {
        throw std::invalid_argument("its handler factory returned no handler");
      }
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard lock(core.start_mutex_);
    if (error && !core.start_error_) {
      core.start_error_ = std::make_exception_ptr(std::runtime_error(fmt::format(
          "flow step \"{}\" worker {} could not start: {}", config.name, worker,
          log::DescribeException(error))));
    }
    ++core.workers_ready_;
    core.started_.notify_all();
    if (error) return;
  }
  std::vector<FlowTask*> batch;
  std::vector<FlowTask*> expired;
  batch.reserve(policy.max_batch_size);
  for (;;) {
    expired.clear();
    const bool more = TakeBatch(batch, expired);
    if (!expired.empty()) {
      timed_out.fetch_add(expired.size(), std::memory_order_relaxed);
      for (FlowTask* task : expired) {
        core.Complete(*task, FlowTaskStatus::kTimedOut,
                      fmt::format("deadline passed while queued for step \"{}\"", config.name));
      }
    }
    if (!more) return;
    RunBatch(handler, batch);
    core.Forward(batch, index + 1);
  }
}

void FlowStepRuntime::Halt() {
  std::deque<FlowTask*> dropped;
  {
    std::lock_guard lock(mutex);
    halted = true;
    dropped.swap(queue);
    queued_hint.store(0, std::memory_order_relaxed);
    work_ready.notify_all();
    room_ready.notify_all();
  }
  for (FlowTask* task : dropped) core.Complete(*task, FlowTaskStatus::kStopped, "the flow was stopped");
}

FlowStepMetrics FlowStepRuntime::Metrics() const {
  FlowStepMetrics metrics;
  metrics.name = config.name;
  {
    std::lock_guard lock(mutex);
    metrics.queue_depth = queue.size();
  }
  metrics.queue_capacity = config.queue_capacity;
  metrics.batches = batches.load(std::memory_order_relaxed);
  metrics.tasks = tasks.load(std::memory_order_relaxed);
  metrics.failed = failed.load(std::memory_order_relaxed);
  metrics.timed_out = timed_out.load(std::memory_order_relaxed);
  metrics.rejected = rejected.load(std::memory_order_relaxed);
  metrics.batch_size_counts.reserve(batch_size_counts.size());
  for (const auto& count : batch_size_counts) metrics.batch_size_counts.push_back(count.load(std::memory_order_relaxed));
  metrics.time_buckets.assign(FlowHistogram::kUpperBounds.begin(), FlowHistogram::kUpperBounds.end());
  handler_time.Read(metrics.handler_seconds_counts, metrics.handler_seconds_sum);
  queue_time.Read(metrics.queue_seconds_counts, metrics.queue_seconds_sum);
  return metrics;
}

// ---- FlowCore --------------------------------------------------------------------------------

FlowCore::FlowCore(FlowOptions options) : options_(std::move(options)) {
  CheckName(options_.name, "flow");
}

FlowCore::~FlowCore() { Stop(std::chrono::seconds(5)); }

void FlowCore::AddStep(FlowStep step) {
  if (state_.load() != State::kNew) throw std::logic_error("Flow::add_step: the flow has already started");
  CheckStep(step);
  for (const auto& existing : steps_) {
    if (existing->config.name == step.name) {
      throw std::invalid_argument(fmt::format("flow step \"{}\": the flow already has a step of that name", step.name));
    }
  }
  steps_.push_back(std::make_unique<FlowStepRuntime>(*this, std::move(step), steps_.size()));
}

void FlowCore::Start() {
  if (steps_.empty()) throw std::logic_error("Flow::start: the flow has no steps");
  State expected = State::kNew;
  if (!state_.compare_exchange_strong(expected, State::kRunning)) {
    throw std::logic_error("Flow::start: the flow was started before");
  }
  state_.store(State::kNew);  // running only once every worker has its handler

  const std::size_t io_threads = std::max<std::size_t>(1, options_.io_threads);
  io_work_.emplace(io_.get_executor());
  for (std::size_t i = 0; i < io_threads; ++i) io_threads_.emplace_back([this] { io_.run(); });

  std::size_t workers = 0;
  for (auto& step : steps_) {
    for (std::size_t w = 0; w < step->config.workers; ++w) {
      threads_.emplace_back([runtime = step.get(), w] { runtime->RunWorker(w); });
      ++workers;
    }
  }
  std::exception_ptr error;
  {
    std::unique_lock lock(start_mutex_);
    started_.wait(lock, [&] { return workers_ready_ == workers; });
    error = start_error_;
  }
  if (error) {
    for (auto& step : steps_) step->Halt();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    io_work_.reset();
    for (auto& thread : io_threads_) thread.join();
    io_threads_.clear();
    state_.store(State::kStopped);
    std::rethrow_exception(error);
  }
  threads_.emplace_back([this] { WatchDeadlines(); });
  state_.store(State::kRunning, std::memory_order_release);
  flow::RegisterFlow(*this);
  log::Info("", "flow {} started: {} steps, {} workers", options_.name, steps_.size(), workers);
}

FlowTaskStatus FlowCore::Submit(FlowTask& task, Clock::time_point deadline, FlowCompletion completion,
                                void* context) {
  task.error_.clear();
  if (!running()) {
    task.status_ = FlowTaskStatus::kStopped;
    task.error_ = "the flow is not running";
    return task.status_;
  }
  task.deadline_ = deadline;
  task.completion_ = completion;
  task.completion_context_ = context;
  const Clock::time_point now = Clock::now();
  task.submitted_at_ = now;
  // Counted before it is queued: a worker may complete it before Enqueue returns.
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  const FlowTaskStatus status = steps_.front()->Enqueue(task, now);
  if (status != FlowTaskStatus::kPending) Finished();
  switch (status) {
    case FlowTaskStatus::kPending: submitted_.fetch_add(1, std::memory_order_relaxed); break;
    case FlowTaskStatus::kRejected: rejected_.fetch_add(1, std::memory_order_relaxed); break;
    case FlowTaskStatus::kTimedOut: timed_out_.fetch_add(1, std::memory_order_relaxed); break;
    default: stopped_.fetch_add(1, std::memory_order_relaxed); break;
  }
  if (status != FlowTaskStatus::kPending) {
    task.completion_ = nullptr;
    task.completion_context_ = nullptr;
  }
  return status;
}

void FlowCore::Complete(FlowTask& task, FlowTaskStatus status, std::string error) {
  if (task.status_ != FlowTaskStatus::kFailed) {
    task.status_ = status;
    task.error_ = std::move(error);
  }
  switch (task.status_) {
    case FlowTaskStatus::kCompleted:
      completed_.fetch_add(1, std::memory_order_relaxed);
      latency_.Observe(Clock::now() - task.submitted_at_);
      break;
    case FlowTaskStatus::kFailed: failed_.fetch_add(1, std::memory_order_relaxed); break;
    case FlowTaskStatus::kTimedOut: timed_out_.fetch_add(1, std::memory_order_relaxed); break;
    case FlowTaskStatus::kRejected: rejected_.fetch_add(1, std::memory_order_relaxed); break;
    default: stopped_.fetch_add(1, std::memory_order_relaxed); break;
  }
  const FlowCompletion completion = std::exchange(task.completion_, nullptr);
  void* context = std::exchange(task.completion_context_, nullptr);
  // After this call the task may be gone.
  if (completion) completion(task, context);
  Finished();
}

void FlowCore::Finished() {
  if (in_flight_.fetch_sub(1, std::memory_order_acq_rel) == 1 && stopping_.load(std::memory_order_acquire)) {
    std::lock_guard lock(stop_mutex_);
    all_done_.notify_all();
  }
}

void FlowCore::Forward(std::vector<FlowTask*>& batch, std::size_t next) {
  // The callers of the tasks that end here hear of it together: one post per caller's executor.
  FlowCompletionBatch completions;
  // Failed tasks leave the flow now; the others go on to the next step or complete.
  auto survivors_end = std::stable_partition(batch.begin(), batch.end(), [](FlowTask* task) { return !task->failed(); });
  for (auto it = survivors_end; it != batch.end(); ++it) Complete(**it, FlowTaskStatus::kFailed);
  batch.erase(survivors_end, batch.end());
  if (next < steps_.size()) {
    steps_[next]->Accept(batch);
  } else {
    for (FlowTask* task : batch) Complete(*task, FlowTaskStatus::kCompleted);
  }
  batch.clear();
}

void FlowCore::DeadlineQueued(Clock::time_point deadline) {
  if (deadline.time_since_epoch().count() >= watch_next_.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(watch_mutex_);
  watch_next_.store(deadline.time_since_epoch().count(), std::memory_order_relaxed);
  watch_wakeup_.notify_one();
}

void FlowCore::WatchDeadlines() {
  std::unique_lock lock(watch_mutex_);
  while (!watch_quit_) {
    const Clock::time_point next{Clock::duration(watch_next_.load(std::memory_order_relaxed))};
    if (next == Clock::time_point::max()) {
      watch_wakeup_.wait(lock);
      continue;
    }
    if (Clock::now() < next) {
      watch_wakeup_.wait_until(lock, next);
      continue;
    }
    watch_next_.store(Clock::time_point::max().time_since_epoch().count(), std::memory_order_relaxed);
    lock.unlock();
    Clock::time_point earliest = Clock::time_point::max();
    const Clock::time_point now = Clock::now();
    for (auto& step : steps_) earliest = std::min(earliest, step->ExpireQueued(now));
    lock.lock();
    if (earliest.time_since_epoch().count() < watch_next_.load(std::memory_order_relaxed)) {
      watch_next_.store(earliest.time_since_epoch().count(), std::memory_order_relaxed);
    }
  }
}

void FlowCore::Stop(Clock::duration drain) {
  std::call_once(stop_once_, [&] {
    if (state_.load() != State::kRunning) {
      state_.store(State::kStopped);
      return;
    }
    state_.store(State::kStopping, std::memory_order_release);
    stopping_.store(true, std::memory_order_release);
    flow::UnregisterFlow(*this);
    // New tasks are refused from here on (Submit checks running()).
    {
      std::unique_lock lock(stop_mutex_);
      all_done_.wait_for(lock, drain, [&] { return in_flight_.load(std::memory_order_acquire) == 0; });
    }
    if (in_flight_.load() != 0) {
      log::Warn("", "flow {}: {} tasks still in the flow after the drain; stopping them", options_.name,
                         in_flight_.load());
    }
    // Halting step by step from the first: a batch finishing upstream meets a halted step and
    // completes its tasks as kStopped.
    for (auto& step : steps_) step->Halt();
    {
      std::lock_guard lock(watch_mutex_);
      watch_quit_ = true;
      watch_wakeup_.notify_all();
    }
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    io_work_.reset();
    for (auto& thread : io_threads_) thread.join();
    io_threads_.clear();
    state_.store(State::kStopped, std::memory_order_release);
    log::Info("", "flow {} stopped", options_.name);
  });
}

FlowMetrics FlowCore::Metrics() const {
  FlowMetrics metrics;
  metrics.name = options_.name;
  for (const auto& step : steps_) metrics.steps.push_back(step->Metrics());
  metrics.submitted = submitted_.load(std::memory_order_relaxed);
  metrics.completed = completed_.load(std::memory_order_relaxed);
  metrics.failed = failed_.load(std::memory_order_relaxed);
  metrics.timed_out = timed_out_.load(std::memory_order_relaxed);
  metrics.rejected = rejected_.load(std::memory_order_relaxed);
  metrics.stopped = stopped_.load(std::memory_order_relaxed);
  latency_.Read(metrics.latency_seconds_counts, metrics.latency_seconds_sum);
  return metrics;
}

}  // namespace sluice::detail
