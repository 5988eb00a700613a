#include "runtime/worker_setup.hpp"

#include <algorithm>

#include "log/logging.hpp"

namespace sluice::runtime {

std::chrono::steady_clock::duration Seconds(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

std::size_t IoThreads(const cli::WorkerOptions& options) {
  return static_cast<std::size_t>(std::max(1, options.api_concurrency));
}

core::SchedulerOptions SchedulerOptionsFor(const serverless::Config& config, const cli::WorkerOptions& options,
                                           const WorkerIdentity& identity) {
  core::SchedulerOptions scheduler;
  scheduler.concurrency = options.concurrency;
  scheduler.max_concurrency = options.max_concurrency;
  scheduler.concurrency_modifier = config.concurrency_modifier;
  scheduler.io_threads = IoThreads(options);
  scheduler.aggregate_stream = config.return_aggregate_stream;
  scheduler.refresh_worker = config.refresh_worker;
  scheduler.worker_id = identity.worker_id;
  scheduler.hostname = identity.hostname;
  scheduler.warn = [](const std::string& warning) { log::Warn("", "{}", warning); };
  return scheduler;
}

}  // namespace sluice::runtime
