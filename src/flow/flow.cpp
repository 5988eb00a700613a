// The public face of flows (include/sluice/flow.hpp); the engine is flow/flow_core.cpp.
#include <sluice/flow.hpp>

#include <stdexcept>

#include <fmt/format.h>

#include "flow/flow_core.hpp"

namespace sluice {

std::string_view to_string(FlowTaskStatus status) noexcept {
  switch (status) {
    case FlowTaskStatus::kPending: return "PENDING";
    case FlowTaskStatus::kCompleted: return "COMPLETED";
    case FlowTaskStatus::kFailed: return "FAILED";
    case FlowTaskStatus::kTimedOut: return "TIMED_OUT";
    case FlowTaskStatus::kRejected: return "REJECTED";
    case FlowTaskStatus::kStopped: return "STOPPED";
    case FlowTaskStatus::kUnavailable: return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

namespace detail {
namespace {
thread_local FlowCompletionBatch* active_completion_batch = nullptr;
}  // namespace

FlowCompletionBatch::FlowCompletionBatch() : previous_(active_completion_batch) {
  active_completion_batch = this;
}

FlowCompletionBatch::~FlowCompletionBatch() {
  active_completion_batch = previous_;
  Flush();
}

FlowCompletionBatch* FlowCompletionBatch::active() noexcept { return active_completion_batch; }

void FlowCompletionBatch::add(const boost::asio::any_io_executor& executor, Invoke invoke, void* operation,
                              FlowTaskStatus status) {
  if (!entries_.empty() && executor != executor_) Flush();
  if (entries_.empty()) executor_ = executor;
  entries_.push_back(Entry{invoke, operation, status});
}

void FlowCompletionBatch::Flush() {
  if (entries_.empty()) return;
  if (entries_.size() == 1) {
    boost::asio::post(executor_, [entry = entries_.front()] { entry.invoke(entry.operation, entry.status); });
  } else {
    boost::asio::post(executor_, [entries = std::move(entries_)] {
      for (const Entry& entry : entries) entry.invoke(entry.operation, entry.status);
    });
  }
  entries_.clear();
  executor_ = nullptr;  // the copy no longer keeps the context's work outstanding
}

}  // namespace detail

Flow::Flow(FlowOptions options) : core_(std::make_shared<detail::FlowCore>(std::move(options))) {}

Flow::~Flow() { stop(); }

Flow& Flow::add_step(FlowStep step) {
  core_->AddStep(std::move(step));
  return *this;
}

void Flow::start() { core_->Start(); }

FlowTaskStatus Flow::submit(FlowTask& task, Clock::time_point deadline, detail::FlowCompletion completion,
                            void* context) {
  return core_->Submit(task, deadline, completion, context);
}

void Flow::stop(Clock::duration drain) { core_->Stop(drain); }

bool Flow::running() const noexcept { return core_->running(); }

const FlowOptions& Flow::options() const noexcept { return core_->options(); }

FlowMetrics Flow::metrics() const { return core_->Metrics(); }

Flow::Clock::time_point Flow::DeadlineAfter(Clock::duration timeout) {
  const Clock::time_point now = Clock::now();
  if (timeout <= Clock::duration::zero()) return now;
  if (timeout >= Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

Handler flow_handler(Flow& flow, std::chrono::steady_clock::duration timeout) {
  return [&flow, timeout](Job& job) -> Task<boost::json::value> {
    FlowTask task(job.input());
    const Flow::Clock::time_point deadline = Flow::DeadlineAfter(timeout);
    const FlowTaskStatus status = co_await flow.process(task, deadline);
    if (status != FlowTaskStatus::kCompleted) {
      throw std::runtime_error(fmt::format("flow {}: task {}: {}", flow.options().name, to_string(status),
                                           task.error()));
    }
    co_return std::move(task.data);
  };
}

}  // namespace sluice
