#include "runtime/redis_setup.hpp"

#include <chrono>

#include <gtest/gtest.h>

namespace sluice::runtime {
namespace {

using namespace std::chrono_literals;

TEST(RedisSetup, QueueOptionsComeFromTheCommandLine) {
  cli::WorkerOptions options;
  options.queue = "redis://127.0.0.1:6379/0";
  options.queue_name = "gpu";
  options.visibility_timeout = 2.5;
  options.max_deliveries = 7;
  options.result_ttl = 0.5;  // EXPIRE takes whole seconds: rounded up, never to 0
  options.execution_timeout = 0;
  const redis::QueueOptions queue = QueueOptionsFor(options);
  EXPECT_EQ(queue.queue, "gpu");
  EXPECT_EQ(queue.consumer, redis::DefaultConsumerName()) << "host:pid when --consumer-name is not given";
  EXPECT_EQ(queue.visibility_timeout, 2500ms);
  EXPECT_EQ(queue.max_deliveries, 7);
  EXPECT_EQ(queue.result_ttl, 1s);
  EXPECT_FALSE(queue.default_execution_timeout.has_value()) << "0: no limit";

  options.consumer_name = "w1";
  options.execution_timeout = 90;
  const redis::QueueOptions named = QueueOptionsFor(options);
  EXPECT_EQ(named.consumer, "w1");
  ASSERT_TRUE(named.default_execution_timeout.has_value());
  EXPECT_EQ(*named.default_execution_timeout, 90s);
}

TEST(RedisSetup, QueueEndpointIsTheParsedUrl) {
  cli::WorkerOptions options;
  options.queue = "redis://:secret@example.com:6380/2";
  const redis::Endpoint endpoint = QueueEndpoint(options);
  EXPECT_EQ(endpoint.host, "example.com");
  EXPECT_EQ(endpoint.port, 6380);
  EXPECT_EQ(endpoint.db, 2);
  EXPECT_EQ(endpoint.Redacted(), "redis://example.com:6380/2");
}

}  // namespace
}  // namespace sluice::runtime
