// bench/scale_out_bench.cpp — instant jobs per second end to end through a Redis queue (issue #6),
// run by `make bench` after the other benchmarks.
//
// Cases, in one run, each on fresh processes (and, for Redis, a fresh redis-server of its own with
// appendonly yes, as the no-lost-job guarantee needs, tests/redis_server.hpp):
//
//   in-memory   build/bin/echo --rp_serve_api: one process, the job API over its own job store
//               (the reference: every figure is also given as a ratio to it).
//   redis, k    build/bin/sluice gateway --queue redis://... and k processes of
//               build/bin/echo --queue redis://..., k = 1, 2, 4.
//
// Every process gets `--concurrency C` (BENCH_SCALE_CONCURRENCY, default 16) where it runs jobs, a
// `--max-queue` large enough that no /run is refused, and `--rp_log_level INFO`.
//
// What is measured, by a client in this process (one thread, Asio; it shares the 2 cores with what
// it measures, and its CPU time is reported):
//
//   /run      N jobs {"input":{"i":n}} (BENCH_SCALE_JOBS, default 20,000) are POSTed to /run over
//             64 keep-alive connections, 16 requests pipelined on each. Completion is observed
//             through the job API itself: a 65th connection GETs /health every 2 ms and the run
//             ends at the first answer whose `jobs.completed` has grown by N. The rate is N over the
//             time from the first /run sent to that answer (the submit rate, to the last /run
//             answered, is given beside it). Polling /status per job would cost the client and the
//             server more than the jobs themselves; /health is one request per 2 ms whatever N is.
//             Then, outside the timing, every job's /status must be COMPLETED with its own input as
//             output, or the run fails.
//   /runsync  N jobs through /runsync, 64 connections each sending the next as soon as its answer
//             came: the rate a synchronous client sees (each answer is the COMPLETED status object,
//             checked).
//   commands  For Redis: `INFO commandstats` (CONFIG RESETSTAT first) over the /run part, per job,
//             the /health polls' own commands taken out (measured apart, before the run).
//   CPU       user + system time of each process over the timed part (/proc/PID/stat), per job:
//             the gateway (or the in-memory worker), the workers together, redis-server, and this
//             client's thread.
//
// Each case runs `BENCH_SCALE_REPEAT` times (default 3), cases alternating; the median is reported.
// BENCH_SCALE_APPENDONLY=no turns the append-only file off (CONFIG SET) to show what it costs; the
// recorded figures keep it on. BENCH_SCALE_HANDLER=coroutine runs bench/coroutine_echo (the same
// echo as a coroutine handler, no hand-off to the blocking pool) instead of examples/echo.
//
//   build/bin/scale_out_bench                                         # about 1 min
//   BENCH_SCALE_JOBS=5000 BENCH_SCALE_REPEAT=1 build/bin/scale_out_bench   # a quick check
//
// Exit status: 0 when every run completed and checked, 1 otherwise.
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include "bench_programs.hpp"
#include "child_process.hpp"
#include "redis_server.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using sluice::bench::Grouped;
using sluice::bench::StatCpuSeconds;
using sluice::bench::ThreadCpuSeconds;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using sluice::testing::ChildProcess;
using sluice::testing::RedisServer;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr int kConnections = 64;
constexpr int kPipelineDepth = 16;
constexpr auto kHealthInterval = 2ms;
constexpr auto kRunTimeout = 120s;
constexpr auto kStartTimeout = 20s;
constexpr double kTargetJobsPerSecond = 10000;  // issue #6, 4 workers

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

// User + system CPU of a process, in seconds (0 when its stat file cannot be read).
double ProcessCpuSeconds(pid_t pid) { return StatCpuSeconds(fmt::format("/proc/{}/stat", pid)).value_or(0); }

// ---------------------------------------------------------------------------------------------
// Redis, read directly

