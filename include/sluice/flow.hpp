// sluice/flow.hpp — multi-step pipelines whose steps process dynamic batches (aqueduct's Flow,
// Triton's dynamic batcher), in one process, on threads, without copying tasks between steps.
//
//   sluice::Flow flow;
//   flow.add_step({.name = "preprocess", .handler = preprocess, .workers = 2});
//   flow.add_step({.name = "model",
//                  .handler = [] { return [model = load_model()](sluice::FlowBatch batch) {
//                                    model->run(batch); }; },
//                  .max_batch_size = 32,
//                  .max_batch_delay = std::chrono::milliseconds(2)});
//   flow.start();
//   sluice::FlowTask task(boost::json::parse(R"({"text": "hi"})"));
//   if (co_await flow.process(task, std::chrono::seconds(5)) == sluice::FlowTaskStatus::kCompleted)
//     use(task.data);
//
// A task goes through the steps in order. Each step keeps a bounded queue; its workers take batches
// from it as the batch decision says (docs/flows.md: a full batch or a preferred size leaves at
// once, otherwise the batch leaves when its oldest task has waited `max_batch_delay`, or sooner for
// a task whose deadline comes first), run the step's handler on the batch, and pass the batch's
// tasks on to the next step's queue.
//
// Ownership: the caller owns each FlowTask. The flow borrows it from `process` until `process`
// completes and never copies it; handlers read and rewrite `data` and `bytes` in place. Never touch
// a task while its `process` is pending.
//
// Thread-safety: `process` and `async_process` may be called from any thread, by many callers at
// once. `add_step` and `start` are for one thread before the first `process`; `stop` may be called
// from any thread, once. Blocking handlers run on the step's own threads, one per worker;
// coroutine handlers run on the flow's I/O threads. A handler instance is only ever called by its
// own worker, never for two batches at once, so state it owns needs no locking.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value.hpp>

#include <sluice/handler.hpp>
#include <sluice/task.hpp>

namespace sluice {

/// How a task's trip through a flow ended.
enum class FlowTaskStatus : std::uint8_t {
  kPending = 0,     // not submitted yet, or still in the flow
  kCompleted = 1,   // every step ran on it; `data` and `bytes` hold the result
  kFailed = 2,      // a handler failed it (`FlowTask::fail`) or threw; `error()` says why
  kTimedOut = 3,    // its deadline passed while it waited in a step's queue
  kRejected = 4,    // the first step's queue was full: back off and retry
  kStopped = 5,     // the flow was stopped (or not started) before the task was done
  kUnavailable = 6, // a flow client could not reach the flow server (sluice/flow_client.hpp)
};

/// "COMPLETED", "FAILED", "TIMED_OUT", "REJECTED", "STOPPED", "UNAVAILABLE" or "PENDING".
std::string_view to_string(FlowTaskStatus status) noexcept;

class Flow;
class FlowTask;

namespace detail {
class FlowCore;
struct FlowStepRuntime;
/// Called once when the flow is done with a task, on whichever thread finished it, with no lock
/// held.
using FlowCompletion = void (*)(FlowTask& task, void* context);
}  // namespace detail

/// One unit of work. Movable while not inside a flow.
class FlowTask {
 public:
  FlowTask() = default;
  explicit FlowTask(boost::json::value data, std::string bytes = {})
      : data(std::move(data)), bytes(std::move(bytes)) {}

  /// The payload; each step reads it and may replace it with its output.
  boost::json::value data;
  /// Raw bytes beside the payload (a tensor, an image), carried as they are, never as base64.
  std::string bytes;

  /// For handlers: fails this task alone with `message`; later steps skip it.
  void fail(std::string message) {
    status_ = FlowTaskStatus::kFailed;
    error_ = std::move(message);
  }
  bool failed() const noexcept { return status_ == FlowTaskStatus::kFailed; }

  /// How the task's last trip ended (kPending while it is in a flow).
  FlowTaskStatus status() const noexcept { return status_; }
  /// Why it did not complete; empty when it did.
  const std::string& error() const noexcept { return error_; }

