// runtime/queue_mode.hpp — a worker on a Redis queue (`--queue redis://...`, docs/scale-out.md),
// and, with `--rp_serve_api` too, a worker that also serves RunPod's job API over that queue.
//
// Wiring only (runtime/redis_setup.hpp has the pieces): before anything starts, one PING (an
// unreachable Redis exits 1 at once, naming the address); then one io_context run by
// `--rp_api_concurrency` threads, with the QueueConsumer (scheduler, source, sink, heartbeat,
// reaper, cancel listener) and, with `--rp_serve_api`, the RedisJobApi in front. SIGTERM/SIGINT
// drain: the job API stops accepting, no more jobs are read, running jobs get `--drain-timeout`,
// then what is left is stopped and given back to the queue (another worker runs it after the
// visibility timeout); results are written, waiting clients answered; exit 0.
#pragma once

#include <sluice/serverless.hpp>

#include "cli/options.hpp"
#include "runtime/worker_setup.hpp"

namespace sluice::runtime {

/// Runs until drained; returns the exit code (0 after a drain, 1 when Redis cannot be reached or
/// the job API's port cannot be bound).
int RunQueueWorker(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity);

}  // namespace sluice::runtime
