#include "runtime/queue_mode.hpp"

#include <optional>

#include <boost/asio/io_context.hpp>

#include "runtime/redis_setup.hpp"

namespace sluice::runtime {

int RunQueueWorker(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity) {
  const redis::Endpoint endpoint = QueueEndpoint(options);
  if (!CheckRedisReachable(endpoint)) return 1;
  if (options.serve_api) RaiseFileLimit();

  boost::asio::io_context io(static_cast<int>(IoThreads(options)));
  QueueConsumer consumer(io, config, options, identity, endpoint);
  std::optional<RedisJobApi> job_api;
  if (options.serve_api) {
    core::Scheduler& scheduler = consumer.scheduler();
    job_api.emplace(io, options, endpoint,
                    api::WorkerGauges{.concurrency_limit = [&scheduler] { return scheduler.limit(); },
                                      .jobs_running = [&scheduler] { return scheduler.running(); }});
  }
  return ServeUntilStopped(io, options, &consumer, job_api ? &*job_api : nullptr, "Queue worker stopped.");
}

}  // namespace sluice::runtime