  /// For the flow client and tests: sets the outcome a remote flow reported.
  void set_outcome(FlowTaskStatus status, std::string error) {
    status_ = status;
    error_ = std::move(error);
  }

 private:
  friend class Flow;
  friend class detail::FlowCore;
  friend struct detail::FlowStepRuntime;

  FlowTaskStatus status_ = FlowTaskStatus::kPending;
  std::string error_;
  // The flow's bookkeeping while the task is inside it.
  std::chrono::steady_clock::time_point submitted_at_{};
  std::chrono::steady_clock::time_point enqueued_at_{};
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  detail::FlowCompletion completion_ = nullptr;
  void* completion_context_ = nullptr;
};

/// The tasks of one batch, as a handler sees them: `for (sluice::FlowTask& task : batch)`.
class FlowBatch {
 public:
  class iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = FlowTask;
    using difference_type = std::ptrdiff_t;
    using pointer = FlowTask*;
    using reference = FlowTask&;
    iterator() = default;
    explicit iterator(FlowTask* const* position) : position_(position) {}
    FlowTask& operator*() const { return **position_; }
    FlowTask* operator->() const { return *position_; }
    iterator& operator++() { ++position_; return *this; }
    iterator operator++(int) { auto copy = *this; ++position_; return copy; }
    iterator& operator--() { --position_; return *this; }
    iterator operator--(int) { auto copy = *this; --position_; return copy; }
    iterator& operator+=(difference_type n) { position_ += n; return *this; }
    iterator& operator-=(difference_type n) { position_ -= n; return *this; }
    friend iterator operator+(iterator it, difference_type n) { return it += n; }
    friend iterator operator+(difference_type n, iterator it) { return it += n; }
    friend iterator operator-(iterator it, difference_type n) { return it -= n; }
    friend difference_type operator-(iterator a, iterator b) { return a.position_ - b.position_; }
    FlowTask& operator[](difference_type n) const { return *position_[n]; }
    friend auto operator<=>(const iterator&, const iterator&) = default;

   private:
    FlowTask* const* position_ = nullptr;
  };

  FlowBatch() = default;
  FlowBatch(std::span<FlowTask* const> tasks, std::string_view step) : tasks_(tasks), step_(step) {}

  std::size_t size() const noexcept { return tasks_.size(); }
  bool empty() const noexcept { return tasks_.empty(); }
  FlowTask& operator[](std::size_t i) const { return *tasks_[i]; }
  iterator begin() const { return iterator(tasks_.data()); }
  iterator end() const { return iterator(tasks_.data() + tasks_.size()); }
  /// The name of the step running this batch.
  std::string_view step() const noexcept { return step_; }

 private:
  std::span<FlowTask* const> tasks_;
  std::string_view step_;
};

/// A step's handler, in one of the shapes below; built implicitly from any of them.
///
///   void             f(FlowBatch)   blocking: runs on one of the step's worker threads
///   Task<void>       f(FlowBatch)   coroutine: runs on the flow's I/O threads
///   F                f()            a factory, called once per worker when the flow starts (from
///                                   that worker's own thread for blocking handlers); it returns
///                                   the worker's own handler (either shape above), so state such
///                                   as a loaded model is made once per worker and owned by it
///
/// The handler writes each task's result into the task (`data`, `bytes`) or fails it
/// (`task.fail(message)`). A handler that throws fails every task of its batch that it had not
/// failed itself, each with the exception's message; the flow goes on.
class BatchHandler {
 public:
  using Blocking = std::function<void(FlowBatch)>;
  using Coroutine = std::function<Task<void>(FlowBatch)>;
  using Instance = std::variant<std::monostate, Blocking, Coroutine>;
  using Factory = std::function<Instance()>;

