#include "flow/batch_decision.hpp"

#include <algorithm>

namespace sluice::flow {

BatchDecision DecideBatch(std::span<const QueuedTask> queue, Clock::time_point now, const BatchPolicy& policy) {
  BatchDecision decision;
  if (queue.empty()) return decision;
  const std::size_t max_batch = std::max<std::size_t>(1, policy.max_batch_size);
  const std::size_t candidates = std::min(queue.size(), max_batch);

  // 1. A full batch.
  if (candidates == max_batch) {
    decision.dispatch = max_batch;
    return decision;
  }
  // 2. The largest preferred size the queue holds.
  std::size_t preferred = 0;
  for (const std::size_t size : policy.preferred_batch_sizes) {
    if (size >= 1 && size <= candidates) preferred = std::max(preferred, size);
  }
  if (preferred > 0) {
    decision.dispatch = preferred;
    return decision;
  }
  // 3. The oldest task has waited long enough, or a task in the batch has no time to wait.
  Clock::time_point leave_at = queue.front().enqueued_at + policy.max_batch_delay;
  for (std::size_t i = 0; i < candidates; ++i) {
    if (queue[i].deadline) leave_at = std::min(leave_at, *queue[i].deadline);
  }
  if (leave_at <= now) {
    decision.dispatch = candidates;
    return decision;
  }
  // 4. Wait.
  decision.wake_at = leave_at;
  return decision;
}

}  // namespace sluice::flow