class RedisClient {
 public:
  explicit RedisClient(std::uint16_t port) {
    const timeval timeout{5, 0};
    context_ = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (context_ == nullptr || context_->err != 0) throw std::runtime_error("cannot connect to redis");
    redisSetTimeout(context_, timeout);
  }
  ~RedisClient() { redisFree(context_); }
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  std::string Do(const std::vector<std::string>& argv) {
    std::vector<const char*> args;
    std::vector<std::size_t> lengths;
    for (const std::string& arg : argv) {
      args.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data()));
    if (reply == nullptr) throw std::runtime_error("redis: " + std::string(context_->errstr));
    std::string text;
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) text.assign(reply->str, reply->len);
    if (reply->type == REDIS_REPLY_INTEGER) text = std::to_string(reply->integer);
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string message(reply->str, reply->len);
      freeReplyObject(reply);
      throw std::runtime_error("redis: " + message);
    }
    freeReplyObject(reply);
    return text;
  }

  // INFO commandstats (INFO and CONFIG left out: they are the benchmark's own).
  std::map<std::string, sluice::testing::CommandStat> CommandStats() {
    std::map<std::string, sluice::testing::CommandStat> stats = sluice::testing::ParseCommandStats(Do({"INFO", "commandstats"}));
    std::erase_if(stats, [](const auto& entry) { return entry.first == "info" || entry.first.starts_with("config"); });
    return stats;
  }

  pid_t ServerPid() {
    const std::string info = Do({"INFO", "server"});
    const std::size_t at = info.find("process_id:");
    return at == std::string::npos ? 0 : static_cast<pid_t>(std::stol(info.substr(at + 11)));
  }

 private:
  redisContext* context_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// The client: one thread, many keep-alive connections, pipelined requests

std::string Request(std::string_view method, std::string_view target, std::string_view body = {}) {
  std::string text = fmt::format("{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, target);
  if (method == "POST") {
    text += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
  }
  text += "\r\n";
  text += body;
  return text;
}

struct Answer {
  unsigned status = 0;
  std::string body;
};

class Pipe {
 public:
  explicit Pipe(asio::io_context& io) : socket_(io) {}

  asio::awaitable<bool> Connect(std::uint16_t port) {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    auto [error] = co_await socket_.async_connect(endpoint, kTuple);
    if (error) co_return false;
    socket_.set_option(tcp::no_delay(true));
    co_return true;
  }

  // Writes every request at once, then reads as many answers; false when the connection failed.
  asio::awaitable<bool> Exchange(const std::string& requests, std::size_t count, std::vector<Answer>& answers) {
    auto [write_error, written] = co_await asio::async_write(socket_, asio::buffer(requests), kTuple);
    if (write_error) co_return false;
    for (std::size_t i = 0; i < count; ++i) {
      http::response<http::string_body> response;
      auto [read_error, read] = co_await http::async_read(socket_, buffer_, response, kTuple);
      if (read_error) co_return false;
      answers.push_back({response.result_int(), std::move(response.body())});
    }
    co_return true;
  }

 private:
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

std::string IdOf(const std::string& body) {
  boost::system::error_code error;
  const json::value value = json::parse(body, error);
  if (error || !value.is_object()) return {};
  const json::value* id = value.get_object().if_contains("id");
  return id != nullptr && id->is_string() ? std::string(id->get_string()) : std::string();
}

std::optional<std::int64_t> HealthCount(const std::string& body, std::string_view which) {
  boost::system::error_code error;
  const json::value value = json::parse(body, error);
  if (error || !value.is_object()) return std::nullopt;
  const json::value* jobs = value.get_object().if_contains("jobs");
  if (jobs == nullptr || !jobs->is_object()) return std::nullopt;
  const json::value* count = jobs->get_object().if_contains(which);
  if (count == nullptr || !count->is_number()) return std::nullopt;
  return count->to_number<std::int64_t>();
}

// Runs `body` on a fresh one-thread io_context until it completes or the timeout passes.
void RunOnIo(const std::function<asio::awaitable<void>(asio::io_context&)>& body, Clock::duration timeout,
             const char* what) {
  asio::io_context io(1);
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(io, body(io), [&](std::exception_ptr error) {
    done = true;
    failure = error;
  });
  io.run_for(timeout);
  if (failure) std::rethrow_exception(failure);
  if (!done) throw std::runtime_error(fmt::format("{} did not end within {:.0f} s", what, Seconds(timeout)));
}

// /health's completed count, once.
std::int64_t CompletedNow(std::uint16_t port) {
  std::int64_t completed = -1;
  RunOnIo(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        Pipe pipe(io);
        if (!co_await pipe.Connect(port)) throw std::runtime_error("cannot connect for /health");
        std::vector<Answer> answers;
        const std::string request = Request("GET", "/health");
        if (!co_await pipe.Exchange(request, 1, answers)) throw std::runtime_error("/health failed");
        completed = HealthCount(answers[0].body, "completed").value_or(-1);
      },
      10s, "/health");
  if (completed < 0) throw std::runtime_error("/health has no jobs.completed");
  return completed;
}

// `count` GETs of /health one after another (to measure what one costs Redis).
void HealthPolls(std::uint16_t port, int count) {
  RunOnIo(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        Pipe pipe(io);
        if (!co_await pipe.Connect(port)) throw std::runtime_error("cannot connect for /health");
        const std::string request = Request("GET", "/health");
        for (int i = 0; i < count; ++i) {
          std::vector<Answer> answers;
          if (!co_await pipe.Exchange(request, 1, answers) || answers[0].status != 200) {
            throw std::runtime_error("/health failed");
          }
        }
      },
      30s, "/health polls");
}

