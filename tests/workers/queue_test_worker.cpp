// queue_test_worker: the worker that tests/scale_out_test.cpp starts several of behind one Redis
// queue (`--queue redis://...`). Its output names the process that ran the job, so a test can tell
// which worker of the fleet ran what, and how many jobs that process was running at that moment.
//
// A handler has one shape for the life of the program, so the mode is an environment variable,
// QUEUE_TEST_WORKER_MODE:
//
//   (unset) or "count"  a coroutine handler: sleeps input `sleep_ms` (default 0), then returns
//                       {"worker": <pid>, "running_at_start": <jobs of this process already in the
//                       handler when this one entered it>, "echo": <input>}. The sleep ends early
//                       when the job is cancelled.
//   "stream"            a streaming coroutine handler: emits input `chunks` (default 3) chunks
//                       {"index": i, "worker": <pid>}, `sleep_ms` apart (none before the first).
//
// Any other value prints an error and exits 2. Built with the tests and the examples.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <sluice/sluice.hpp>

namespace {
namespace json = boost::json;

std::atomic<int> running{0};

// Counts the job as running for as long as its coroutine frame lives (a cancelled job's frame
// unwinds through the sleep, and the count still goes down).
class Running {
 public:
  Running() : before_(running.fetch_add(1)) {}
  ~Running() { running.fetch_sub(1); }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;
  int before() const { return before_; }

 private:
  int before_;
};

int IntMember(const json::value& input, std::string_view key, int fallback) {
  if (!input.is_object()) return fallback;
  const json::value* value = input.get_object().if_contains(key);
  return value != nullptr && value->is_number() ? value->to_number<int>() : fallback;
}

sluice::Task<json::value> Count(sluice::Job& job) {
  const Running counted;
  const int sleep_ms = IntMember(job.input(), "sleep_ms", 0);
  if (sleep_ms > 0) co_await sluice::sleep_for(std::chrono::milliseconds(sleep_ms));
  json::object output;
  output["worker"] = static_cast<std::int64_t>(::getpid());
  output["running_at_start"] = counted.before();
  output["echo"] = job.input();
  co_return output;
}

sluice::Task<void> Chunks(sluice::Job& job, sluice::Stream& out) {
  const int chunks = IntMember(job.input(), "chunks", 3);
  const int sleep_ms = IntMember(job.input(), "sleep_ms", 0);
  for (int i = 0; i < chunks; ++i) {
    if (i > 0 && sleep_ms > 0) co_await sluice::sleep_for(std::chrono::milliseconds(sleep_ms));
    // A named value: g++ 12 rejects a braced list inside a co_await expression.
    json::value chunk = json::object{{"index", i}, {"worker", static_cast<std::int64_t>(::getpid())}};
    co_await out.emit(std::move(chunk));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* value = std::getenv("QUEUE_TEST_WORKER_MODE");
  const std::string_view mode = value != nullptr ? value : "count";
  if (mode == "count") return sluice::serverless::start({.handler = Count}, argc, argv);
  if (mode == "stream") return sluice::serverless::start({.handler = Chunks}, argc, argv);
  std::fprintf(stderr, "queue_test_worker: QUEUE_TEST_WORKER_MODE must be count or stream\n");
  return 2;
}
