// runpod_test_worker: a worker program for tests/runpod_worker_test.cpp, with the handlers the
// examples do not have. The sluice command line rejects flags it does not know, so the behaviour
// is chosen by the environment variable RUNPOD_TEST_WORKER_MODE:
//
//   progress        a blocking handler that calls job.progress(u) for each u of input "updates"
//                   (a list), then returns input "result".
//   refresh_worker  Config{.refresh_worker = true}; the handler returns its input.
//   bad_modifier    a coroutine handler that sleeps input "ms" milliseconds and returns
//                   {"running": N}, N the jobs in its handler when it started (itself included);
//                   its concurrency_modifier returns only invalid limits, in turn: 0, -1, 1001
//                   (above the default --max-concurrency 1000), INT_MAX, and a throw.
//
// Any other value (or none) prints an error and exits 2. Built only with the tests and examples.
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

json::value ProgressThenResult(sluice::Job& job) {
  const json::object& input = job.input().as_object();
  if (const json::value* updates = input.if_contains("updates")) {
    for (const json::value& update : updates->as_array()) job.progress(update);
  }
  const json::value* result = input.if_contains("result");
  return result != nullptr ? *result : json::value();
}

json::value Echo(sluice::Job& job) { return job.input(); }

std::atomic<int> running{0};

sluice::Task<json::value> SleepAndCount(sluice::Job& job) {
  const int now = ++running;
  const json::value* ms = job.input().as_object().if_contains("ms");
  co_await sluice::sleep_for(std::chrono::milliseconds(ms != nullptr ? ms->to_number<int>() : 0));
  --running;
  co_return json::object{{"running", now}};
}

// Never called concurrently with itself (sluice/serverless.hpp), so a plain counter will do.
int InvalidLimit(int /*current*/) {
  static int call = 0;
  switch (call++ % 5) {
    case 0: return 0;
    case 1: return -1;
    case 2: return 1001;
    case 3: return INT_MAX;
    default: throw std::runtime_error("the modifier failed on purpose");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* value = std::getenv("RUNPOD_TEST_WORKER_MODE");
  const std::string_view mode = value != nullptr ? value : "";
  if (mode == "progress") return sluice::serverless::start({.handler = ProgressThenResult}, argc, argv);
  if (mode == "refresh_worker") {
    return sluice::serverless::start({.handler = Echo, .refresh_worker = true}, argc, argv);
  }
  if (mode == "bad_modifier") {
    return sluice::serverless::start({.handler = SleepAndCount, .concurrency_modifier = InvalidLimit}, argc, argv);
  }
  std::fprintf(stderr, "runpod_test_worker: set RUNPOD_TEST_WORKER_MODE to progress, refresh_worker or bad_modifier\n");
  return 2;
}
