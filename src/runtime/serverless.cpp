// sluice::serverless::start — reads the command line, picks the mode, runs it.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <variant>

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>

#include <sluice/serverless.hpp>
#include <sluice/version.hpp>

#include "cli/options.hpp"
#include "log/logging.hpp"
#include "runtime/api_mode.hpp"
#include "runtime/production_mode.hpp"
#include "runtime/queue_mode.hpp"
#include "runtime/test_mode.hpp"

namespace sluice::serverless {
namespace {

std::string EnvOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : std::move(fallback);
}

runtime::WorkerIdentity Identify() {
  return {.worker_id = EnvOr("RUNPOD_POD_ID", boost::uuids::to_string(boost::uuids::random_generator()())),
          .hostname = EnvOr("RUNPOD_POD_HOSTNAME", "unknown")};
}

}  // namespace

int start(Config config, int argc, char** argv) {
  auto parsed = cli::ParseCommandLine(argc, argv);
  if (auto* exit_now = std::get_if<cli::ExitNow>(&parsed)) {
    std::fputs(exit_now->text.c_str(), exit_now->code == 0 ? stdout : stderr);
    return exit_now->code;
  }
  const cli::WorkerOptions& options = std::get<cli::WorkerOptions>(parsed);
  log::Configure(options.log_level, options.log_format);
  log::Info("", "--- Starting Serverless Worker |  Version sluice {} ---", kVersion);

  if (!config.handler) {
    log::Error("", "Config.handler is empty: give start() a handler");
    return 1;
  }
  const runtime::WorkerIdentity identity = Identify();

  // The mode, chosen as runpod-python chooses it, with sluice's Redis queue added (decisions §1).
  try {
    // --queue with or without --rp_serve_api: the queue worker (serving the job API over the queue
    // too when asked); --rp_serve_api alone keeps its jobs in this process.
    if (!options.queue.empty()) return runtime::RunQueueWorker(config, options, identity);
    if (options.serve_api) return runtime::RunJobApi(config, options, identity);
    if (options.test_input || std::getenv("RUNPOD_WEBHOOK_GET_JOB") == nullptr) {
      return runtime::RunLocalTest(config, options, identity);
    }
    return runtime::RunRunpodWorker(config, options, identity);
  } catch (const std::exception& error) {
    // Handler exceptions never get here (they fail the job); this is sluice's own failure.
    log::Error("", "Uncaught exception | {}", error.what());
    return 1;
  }
}

}  // namespace sluice::serverless