struct RunTimes {
  double seconds = 0;         // first /run sent → completion seen
  double submit_seconds = 0;  // first /run sent → last /run answered
  std::size_t health_polls = 0;
  std::vector<std::string> ids;
};

// What the coroutines of one part share; only touched on its one thread. (Coroutines get it as a
// parameter: a lambda coroutine's captures die with the lambda, before the coroutine ends.)
struct Shared {
  asio::io_context& io;
  std::uint16_t port;
  std::size_t jobs;
  std::vector<std::string> ids;
  std::size_t next = 0;  // /runsync: the next job to send
  std::size_t failures = 0;
  std::string first_failure;
  std::size_t connections_left = 0;
  Clock::time_point last_answer{};

  void Fail(std::string what) {
    if (failures++ == 0) first_failure = std::move(what);
  }
};

// Connection c of the /run part: jobs c, c + C, c + 2C, ..., kPipelineDepth at a time.
asio::awaitable<void> Submitter(Shared* shared, std::size_t c) {
  Pipe pipe(shared->io);
  if (!co_await pipe.Connect(shared->port)) {
    shared->Fail("cannot connect");
  } else {
    std::size_t next = c;
    while (next < shared->jobs && shared->failures == 0) {
      std::string batch;
      std::vector<std::size_t> indices;
      for (int d = 0; d < kPipelineDepth && next < shared->jobs; ++d, next += kConnections) {
        batch += Request("POST", "/run", fmt::format(R"({{"input":{{"i":{}}}}})", next));
        indices.push_back(next);
      }
      std::vector<Answer> answers;
      const bool exchanged = co_await pipe.Exchange(batch, indices.size(), answers);
      if (!exchanged) {
        shared->Fail("a /run connection broke");
        break;
      }
      for (std::size_t k = 0; k < indices.size(); ++k) {
        shared->ids[indices[k]] = IdOf(answers[k].body);
        if (answers[k].status != 200 || shared->ids[indices[k]].empty()) {
          shared->Fail(fmt::format("/run answered {}: {}", answers[k].status, answers[k].body));
        }
      }
    }
  }
  shared->last_answer = std::max(shared->last_answer, Clock::now());
  --shared->connections_left;
}

// Waits until every coroutine of the part has ended.
asio::awaitable<void> WaitForConnections(Shared* shared) {
  asio::steady_timer timer(shared->io);
  while (shared->connections_left > 0) {
    timer.expires_after(1ms);
    co_await timer.async_wait(kTuple);
  }
}

