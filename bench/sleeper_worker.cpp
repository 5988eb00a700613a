// bench/sleeper_worker.cpp — a worker for the job API benchmark (bench/job_api_bench.sh) only: its
// coroutine handler sleeps `input.seconds` seconds (default 1, fractions allowed) with
// sluice::sleep_for, which holds no thread, and returns {"slept": seconds}. Thousands of its jobs
// can wait at once on the worker's I/O threads, which is what the "5,000 concurrent /runsync"
// benchmark measures. With `seconds` 0 it returns at once without suspending: the benchmark's
// no-op coroutine handler, beside examples/echo's blocking one.
//
//   build/bin/sleeper_worker --test_input '{"input":{"seconds":0.5}}'   →  {"output":{"slept":0.5}}
//   build/bin/sleeper_worker --rp_serve_api --rp_api_port 0 --concurrency 5000 --max-concurrency 5000
#include <chrono>
#include <stdexcept>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

constexpr double kDefaultSeconds = 1.0;
// Beyond this a sleep is surely a mistake; it also keeps the conversion to a duration in range.
constexpr double kMaxSeconds = 3600;

double SleepSeconds(const json::value& input) {
  const json::object* object = input.if_object();
  const json::value* seconds = object != nullptr ? object->if_contains("seconds") : nullptr;
  if (seconds == nullptr) return kDefaultSeconds;
  if (!seconds->is_number()) {
    throw std::invalid_argument("\"seconds\" must be a number, got " + sluice::to_json(*seconds));
  }
  const double value = seconds->to_number<double>();
  // Written so that NaN fails too.
  if (!(value >= 0 && value <= kMaxSeconds)) {
    throw std::invalid_argument("\"seconds\" must be between 0 and 3600, got " + sluice::to_json(*seconds));
  }
  return value;
}

sluice::Task<json::value> Sleep(sluice::Job& job) {
  const double seconds = SleepSeconds(job.input());
  if (seconds > 0) {
    co_await sluice::sleep_for(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds)));
  }
  co_return json::object{{"slept", seconds}};
}

}  // namespace

int main(int argc, char** argv) { return sluice::serverless::start({.handler = Sleep}, argc, argv); }
