// bench/runpod_bench.cpp — instant jobs per second through RunPod's production protocol (issue #5),
// run by `make bench` after the other benchmarks.
//
// Each case queues N jobs ({"id": "bench-…", "input": {}}) in a fake control plane on loopback
// (tests/fake_runpod.hpp, in this process), starts build/bin/echo in production mode against it
// as a child process (`--concurrency C`, and `--max-take-batch 1` for single take), and waits until
// every job's job-done POST has arrived. The rate is N over the time from the first take the fake
// received to the last job-done: the worker's start-up is not in it. Every job must have been
// taken once and answered exactly once, with a 2xx, or the run fails.
//
// The reference, measured in the same run with the same fake, the same N and the same take rule,
// is the protocol's ceiling here: a minimal loop in this process with sluice's own http::Client
// and the protocol helpers (take URL, headers, result POST), one take in flight at a time asking
// for min(cap, free slots) jobs, each job's job-done POSTed at once, at most C jobs between take
// and answer. No scheduler, no handler, no result mapping. Each case runs the reference and the
// worker alternately, `--repeat` times, and reports the median of each and their ratio.
//
// Cases: concurrency 1 and 8, single take (`--max-take-batch 1`) and batch take (the default, 64:
// one job-take-batch for every free slot). At concurrency 1 only one slot is ever free, so the
// batch case sends single job-takes too; it is run to show that.
//
//   build/bin/runpod_bench [--jobs N] [--repeat R] [--worker PATH]
//
// --jobs defaults to BENCH_RUNPOD_JOBS or 10,000, --repeat to BENCH_RUNPOD_REPEAT or 3, --worker
// to the `echo` next to this program. Besides the rate it prints the CPU time per job of the
// worker (user + system from /proc/PID/stat, start-up included) or of the reference's client loop,
// and of the fake control plane (its I/O thread), which vary less than rates on a shared machine.
// Exit status: 0 when every run completed and checked, 1 otherwise, 2 for a bad command line.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <fmt/format.h>

#include "bench_programs.hpp"
#include "child_process.hpp"
#include "fake_runpod.hpp"
#include "http/client.hpp"
#include "runpod/control_plane.hpp"
#include "runpod/protocol.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using sluice::bench::Grouped;
using sluice::bench::StatCpuSeconds;
using sluice::bench::ThreadCpuSeconds;
using sluice::Task;
using sluice::testing::FakeRunPod;
using sluice::testing::RecordedRequest;
using sluice::testing::Route;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The answer the reference posts: what echo answers for {"input": {}}.
constexpr std::string_view kDoneBody = R"({"output": {}})";
// How long one run may take before it counts as failed.
constexpr auto kRunTimeout = 120s;
// How often the waiting thread looks at the fake's count; short beside a run of seconds.
constexpr auto kPollInterval = 2ms;
// runpod.md §8: runpod-python's production loop on this kind of machine, instant jobs.
constexpr double kRunpodPythonJobsPerSecondPerSlot = 1.0;
// The worker's --max-take-batch default: the batch cases run without the flag.
constexpr std::size_t kDefaultMaxTakeBatch = 64;

struct Case {
  int concurrency;
  std::size_t max_take_batch;  // 1: single take
  const char* name;
};

struct RunResult {
  double jobs_per_second = 0;
  double seconds = 0;
  std::size_t takes = 0;
  std::size_t batch_takes = 0;
  double process_cpu_us_per_job = 0;  // the worker's (worker runs) or the client loop's (reference)
  double plane_cpu_us_per_job = 0;    // the fake control plane's
};

std::set<std::string> ThreadsOfThisProcess() {
  std::set<std::string> threads;
  for (const auto& entry : fs::directory_iterator("/proc/self/task")) threads.insert(entry.path().filename());
  return threads;
}

// The fake control plane with the threads it started (its I/O thread), whose CPU time is the
// control plane's cost, apart from this process's other threads (the reference's client loop, the
// worker's output reader).
struct MeasuredFake {
  std::unique_ptr<FakeRunPod> fake;
  std::vector<std::string> threads;

  double CpuSeconds() const {
    double total = 0;
    for (const std::string& thread : threads) total += StatCpuSeconds("/proc/self/task/" + thread + "/stat").value_or(0);
    return total;
  }
};

// A fresh fake (each run's records start empty) holding `jobs` queued jobs.
MeasuredFake StartFake(std::size_t jobs) {
  sluice::testing::FakeRunPodOptions options;
  // Only the take after the last job and the stop poll wait this long; a short hold keeps the
  // worker's drain (which finishes its take in flight) short.
  options.long_poll_timeout = 250ms;
  const std::set<std::string> before = ThreadsOfThisProcess();
  MeasuredFake measured{std::make_unique<FakeRunPod>(options), {}};
  std::ranges::set_difference(ThreadsOfThisProcess(), before, std::back_inserter(measured.threads));
  for (std::size_t i = 0; i < jobs; ++i) measured.fake->AddJob(fmt::format("bench-{:08}", i), boost::json::object{});
  return measured;
}

