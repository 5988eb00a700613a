// Coroutine-heavy: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames under the
// sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "runtime/redis_setup.hpp"

#include <csignal>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "log/logging.hpp"
#include "redis/background.hpp"

namespace sluice::runtime {
namespace asio = boost::asio;

namespace {

// How long results get to be written, waiting clients to be answered and webhooks to be delivered
// during a drain, before the process exits regardless.
constexpr auto kResultGrace = std::chrono::seconds(30);
constexpr auto kResponseGrace = std::chrono::seconds(2);
constexpr auto kWebhookGrace = std::chrono::seconds(5);
// The loops notice their stop flag after their current read, at most one BLOCK (2 s).
constexpr auto kLoopsGrace = std::chrono::seconds(5);

core::SchedulerOptions QueueSchedulerOptions(const serverless::Config& config, const cli::WorkerOptions& options,
                                             const WorkerIdentity& identity) {
  core::SchedulerOptions scheduler = SchedulerOptionsFor(config, options, identity);
  scheduler.refresh_worker = false;  // no effect outside RunPod production, as in runpod-python
  return scheduler;
}

redis::BackendOptions BackendOptionsFor(const cli::WorkerOptions& options) {
  redis::BackendOptions backend;
  backend.queue = options.queue_name;
  backend.result_ttl = std::chrono::ceil<std::chrono::seconds>(Seconds(options.result_ttl));  // EXPIRE takes seconds
  backend.max_queue = options.max_queue;
  return backend;
}

}  // namespace

redis::Endpoint QueueEndpoint(const cli::WorkerOptions& options) {
  core::Result<redis::Endpoint> endpoint = redis::ParseUrl(options.queue);
  // cli::ParseCommandLine refuses a malformed --queue; this is a programming error.
  if (!endpoint.ok()) throw std::invalid_argument(endpoint.status().message());
  return *endpoint;
}

bool CheckRedisReachable(const redis::Endpoint& endpoint) {
  const redis::ConnectionOptions connection_options;
  asio::io_context io(1);
  core::Status status = core::Status::Unavailable("no answer to PING");
  {
    redis::Connection probe(io.get_executor(), endpoint, connection_options);
    asio::co_spawn(
        io,
        [&]() -> Task<void> {
          std::vector<std::string> ping{"PING"};
          core::Result<redis::Reply> reply = co_await probe.Command(std::move(ping), connection_options.connect_timeout);
          if (!reply.ok()) {
            status = reply.status();
          } else if (reply->is_error()) {
            status = core::Status::Unavailable(reply->str());  // -LOADING, -NOAUTH, ...
          } else {
            status = core::Status::Ok();
          }
          probe.Close();
        },
        [&](std::exception_ptr error) {
          if (error) status = core::Status::Internal(log::DescribeException(error));
        });
    // Close() ends the connection's work, and run returns; the bound only guards against a hang.
    io.run_for(connection_options.connect_timeout + std::chrono::seconds(2));
  }
  if (!status.ok()) {
    log::Error("", "Cannot reach Redis at {}: {}", endpoint.Redacted(), status.message());
    return false;
  }
  return true;
}

redis::QueueOptions QueueOptionsFor(const cli::WorkerOptions& options) {
  redis::QueueOptions queue;
  queue.queue = options.queue_name;
  queue.consumer = options.consumer_name.empty() ? redis::DefaultConsumerName() : options.consumer_name;
  queue.visibility_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(Seconds(options.visibility_timeout));
  queue.max_deliveries = options.max_deliveries;
  queue.result_ttl = std::chrono::ceil<std::chrono::seconds>(Seconds(options.result_ttl));
  if (options.execution_timeout > 0) queue.default_execution_timeout = Seconds(options.execution_timeout);
  return queue;
}

// --- QueueConsumer ---

QueueConsumer::QueueConsumer(asio::io_context& io, const serverless::Config& config,
                             const cli::WorkerOptions& options, const WorkerIdentity& identity,
                             const redis::Endpoint& endpoint)
    : io_(io),
      endpoint_(endpoint),
      queue_options_(QueueOptionsFor(options)),
      drain_timeout_(Seconds(options.drain_timeout)),
      commands_(io.get_executor(), endpoint),
      cancel_reader_(io.get_executor(), endpoint),
      source_(io.get_executor(), endpoint, commands_, queue_options_, held_),
      sink_(io.get_executor(), commands_, queue_options_, held_),
      scheduler_(io, config.handler, source_, sink_, QueueSchedulerOptions(config, options, identity)) {}

void QueueConsumer::Spawn(Task<void> loop, const char* what) {
  loops_running_.fetch_add(1);
  asio::co_spawn(io_, std::move(loop), [this, what](std::exception_ptr error) {
    if (error) log::LogFailure(what, "its loop", error);
    if (loops_running_.fetch_sub(1) == 1 && stop_loops_.load()) loops_done_ = true;
  });
}

void QueueConsumer::Start() {
  started_ = true;
  asio::co_spawn(io_, scheduler_.Run(), [this](std::exception_ptr error) {
    scheduler_done_ = true;
    if (error) log::LogFailure("scheduler", "its run", error);
  });
  auto load = [this] {
    return redis::WorkerLoad{static_cast<int>(scheduler_.running()), scheduler_.limit()};
  };
  Spawn(redis::RunHeartbeat(commands_, queue_options_, redis::EntriesOf(held_, source_), load, stop_loops_),
        "heartbeat");
  Spawn(redis::RunReaper(commands_, queue_options_, source_, stop_loops_), "reaper");
  // A cancel names a job this worker may hold in either of two places; see
  // RedisJobSource::CancelStarting for why the source is asked first.
  auto cancel = [this](const std::string& job_id) { return source_.CancelStarting(job_id) || scheduler_.Cancel(job_id); };
  Spawn(redis::RunCancelListener(cancel_reader_, queue_options_, cancel, stop_loops_), "cancel listener");
  log::Info("", "Queue worker {} consuming queue '{}' at {}", queue_options_.consumer, queue_options_.queue,
            endpoint_.Redacted());
}

Task<void> QueueConsumer::Drain() {
  if (!started_.load()) {
    scheduler_done_ = true;
    co_return;
  }
  source_.Stop();
  // Every argument is a named value: g++ 12 miscompiles temporaries made inside a co_await
  // expression (a literal converted to string_view here broke this frame).
  // A job still running at the deadline is given back rather than ended: its entry stays pending
  // and another worker runs it after the visibility timeout (at-least-once, docs/scale-out.md).
  const std::string_view fate = "they go back to the queue for another worker";
  std::function<void(const std::string&)> give_back = [this](const std::string& job_id) { sink_.Release(job_id); };
  co_await AwaitScheduler(scheduler_, scheduler_done_, drain_timeout_, fate, std::move(give_back));
  const std::chrono::steady_clock::duration result_grace = kResultGrace;
  const bool written = co_await sink_.Drain(result_grace);
  if (!written) log::Error("", "{} result writes to Redis were still pending at exit.", sink_.pending());
  stop_loops_ = true;
  if (loops_running_.load() == 0) loops_done_ = true;
  const std::chrono::steady_clock::duration loops_grace = kLoopsGrace;
  const bool stopped = co_await WaitFor(loops_done_, loops_grace);
  if (!stopped) log::Warn("", "The queue's background loops had not stopped at exit.");
}

// --- RedisJobApi ---

RedisJobApi::RedisJobApi(asio::io_context& io, const cli::WorkerOptions& options, const redis::Endpoint& endpoint,
                         api::WorkerGauges gauges)
    : options_(options),
      endpoint_(endpoint),
      backend_(io.get_executor(), endpoint, BackendOptionsFor(options)),
      webhooks_(io.get_executor()),
      job_api_(backend_, webhooks_,
               api::JobApiOptions{.auth_token = options.auth_token, .max_body_bytes = options.max_body_bytes},
               std::move(gauges)),
      server_(
          io, [this](http::Request& request, http::ResponseWriter& writer) { return job_api_.Handle(request, writer); },
          http::ServerOptions{.host = options.api_host,
                              .port = static_cast<std::uint16_t>(options.api_port),
                              .body_limit = [this](const http::RequestHead& head) { return job_api_.BodyLimit(head); },
                              .io_threads = IoThreads(options)}) {
  // Every job the events reader sees end: /metrics histograms, and the webhook this gateway claimed.
  backend_.SetFinishListener([this](const core::JobView& job) { job_api_.OnJobFinished(job); });
}

Task<bool> RedisJobApi::Start() {
  const core::Status backend = co_await backend_.Start();
  if (!backend.ok()) {
    log::Error("", "Cannot reach Redis at {}: {}", endpoint_.Redacted(), backend.message());
    co_return false;
  }
  backend_started_ = true;
  if (const core::Status started = server_.Start(); !started.ok()) {
    log::Error("", "Cannot serve the job API: {}", started.message());
    co_return false;
  }
  log::Info("", "Job API listening on http://{}:{}", options_.api_host, server_.port());
  co_return true;
}

Task<void> RedisJobApi::Drain() {
  const std::chrono::steady_clock::duration response_grace = kResponseGrace;
  co_await server_.Drain(response_grace);
  const std::chrono::steady_clock::duration webhook_grace = kWebhookGrace;
  const bool delivered = co_await webhooks_.Drain(webhook_grace);
  if (!delivered) log::Warn("", "{} webhooks were still being delivered at exit.", webhooks_.pending());
  if (backend_started_) {
    co_await backend_.Stop();
  }
}

// --- the modes' run ---

namespace {

// Requests first (no new jobs come in), then the jobs, then the answers to waiting clients: a
// /runsync for a job that ends during the drain still gets its result. Plain coroutines with their
// arguments copied into the frame, rather than capturing lambdas, so that nothing they use lives in
// a closure that may be gone when they resume.
Task<void> DrainParts(QueueConsumer* consumer, RedisJobApi* job_api) {
  if (job_api != nullptr) job_api->StopAccepting();
  if (consumer != nullptr) {
    co_await consumer->Drain();
  }
  if (job_api != nullptr) {
    co_await job_api->Drain();
  }
}

// Starts the job API (if any), then the consumer (unless a drain began meanwhile); on a failed
// start, drains what there is and stops `io` with `drained` unset: exit 1.
Task<void> StartParts(asio::io_context* io, QueueConsumer* consumer, RedisJobApi* job_api, std::atomic<bool>* draining) {
  bool started = true;
  if (job_api != nullptr) {
    started = co_await job_api->Start();
  }
  if (!started) {
    draining->store(true);
    co_await DrainParts(consumer, job_api);
    io->stop();
    co_return;
  }
  if (consumer != nullptr && !draining->load()) consumer->Start();
}

Task<void> DrainAndStop(asio::io_context* io, QueueConsumer* consumer, RedisJobApi* job_api,
                        std::atomic<bool>* drained) {
  co_await DrainParts(consumer, job_api);
  drained->store(true);
  io->stop();
}

}  // namespace

int ServeUntilStopped(asio::io_context& io, const cli::WorkerOptions& options, QueueConsumer* consumer,
                      RedisJobApi* job_api, std::string_view stopped) {
  std::atomic<bool> draining{false};
  std::atomic<bool> drained{false};
  const std::atomic<bool> no_scheduler{true};  // a gateway runs no jobs

  asio::co_spawn(io, StartParts(&io, consumer, job_api, &draining), [&io](std::exception_ptr error) {
    if (error) {
      log::LogFailure("start", "the start", error);
      io.stop();
    }
  });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
    if (ec || draining.exchange(true)) return;
    const char* name = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
    if (consumer != nullptr) {
      log::Info("", "{} received: draining (up to {} s for running jobs).", name, options.drain_timeout);
    } else {
      log::Info("", "{} received: draining (answering waiting clients).", name);
    }
    asio::co_spawn(io, DrainAndStop(&io, consumer, job_api, &drained),
                   [&io](std::exception_ptr error) {
                     if (error) {
                       log::LogFailure("drain", "the drain", error);
                       io.stop();
                     }
                   });
  });

  return RunUntilStopped(io, IoThreads(options), consumer != nullptr ? consumer->scheduler_done() : no_scheduler,
                         drained, stopped);
}

}  // namespace sluice::runtime