  BatchHandler() = default;

  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, BatchHandler>)
  BatchHandler(F&& function) : factory_(MakeFactory(std::forward<F>(function))) {}  // NOLINT: implicit by design

  explicit operator bool() const noexcept { return static_cast<bool>(factory_); }

  /// For the flow: one handler instance for one worker.
  Instance make_instance() const { return factory_(); }

 private:
  template <class F>
  static Instance Shape(F&& function) {
    using Fn = std::decay_t<F>;
    if constexpr (std::is_same_v<Fn, Instance>) {
      return std::forward<F>(function);
    } else {
      return ShapeCallable(std::forward<F>(function));
    }
  }

  template <class F>
  static Instance ShapeCallable(F&& function) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&, FlowBatch>,
                  "a batch handler is callable as void(sluice::FlowBatch) or "
                  "sluice::Task<void>(sluice::FlowBatch), or a factory returning one");
    using R = std::invoke_result_t<Fn&, FlowBatch>;
    if constexpr (std::is_same_v<R, Task<void>>) {
      return Coroutine(std::forward<F>(function));
    } else {
      static_assert(std::is_void_v<R>, "a blocking batch handler returns void");
      return Blocking(std::forward<F>(function));
    }
  }

  template <class F>
  static Factory MakeFactory(F&& function) {
    using Fn = std::decay_t<F>;
    if constexpr (std::is_pointer_v<std::remove_reference_t<F>>) {
      if (!function) return nullptr;
    }
    if constexpr (std::is_invocable_v<Fn&, FlowBatch>) {
      return [shared = std::make_shared<const Instance>(Shape(std::forward<F>(function)))] {
        return *shared;
      };
    } else {
      static_assert(std::is_invocable_v<Fn&>,
                    "a batch handler is callable as void(sluice::FlowBatch) or "
                    "sluice::Task<void>(sluice::FlowBatch), or a factory returning one");
      return [factory = Fn(std::forward<F>(function))]() mutable { return Shape(factory()); };
    }
  }

  Factory factory_;
};

/// One step of a flow. Designated initialisers read best: `{.name = "model", .handler = h, ...}`.
struct FlowStep {
  /// Names the step in logs, errors and metrics: letters, digits and '_' (the flow checks).
  std::string name;
  BatchHandler handler;
  /// Handler instances; each takes its own batches. For blocking handlers, one thread each.
  std::size_t workers = 1;
  /// The most tasks one batch holds (at least 1).
  std::size_t max_batch_size = 1;
  /// How long the oldest queued task may wait for company before a smaller batch leaves.
  /// Zero: a batch is whatever is queued when a worker is free.
  std::chrono::microseconds max_batch_delay{0};
  /// Batch sizes that leave at once (each from 1 to max_batch_size), e.g. a kernel's sweet spots.
  std::vector<std::size_t> preferred_batch_sizes;
  /// The most tasks waiting in this step's queue. The first step rejects tasks beyond it
  /// (kRejected, at once); later steps make the previous step's workers wait (backpressure).
  std::size_t queue_capacity = 1024;
};

struct FlowOptions {
  /// Names the flow in logs and metrics (letters, digits and '_').
  std::string name = "flow";
  /// Threads running the coroutine handlers.
  std::size_t io_threads = 1;
  /// How long an idle worker keeps its CPU, polling its queue, before it sleeps. Waking a sleeping
  /// thread costs tens of microseconds on a virtual machine (docs/performance.md): a spin of about
  /// 50 µs takes a task that arrives soon at once, for that much CPU per idle moment. 0: sleep at once.
  std::chrono::microseconds worker_spin{0};
};

/// A step's counters and gauges, as `Flow::metrics` reports them.
struct FlowStepMetrics {
  std::string name;
  std::size_t queue_depth = 0;        // tasks waiting now
  std::size_t queue_capacity = 0;
  std::uint64_t batches = 0;          // batches run
  std::uint64_t tasks = 0;            // tasks handled (in those batches)
  std::uint64_t failed = 0;           // tasks failed by the handler
  std::uint64_t timed_out = 0;        // tasks that timed out in this step's queue
  std::uint64_t rejected = 0;         // tasks refused because the queue was full
  /// batch_size_counts[n] = how many batches had n tasks (index 0 unused).
  std::vector<std::uint64_t> batch_size_counts;
  /// Handler time per batch and queue wait per task, in seconds: bucket upper bounds and the
  /// cumulative counts below each, Prometheus style, plus sums.
  std::vector<double> time_buckets;
  std::vector<std::uint64_t> handler_seconds_counts;
  double handler_seconds_sum = 0;
  std::vector<std::uint64_t> queue_seconds_counts;
  double queue_seconds_sum = 0;
};

