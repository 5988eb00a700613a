#include "flow/flow_registry.hpp"

#include <algorithm>
#include <mutex>

#include "flow/flow_core.hpp"

namespace sluice::flow {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<const detail::FlowCore*> flows;
};

Registry& TheRegistry() {
  static Registry registry;
  return registry;
}

}  // namespace

void RegisterFlow(const detail::FlowCore& core) {
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  registry.flows.push_back(&core);
}

void UnregisterFlow(const detail::FlowCore& core) {
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  std::erase(registry.flows, &core);
}

std::vector<FlowMetrics> SnapshotRunningFlows() {
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mutex);
  std::vector<FlowMetrics> snapshots;
  snapshots.reserve(registry.flows.size());
  for (const detail::FlowCore* core : registry.flows) snapshots.push_back(core->Metrics());
  return snapshots;
}

}  // namespace sluice::flow
