#include "cli/options.hpp"

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "redis/keys.hpp"
#include "redis/url.hpp"

namespace sluice::cli {
namespace {

std::string EnvName(std::string flag) {
  std::string name = "SLUICE_";
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

// Adds `--name` bound to `target`, reading SLUICE_NAME too.
template <class T>
CLI::Option* Add(CLI::App& app, const std::string& name, T& target, const std::string& help) {
  return app.add_option("--" + name, target, help)->envname(EnvName(name))->capture_default_str();
}

CLI::Option* AddFlag(CLI::App& app, const std::string& name, bool& target, const std::string& help) {
  return app.add_flag("--" + name, target, help)->envname(EnvName(name));
}

const CLI::Validator kNonNegative = CLI::Range(0.0, 1e9);

}  // namespace

std::variant<WorkerOptions, ExitNow> ParseCommandLine(int argc, const char* const* argv, Program program) {
  WorkerOptions options;
  const bool worker = program == Program::kWorker;
  CLI::App app(worker ? "A sluice serverless worker. Without a mode flag it runs local test mode: one job "
                        "from --test_input or ./test_input.json.\nEvery flag also reads SLUICE_<FLAG> from "
                        "the environment."
                      : "sluice gateway: serves RunPod's job API over a Redis queue, with no handler of its "
                        "own; workers started with --queue on the same queue run the jobs.\nEvery flag also "
                        "reads SLUICE_<FLAG> from the environment.",
               worker ? (argc > 0 ? argv[0] : "worker") : "sluice gateway");
  app.allow_extras(false);
  app.get_formatter()->column_width(34);

  // An empty variable counts as unset, here as for every variable sluice reads.
  auto env = [](const char* name) -> const char* {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
  };
  std::string log_level = "DEBUG";
  if (const char* value = env("RUNPOD_LOG_LEVEL")) log_level = value;
  else if (const char* debug = env("RUNPOD_DEBUG_LEVEL")) log_level = debug;
  std::string log_format = "text";
  std::string test_input;
  double max_body_bytes = 0;

  // The gateway has no handler and runs no jobs: only the flags of the job API and of the queue
  // are its own, so a worker flag given to it is an error rather than silently ignored.
  app.add_option("--rp_log_level", log_level,
                 "Log level: NOTSET, TRACE, DEBUG, INFO, WARN, ERROR (env RUNPOD_LOG_LEVEL)")
      ->envname("SLUICE_RP_LOG_LEVEL")
      ->capture_default_str();
  if (worker) {
    AddFlag(app, "rp_debugger", options.debugger, "Add timings to every result (RunPod production mode)");
    AddFlag(app, "rp_serve_api", options.serve_api, "Serve RunPod's job API over HTTP");
  }
  Add(app, "rp_api_port", options.api_port, "Port of the job API (0: any free port)")
      ->check(CLI::Range(0, 65535));
  Add(app, "rp_api_concurrency", options.api_concurrency, "I/O threads of the job API")
      ->check(CLI::Range(1, 1024));
  Add(app, "rp_api_host", options.api_host, "Address the job API listens on");
  if (worker) {
    app.add_option("--test_input", test_input, "Run one job with this JSON request, print it, exit")
        ->envname("SLUICE_TEST_INPUT");
    Add(app, "concurrency", options.concurrency, "Jobs run at once; the concurrency_modifier may change it")
        ->check(CLI::Range(1, 1000000));
    Add(app, "max-concurrency", options.max_concurrency, "Highest limit the concurrency_modifier may set")
        ->check(CLI::Range(1, 1000000));
  }
  Add(app, "queue", options.queue,
      worker ? "Consume jobs from a Redis queue: redis://[:password@]HOST[:PORT][/DB]"
             : "The Redis queue to serve jobs from: redis://[:password@]HOST[:PORT][/DB] (required)")
      ->envname("SLUICE_QUEUE");
  Add(app, "queue-name", options.queue_name, "Name of the Redis queue (its keys are sluice:{NAME}:...)");
  if (worker) {
    Add(app, "consumer-name", options.consumer_name,
        "This worker's consumer name in the Redis queue (default HOST:PID; unique per live worker)");
  }
  Add(app, "max-queue", options.max_queue, "Jobs waiting in the job API's queue before 429");
  Add(app, "result-ttl", options.result_ttl, "Seconds a finished job's result is kept")->check(kNonNegative);
  if (worker) {
    Add(app, "max-results", options.max_results,
        "Finished jobs whose result the job API keeps at most (the oldest go first)")
        ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
  }
  Add(app, "auth-token", options.auth_token, "Require 'Authorization: Bearer TOKEN' on the job API");
  Add(app, "log-format", log_format, "text or json")->check(CLI::IsMember({"text", "json"}));
  if (worker) {
    Add(app, "drain-timeout", options.drain_timeout, "Seconds to finish running jobs after SIGTERM")
        ->check(kNonNegative);
    Add(app, "execution-timeout", options.execution_timeout,
        "Seconds a job may run unless its policy says otherwise (0: no limit)")
        ->check(kNonNegative);
    Add(app, "post-timeout", options.post_timeout,
        "Seconds a result, stream chunk or progress POST to RunPod may take before it is tried again")
        ->check(CLI::PositiveNumber);
    // 0 would let every reaper take every pending entry at once, running each job everywhere.
    Add(app, "visibility-timeout", options.visibility_timeout,
        "Seconds before a silent worker's Redis jobs are reclaimed")
        ->check(CLI::PositiveNumber);
    Add(app, "max-deliveries", options.max_deliveries, "Deliveries of a Redis job before it fails")
        ->check(CLI::Range(1, 1000000));
    // runpod-python asks job-take-batch for every free slot; the cap bounds one answer's size (and
    // 1 keeps a worker on the single job-take, for a control plane that prefers it).
    Add(app, "max-take-batch", options.max_take_batch,
        "Most jobs asked per RunPod job-take-batch (production mode); 1: always the single job-take")
        ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  }
  app.add_option("--max-body-bytes", max_body_bytes,
                 "Largest request body (default 10 MiB for /run, 20 MiB for /runsync)")
      ->envname("SLUICE_MAX_BODY_BYTES")
      ->check(CLI::Range(1.0, 1e12));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return ExitNow{0, app.help()};
  } catch (const CLI::CallForAllHelp&) {
    return ExitNow{0, app.help("", CLI::AppFormatMode::All)};
  } catch (const CLI::ParseError& error) {
    return ExitNow{2, fmt::format("error: {}\nRun with --help for the list of flags.\n", error.what())};
  }

