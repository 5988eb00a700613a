#include "api/flow_metrics.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "flow/flow_registry.hpp"

namespace sluice::api {
namespace {

bool Contains(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(FlowMetrics, EveryStepIsWrittenWithItsLabels) {
  FlowMetrics flow;
  flow.name = "demo";
  flow.completed = 7;
  flow.failed = 1;
  FlowStepMetrics step;
  step.name = "model";
  step.queue_depth = 3;
  step.queue_capacity = 64;
  step.batches = 3;
  step.tasks = 8;
  step.batch_size_counts = {0, 1, 0, 1, 1};  // batches of 1, 3 and 4 tasks (max 4)
  step.time_buckets = {0.001, 0.01};
  step.handler_seconds_counts = {1, 3, 3};
  step.handler_seconds_sum = 0.012;
  step.queue_seconds_counts = {8, 8, 8};
  step.queue_seconds_sum = 0.002;
  flow.steps.push_back(step);
  flow.latency_seconds_counts = {5, 7, 7};
  flow.latency_seconds_sum = 0.02;

  PrometheusText text;
  WriteFlowMetrics(text, flow);
  const std::string out = text.str();
  EXPECT_TRUE(Contains(out, R"(sluice_flow_tasks_total{flow="demo",status="COMPLETED"} 7)")) << out;
  EXPECT_TRUE(Contains(out, R"(sluice_flow_tasks_total{flow="demo",status="FAILED"} 1)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_queue_depth{flow="demo",step="model"} 3)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batches_total{flow="demo",step="model"} 3)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batch_size_bucket{flow="demo",step="model",le="1"} 1)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batch_size_bucket{flow="demo",step="model",le="2"} 1)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batch_size_bucket{flow="demo",step="model",le="4"} 3)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batch_size_bucket{flow="demo",step="model",le="+Inf"} 3)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_batch_size_sum{flow="demo",step="model"} 8)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_handler_seconds_bucket{flow="demo",step="model",le="0.001"} 1)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_step_handler_seconds_count{flow="demo",step="model"} 3)"));
  EXPECT_TRUE(Contains(out, R"(sluice_flow_task_latency_seconds_count{flow="demo"} 7)"));
}

TEST(FlowMetrics, ARunningFlowIsInTheRegistryUntilItStops) {
  const auto names = [] {
    std::vector<std::string> found;
    for (const FlowMetrics& metrics : flow::SnapshotRunningFlows()) found.push_back(metrics.name);
    return found;
  };
  Flow flow(FlowOptions{.name = "registered"});
  flow.add_step({.name = "only", .handler = [](FlowBatch) {}});
  const auto before = names();
  EXPECT_EQ(std::count(before.begin(), before.end(), "registered"), 0);
  flow.start();
  const auto running = names();
  EXPECT_EQ(std::count(running.begin(), running.end(), "registered"), 1);
  flow.stop();
  const auto stopped = names();
  EXPECT_EQ(std::count(stopped.begin(), stopped.end(), "registered"), 0);
}

}  // namespace
}  // namespace sluice::api
