// flow/flow_registry.hpp — the flows running in this process, so that a worker's /metrics can
// show every flow's metrics without the user wiring them (include/sluice/flow.hpp: a flow that
// backs a worker is exported by itself).
//
// A flow registers itself when it starts and leaves when it stops, before its engine is gone.
// Thread-safe: all functions may be called from any thread; Snapshot holds the registry's mutex
// while it reads each flow's atomics, so a flow cannot leave while it is being read.
#pragma once

#include <vector>

#include <sluice/flow.hpp>

namespace sluice::detail {
class FlowCore;
}

namespace sluice::flow {

void RegisterFlow(const detail::FlowCore& core);
void UnregisterFlow(const detail::FlowCore& core);
/// The metrics of every running flow, in the order they started.
std::vector<FlowMetrics> SnapshotRunningFlows();

}  // namespace sluice::flow
