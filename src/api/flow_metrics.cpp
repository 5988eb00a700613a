#include "api/flow_metrics.hpp"

#include <algorithm>
#include <limits>

namespace sluice::api {
namespace {

// Cumulative counts per bound (the last one +Inf) and a sum, as FlowMetrics reports time.
HistogramSnapshot TimeSnapshot(const std::vector<double>& bounds, const std::vector<std::uint64_t>& cumulative,
                               double sum) {
  HistogramSnapshot snapshot;
  for (std::size_t i = 0; i < cumulative.size(); ++i) {
    const double bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    snapshot.buckets.push_back({bound, cumulative[i]});
  }
  snapshot.count = cumulative.empty() ? 0 : cumulative.back();
  snapshot.sum = sum;
  return snapshot;
}

// Batch sizes in buckets at the powers of two up to the step's maximum, the maximum itself, +Inf.
HistogramSnapshot BatchSizeSnapshot(const std::vector<std::uint64_t>& counts) {
  HistogramSnapshot snapshot;
  const std::size_t max_size = counts.empty() ? 0 : counts.size() - 1;
  std::vector<std::size_t> bounds;
  for (std::size_t bound = 1; bound < max_size; bound *= 2) bounds.push_back(bound);
  if (max_size > 0) bounds.push_back(max_size);
  std::uint64_t cumulative = 0;
  double sum = 0;
  std::size_t size = 1;
  for (const std::size_t bound : bounds) {
    for (; size <= bound; ++size) {
      cumulative += counts[size];
      sum += static_cast<double>(counts[size]) * static_cast<double>(size);
    }
    snapshot.buckets.push_back({static_cast<double>(bound), cumulative});
  }
  snapshot.buckets.push_back({std::numeric_limits<double>::infinity(), cumulative});
  snapshot.count = cumulative;
  snapshot.sum = sum;
  return snapshot;
}

}  // namespace

void WriteFlowMetrics(PrometheusText& text, const FlowMetrics& flow) {
  const std::vector<Label> flow_label = {{"flow", flow.name}};
  const std::pair<const char*, std::uint64_t> by_status[] = {
      {"COMPLETED", flow.completed}, {"FAILED", flow.failed},   {"TIMED_OUT", flow.timed_out},
      {"REJECTED", flow.rejected},   {"STOPPED", flow.stopped}};
  for (const auto& [status, value] : by_status) {
    text.Counter("sluice_flow_tasks_total", "Flow tasks that ended, by status.", static_cast<double>(value),
                 {{"flow", flow.name}, {"status", status}});
  }
  text.Histogram("sluice_flow_task_latency_seconds", "Time from submission to completion of completed flow tasks.",
                 TimeSnapshot(flow.steps.empty() ? std::vector<double>{} : flow.steps.front().time_buckets,
                              flow.latency_seconds_counts, flow.latency_seconds_sum),
                 flow_label);
  for (const FlowStepMetrics& step : flow.steps) {
    const std::vector<Label> labels = {{"flow", flow.name}, {"step", step.name}};
    text.Gauge("sluice_flow_step_queue_depth", "Tasks waiting in the step's queue.",
               static_cast<double>(step.queue_depth), labels);
    text.Gauge("sluice_flow_step_queue_capacity", "The most tasks the step's queue holds.",
               static_cast<double>(step.queue_capacity), labels);
    text.Counter("sluice_flow_step_batches_total", "Batches the step's handler ran.", static_cast<double>(step.batches),
                 labels);
    text.Counter("sluice_flow_step_tasks_total", "Tasks in those batches.", static_cast<double>(step.tasks), labels);
    const std::pair<const char*, std::uint64_t> refused[] = {
        {"failed", step.failed}, {"timed_out", step.timed_out}, {"rejected", step.rejected}};
    for (const auto& [result, value] : refused) {
      text.Counter("sluice_flow_step_tasks_lost_total",
                   "Tasks the step failed, timed out in its queue, or refused because the queue was full.",
                   static_cast<double>(value), {{"flow", flow.name}, {"step", step.name}, {"result", result}});
    }
    text.Histogram("sluice_flow_step_batch_size", "Tasks per batch.", BatchSizeSnapshot(step.batch_size_counts),
                   labels);
    text.Histogram("sluice_flow_step_handler_seconds", "Time the handler took per batch.",
                   TimeSnapshot(step.time_buckets, step.handler_seconds_counts, step.handler_seconds_sum), labels);
    text.Histogram("sluice_flow_step_queue_seconds", "Time each task waited in the step's queue.",
                   TimeSnapshot(step.time_buckets, step.queue_seconds_counts, step.queue_seconds_sum), labels);
  }
}

}  // namespace sluice::api