// N /run over kConnections pipelined connections; a watcher polls /health until `completed` has
// grown by N.
RunTimes RunAndWatch(std::uint16_t port, std::size_t jobs) {
  const std::int64_t base = CompletedNow(port);
  RunTimes times;
  std::unique_ptr<Shared> kept;
  RunOnIo(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        kept = std::make_unique<Shared>(Shared{.io = io, .port = port, .jobs = jobs});
        Shared* shared = kept.get();
        shared->ids.resize(jobs);
        shared->connections_left = kConnections;
        const Clock::time_point start = Clock::now();
        shared->last_answer = start;
        for (std::size_t c = 0; c < static_cast<std::size_t>(kConnections); ++c) {
          asio::co_spawn(io, Submitter(shared, c), asio::detached);
        }
        // The watcher.
        Pipe watcher(io);
        const bool connected = co_await watcher.Connect(port);
        if (!connected) throw std::runtime_error("cannot connect the /health watcher");
        const std::string health = Request("GET", "/health");
        asio::steady_timer timer(io);
        while (shared->failures == 0) {
          std::vector<Answer> answers;
          const bool exchanged = co_await watcher.Exchange(health, 1, answers);
          if (!exchanged) throw std::runtime_error("the /health watcher's connection broke");
          ++times.health_polls;
          const std::int64_t done = HealthCount(answers[0].body, "completed").value_or(base);
          const std::int64_t failed = HealthCount(answers[0].body, "failed").value_or(0);
          if (failed > 0) throw std::runtime_error("jobs failed: " + answers[0].body);
          if (done - base >= static_cast<std::int64_t>(jobs)) {
            times.seconds = Seconds(Clock::now() - start);
            break;
          }
          timer.expires_after(kHealthInterval);
          co_await timer.async_wait(kTuple);
        }
        co_await WaitForConnections(shared);
        times.submit_seconds = Seconds(shared->last_answer - start);
      },
      kRunTimeout, "the /run part");
  if (kept->failures > 0) {
    throw std::runtime_error(fmt::format("{} /run requests failed; the first: {}", kept->failures, kept->first_failure));
  }
  times.ids = std::move(kept->ids);
  return times;
}

// Connection c of the check: GET /status of jobs c, c + 8, ..., 64 at a time.
asio::awaitable<void> Checker(Shared* shared, std::size_t c) {
  Pipe pipe(shared->io);
  if (!co_await pipe.Connect(shared->port)) {
    shared->Fail("cannot connect");
  } else {
    for (std::size_t next = c; next < shared->ids.size();) {
      std::string batch;
      std::vector<std::size_t> indices;
      for (int d = 0; d < 64 && next < shared->ids.size(); ++d, next += 8) {
        batch += Request("GET", "/status/" + shared->ids[next]);
        indices.push_back(next);
      }
      std::vector<Answer> answers;
      const bool exchanged = co_await pipe.Exchange(batch, indices.size(), answers);
      if (!exchanged) {
        shared->Fail("a /status connection broke");
        break;
      }
      for (std::size_t k = 0; k < indices.size(); ++k) {
        boost::system::error_code error;
        const json::value status = json::parse(answers[k].body, error);
        const json::value expected = {{"i", static_cast<std::int64_t>(indices[k])}};
        const bool ok = !error && status.is_object() && status.at("status") == "COMPLETED" &&
                        status.get_object().contains("output") && status.at("output") == expected;
        if (!ok) shared->Fail(answers[k].body);
      }
    }
  }
  --shared->connections_left;
}

// Every job's /status is COMPLETED with output {"i": n}.
void CheckAllCompleted(std::uint16_t port, const std::vector<std::string>& ids) {
  std::unique_ptr<Shared> kept;
  RunOnIo(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        kept = std::make_unique<Shared>(Shared{.io = io, .port = port, .jobs = ids.size(), .ids = ids});
        kept->connections_left = 8;
        for (std::size_t c = 0; c < 8; ++c) asio::co_spawn(io, Checker(kept.get(), c), asio::detached);
        co_await WaitForConnections(kept.get());
      },
      kRunTimeout, "the /status check");
  if (kept->failures > 0) {
    throw std::runtime_error(
        fmt::format("{} jobs not COMPLETED with their output; the first: {}", kept->failures, kept->first_failure));
  }
}

// One connection of the /runsync part: the next job as soon as the previous answer came.
asio::awaitable<void> SyncClient(Shared* shared) {
  Pipe pipe(shared->io);
  if (!co_await pipe.Connect(shared->port)) {
    shared->Fail("cannot connect");
  } else {
    while (shared->next < shared->jobs && shared->failures == 0) {
      const std::size_t i = shared->next++;
      std::vector<Answer> answers;
      const std::string request = Request("POST", "/runsync", fmt::format(R"({{"input":{{"i":{}}}}})", i));
      const bool exchanged = co_await pipe.Exchange(request, 1, answers);
      if (!exchanged) {
        shared->Fail("a /runsync connection broke");
        break;
      }
      if (answers[0].status != 200 || answers[0].body.find(R"("status":"COMPLETED")") == std::string::npos ||
          answers[0].body.find(fmt::format(R"("output":{{"i":{}}})", i)) == std::string::npos) {
        shared->Fail(answers[0].body);
      }
    }
  }
  --shared->connections_left;
}