struct FlowMetrics {
  std::string name;
  std::vector<FlowStepMetrics> steps;
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0, failed = 0, timed_out = 0, rejected = 0, stopped = 0;
  /// End-to-end latency of completed tasks (submit to completion), seconds, same buckets.
  std::vector<std::uint64_t> latency_seconds_counts;
  double latency_seconds_sum = 0;
};

class Flow {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Flow(FlowOptions options = {});
  /// Stops the flow (see `stop`) if it is running.
  ~Flow();
  Flow(const Flow&) = delete;
  Flow& operator=(const Flow&) = delete;

  /// Appends a step. Before `start` only. Throws std::invalid_argument naming the problem when the
  /// step is not valid (no handler, a bad name, a zero size, a preferred size above the maximum).
  Flow& add_step(FlowStep step);

  /// Makes every worker's handler (running the factories) and starts the workers. If a factory
  /// throws, the workers already started are stopped and its exception is rethrown, so a flow
  /// never half-starts and never hangs. Throws std::logic_error without steps or when called twice.
  void start();

  /// Sends `task` through the flow and completes, with the task's final status, once the flow is
  /// done with it. `deadline` bounds the time the task may wait in queues: one still queued when
  /// it passes completes as kTimedOut. A task already inside a handler is not interrupted; its
  /// batch finishes first. A full first queue completes at once with kRejected; a flow that is not
  /// running, with kStopped.
  ///
  /// Any Asio completion token: `use_awaitable` (what `process` uses), a callback, `use_future`.
  /// The completion runs through the token's associated executor; a callback without one runs on
  /// the thread that finished the task (keep it short).
  template <class CompletionToken>
  auto async_process(FlowTask& task, Clock::time_point deadline, CompletionToken&& token);

  /// `co_await flow.process(task, deadline)`.
  Task<FlowTaskStatus> process(FlowTask& task, Clock::time_point deadline = Clock::time_point::max());
  Task<FlowTaskStatus> process(FlowTask& task, Clock::duration timeout);

  /// The low-level entry the templates and the flow server use: hands `task` to the flow, which
  /// calls `completion(task, context)` exactly once when done, from the thread that finished it
  /// and never from inside this call. Returns kPending when the flow took the task; otherwise the
  /// task was not taken (kRejected, kStopped, or kTimedOut for a deadline already past; status and
  /// error are set on the task) and `completion` is never called.
  FlowTaskStatus submit(FlowTask& task, Clock::time_point deadline, detail::FlowCompletion completion,
                        void* context);

  /// Refuses new tasks (kStopped), lets the queued and running ones finish for up to `drain`,
  /// then completes whatever is still queued as kStopped, waits for running batches to end and
  /// joins the workers. Every task submitted before has completed when this returns.
  void stop(Clock::duration drain = std::chrono::seconds(5));

  bool running() const noexcept;
  const FlowOptions& options() const noexcept;
  FlowMetrics metrics() const;

  /// The deadline `timeout` from now, without overflow for huge timeouts.
  static Clock::time_point DeadlineAfter(Clock::duration timeout);

 private:
  std::shared_ptr<detail::FlowCore> core_;
};

namespace detail {

/// The completions of one finished batch that go to the same executor, handed over in one post
/// instead of one each. The flow opens one around the completions of a batch (on the thread that
/// ran it); `FlowOperation` joins it when its handler's executor is an any_io_executor (every
/// coroutine's is). Not thread-safe: it lives on one thread's stack.
class FlowCompletionBatch {
 public:
  using Invoke = void (*)(void* operation, FlowTaskStatus status);

