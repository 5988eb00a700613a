#include "runtime/gateway_mode.hpp"

#include <boost/asio/io_context.hpp>

#include "runtime/redis_setup.hpp"

namespace sluice::runtime {

int RunGateway(const cli::WorkerOptions& options) {
  const redis::Endpoint endpoint = QueueEndpoint(options);
  if (!CheckRedisReachable(endpoint)) return 1;
  RaiseFileLimit();

  boost::asio::io_context io(static_cast<int>(IoThreads(options)));
  RedisJobApi job_api(io, options, endpoint, api::WorkerGauges{});  // no scheduler: no gauges
  return ServeUntilStopped(io, options, nullptr, &job_api, "Gateway stopped.");
}

}  // namespace sluice::runtime
