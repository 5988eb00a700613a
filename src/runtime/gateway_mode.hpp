// runtime/gateway_mode.hpp — `sluice gateway` (docs/scale-out.md): RunPod's job API served over a
// Redis queue, with no handler of its own; workers started with `--queue` on the same queue run
// the jobs. Any number of gateways may share a queue (behind a load balancer): everything a
// request needs is in Redis.
//
// Wiring only (runtime/redis_setup.hpp): one PING before anything starts (an unreachable Redis
// exits 1 at once, naming the address); then one io_context run by `--rp_api_concurrency` threads
// with the RedisJobApi (backend, webhooks, JobApi, HTTP server; /health reports no scheduler of
// its own). SIGTERM/SIGINT: stop accepting, answer waiting clients, deliver webhooks, stop the
// backend, exit 0.
#pragma once

#include "cli/options.hpp"

namespace sluice::runtime {

/// Serves until SIGTERM or SIGINT; returns the exit code (0 after a drain, 1 when Redis cannot be
/// reached or the port cannot be bound). `options` come from cli::ParseCommandLine with
/// cli::Program::kGateway (`--queue` set and checked).
int RunGateway(const cli::WorkerOptions& options);

}  // namespace sluice::runtime
