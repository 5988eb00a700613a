// Coroutine-heavy: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames under the
// sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "runtime/production_mode.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/scheduler.hpp"
#include "http/client.hpp"
#include "log/logging.hpp"
#include "runpod/background.hpp"
#include "runpod/control_plane.hpp"
#include "runpod/debugger.hpp"
#include "runpod/job_source.hpp"
#include "runpod/result_sink.hpp"

namespace sluice::runtime {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kResultGrace = std::chrono::seconds(30);

}  // namespace

int RunRunpodWorker(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity) {
  const runpod::Environment environment = runpod::Environment::Read([](const char* name) { return std::getenv(name); });
  runpod::ControlPlane plane;
  plane.urls = runpod::TemplateUrls(environment, identity.worker_id);
  plane.api_key = environment.api_key;
  plane.user_agent = runpod::UserAgentForThisMachine(environment.ua_integration);
  if (options.execution_timeout > 0) plane.result_window = Seconds(options.execution_timeout);
  if (plane.urls.take.find('?') == std::string::npos) {
    log::Warn("", "RUNPOD_WEBHOOK_GET_JOB has no '?': the worker appends '&job_in_progress=...' as runpod-python does");
  }
  if (plane.urls.done_template.empty()) {
    log::Error("", "RUNPOD_WEBHOOK_POST_OUTPUT is not set: results could not be posted");
    return 1;
  }
  if (!plane.urls.stop) log::Warn("", "The job-take URL has no /job-take/: the job-stop channel is disabled");

  const std::size_t io_threads = IoThreads(options);
  asio::io_context io(static_cast<int>(io_threads));
  http::ClientOptions client_options;
  client_options.user_agent = plane.user_agent;
  client_options.max_idle_per_host = 64;  // concurrent result POSTs, the take, the stop poll, the ping
  http::Client client(io.get_executor(), client_options);
  plane.client = &client;

  std::atomic<bool> drain_started{false};
  std::atomic<bool> background_stop{false};
  std::atomic<bool> scheduler_done{false};
  std::atomic<bool> drained{false};
  std::function<void(const char*)> begin_drain;

  runpod::RunpodResultSink::Options sink_options;
  sink_options.executor = io.get_executor();
  sink_options.streaming_handler = config.handler.is_streaming();
  sink_options.post_timeout = Seconds(options.post_timeout);
  sink_options.after_final = [&](const std::string& job_id) {
    if (config.refresh_worker) {
      log::Info(job_id, "refresh_worker is set: this worker stops after this job.");
      begin_drain("refresh_worker");
    }
  };
  runpod::RunpodResultSink sink(plane, std::move(sink_options));

  runpod::RunpodJobSource::Options source_options;
  source_options.reject = [&sink](const std::string& job_id, const std::string& why) { sink.Reject(job_id, why); };
  runpod::RunpodJobSource source(plane, std::move(source_options));

  // --rp_debugger: the scheduler sees the same source and sink, wrapped to time each job.
  runpod::JobTimings timings(runpod::SystemInfo::OfThisMachine());
  runpod::DebuggerJobSource timed_source(source, timings);
  runpod::DebuggerResultSink timed_sink(sink, timings);
  core::JobSource& scheduler_source = options.debugger ? static_cast<core::JobSource&>(timed_source) : source;
  core::ResultSink& scheduler_sink = options.debugger ? static_cast<core::ResultSink&>(timed_sink) : sink;
  if (options.debugger) log::Info("", "--rp_debugger: every result's output gets rp_debugger timings.");

  core::SchedulerOptions scheduler_options = SchedulerOptionsFor(config, options, identity);
  scheduler_options.max_jobs_per_take = options.max_take_batch;  // 1: the single job-take only
  core::Scheduler scheduler(io, config.handler, scheduler_source, scheduler_sink, std::move(scheduler_options));

  begin_drain = [&](const char* why) {
    if (drain_started.exchange(true)) return;
    log::Info("", "{}: draining (no more jobs taken; up to {} s for running jobs).", why, options.drain_timeout);
    source.Stop();
    asio::co_spawn(
        io,
        [&]() -> Task<void> {
          const Clock::duration drain_timeout = Seconds(options.drain_timeout);
          const std::string_view fate = "no result is posted for them";
          std::function<void(const std::string&)> no_hook;
          co_await AwaitScheduler(scheduler, scheduler_done, drain_timeout, fate, std::move(no_hook));
          if (!co_await sink.Drain(kResultGrace)) {
            log::Error("", "{} result POSTs were still pending at exit.", sink.pending());
          }
          background_stop = true;
          drained = true;
          io.stop();
        },
        asio::detached);
  };

  asio::co_spawn(io, scheduler.Run(), [&](std::exception_ptr error) {
    scheduler_done = true;
    if (error) log::LogFailure("scheduler", "its run", error);
  });
  if (!plane.urls.ping.empty()) {
    const std::chrono::milliseconds interval = runpod::PingInterval(environment.ping_interval_ms);
    asio::co_spawn(io, runpod::RunHeartbeat(plane, interval, background_stop), [](std::exception_ptr error) {
      if (error) log::LogFailure("heartbeat", "the ping loop", error);
    });
  } else {
    log::Warn("", "RUNPOD_WEBHOOK_PING is not set: no heartbeat");
  }
  asio::co_spawn(
      io, runpod::RunStopChannel(plane, [&scheduler](const std::string& job_id) { return scheduler.Cancel(job_id); }, background_stop),
      [](std::exception_ptr error) {
        if (error) log::LogFailure("job-stop channel", "the poll loop", error);
      });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    begin_drain(signal_number == SIGINT ? "SIGINT received" : "SIGTERM received");
  });
  log::Info("", "RunPod worker {} taking jobs from {}", identity.worker_id, plane.urls.take);

  return RunUntilStopped(io, io_threads, scheduler_done, drained, "RunPod worker stopped.");
}

}  // namespace sluice::runtime
