// flow_worker: a worker whose handler is a two-step flow (demo_flow.hpp), so that jobs from many
// HTTP clients are batched together by the model step.
//
//   build/bin/flow_worker --rp_serve_api --rp_api_port 8000 --concurrency 64
//   curl -s -X POST localhost:8000/runsync -d '{"input":{"text":"Hello World"}}'
//     → {"id":"...","status":"COMPLETED","output":{"input":{"text":"hello world","words":2},
//        "batch_size":1,"batch":1},...}
//
// Run it with a concurrency limit of at least the batch you want to see (--concurrency 64): each
// running job holds one task in the flow. The flow's metrics are on /metrics.
#include <sluice/flow.hpp>
#include <sluice/sluice.hpp>

#include "demo_flow.hpp"

int main(int argc, char** argv) {
  sluice::Flow flow(sluice::FlowOptions{.name = "demo"});
  demo::AddDemoSteps(flow);
  flow.start();
  // A job waits at most 30 s in the flow's queues.
  const int code = sluice::serverless::start({.handler = sluice::flow_handler(flow, std::chrono::seconds(30))},
                                             argc, argv);
  flow.stop();
  return code;
}
