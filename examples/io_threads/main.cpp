// io_threads: a blocking handler that waits, run many at once.
//
// SleepFor stands in for blocking I/O (a synchronous client library, a file copy): it sleeps
// `seconds` (default 1, fractions allowed) on its own thread and returns {"slept": seconds}.
// Blocking handlers run on sluice's thread pool, which grows with the concurrency limit, so run it
// with --concurrency 10 and ten such jobs sleep side by side instead of one after another.
//
//   cd examples/io_threads && ../../build/bin/io_threads --concurrency 10   # runs ./test_input.json
//   build/bin/io_threads --concurrency 10 --test_input '{"input":{"seconds":2.5}}'
#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

// Short enough that a cancelled job gives its thread back promptly, long enough to cost nothing.
constexpr std::chrono::milliseconds kCancelPollInterval{50};
// Beyond this a "seconds" is surely a mistake; it also keeps the conversion to a duration in range.
constexpr double kMaxSeconds = 3600;

json::value SleepFor(sluice::Job& job) {
  const json::value& input = job.input();
  if (!input.is_object()) {
    throw std::invalid_argument("input must be a JSON object, got " + sluice::to_json(input));
  }
  // Echo the number back as the client wrote it, so 2 stays 2 and 0.2 stays 0.2.
  json::value seconds = 1;
  if (const json::value* given = input.get_object().if_contains("seconds")) {
    if (!given->is_number()) {
      throw std::invalid_argument("\"seconds\" must be a number, got " + sluice::to_json(*given));
    }
    seconds = *given;
  }
  const double amount = seconds.to_number<double>();
  if (!(amount >= 0 && amount <= kMaxSeconds)) {  // written so that NaN fails too
    throw std::invalid_argument("\"seconds\" must be between 0 and 3600, got " + sluice::to_json(seconds));
  }

  // A blocking handler cannot be interrupted from outside, so it checks for cancellation itself
  // between short naps; once cancelled, its return value is discarded anyway.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(amount));
  while (!job.cancelled()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(deadline - now, kCancelPollInterval));
  }
  return json::object{{"slept", seconds}};
}

}  // namespace

int main(int argc, char** argv) { return sluice::serverless::start({.handler = SleepFor}, argc, argv); }
