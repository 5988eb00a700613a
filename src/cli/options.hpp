// cli/options.hpp — the worker's command line: every runpod-python flag with its name and default,
// and sluice's own flags (spec/decisions.md §1). Each flag can also be set by an environment
// variable: SLUICE_ followed by the flag's name in upper case with '-' as '_' (SLUICE_CONCURRENCY,
// SLUICE_RP_API_PORT); `--rp_log_level` also reads RUNPOD_LOG_LEVEL, then RUNPOD_DEBUG_LEVEL, as
// runpod-python does. A flag on the command line wins over its variable.
//
// Pure apart from reading the environment; no global state.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <variant>

#include "log/logging.hpp"

namespace sluice::cli {

struct WorkerOptions {
  // runpod-python's flags.
  log::Level log_level = log::Level::kDebug;
  bool debugger = false;            // --rp_debugger
  bool serve_api = false;           // --rp_serve_api
  int api_port = 8000;              // --rp_api_port
  int api_concurrency = 1;          // --rp_api_concurrency: I/O threads
  std::string api_host = "localhost";
  std::optional<std::string> test_input;

  // sluice's own flags; durations in seconds.
  int concurrency = 1;
  int max_concurrency = 1000;
  std::string queue;                // redis://HOST:PORT[/DB], checked by redis::ParseUrl
  std::string queue_name = "default";  // the queue's keys are sluice:{queue_name}:...
  std::string consumer_name;        // empty: redis::DefaultConsumerName(), host:pid
  std::size_t max_queue = 10000;
  double result_ttl = 1800;
  std::size_t max_results = 250000;  // finished jobs the job API keeps at most
  std::string auth_token;
  log::Format log_format = log::Format::kText;
  double drain_timeout = 30;
  double execution_timeout = 600;   // 0: none
  double visibility_timeout = 30;
  double post_timeout = 30;         // a result, chunk or progress POST to RunPod, per attempt
  int max_deliveries = 5;
  std::size_t max_take_batch = 64;  // jobs asked per RunPod take; 1: always the single job-take
  std::optional<std::size_t> max_body_bytes;  // default: 10 MiB for /run, 20 MiB for /runsync
};

/// What parsing decided: options to run with, or an exit right away (after --help, or on a usage
/// error) with the text to print — on stdout for help (code 0), on stderr for errors (code 2).
struct ExitNow {
  int code;
  std::string text;
};

/// Which program's command line: a worker's (every flag), or `sluice gateway`'s (the job API and
/// queue flags only, `--queue` required; argv[0] is then the subcommand).
enum class Program { kWorker, kGateway };

std::variant<WorkerOptions, ExitNow> ParseCommandLine(int argc, const char* const* argv,
                                                      Program program = Program::kWorker);

}  // namespace sluice::cli
