// sluice/serverless.hpp — the entry point of a worker program.
//
//   int main(int argc, char** argv) {
//     return sluice::serverless::start({.handler = my_handler}, argc, argv);
//   }
//
// `start` reads the command line and the environment, picks the mode (docs/cli.md) and runs it
// until it ends: local test mode runs one job and returns (SIGINT or SIGTERM cancels the job).
// Its result is the process exit code: 0 on success, 1 when the job or the worker failed, 2 for a
// command-line error. Call it once per process, from `main`.
#pragma once

#include <functional>

#include <sluice/handler.hpp>

namespace sluice::serverless {

struct Config {
  /// Required. See sluice/handler.hpp for the shapes it may take.
  Handler handler;

  /// Optional: given the concurrency limit in force, returns the limit to use from now on. Called
  /// before dispatch decisions, at most every 100 ms, never concurrently with itself. A result below
  /// 1 or above `--max-concurrency`, or a thrown exception, keeps the old limit (with a warning).
  /// Lowering the limit never interrupts running jobs; new jobs wait until enough have finished.
  std::function<int(int)> concurrency_modifier;

  /// Streaming handlers: whether the final result of a job lists every chunk (RunPod's
  /// `return_aggregate_stream`). Local test mode always aggregates.
  bool return_aggregate_stream = false;

  /// Every result asks RunPod to replace this worker (`stopPod`), and the worker drains and exits 0
  /// after its first job (RunPod production mode only).
  bool refresh_worker = false;
};

/// Runs the worker; returns the process exit code. See the file comment.
int start(Config config, int argc, char** argv);

}  // namespace sluice::serverless
