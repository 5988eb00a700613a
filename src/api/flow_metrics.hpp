// api/flow_metrics.hpp — a flow's metrics (sluice::FlowMetrics) in Prometheus' text format, for
// the job API's /metrics and for the flow server. Names and labels are listed in docs/flows.md
// ("Metrics"). Pure; thread-safe.
#pragma once

#include <sluice/flow.hpp>

#include "api/metrics.hpp"

namespace sluice::api {

/// Adds the families of `flow` (labelled flow="NAME", and step="NAME" per step) to `text`.
void WriteFlowMetrics(PrometheusText& text, const FlowMetrics& flow);

}  // namespace sluice::api