// Waits until `jobs` job-done POSTs have arrived (false when `give_up` says so first). It looks
// every few milliseconds rather than waiting on the fake's condition variable, which is signalled
// twice per request: a thread woken that often would take CPU from the worker it measures.
bool WaitForDonePosts(const FakeRunPod& fake, std::size_t jobs, const std::function<bool()>& give_up) {
  std::size_t scanned = 0;
  std::size_t done = 0;
  const auto count_new = [&](const std::vector<RecordedRequest>& requests) {
    for (; scanned < requests.size(); ++scanned) done += requests[scanned].route == Route::kJobDone ? 1 : 0;
    return done >= jobs;
  };
  const auto deadline = Clock::now() + kRunTimeout;
  while (!fake.WaitUntil(count_new, Clock::duration::zero())) {
    if (give_up() || Clock::now() > deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
  return true;
}

// Checks what the fake recorded (each job taken once, answered exactly once with a 2xx) and fills
// the rate and the take counts. Throws std::runtime_error naming what is wrong.
void Analyse(const FakeRunPod& fake, std::size_t jobs, RunResult& result) {
  const std::vector<std::string> taken = fake.TakenJobs();
  if (taken.size() != jobs) throw std::runtime_error(fmt::format("{} jobs taken of {}", taken.size(), jobs));
  if (std::unordered_set<std::string>(taken.begin(), taken.end()).size() != jobs) {
    throw std::runtime_error("a job was handed out twice");
  }
  std::optional<Clock::time_point> first_take;
  Clock::time_point last_done{};
  std::unordered_map<std::string, int> answers;
  for (const RecordedRequest& request : fake.Requests()) {
    if (request.route == Route::kJobTake || request.route == Route::kJobTakeBatch) {
      if (!first_take) first_take = request.received;
      if (request.jobs_served.empty()) continue;  // the worker's take after the last job
      ++result.takes;
      if (request.route == Route::kJobTakeBatch) ++result.batch_takes;
    } else if (request.route == Route::kJobDone) {
      if (!request.Accepted()) throw std::runtime_error("a job-done POST was not accepted: " + request.Describe());
      ++answers[request.job_id];
      last_done = std::max(last_done, request.received);
    } else if (request.route == Route::kUnknown) {
      throw std::runtime_error("the fake did not know a request: " + request.Describe());
    }
  }
  if (answers.size() != jobs) throw std::runtime_error(fmt::format("{} jobs answered of {}", answers.size(), jobs));
  for (const auto& [id, count] : answers) {
    if (count != 1) throw std::runtime_error(fmt::format("job {} answered {} times", id, count));
  }
  result.seconds = std::chrono::duration<double>(last_done - *first_take).count();
  result.jobs_per_second = static_cast<double>(jobs) / result.seconds;
}

// ----- the reference: take → done in this process, no scheduler ------------------------------

class ReferenceLoop {
 public:
  ReferenceLoop(asio::io_context& io, const FakeRunPod& fake, const Case& shape, std::size_t jobs)
      : io_(io), client_(io.get_executor(), ClientOptions()), shape_(shape), jobs_(jobs),
        free_slots_(static_cast<std::size_t>(shape.concurrency)), slot_freed_(io) {
    sluice::runpod::Environment environment;
    environment.get_job = fake.TakeUrlTemplate();
    environment.post_output = fake.DoneUrlTemplate();
    environment.api_key = fake.options().api_key;
    plane_.urls = sluice::runpod::TemplateUrls(environment, fake.options().pod_id);
    plane_.api_key = environment.api_key;
    plane_.user_agent = "sluice-runpod-bench";
    plane_.client = &client_;
  }

  // Runs on the io_context until every job is answered; throws if a request failed.
  void Run() {
    asio::co_spawn(io_, Take(), [](std::exception_ptr error) {
      if (error) std::rethrow_exception(error);
    });
    io_.run();
    if (failures_ > 0) throw std::runtime_error(fmt::format("reference: {} requests failed", failures_));
  }

 private:
  static sluice::http::ClientOptions ClientOptions() {
    sluice::http::ClientOptions options;
    options.max_idle_per_host = 64;  // as the production worker's client
    return options;
  }

  // One take in flight at a time, as the worker's dispatcher: for min(cap, free slots) jobs.
  Task<void> Take() {
    while (taken_ < jobs_ && failures_ == 0) {
      while (free_slots_ == 0) {
        slot_freed_.expires_at(Clock::time_point::max());
        (void)co_await slot_freed_.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      const std::size_t wanted = std::min(shape_.max_take_batch, free_slots_);
      auto answer = co_await client_.Send(
          plane_.Get(sluice::runpod::TakeUrl(plane_.urls, wanted, in_flight_ > 0), std::chrono::seconds(90)));
      if (!answer.ok()) {
        ++failures_;
        io_.stop();
        co_return;
      }
      sluice::runpod::TakeAnswer parsed =
          sluice::runpod::ParseTakeAnswer(answer->status, answer->header("Content-Type"), answer->body);
      for (sluice::core::JobRequest& job : parsed.jobs) {
        --free_slots_;
        ++taken_;
        ++in_flight_;
        asio::co_spawn(io_, Done(std::move(job.id)), asio::detached);
      }
    }
  }

  Task<void> Done(std::string job_id) {
    auto answer = co_await client_.Send(plane_.Post(sluice::runpod::JobUrl(plane_.urls.done_template, job_id, false),
                                                    std::string(kDoneBody), std::chrono::seconds(30)));
    if (!answer.ok() || answer->status < 200 || answer->status >= 300) ++failures_;
    ++free_slots_;
    --in_flight_;
    slot_freed_.cancel();
    if (++answered_ == jobs_ || failures_ > 0) io_.stop();
  }

  asio::io_context& io_;
  sluice::http::Client client_;
  sluice::runpod::ControlPlane plane_;
  const Case shape_;
  const std::size_t jobs_;
  // Only on the io_context's one thread.
  std::size_t free_slots_;
  std::size_t taken_ = 0;
  std::size_t in_flight_ = 0;
  std::size_t answered_ = 0;
  std::size_t failures_ = 0;
  asio::steady_timer slot_freed_;
};

RunResult RunReference(const Case& shape, std::size_t jobs) {
  MeasuredFake measured = StartFake(jobs);
  asio::io_context io(1);
  const double plane_cpu_before = measured.CpuSeconds();
  const double client_cpu_before = ThreadCpuSeconds();
  ReferenceLoop(io, *measured.fake, shape, jobs).Run();
  const double client_cpu = ThreadCpuSeconds() - client_cpu_before;
  const double plane_cpu = measured.CpuSeconds() - plane_cpu_before;
  RunResult result;
  Analyse(*measured.fake, jobs, result);
  result.process_cpu_us_per_job = client_cpu * 1e6 / static_cast<double>(jobs);
  result.plane_cpu_us_per_job = plane_cpu * 1e6 / static_cast<double>(jobs);
  return result;
}

// ----- the worker: build/bin/echo in production mode ------------------------------------------

RunResult RunWorker(const Case& shape, std::size_t jobs, const fs::path& worker_path) {
  MeasuredFake measured = StartFake(jobs);
  std::vector<std::string> flags = {"--rp_log_level", "INFO", "--concurrency", std::to_string(shape.concurrency)};
  if (shape.max_take_batch != kDefaultMaxTakeBatch) {
    flags.insert(flags.end(), {"--max-take-batch", std::to_string(shape.max_take_batch)});
  }
  const double plane_cpu_before = measured.CpuSeconds();
  sluice::testing::ChildProcess worker(worker_path, flags, {.env = measured.fake->WorkerEnvironment()});
  if (!worker.started()) throw std::runtime_error("cannot start " + worker_path.string() + ": " + worker.error());
  const bool finished = WaitForDonePosts(*measured.fake, jobs, [&worker] {
    return worker.WaitForExit(Clock::duration::zero()).has_value();  // it died
  });
  const std::optional<double> worker_cpu = StatCpuSeconds(fmt::format("/proc/{}/stat", worker.pid()));
  const double plane_cpu = measured.CpuSeconds() - plane_cpu_before;
  if (!finished) {
    worker.Kill();
    throw std::runtime_error("the worker did not answer every job in time: " + worker.Describe());
  }
  worker.Signal(SIGTERM);
  const std::optional<int> code = worker.WaitForExit(30s);
  if (code != 0) throw std::runtime_error("the worker did not exit 0 after SIGTERM: " + worker.Describe());
  RunResult result;
  Analyse(*measured.fake, jobs, result);
  result.process_cpu_us_per_job = worker_cpu.value_or(0) * 1e6 / static_cast<double>(jobs);
  result.plane_cpu_us_per_job = plane_cpu * 1e6 / static_cast<double>(jobs);
  return result;
}

// ----- main -----------------------------------------------------------------------------------

RunResult Median(std::vector<RunResult> runs) {
  std::sort(runs.begin(), runs.end(),
            [](const RunResult& a, const RunResult& b) { return a.jobs_per_second < b.jobs_per_second; });
  return runs[runs.size() / 2];
}

std::string Describe(const char* who, const Case& shape, std::size_t jobs, const RunResult& run) {
  return fmt::format("{:<9} {:<32} {} jobs in {:.3f} s = {:>9} jobs/s; {} takes ({} batch), {:.1f} jobs/take; "
                     "CPU per job: {} {:.1f} µs, control plane {:.1f} µs",
                     who, shape.name, jobs, run.seconds, Grouped(run.jobs_per_second), run.takes, run.batch_takes,
                     static_cast<double>(jobs) / static_cast<double>(run.takes),
                     std::string_view(who) == "worker" ? "worker" : "client", run.process_cpu_us_per_job,
                     run.plane_cpu_us_per_job);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t jobs = sluice::bench::PositiveNumber(std::getenv("BENCH_RUNPOD_JOBS")).value_or(10000);
  std::size_t repeat = sluice::bench::PositiveNumber(std::getenv("BENCH_RUNPOD_REPEAT")).value_or(3);
  fs::path worker_path = sluice::bench::BinDir() / "echo";
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    std::optional<std::size_t> number = sluice::bench::PositiveNumber(value);
    if (flag == "--jobs" && number) {
      jobs = *number;
    } else if (flag == "--repeat" && number) {
      repeat = *number;
    } else if (flag == "--worker" && value != nullptr) {
      worker_path = value;
    } else {
      std::fprintf(stderr, "usage: %s [--jobs N] [--repeat R] [--worker PATH]\n", argv[0]);
      return 2;
    }
    ++i;
  }
  if (!fs::exists(worker_path)) {
    std::fprintf(stderr, "runpod_bench: %s not built\n", worker_path.c_str());
    return 1;
  }

  const std::vector<Case> cases = {
      {1, 1, "concurrency 1, single take"},
      {1, kDefaultMaxTakeBatch, "concurrency 1, batch take"},
      {8, 1, "concurrency 8, single take"},
      {8, kDefaultMaxTakeBatch, "concurrency 8, batch take"},
  };
  fmt::print("== RunPod production worker: {} instant jobs per run through the fake control plane on loopback, "
             "{} runs per case ({} against the reference)\n",
             Grouped(static_cast<double>(jobs)), repeat, worker_path.string());
  struct Row {
    Case shape;
    RunResult worker;
    RunResult reference;
  };
  std::vector<Row> rows;
  try {
    for (const Case& shape : cases) {
      std::vector<RunResult> worker_runs;
      std::vector<RunResult> reference_runs;
      for (std::size_t run = 0; run < repeat; ++run) {
        reference_runs.push_back(RunReference(shape, jobs));
        fmt::print("{}\n", Describe("reference", shape, jobs, reference_runs.back()));
        worker_runs.push_back(RunWorker(shape, jobs, worker_path));
        fmt::print("{}\n", Describe("worker", shape, jobs, worker_runs.back()));
        std::fflush(stdout);
      }
      rows.push_back({shape, Median(worker_runs), Median(reference_runs)});
    }
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "runpod_bench: %s\n", error.what());
    return 1;
  }

  fmt::print("\n| case | worker jobs/s | reference jobs/s | ratio | jobs per take | worker CPU per job | "
             "control plane CPU per job | runpod-python (quoted) |\n");
  fmt::print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& row : rows) {
    fmt::print("| {} | {} | {} | {:.3f} | {:.1f} | {:.1f} µs | {:.1f} µs | about {:.0f} |\n", row.shape.name,
               Grouped(row.worker.jobs_per_second), Grouped(row.reference.jobs_per_second),
               row.worker.jobs_per_second / row.reference.jobs_per_second,
               static_cast<double>(jobs) / static_cast<double>(row.worker.takes), row.worker.process_cpu_us_per_job,
               row.worker.plane_cpu_us_per_job, kRunpodPythonJobsPerSecondPerSlot * row.shape.concurrency);
  }
  double best_at_8 = 0;
  for (const Row& row : rows) {
    if (row.shape.concurrency == 8) best_at_8 = std::max(best_at_8, row.worker.jobs_per_second);
  }
  fmt::print("\nrunpod-python: about 1 job/s per slot (1.05 jobs/s at concurrency 1, 4.95 at 4; spec/runpod.md §8, "
             "not measured here).\ntarget (issue #5): at least 5,000 jobs/s at concurrency 8: {} ({} jobs/s)\n",
             best_at_8 >= 5000 ? "yes" : "no", Grouped(best_at_8));
  return 0;
}
