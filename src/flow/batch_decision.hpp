// flow/batch_decision.hpp — when a flow step's queued tasks leave as a batch: Triton's dynamic
// batching rules (spec/batching.md, decisions.md §4) as one pure function, so the rule can be read
// and tested without threads or clocks. The step's batcher calls it whenever its queue changes or
// the time it asked to be woken at comes, and does what it says.
//
// The rules, in order, over the tasks at the front of the queue (at most `max_batch_size` of them
// can go in one batch; each task counts one):
//   1. A full batch (`max_batch_size` tasks) leaves at once.
//   2. Otherwise, if the queue holds at least a preferred batch size, the largest preferred size it
//      holds leaves at once (Triton's "preferred batch size reached").
//   3. Otherwise everything queued leaves once the oldest task has waited `max_batch_delay` (at
//      once when that delay is zero), or once the earliest deadline among the tasks that would be
//      in the batch has come: a task with little time left does not wait for company.
//   4. Otherwise: wait until the first of those two moments (or a new task, which the caller sees
//      anyway).
// Deciding what to do with a task whose deadline has passed (it ends TIMED_OUT instead of running)
// is the caller's; this function only makes such a task's batch leave at once.
//
// Pure; thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

namespace sluice::flow {

using Clock = std::chrono::steady_clock;

/// What the batch decision needs to know of a queued task.
struct QueuedTask {
  Clock::time_point enqueued_at;
  std::optional<Clock::time_point> deadline;  // the task's own, if it has one
};

struct BatchPolicy {
  std::size_t max_batch_size = 1;              // at least 1
  Clock::duration max_batch_delay{};           // how long the oldest task may wait for company
  /// Sizes worth sending at once (each from 1 to max_batch_size, any order); empty means none but
  /// the full batch.
  std::vector<std::size_t> preferred_batch_sizes;
};

struct BatchDecision {
  /// How many tasks from the front of the queue leave now as one batch; 0 to wait.
  std::size_t dispatch = 0;
  /// When nothing leaves: when to decide again if no task arrives before. Empty when the queue is
  /// empty (wait for a task) or when a batch leaves now (decide again right after).
  std::optional<Clock::time_point> wake_at;
};

/// The decision for `queue` (oldest first) at `now`.
BatchDecision DecideBatch(std::span<const QueuedTask> queue, Clock::time_point now, const BatchPolicy& policy);

}  // namespace sluice::flow
