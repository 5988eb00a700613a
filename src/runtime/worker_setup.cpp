#include "runtime/worker_setup.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "log/logging.hpp"

namespace sluice::runtime {

std::chrono::steady_clock::duration Seconds(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

std::size_t IoThreads(const cli::WorkerOptions& options) {
  return static_cast<std::size_t>(std::max(1, options.api_concurrency));
}

core::SchedulerOptions SchedulerOptionsFor(const serverless::Config& config, const cli::WorkerOptions& options,
                                           const WorkerIdentity& identity) {
  core::SchedulerOptions scheduler;
  scheduler.concurrency = options.concurrency;
  scheduler.max_concurrency = options.max_concurrency;
  scheduler.concurrency_modifier = config.concurrency_modifier;
  scheduler.io_threads = IoThreads(options);
  scheduler.aggregate_stream = config.return_aggregate_stream;
  scheduler.refresh_worker = config.refresh_worker;
  scheduler.worker_id = identity.worker_id;
  scheduler.hostname = identity.hostname;
  scheduler.warn = [](const std::string& warning) { log::Warn("", "{}", warning); };
  return scheduler;
}

void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

Task<bool> WaitFor(const std::atomic<bool>& done, std::chrono::steady_clock::duration timeout) {
  constexpr auto kPollInterval = std::chrono::milliseconds(10);
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done.load() && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(kPollInterval);
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  co_return done.load();
}

Task<void> AwaitScheduler(core::Scheduler& scheduler, const std::atomic<bool>& done,
                          std::chrono::steady_clock::duration drain_timeout, std::string_view fate,
                          std::function<void(const std::string&)> before_cancel) {
  const std::chrono::steady_clock::duration cancel_grace = std::chrono::seconds(2);
  const bool finished = co_await WaitFor(done, drain_timeout);
  if (finished) co_return;
  const std::vector<std::string> left = scheduler.running_ids();
  log::Warn("", "Drain deadline reached: stopping {} running jobs ({}).", left.size(), fate);
  for (const std::string& job_id : left) {
    if (before_cancel) before_cancel(job_id);
    scheduler.Cancel(job_id);
  }
  co_await WaitFor(done, cancel_grace);
}

int RunUntilStopped(boost::asio::io_context& io, std::size_t io_threads, const std::atomic<bool>& scheduler_done,
                    const std::atomic<bool>& drained, std::string_view stopped) {
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < io_threads; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (std::thread& thread : threads) thread.join();
  if (!scheduler_done.load()) {
    log::Warn("", "A handler has not returned after its cancellation; exiting without it.");
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(0);
  }
  log::Info("", "{}", stopped);
  return drained.load() ? 0 : 1;
}

}  // namespace sluice::runtime
