// concurrent_handler: a coroutine handler whose concurrency limit follows the (simulated) load.
//
// ProcessRequest waits `delay` seconds (default 1, fractions allowed) with sluice::sleep_for, which
// holds no thread while it waits, so many jobs can be in flight on the few I/O threads. Its output
// is "Processed: " followed by the job's input as JSON. AdjustConcurrency is the
// concurrency_modifier: it nudges the limit up or down by one, between 1 and 10, depending on a
// made-up request rate.
//
//   cd examples/concurrent_handler && ../../build/bin/concurrent_handler   # runs ./test_input.json
//   build/bin/concurrent_handler --test_input '{"input":{"message":"hi","delay":0.25}}'
#include <chrono>
#include <random>
#include <stdexcept>
#include <string>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

constexpr int kMinConcurrency = 1;
constexpr int kMaxConcurrency = 10;
constexpr int kHighRequestRate = 50;  // requests per interval above which the load counts as high
// Beyond this a "delay" is surely a mistake; it also keeps the conversion to a duration in range.
constexpr double kMaxDelaySeconds = 3600;

// Stands in for a real load metric (queue depth, requests per second) that a production worker
// would measure. A plain static generator is enough: sluice never calls the concurrency modifier
// concurrently with itself, and nothing else touches the generator.
int SimulatedRequestRate() {
  static std::mt19937 generator{std::random_device{}()};
  std::uniform_int_distribution<int> rate(20, 100);
  return rate(generator);
}

int AdjustConcurrency(int current) {
  const int request_rate = SimulatedRequestRate();
  if (request_rate > kHighRequestRate && current < kMaxConcurrency) return current + 1;
  if (request_rate <= kHighRequestRate && current > kMinConcurrency) return current - 1;
  return current;
}

double DelaySeconds(const json::object& input) {
  const json::value* delay = input.if_contains("delay");
  if (delay == nullptr) return 1.0;
  if (!delay->is_number()) {
    throw std::invalid_argument("\"delay\" must be a number of seconds, got " + sluice::to_json(*delay));
  }
  const double seconds = delay->to_number<double>();
  // Written so that NaN fails too.
  if (!(seconds >= 0 && seconds <= kMaxDelaySeconds)) {
    throw std::invalid_argument("\"delay\" must be between 0 and 3600 seconds, got " +
                                sluice::to_json(*delay));
  }
  return seconds;
}

sluice::Task<json::value> ProcessRequest(sluice::Job& job) {
  const json::value& input = job.input();
  if (!input.is_object()) {
    throw std::invalid_argument("input must be a JSON object, got " + sluice::to_json(input));
  }
  const double seconds = DelaySeconds(input.get_object());

  // Stands in for a database query or an API call. If the job is cancelled meanwhile, this throws
  // operation_aborted; letting it propagate is what marks the job cancelled rather than failed.
  co_await sluice::sleep_for(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds)));

  co_return "Processed: " + sluice::to_json(input);
}

}  // namespace

int main(int argc, char** argv) {
  return sluice::serverless::start(
      {.handler = ProcessRequest, .concurrency_modifier = AdjustConcurrency}, argc, argv);
}