// N /runsync over kConnections connections; the seconds they took.
double RunSync(std::uint16_t port, std::size_t jobs) {
  double seconds = 0;
  std::unique_ptr<Shared> kept;
  RunOnIo(
      [&](asio::io_context& io) -> asio::awaitable<void> {
        kept = std::make_unique<Shared>(Shared{.io = io, .port = port, .jobs = jobs});
        kept->connections_left = kConnections;
        const Clock::time_point start = Clock::now();
        for (int c = 0; c < kConnections; ++c) asio::co_spawn(io, SyncClient(kept.get()), asio::detached);
        co_await WaitForConnections(kept.get());
        seconds = Seconds(Clock::now() - start);
      },
      kRunTimeout, "the /runsync part");
  if (kept->failures > 0) {
    throw std::runtime_error(fmt::format("{} /runsync failed; the first: {}", kept->failures, kept->first_failure));
  }
  return seconds;
}

// ---------------------------------------------------------------------------------------------
// The cases

struct Settings {
  std::string worker = "echo";  // the program that runs the jobs: echo, or coroutine_echo
  std::size_t jobs = 20000;
  std::size_t repeat = 3;
  int concurrency = 16;
  bool appendonly = true;
  fs::path bin;
};

struct CaseResult {
  double run_rate = 0;
  double submit_rate = 0;
  double runsync_rate = 0;
  // CPU µs per job over the /run part.
  double front_cpu = 0;  // the gateway, or the in-memory worker
  double workers_cpu = 0;
  double redis_cpu = 0;
  double client_cpu = 0;
  std::map<std::string, double> commands_per_job;  // Redis only
  double commands_total_per_job = 0;
  double script_usec_per_job = 0;  // Redis's own time inside the scripts (INFO commandstats)
};

std::unique_ptr<ChildProcess> Start(const fs::path& program, const std::vector<std::string>& args, const std::regex& ready,
                                    std::vector<std::string>* match = nullptr) {
  auto child = std::make_unique<ChildProcess>(program, args);
  if (!child->started()) throw std::runtime_error("cannot start " + program.string() + ": " + child->error());
  auto found = child->WaitForLine(ready, kStartTimeout);
  if (!found) throw std::runtime_error(program.filename().string() + " did not start: " + child->Describe());
  if (match != nullptr) *match = *found;
  return child;
}

void StopAll(std::vector<std::unique_ptr<ChildProcess>>& children) {
  for (auto& child : children) child->Signal(SIGTERM);
  for (auto& child : children) {
    if (!child->WaitForExit(30s)) child->Kill();
  }
  children.clear();
}

const std::regex kListening(R"(Job API listening on http://127\.0\.0\.1:(\d+))");
const std::regex kConsuming(R"(Queue worker (\S+) consuming queue)");

