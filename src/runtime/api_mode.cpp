#include "runtime/api_mode.hpp"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "api/job_api.hpp"
#include "api/webhook.hpp"
#include "core/job_store.hpp"
#include "core/memory_job_backend.hpp"
#include "core/scheduler.hpp"
#include "http/server.hpp"
#include "log/logging.hpp"

namespace sluice::runtime {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// After the drain deadline, how long cancelled jobs get to report, waiting clients to be
// answered, and webhooks to be delivered, before the process exits regardless.
constexpr auto kCancelGrace = std::chrono::seconds(2);
constexpr auto kResponseGrace = std::chrono::seconds(2);
constexpr auto kWebhookGrace = std::chrono::seconds(5);
constexpr auto kSweepInterval = std::chrono::seconds(1);
constexpr std::size_t kTrimAfterForgetting = 10000;

}  // namespace

int RunJobApi(const serverless::Config& config, const cli::WorkerOptions& options, const WorkerIdentity& identity) {
  RaiseFileLimit();
  const std::size_t io_threads = IoThreads(options);
  asio::io_context io(static_cast<int>(io_threads));

  core::JobStoreOptions store_options;
  store_options.max_queue = options.max_queue;
  store_options.result_ttl = Seconds(options.result_ttl);
  store_options.max_results = options.max_results;
  if (options.execution_timeout > 0) store_options.default_execution_timeout = Seconds(options.execution_timeout);
  core::JobStore store(std::move(store_options));
  // The job API reaches the store only through the JobBackend port; the scheduler takes from the
  // store and reports to it directly.
  core::MemoryJobBackend backend(store);

  api::WebhookSender webhooks(io.get_executor());
  core::SchedulerOptions scheduler_options = SchedulerOptionsFor(config, options, identity);
  scheduler_options.refresh_worker = false;  // no effect outside RunPod production, as in runpod-python
  core::Scheduler scheduler(io, config.handler, store, store, std::move(scheduler_options));

  api::JobApiOptions api_options;
  api_options.auth_token = options.auth_token;
  api_options.max_body_bytes = options.max_body_bytes;
  api::JobApi job_api(backend, webhooks, std::move(api_options),
                      {.concurrency_limit = [&scheduler] { return scheduler.limit(); },
                       .jobs_running = [&scheduler] { return scheduler.running(); }});
  store.SetCanceller([&scheduler](std::string_view job_id) { return scheduler.Cancel(job_id); });
  store.SetFinishListener([&job_api](const core::JobView& job) { job_api.OnJobFinished(job); });

  http::ServerOptions server_options;
  server_options.host = options.api_host;
  server_options.port = static_cast<std::uint16_t>(options.api_port);
  server_options.io_threads = io_threads;
  server_options.body_limit = [&job_api](const http::RequestHead& head) { return job_api.BodyLimit(head); };
  http::Server server(
      io, [&job_api](http::Request& request, http::ResponseWriter& writer) { return job_api.Handle(request, writer); },
      std::move(server_options));
  if (const core::Status started = server.Start(); !started.ok()) {
    log::Error("", "Cannot serve the job API: {}", started.message());
    return 1;
  }
  log::Info("", "Job API listening on http://{}:{}", options.api_host, server.port());

  std::atomic<bool> scheduler_done{false};
  asio::co_spawn(io, scheduler.Run(), [&](std::exception_ptr error) {
    scheduler_done = true;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        log::Error("", "The scheduler stopped: {}", e.what());
      }
    }
  });

  // Results past --result-ttl are forgotten as requests come; this also does it when none come.
  // glibc keeps what the store frees for later reuse; once many jobs are gone since the most the
  // store held, that memory goes back to the system, so a burst does not leave the RSS at its peak.
  asio::steady_timer sweep_timer(io);
  std::size_t most_jobs_held = 0;
  std::function<void()> schedule_sweep = [&] {
    sweep_timer.expires_after(kSweepInterval);
    sweep_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      backend.ForgetExpired();  // the store's results and the idempotency keys past their time
      const core::JobCounts counts = store.counts();
      const std::size_t held = counts.retained + counts.in_queue + counts.in_progress;
      most_jobs_held = std::max(most_jobs_held, held);
      if (most_jobs_held - held >= kTrimAfterForgetting) {
        malloc_trim(0);
        most_jobs_held = held;
      }
      schedule_sweep();
    });
  };
  schedule_sweep();

  std::atomic<bool> drained{false};
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec) return;
    log::Info("", "{} received: draining (up to {} s for running jobs).",
              signal_number == SIGINT ? "SIGINT" : "SIGTERM", options.drain_timeout);
    asio::co_spawn(
        io,
        [&]() -> Task<void> {
          server.Stop();
          store.Close();
          if (!co_await WaitFor(scheduler_done, Seconds(options.drain_timeout))) {
            const core::JobCounts left = store.counts();
            log::Warn("", "Drain deadline reached: cancelling {} queued and {} running jobs.", left.in_queue,
                      left.in_progress);
            store.CancelAll();
            co_await WaitFor(scheduler_done, kCancelGrace);
          }
          co_await server.Drain(kResponseGrace);
          if (!co_await webhooks.Drain(kWebhookGrace)) {
            log::Warn("", "{} webhooks were still being delivered at exit.", webhooks.pending());
          }
          drained = true;
          io.stop();
        },
        asio::detached);
  });

  return RunUntilStopped(io, io_threads, scheduler_done, drained, "Job API stopped.");
}

}  // namespace sluice::runtime