  const auto level = log::ParseLevel(log_level);
  if (!level) {
    return ExitNow{2, fmt::format("error: --rp_log_level: '{}' is not one of NOTSET, TRACE, DEBUG, "
                                  "INFO, WARN, ERROR\n",
                                  log_level)};
  }
  options.log_level = *level;
  options.log_format = log_format == "json" ? log::Format::kJson : log::Format::kText;
  if (worker && (app.count("--test_input") > 0 || env("SLUICE_TEST_INPUT") != nullptr)) {
    options.test_input = test_input;
  }
  if (max_body_bytes > 0) options.max_body_bytes = static_cast<std::size_t>(max_body_bytes);
  // The queue's URL and name are checked here, so that a typo is a usage error naming the flag
  // before anything starts (and the password never reaches the message: ParseUrl hides it).
  if (!options.queue.empty()) {
    if (const auto endpoint = redis::ParseUrl(options.queue); !endpoint.ok()) {
      return ExitNow{2, fmt::format("error: --queue: {}\n", endpoint.status().message())};
    }
  } else if (!worker) {
    return ExitNow{2, "error: --queue is required: sluice gateway serves the jobs of a Redis queue "
                      "(--queue redis://HOST:PORT[/DB], or SLUICE_QUEUE)\nRun with --help for the list of flags.\n"};
  }
  if (worker && app.count("--consumer-name") > 0 && options.consumer_name.empty()) {
    return ExitNow{2, "error: --consumer-name: empty (leave it out for HOST:PID)\n"};
  }
  if (!redis::ValidQueueName(options.queue_name)) {
    return ExitNow{2, fmt::format("error: --queue-name: '{}' is not a queue name (1 to 64 characters, "
                                  "none of them '{{', '}}', a space or a control character)\n",
                                  options.queue_name)};
  }
  if (options.concurrency > options.max_concurrency) {
    return ExitNow{2, fmt::format("error: --concurrency {} is above --max-concurrency {}\n",
                                  options.concurrency, options.max_concurrency)};
  }
  return options;
}

}  // namespace sluice::cli