// workers == 0: the in-memory mode.
CaseResult RunCase(const Settings& settings, int workers) {
  const std::string concurrency = std::to_string(settings.concurrency);
  const std::string max_queue = std::to_string(settings.jobs * 2);
  std::vector<std::unique_ptr<ChildProcess>> children;
  std::unique_ptr<RedisServer> redis;
  std::unique_ptr<RedisClient> redis_client;
  pid_t redis_pid = 0;
  std::vector<std::string> match;
  if (workers == 0) {
    children.push_back(Start(settings.bin / settings.worker,
                             {"--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", "0", "--concurrency",
                              concurrency, "--max-queue", max_queue, "--rp_log_level", "INFO"},
                             kListening, &match));
  } else {
    redis = std::make_unique<RedisServer>();
    if (!redis->ok()) throw std::runtime_error(redis->error());
    redis_client = std::make_unique<RedisClient>(redis->port());
    redis_pid = redis_client->ServerPid();
    if (!settings.appendonly) redis_client->Do({"CONFIG", "SET", "appendonly", "no"});
    children.push_back(Start(settings.bin / "sluice",
                             {"gateway", "--queue", redis->Url(), "--rp_api_host", "127.0.0.1", "--rp_api_port", "0",
                              "--max-queue", max_queue, "--rp_log_level", "INFO"},
                             kListening, &match));
  }
  const std::uint16_t port = static_cast<std::uint16_t>(std::stoi(match[1]));
  for (int w = 0; w < workers; ++w) {
    children.push_back(Start(settings.bin / settings.worker,
                             {"--queue", redis->Url(), "--concurrency", concurrency, "--rp_log_level", "INFO"},
                             kConsuming));
  }

  CaseResult result;
  const double jobs = static_cast<double>(settings.jobs);
  // What one /health costs Redis, to take the watcher's polls out of the per-job count.
  double commands_per_health = 0;
  if (redis_client) {
    redis_client->Do({"CONFIG", "RESETSTAT"});
    HealthPolls(port, 100);
    double total = 0;
    for (const auto& [name, calls] : redis_client->CommandStats()) total += static_cast<double>(calls.calls);
    commands_per_health = total / 100;
    redis_client->Do({"CONFIG", "RESETSTAT"});
  }

  std::vector<double> cpu_before;
  for (auto& child : children) cpu_before.push_back(ProcessCpuSeconds(child->pid()));
  const double redis_before = redis_pid != 0 ? ProcessCpuSeconds(redis_pid) : 0;
  const double client_before = ThreadCpuSeconds();
  const RunTimes times = RunAndWatch(port, settings.jobs);
  result.client_cpu = (ThreadCpuSeconds() - client_before) * 1e6 / jobs;
  for (std::size_t i = 0; i < children.size(); ++i) {
    const double used = (ProcessCpuSeconds(children[i]->pid()) - cpu_before[i]) * 1e6 / jobs;
    (i == 0 ? result.front_cpu : result.workers_cpu) += used;
  }
  if (redis_pid != 0) result.redis_cpu = (ProcessCpuSeconds(redis_pid) - redis_before) * 1e6 / jobs;
  result.run_rate = jobs / times.seconds;
  result.submit_rate = jobs / times.submit_seconds;
  if (redis_client) {
    const double health_commands = commands_per_health * static_cast<double>(times.health_polls);
    double total = 0;
    for (const auto& [name, calls] : redis_client->CommandStats()) {
      result.commands_per_job[name] = static_cast<double>(calls.calls) / jobs;
      total += static_cast<double>(calls.calls);
      if (name == "evalsha" || name == "eval") result.script_usec_per_job += static_cast<double>(calls.usec) / jobs;
    }
    result.commands_total_per_job = (total - health_commands) / jobs;
  }
  CheckAllCompleted(port, times.ids);
  result.runsync_rate = jobs / RunSync(port, settings.jobs);
  StopAll(children);
  return result;
}

std::string CaseName(const Settings& settings, int workers) {
  return workers == 0 ? fmt::format("in-memory ({} --rp_serve_api)", settings.worker)
                      : fmt::format("redis, gateway + {} worker{}", workers, workers == 1 ? "" : "s");
}

CaseResult Median(std::vector<CaseResult> runs) {
  std::sort(runs.begin(), runs.end(), [](const CaseResult& a, const CaseResult& b) { return a.run_rate < b.run_rate; });
  CaseResult median = runs[runs.size() / 2];
  std::vector<double> runsync;
  for (const CaseResult& run : runs) runsync.push_back(run.runsync_rate);
  std::sort(runsync.begin(), runsync.end());
  median.runsync_rate = runsync[runsync.size() / 2];
  return median;
}

}  // namespace

