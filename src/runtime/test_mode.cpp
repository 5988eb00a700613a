#include "runtime/test_mode.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <vector>
#include <mutex>
#include <optional>
#include <sstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>
#include <fmt/format.h>

#include "core/json_text.hpp"
#include "core/memory_queue.hpp"
#include "core/result_mapping.hpp"
#include "core/scheduler.hpp"
#include "log/logging.hpp"

namespace sluice::runtime {
namespace json = boost::json;
using core::JobOutcome;
using core::JobRequest;
using core::Result;
using core::Status;

namespace {

// How long local test mode waits, after the job has ended, for a cancelled blocking handler to
// return before the process exits without it.
constexpr std::chrono::seconds kHandlerGracePeriod{5};

// Prints what the scheduler reports, as result lines on `out` and log lines on stderr.
class PrintingSink final : public core::ResultSink {
 public:
  explicit PrintingSink(std::FILE* out) : out_(out) {}

  void OnStarted(const std::string& job_id) override { log::Info(job_id, "Started."); }

  void OnProgress(const std::string& job_id, const json::value& update) override {
    log::Info(job_id, "Progress: {}", core::ToJson(update));
  }

  void OnChunk(const std::string& job_id, const json::value& chunk) override {
    json::object line;
    line.emplace("output", chunk);
    log::Debug(job_id, "Streamed chunk.");
    Print(line);
  }

  void OnFinished(const std::string& job_id, JobOutcome outcome) override {
    const std::string text = core::ToJson(outcome.result);
    if (outcome.status == core::JobStatus::kCompleted) {
      log::Info(job_id, "Job completed successfully.");
    } else if (outcome.status == core::JobStatus::kCancelled) {
      log::Warn(job_id, "Job cancelled.");
    } else {
      log::Error(job_id, "Job failed ({}) with error: {}", core::ToString(outcome.status), text);
    }
    Print(outcome.result);
    std::lock_guard lock(mutex_);
    outcome_ = std::move(outcome);
    finished_.notify_all();
  }

  JobOutcome WaitForOutcome() {
    std::unique_lock lock(mutex_);
    finished_.wait(lock, [this] { return outcome_.has_value(); });
    return *outcome_;
  }

 private:
  void Print(const json::object& line) {
    const std::string text = core::ToJson(line) + "\n";
    std::lock_guard lock(mutex_);
    std::fwrite(text.data(), 1, text.size(), out_);
    std::fflush(out_);
  }

  std::FILE* out_;
  std::mutex mutex_;
  std::condition_variable finished_;
  std::optional<JobOutcome> outcome_;  // guarded by mutex_
};

}  // namespace

Result<JobRequest> ParseTestRequest(std::string_view text) {
  Result<json::value> parsed = core::ParseJson(text);
  if (!parsed.ok()) {
    return Status::InvalidArgument("test input is not valid JSON: " + parsed.status().message());
  }
  json::value document = std::move(parsed).value();
  if (!document.is_object()) {
    return Status::InvalidArgument("test input must be a JSON object with an \"input\" member");
  }
  json::object& request = document.get_object();
  auto input = request.find("input");
  if (input == request.end() || input->value().is_null()) {
    return Status::InvalidArgument("Job has no input parameter. Unable to run.");
  }
  JobRequest job;
  auto id = request.find("id");
  if (id == request.end() || id->value().is_null()) {
    job.id = "local_test";
    request["id"] = job.id;
  } else if (id->value().is_string()) {
    job.id = std::string(id->value().get_string());
  } else {
    job.id = core::ToJson(id->value());  // a numeric id, kept as given in the request
  }
  job.request = std::move(request);
  return job;
}

int RunLocalTest(const serverless::Config& config, const cli::WorkerOptions& options,
                 const WorkerIdentity& identity, std::FILE* out) {
  std::string text;
  if (options.test_input) {
    text = *options.test_input;
    log::Info("", "Using --test_input as job input.");
  } else {
    std::ifstream file("test_input.json", std::ios::binary);
    if (!file) {
      log::Warn("", "test_input.json not found, exiting.");
      return 1;
    }
    std::ostringstream contents;
    contents << file.rdbuf();
    text = contents.str();
    log::Info("", "Using test_input.json as job input.");
  }

  Result<JobRequest> request = ParseTestRequest(text);
  if (!request.ok()) {
    log::Error("", "{}", request.status().message());
    return 1;
  }
  if (options.execution_timeout > 0) {
    request->execution_timeout = Seconds(options.execution_timeout);
  }
  log::Debug(request->id, "Retrieved local job: {}", core::ToJson(request->request));

  const std::string job_id = request->id;
  // Before the queue: a waiter pending in the queue holds work on the io_context, so the queue
  // must go first.
  const std::size_t io_threads = IoThreads(options);
  boost::asio::io_context io(static_cast<int>(io_threads));
  core::MemoryJobQueue queue;
  queue.Push(std::move(*request));
  queue.Close();
  PrintingSink sink(out);

  core::SchedulerOptions scheduler_options = SchedulerOptionsFor(config, options, identity);
  scheduler_options.aggregate_stream = true;  // the final line lists every chunk, as the dev server does
  scheduler_options.refresh_worker = false;   // no effect in local mode, as in runpod-python
  core::Scheduler scheduler(io, config.handler, queue, sink, std::move(scheduler_options));

  // SIGINT or SIGTERM cancels the job and ends the run with exit code 0, as runpod-python's
  // SIGINT handler does.
  std::atomic<bool> interrupted{false};
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    interrupted = true;
    log::Info("", "{} received. Shutting down.", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    scheduler.Cancel(job_id);
  });
  std::atomic<bool> drained{false};
  boost::asio::co_spawn(io, scheduler.Run(), [&](std::exception_ptr error) {
    drained = true;
    signals.cancel();
    if (error) std::rethrow_exception(error);
  });
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < io_threads; ++i) threads.emplace_back([&io] { io.run(); });

  const JobOutcome outcome = sink.WaitForOutcome();
  const int exit_code =
      interrupted.load() || outcome.status == core::JobStatus::kCompleted ? 0 : 1;

  // A job can end (cancelled, timed out) while its blocking handler still runs. The result is
  // printed already; give the handler a moment to return, then exit without it.
  const auto give_up_at = std::chrono::steady_clock::now() + kHandlerGracePeriod;
  while (!drained.load() && std::chrono::steady_clock::now() < give_up_at) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!drained.load()) {
    log::Warn(job_id, "The handler has not returned {} s after the job ended; exiting without it.",
              kHandlerGracePeriod.count());
    std::fflush(out);
    std::fflush(stderr);
    std::_Exit(exit_code);
  }
  for (std::thread& thread : threads) thread.join();
  log::Info("", "Local testing complete, exiting.");
  return exit_code;
}

}  // namespace sluice::runtime