  FlowCompletionBatch();
  /// Hands over what was added, then stops collecting.
  ~FlowCompletionBatch();
  FlowCompletionBatch(const FlowCompletionBatch&) = delete;
  FlowCompletionBatch& operator=(const FlowCompletionBatch&) = delete;

  /// The batch open on this thread, if any.
  static FlowCompletionBatch* active() noexcept;

  /// `invoke(operation, status)` will run on `executor`, after the completions added before it.
  void add(const boost::asio::any_io_executor& executor, Invoke invoke, void* operation, FlowTaskStatus status);

 private:
  struct Entry {
    Invoke invoke;
    void* operation;
    FlowTaskStatus status;
  };
  void Flush();

  FlowCompletionBatch* previous_;
  boost::asio::any_io_executor executor_;
  std::vector<Entry> entries_;
};

/// Holds the completion handler of one `async_process` until the flow completes the task. Like
/// every Asio operation, it keeps work outstanding on the handler's executor until the handler
/// has run, so that an io_context waiting for the result does not run out of work, and is not
/// destroyed while the completion is still being handed to it from a flow thread. It is created
/// and destroyed on the caller's executor.
template <class Handler>
class FlowOperation {
 public:
  explicit FlowOperation(Handler handler)
      : handler_(std::move(handler)),
        work_(boost::asio::prefer(boost::asio::get_associated_executor(handler_),
                                  boost::asio::execution::outstanding_work.tracked)) {}

  auto executor() const { return work_; }

  static void Complete(FlowTask& task, void* context) {
    auto* self = static_cast<FlowOperation*>(context);
    const FlowTaskStatus status = task.status();
    if constexpr (std::is_same_v<WorkExecutor, boost::asio::any_io_executor>) {
      if (FlowCompletionBatch* batch = FlowCompletionBatch::active()) {
        batch->add(self->work_, &Invoke, self, status);
        return;
      }
    }
    // A copy: it keeps the executor's context alive until this call has handed the handler over.
    const WorkExecutor executor = self->work_;
    boost::asio::dispatch(executor, [self, status] { Invoke(self, status); });
  }

 private:
  using WorkExecutor =
      std::decay_t<decltype(boost::asio::prefer(std::declval<boost::asio::associated_executor_t<Handler>>(),
                                                boost::asio::execution::outstanding_work.tracked))>;

  // On the handler's executor.
  static void Invoke(void* operation, FlowTaskStatus status) {
    auto* self = static_cast<FlowOperation*>(operation);
    Handler handler = std::move(self->handler_);
    delete self;
    std::move(handler)(status);
  }

  Handler handler_;
  WorkExecutor work_;
};

}  // namespace detail

template <class CompletionToken>
auto Flow::async_process(FlowTask& task, Clock::time_point deadline, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(FlowTaskStatus)>(
      [this, &task, deadline](auto handler) {
        using Operation = detail::FlowOperation<decltype(handler)>;
        auto* operation = new Operation(std::move(handler));
        const FlowTaskStatus refused = submit(task, deadline, &Operation::Complete, operation);
        if (refused != FlowTaskStatus::kPending) {
          // Never complete inside the initiating call: post, as Asio's contract requires.
          auto executor = operation->executor();
          boost::asio::post(executor, [operation, &task] { Operation::Complete(task, operation); });
        }
      },
      token);
}

inline Task<FlowTaskStatus> Flow::process(FlowTask& task, Clock::time_point deadline) {
  return async_process(task, deadline, boost::asio::use_awaitable);
}

inline Task<FlowTaskStatus> Flow::process(FlowTask& task, Clock::duration timeout) {
  return async_process(task, DeadlineAfter(timeout), boost::asio::use_awaitable);
}

/// A worker handler that sends each job's input through `flow` and returns the task's data: use
/// a flow as `serverless::Config::handler`. A task that does not complete fails the job with the
/// task's status and error. `timeout` bounds each job's wait in the flow's queues.
Handler flow_handler(Flow& flow, std::chrono::steady_clock::duration timeout = std::chrono::seconds(60));

}  // namespace sluice
