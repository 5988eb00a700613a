// runtime/api_mode.hpp — the worker serving RunPod's job API (`--rp_serve_api`, docs/job-api.md).
//
// Wiring only: one io_context run by `--rp_api_concurrency` threads; on it the HTTP server, the
// JobStore (queue and results), the scheduler that takes from the store and reports to it, and
// the webhook sender. SIGTERM/SIGINT drain: the server stops accepting, queued and running jobs
// get `--drain-timeout` to finish, what is left is cancelled, waiting clients are answered,
// pending webhooks get a few seconds, and the process exits 0.
#pragma once

#include <sluice/serverless.hpp>

#include "cli/options.hpp"
#include "runtime/test_mode.hpp"

namespace sluice::runtime {

/// Serves until SIGTERM or SIGINT; returns the exit code (0 after a drain, 1 when the port could
/// not be bound).
int RunJobApi(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity);

}  // namespace sluice::runtime
