// runtime/production_mode.hpp — the worker on RunPod Serverless (runpod.md §4, decisions.md §5):
// chosen when RUNPOD_WEBHOOK_GET_JOB is set and no other mode is.
//
// Wiring only: one io_context run by `--rp_api_concurrency` threads; on it the HTTP client to the
// control plane, the scheduler taking from a RunpodJobSource and reporting to a RunpodResultSink,
// the heartbeat and the job-stop long-poll. SIGTERM/SIGINT drain: no new takes (a take in flight
// is finished and its jobs run), running jobs get `--drain-timeout`, then what is left is
// cancelled; pending result POSTs get a grace period; the process exits 0. A config-level
// `refresh_worker` drains the same way after the first job's result is posted.
#pragma once

#include <sluice/serverless.hpp>

#include "cli/options.hpp"
#include "runtime/worker_setup.hpp"

namespace sluice::runtime {

/// Runs until drained; returns the exit code (0 after a drain, 1 when the environment is unusable).
int RunRunpodWorker(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity);

}  // namespace sluice::runtime
