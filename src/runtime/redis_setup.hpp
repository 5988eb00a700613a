// runtime/redis_setup.hpp — the pieces the Redis modes share (docs/scale-out.md): a worker
// consuming a queue (`--queue`), the job API over a queue (`sluice gateway`), and a worker doing
// both (`--rp_serve_api --queue`). Each mode (queue_mode.cpp, gateway_mode.cpp) is these pieces on
// one io_context, plus its signal handling and exit code.
//
//   - CheckRedisReachable: one PING before anything starts, so that a wrong address or a Redis
//     that is down is an error at start (exit 1), not a worker that retries for ever.
//   - QueueConsumer: the worker side of the queue: the commands connection, HeldJobs, the
//     RedisJobSource and RedisResultSink, the scheduler between them, and the heartbeat, reaper
//     and cancel listener beside it; `Drain` stops it in order.
//   - RedisJobApi: RunPod's job API served over a RedisJobBackend: the backend, the webhook sender,
//     the JobApi and the HTTP server in front; `Drain` stops it in order.
//
// Ownership and threads: each class borrows the io_context and the options, which outlive it, and
// owns its components. Construct and destroy them on one thread while the io_context is not
// running (as the modes do: before io.run and after it returned); Start and Drain run on the
// io_context (Drain is a coroutine), and the accessors are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include <sluice/serverless.hpp>
#include <sluice/task.hpp>

#include "api/job_api.hpp"
#include "api/webhook.hpp"
#include "cli/options.hpp"
#include "core/scheduler.hpp"
#include "http/server.hpp"
#include "redis/connection.hpp"
#include "redis/job_backend.hpp"
#include "redis/job_source.hpp"
#include "redis/queue.hpp"
#include "redis/result_sink.hpp"
#include "redis/url.hpp"
#include "runtime/worker_setup.hpp"

namespace sluice::runtime {

/// The endpoint `--queue` names. The command-line parser has checked it already.
redis::Endpoint QueueEndpoint(const cli::WorkerOptions& options);

/// Sends one PING, with the connection's connect timeout, on an io_context of its own; on failure
/// logs `Cannot reach Redis at <url without password>: <reason>` at error level and returns false.
/// Blocks the calling thread for at most the timeout.
bool CheckRedisReachable(const redis::Endpoint& endpoint);

/// The queue options of a worker: its queue and consumer name, visibility timeout, delivery limit,
/// result TTL and default execution timeout, from the command line.
redis::QueueOptions QueueOptionsFor(const cli::WorkerOptions& options);

class QueueConsumer {
 public:
  QueueConsumer(boost::asio::io_context& io, const serverless::Config& config, const cli::WorkerOptions& options,
                const WorkerIdentity& identity, const redis::Endpoint& endpoint);
  QueueConsumer(const QueueConsumer&) = delete;
  QueueConsumer& operator=(const QueueConsumer&) = delete;

  /// Starts the scheduler and the three loops, and logs
  /// `Queue worker <consumer> consuming queue '<name>' at <url without password>`.
  void Start();
  /// Takes no more jobs, gives running ones `--drain-timeout` and cancels what is left (given back
  /// to the queue: RedisResultSink::Release), waits for the results to be written, and stops the
  /// loops.
  Task<void> Drain();

  /// For the job API's /health and /metrics, and the heartbeat.
  core::Scheduler& scheduler() noexcept { return scheduler_; }
  /// Set once the scheduler's Run has ended (or when it never started).
  const std::atomic<bool>& scheduler_done() const noexcept { return scheduler_done_; }

 private:
  void Spawn(Task<void> loop, const char* what);

  boost::asio::io_context& io_;
  redis::Endpoint endpoint_;
  redis::QueueOptions queue_options_;
  std::chrono::steady_clock::duration drain_timeout_;
  redis::HeldJobs held_;
  redis::Connection commands_;       // scripts of the source, sink, heartbeat and reaper
  redis::Connection cancel_reader_;  // the cancel listener's XREAD BLOCK, alone on it
  redis::RedisJobSource source_;
  redis::RedisResultSink sink_;
  core::Scheduler scheduler_;
  std::atomic<bool> started_{false};
  std::atomic<bool> scheduler_done_{false};
  std::atomic<bool> stop_loops_{false};
  std::atomic<int> loops_running_{0};
  std::atomic<bool> loops_done_{false};
};

class RedisJobApi {
 public:
  /// `gauges` are the worker's scheduler's, or empty for a gateway (it runs no jobs).
  RedisJobApi(boost::asio::io_context& io, const cli::WorkerOptions& options, const redis::Endpoint& endpoint,
              api::WorkerGauges gauges);
  RedisJobApi(const RedisJobApi&) = delete;
  RedisJobApi& operator=(const RedisJobApi&) = delete;

  /// Starts the backend (PING, consumer group, events reader), then binds the port and logs
  /// `Job API listening on http://HOST:PORT`. False, logged, when either fails.
  Task<bool> Start();
  /// Stops accepting; requests in flight go on (new ones on open connections get 503).
  void StopAccepting() { server_.Stop(); }
  /// Lets waiting clients be answered and webhooks be delivered, then stops the backend.
  Task<void> Drain();

 private:
  const cli::WorkerOptions& options_;
  redis::Endpoint endpoint_;
  redis::RedisJobBackend backend_;
  api::WebhookSender webhooks_;
  api::JobApi job_api_;
  http::Server server_;
  bool backend_started_ = false;
};

/// Runs a Redis mode on `io` with `IoThreads(options)` threads until SIGTERM or SIGINT: starts
/// `job_api` (if any; its failure ends the mode with 1), then `consumer` (if any); on the signal
/// stops accepting requests, drains the consumer, then the job API. Returns the exit code: 0 after
/// a drain, 1 when the start failed. Logs `stopped` at the end.
int ServeUntilStopped(boost::asio::io_context& io, const cli::WorkerOptions& options, QueueConsumer* consumer,
                      RedisJobApi* job_api, std::string_view stopped);

}  // namespace sluice::runtime
