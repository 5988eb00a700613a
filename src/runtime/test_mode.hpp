// runtime/test_mode.hpp — local test mode: run one job from `--test_input` or ./test_input.json,
// print its result, exit (spec/runpod.md §2.4, with sluice's additions in spec/decisions.md §1).
//
// stdout carries only results, one JSON object per line: for a streaming handler each chunk as
// `{"output": chunk}` as it is emitted, then the final result; for any other handler just the
// result. Logs go to stderr. The job runs through the same scheduler as in every other mode.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include <sluice/serverless.hpp>

#include "cli/options.hpp"
#include "core/job_ports.hpp"
#include "core/status.hpp"
#include "runtime/worker_setup.hpp"

namespace sluice::runtime {

/// Reads a test request: checks it is valid JSON (naming the position when not), an object, and
/// has a non-null `input`; gives it the id `local_test` unless it names its own.
core::Result<core::JobRequest> ParseTestRequest(std::string_view text);

/// Runs local test mode; returns the exit code (0 when the job completed without error, else 1).
/// `out` receives the result lines.
int RunLocalTest(const serverless::Config& config, const cli::WorkerOptions& options,
                 const WorkerIdentity& identity, std::FILE* out = stdout);

}  // namespace sluice::runtime
