// runtime/worker_setup.hpp — what every mode of the worker sets up the same way: who the worker is,
// how many I/O threads it runs, and the scheduler's options from the command line and the user's
// Config. Each mode (test_mode.cpp, api_mode.cpp, ...) starts from these and changes what differs.
//
// Pure functions over values; thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include <sluice/serverless.hpp>
#include <sluice/task.hpp>

#include "cli/options.hpp"
#include "core/scheduler.hpp"

namespace sluice::runtime {

struct WorkerIdentity {
  std::string worker_id;  // $RUNPOD_POD_ID, or a random UUID
  std::string hostname;   // $RUNPOD_POD_HOSTNAME, or "unknown"
};

/// A duration given in seconds on the command line (decimals allowed).
std::chrono::steady_clock::duration Seconds(double seconds);

/// The threads that run the io_context: `--rp_api_concurrency`, at least 1.
std::size_t IoThreads(const cli::WorkerOptions& options);

/// The scheduler's options: the limits from the command line, the modifier and the streaming and
/// refresh flags from the Config, the identity for error reports, warnings to the log.
core::SchedulerOptions SchedulerOptionsFor(const serverless::Config& config, const cli::WorkerOptions& options,
                                           const WorkerIdentity& identity);

/// Raises the soft limit of open files to the hard one: each connection of the job API holds a
/// file descriptor, and the soft limit (often 1024) would cap the clients a process can hold well
/// below what it can serve.
void RaiseFileLimit();

/// Waits, polling every 10 ms, until `done` is set or `timeout` has passed; true when it was set.
/// For a mode's drain, which waits on flags that other threads set.
Task<bool> WaitFor(const std::atomic<bool>& done, std::chrono::steady_clock::duration timeout);

/// A drain's wait for the scheduler: up to `drain_timeout` for it to finish (`done` set); then
/// cancels the jobs still running (calling `before_cancel`, when set, with each id first), logging
/// how many and `fate` (what becomes of them), and gives them 2 s more to report.
Task<void> AwaitScheduler(core::Scheduler& scheduler, const std::atomic<bool>& done,
                          std::chrono::steady_clock::duration drain_timeout, std::string_view fate,
                          std::function<void(const std::string&)> before_cancel);

/// Runs `io` on `io_threads` threads, this one included, until it stops. If the scheduler has not
/// finished by then (a blocking handler that ignores its cancellation still holds a pool thread, so
/// the scheduler cannot be destroyed under it), leaves the process at once with status 0; otherwise
/// logs `stopped` and returns the mode's exit status: 0 when `drained`, else 1.
int RunUntilStopped(boost::asio::io_context& io, std::size_t io_threads, const std::atomic<bool>& scheduler_done,
                    const std::atomic<bool>& drained, std::string_view stopped);

}  // namespace sluice::runtime