int main() {
  Settings settings;
  settings.jobs = sluice::bench::PositiveNumber(std::getenv("BENCH_SCALE_JOBS")).value_or(20000);
  settings.repeat = sluice::bench::PositiveNumber(std::getenv("BENCH_SCALE_REPEAT")).value_or(3);
  settings.concurrency = static_cast<int>(sluice::bench::PositiveNumber(std::getenv("BENCH_SCALE_CONCURRENCY")).value_or(16));
  if (const char* aof = std::getenv("BENCH_SCALE_APPENDONLY"); aof != nullptr && std::string_view(aof) == "no") {
    settings.appendonly = false;
  }
  if (const char* handler = std::getenv("BENCH_SCALE_HANDLER"); handler != nullptr) {
    if (std::string_view(handler) == "coroutine") {
      settings.worker = "coroutine_echo";
    } else if (std::string_view(handler) != "blocking") {
      std::fprintf(stderr, "scale_out_bench: BENCH_SCALE_HANDLER is blocking or coroutine, not %s\n", handler);
      return 2;
    }
  }
  settings.bin = sluice::bench::BinDir();
  for (const char* program : {settings.worker.c_str(), "sluice"}) {
    if (!fs::exists(settings.bin / program)) {
      std::fprintf(stderr, "scale_out_bench: %s not built\n", (settings.bin / program).c_str());
      return 1;
    }
  }
  std::signal(SIGPIPE, SIG_IGN);
  const std::vector<int> cases = {0, 1, 2, 4};
  fmt::print("== Scale-out on Redis: {} instant jobs per run ({}), --concurrency {} per process, {} runs per case; "
             "/run over {} connections ({} pipelined), completion seen on /health; redis-server {}\n",
             Grouped(static_cast<double>(settings.jobs)),
             settings.worker == "echo" ? "echo, a plain-function handler" : "coroutine_echo, a coroutine handler",
             settings.concurrency, settings.repeat, kConnections,
             kPipelineDepth, settings.appendonly ? "appendonly yes" : "appendonly no (BENCH_SCALE_APPENDONLY=no)");
  std::map<int, std::vector<CaseResult>> runs;
  try {
    for (std::size_t r = 0; r < settings.repeat; ++r) {
      for (int workers : cases) {
        CaseResult run = RunCase(settings, workers);
        fmt::print("{:<34} /run {:>7} jobs/s (submitted at {:>7}/s)  /runsync {:>7} jobs/s  CPU µs/job: front {:.1f}, "
                   "workers {:.1f}, redis {:.1f}, client {:.1f}{}\n",
                   CaseName(settings, workers), Grouped(run.run_rate), Grouped(run.submit_rate), Grouped(run.runsync_rate),
                   run.front_cpu, run.workers_cpu, run.redis_cpu, run.client_cpu,
                   workers > 0 ? fmt::format("; {:.1f} Redis commands/job, {:.1f} µs/job inside scripts",
                                             run.commands_total_per_job, run.script_usec_per_job)
                               : std::string());
        std::fflush(stdout);
        runs[workers].push_back(std::move(run));
      }
    }
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "scale_out_bench: %s\n", error.what());
    return 1;
  }

  std::map<int, CaseResult> medians;
  for (auto& [workers, list] : runs) medians[workers] = Median(list);
  const CaseResult& memory = medians[0];
  fmt::print("\n| case | /run → completed jobs/s | ratio to in-memory | submitted /s | /runsync jobs/s | ratio to in-memory "
             "| CPU µs per job: gateway or worker / workers / redis-server / client | Redis commands per job "
             "| Redis µs per job inside scripts |\n");
  fmt::print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |\n");
  for (int workers : cases) {
    const CaseResult& row = medians[workers];
    fmt::print("| {} | {} | {:.3f} | {} | {} | {:.3f} | {:.1f} / {:.1f} / {:.1f} / {:.1f} | {} | {} |\n", CaseName(settings, workers),
               Grouped(row.run_rate), row.run_rate / memory.run_rate, Grouped(row.submit_rate), Grouped(row.runsync_rate),
               row.runsync_rate / memory.runsync_rate, row.front_cpu, row.workers_cpu, row.redis_cpu, row.client_cpu,
               workers > 0 ? fmt::format("{:.1f}", row.commands_total_per_job) : std::string("—"),
               workers > 0 ? fmt::format("{:.1f}", row.script_usec_per_job) : std::string("—"));
  }
  // The commands of the median 4-worker run (the /health polls' share included here).
  const CaseResult& four = medians[4];
  std::vector<std::pair<double, std::string>> commands;
  for (const auto& [name, per_job] : four.commands_per_job) commands.emplace_back(per_job, name);
  std::sort(commands.rbegin(), commands.rend());
  fmt::print("\nRedis commands per job, gateway + 4 workers, /run part (INFO commandstats; inside scripts included; "
             "the /health watcher's included here, taken out of the total above):");
  for (const auto& [per_job, name] : commands) {
    if (per_job >= 0.01) fmt::print(" {} {:.2f};", name, per_job);
  }
  fmt::print("\ntarget (issue #6): at least {} jobs/s end to end with 4 workers: {} ({} jobs/s)\n",
             Grouped(kTargetJobsPerSecond), four.run_rate >= kTargetJobsPerSecond ? "yes" : "no", Grouped(four.run_rate));
  return 0;
}
