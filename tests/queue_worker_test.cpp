// The Redis modes as programs: a worker started with `--queue` (examples/echo and
// examples/concurrent_handler) against a redis-server of the test's own (tests/redis_server.hpp),
// fed with redis::Submit from the test and read back from the job's hash (docs/scale-out.md);
// SIGTERM drains; the errors at start (a malformed URL exits 2, an unreachable Redis exits 1 in
// seconds, naming the address); and `build/bin/sluice` (help, version, `gateway`'s errors).
//
// Children are signalled only after a log line or a state in Redis says they are where the test
// wants them, never after a fixed delay. Every wait is bounded (kWatchdog, ChildProcess timeouts).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "child_process.hpp"
#include "http/client.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/queue.hpp"
#include "redis/url.hpp"
#include "redis_harness.hpp"
#include "redis_server.hpp"

namespace sluice {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::ChildProcess;
using testing::RedisServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kWatchdog = 30s;
constexpr auto kStartTimeout = 20s;
constexpr auto kExitTimeout = 20s;

fs::path BinaryPath(std::string_view name) { return fs::path(SLUICE_BIN_DIR) / name; }

// A Redis client of the test's own: one I/O thread, one connection, the queue's keys.
class TestRedis {
 public:
  explicit TestRedis(const std::string& url, std::string queue = "default")
      : work_(asio::make_work_guard(io_)), keys_(std::move(queue)) {
    thread_ = std::thread([this] { io_.run_for(kWatchdog * 4); });
    auto endpoint = redis::ParseUrl(url);
    EXPECT_TRUE(endpoint.ok()) << endpoint.status().message();
    if (endpoint.ok()) connection_ = std::make_unique<redis::Connection>(io_.get_executor(), *endpoint);
  }
  ~TestRedis() {
    connection_.reset();
    work_.reset();
    std::this_thread::sleep_for(50ms);  // the connection's Close runs on the I/O thread
    io_.stop();
    thread_.join();
  }

  template <class T>
  T Await(Task<T> task, const char* what) {
    std::future<T> future = redis::harness::Spawn(io_, std::move(task));
    return redis::harness::Get(future, what);
  }

  std::string Submit(std::string id, json::object request) {
    redis::SubmitRequest submit;
    submit.job_id = std::move(id);
    submit.request = std::move(request);
    core::Result<std::string> submitted = Await(redis::Submit(*connection_, keys_, std::move(submit)), "Submit");
    EXPECT_TRUE(submitted.ok()) << submitted.status().message();
    return submitted.ok() ? *submitted : std::string();
  }

  // One HTTP exchange with a program under test, on this client's I/O thread.
  http::ClientResponse Http(std::string method, std::string url, std::string body = {}) {
    http::Client client(io_.get_executor());
    http::ClientRequest request;
    request.method = std::move(method);
    request.url = std::move(url);
    request.body = std::move(body);
    request.timeout = std::chrono::seconds(20);
    core::Result<http::ClientResponse> response = Await(client.Send(std::move(request)), "an HTTP request");
    EXPECT_TRUE(response.ok()) << response.status().message();
    return response.ok() ? *response : http::ClientResponse{};
  }

  std::map<std::string, std::string> Hash(const std::string& job_id) {
    std::vector<std::string> argv{"HGETALL", keys_.job(job_id)};
    core::Result<redis::Reply> reply = Await(connection_->Command(std::move(argv)), "HGETALL");
    std::map<std::string, std::string> fields;
    if (!reply.ok() || !reply->is_array()) return fields;
    for (std::size_t i = 0; i + 1 < reply->size(); i += 2) fields[(*reply)[i].str()] = (*reply)[i + 1].str();
    return fields;
  }

  // Polls the job's hash every 20 ms until its status is one of `statuses`; the last hash read.
  std::map<std::string, std::string> WaitForStatus(const std::string& job_id, std::vector<std::string> statuses,
                                                   Clock::duration limit = 15s) {
    const Clock::time_point deadline = Clock::now() + limit;
    while (true) {
      std::map<std::string, std::string> hash = Hash(job_id);
      for (const std::string& status : statuses) {
        if (hash["status"] == status) return hash;
      }
      if (Clock::now() > deadline) return hash;
      std::this_thread::sleep_for(20ms);
    }
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  redis::Keys keys_;
  std::unique_ptr<redis::Connection> connection_;
  std::thread thread_;
};

json::object Request(json::value input) {
  json::object request;
  request["input"] = std::move(input);
  return request;
}

// Starts `program` with `args` and waits for the queue worker's start line.
std::unique_ptr<ChildProcess> StartWorker(const std::string& program, const std::vector<std::string>& args,
                                          const std::string& queue = "default") {
  auto child = std::make_unique<ChildProcess>(BinaryPath(program), args);
  EXPECT_TRUE(child->started()) << child->error();
  const std::regex ready("Queue worker \\S+ consuming queue '" + queue + "' at redis://127\\.0\\.0\\.1:\\d+/0");
  EXPECT_TRUE(child->WaitForLine(ready, kStartTimeout)) << child->Describe();
  return child;
}

class QueueWorker : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << server_.error(); }

  RedisServer server_;
};

TEST_F(QueueWorker, ConsumesSubmittedJobsAndWritesTheirResults) {
  TestRedis redis(server_.Url());
  // Jobs queued before the worker starts are read too (the group is created from ID 0).
  const std::string early = redis.Submit("early", Request(json::value{{"n", 0}}));
  auto worker = StartWorker("echo", {"--queue", server_.Url(), "--concurrency", "4", "--rp_log_level", "INFO"});
  std::vector<std::string> ids{early};
  for (int i = 1; i <= 5; ++i) ids.push_back(redis.Submit("job-" + std::to_string(i), Request(json::value{{"n", i}})));

  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto hash = redis.WaitForStatus(ids[i], {"COMPLETED", "FAILED"});
    ASSERT_EQ(hash["status"], "COMPLETED") << ids[i] << "\n" << worker->Describe();
    const json::value result = json::parse(hash["result"]);
    EXPECT_EQ(result.at("output"), (json::value{{"n", static_cast<int>(i)}})) << hash["result"];
    EXPECT_THAT(hash["owner"], HasSubstr(":")) << "the default consumer name is host:pid";
  }
  ASSERT_TRUE(worker->Signal(SIGTERM));
  EXPECT_EQ(worker->WaitForExit(kExitTimeout), 0) << worker->Describe();
}

TEST_F(QueueWorker, QueueAndConsumerNamesAreTheFlagsOrTheEnvironment) {
  TestRedis redis(server_.Url(), "gpu-a");
  ChildProcess worker(BinaryPath("echo"), {"--consumer-name", "worker-7", "--rp_log_level", "INFO"},
                      {.env = {"SLUICE_QUEUE=" + server_.Url(), "SLUICE_QUEUE_NAME=gpu-a"}});
  ASSERT_TRUE(worker.WaitForLine(std::regex("Queue worker worker-7 consuming queue 'gpu-a' at "), kStartTimeout))
      << worker.Describe();
  const std::string id = redis.Submit("", Request("hello"));
  auto hash = redis.WaitForStatus(id, {"COMPLETED", "FAILED"});
  EXPECT_EQ(hash["status"], "COMPLETED") << worker.Describe();
  EXPECT_EQ(hash["owner"], "worker-7");
  ASSERT_TRUE(worker.Signal(SIGINT));
  EXPECT_EQ(worker.WaitForExit(kExitTimeout), 0) << worker.Describe();
}

TEST_F(QueueWorker, SigtermDrainsARunningJobAndExitsZero) {
  TestRedis redis(server_.Url());
  auto worker = StartWorker("concurrent_handler", {"--queue", server_.Url(), "--rp_log_level", "INFO"});
  const std::string id = redis.Submit("slow", Request(json::value{{"message", "hi"}, {"delay", 1.5}}));
  auto running = redis.WaitForStatus(id, {"IN_PROGRESS", "COMPLETED", "FAILED"});
  ASSERT_EQ(running["status"], "IN_PROGRESS") << worker->Describe();
  const std::size_t mark = worker->line_count();
  ASSERT_TRUE(worker->Signal(SIGTERM));
  ASSERT_TRUE(worker->WaitForLine(std::regex("SIGTERM received: draining"), 5s, ChildProcess::Stream::kStderr, mark))
      << worker->Describe();
  // The job was running when the signal came: the drain lets it finish and writes its result.
  EXPECT_EQ(worker->WaitForExit(kExitTimeout), 0) << worker->Describe();
  auto done = redis.Hash(id);
  EXPECT_EQ(done["status"], "COMPLETED") << worker->Describe();
  EXPECT_THAT(done["result"], HasSubstr("Processed: "));
}

TEST_F(QueueWorker, AJobStillRunningAtTheDrainDeadlineGoesBackToTheQueue) {
  TestRedis redis(server_.Url());
  auto leaving = StartWorker("concurrent_handler", {"--queue", server_.Url(), "--drain-timeout", "0.2",
                                                    "--consumer-name", "leaving", "--rp_log_level", "INFO"});
  const std::string id = redis.Submit("long", Request(json::value{{"message", "again"}, {"delay", 2}}));
  ASSERT_EQ(redis.WaitForStatus(id, {"IN_PROGRESS", "COMPLETED", "FAILED"})["status"], "IN_PROGRESS")
      << leaving->Describe();
  ASSERT_TRUE(leaving->Signal(SIGTERM));
  EXPECT_EQ(leaving->WaitForExit(kExitTimeout), 0) << leaving->Describe();
  EXPECT_THAT(leaving->err(), HasSubstr("Job given back to the queue"));
  EXPECT_EQ(redis.Hash(id)["status"], "IN_PROGRESS") << "not CANCELLED: the job was not the client's to lose";

  // Another worker's reaper takes the entry once it has been idle for its visibility timeout.
  auto staying = StartWorker("concurrent_handler", {"--queue", server_.Url(), "--visibility-timeout", "1",
                                                    "--consumer-name", "staying", "--rp_log_level", "INFO"});
  auto done = redis.WaitForStatus(id, {"COMPLETED", "FAILED", "CANCELLED"}, 20s);
  EXPECT_EQ(done["status"], "COMPLETED") << staying->Describe();
  EXPECT_EQ(done["owner"], "staying");
  EXPECT_THAT(done["result"], HasSubstr("Processed: "));
  ASSERT_TRUE(staying->Signal(SIGTERM));
  EXPECT_EQ(staying->WaitForExit(kExitTimeout), 0) << staying->Describe();
}

// The port of a program's "Job API listening" line (with --rp_api_port 0); 0 if it never came.
int ListeningPort(ChildProcess& child) {
  const std::regex listening(R"(Job API listening on http://127\.0\.0\.1:(\d+))");
  const auto match = child.WaitForLine(listening, kStartTimeout);
  return match ? std::stoi((*match)[1]) : 0;
}

TEST_F(QueueWorker, AGatewayServesTheJobApiAndAWorkerRunsItsJobs) {
  ChildProcess gateway(BinaryPath("sluice"), {"gateway", "--queue", server_.Url(), "--rp_api_host", "127.0.0.1",
                                              "--rp_api_port", "0", "--rp_log_level", "INFO"});
  const int port = ListeningPort(gateway);
  ASSERT_NE(port, 0) << gateway.Describe();
  auto worker = StartWorker("echo", {"--queue", server_.Url(), "--concurrency", "2", "--rp_log_level", "INFO"});

  TestRedis client(server_.Url());
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const http::ClientResponse answer = client.Http("POST", base + "/runsync", R"({"input":{"via":"gateway"}})");
  ASSERT_EQ(answer.status, 200) << answer.body << "\n" << gateway.Describe() << worker->Describe();
  const json::value job = json::parse(answer.body);
  EXPECT_EQ(job.at("status"), "COMPLETED") << answer.body;
  EXPECT_EQ(job.at("output"), (json::value{{"via", "gateway"}})) << answer.body;
  // The result is in Redis, where any gateway finds it.
  EXPECT_EQ(client.Hash(std::string(job.at("id").as_string()))["status"], "COMPLETED");

  ASSERT_TRUE(gateway.Signal(SIGTERM));
  EXPECT_EQ(gateway.WaitForExit(kExitTimeout), 0) << gateway.Describe();
  ASSERT_TRUE(worker->Signal(SIGTERM));
  EXPECT_EQ(worker->WaitForExit(kExitTimeout), 0) << worker->Describe();
}

TEST_F(QueueWorker, WithRpServeApiTooAWorkerServesTheApiAndConsumesTheQueue) {
  ChildProcess worker(BinaryPath("echo"), {"--rp_serve_api", "--queue", server_.Url(), "--rp_api_host", "127.0.0.1",
                                           "--rp_api_port", "0", "--rp_log_level", "INFO"});
  const int port = ListeningPort(worker);
  ASSERT_NE(port, 0) << worker.Describe();
  ASSERT_TRUE(worker.WaitForLine(std::regex("Queue worker \\S+ consuming queue 'default'"), kStartTimeout))
      << worker.Describe();

  TestRedis client(server_.Url());
  // A job submitted straight to Redis and one through the worker's own API: both run here.
  const std::string queued = client.Submit("from-redis", Request("r"));
  const http::ClientResponse answer =
      client.Http("POST", "http://127.0.0.1:" + std::to_string(port) + "/runsync", R"({"input":"http"})");
  ASSERT_EQ(answer.status, 200) << answer.body << "\n" << worker.Describe();
  EXPECT_EQ(json::parse(answer.body).at("output"), "http") << answer.body;
  EXPECT_EQ(client.WaitForStatus(queued, {"COMPLETED", "FAILED"})["status"], "COMPLETED") << worker.Describe();

  ASSERT_TRUE(worker.Signal(SIGTERM));
  EXPECT_EQ(worker.WaitForExit(kExitTimeout), 0) << worker.Describe();
}

TEST(QueueWorkerStart, AMalformedUrlIsAUsageErrorNamingTheProblem) {
  ChildProcess scheme(BinaryPath("echo"), {"--queue", "http://127.0.0.1:6379"});
  EXPECT_EQ(scheme.WaitForExit(kExitTimeout), 2) << scheme.Describe();
  EXPECT_THAT(scheme.err(), HasSubstr("--queue"));
  EXPECT_THAT(scheme.err(), HasSubstr("scheme"));

  // The password never reaches the message.
  ChildProcess port(BinaryPath("echo"), {"--queue", "redis://:hunter2@127.0.0.1:99999/0"});
  EXPECT_EQ(port.WaitForExit(kExitTimeout), 2) << port.Describe();
  EXPECT_THAT(port.err(), HasSubstr("port"));
  EXPECT_THAT(port.err(), Not(HasSubstr("hunter2")));

  ChildProcess name(BinaryPath("echo"), {"--queue", "redis://127.0.0.1/0", "--queue-name", "a{b"});
  EXPECT_EQ(name.WaitForExit(kExitTimeout), 2) << name.Describe();
  EXPECT_THAT(name.err(), HasSubstr("--queue-name"));
}

TEST(QueueWorkerStart, AnUnreachableRedisExitsOneWithinSecondsNamingIt) {
  const std::uint16_t port = testing::PickFreePort();
  ASSERT_NE(port, 0);
  const std::string url = "redis://:hunter2@127.0.0.1:" + std::to_string(port) + "/0";
  const Clock::time_point start = Clock::now();
  ChildProcess worker(BinaryPath("echo"), {"--queue", url});
  EXPECT_EQ(worker.WaitForExit(10s), 1) << worker.Describe();
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_THAT(worker.err(), HasSubstr("Cannot reach Redis at redis://127.0.0.1:" + std::to_string(port) + "/0"));
  EXPECT_THAT(worker.err(), Not(HasSubstr("hunter2")));
}

// --- build/bin/sluice ---

TEST(SluiceProgram, HelpAndVersion) {
  ChildProcess help(BinaryPath("sluice"), {"--help"});
  EXPECT_EQ(help.WaitForExit(kExitTimeout), 0) << help.Describe();
  EXPECT_THAT(help.out(), HasSubstr("gateway"));

  ChildProcess gateway_help(BinaryPath("sluice"), {"gateway", "--help"});
  EXPECT_EQ(gateway_help.WaitForExit(kExitTimeout), 0) << gateway_help.Describe();
  EXPECT_THAT(gateway_help.out(), HasSubstr("--queue"));
  EXPECT_THAT(gateway_help.out(), HasSubstr("--rp_api_port"));
  EXPECT_THAT(gateway_help.out(), Not(HasSubstr("--test_input"))) << "a gateway runs no handler";

  ChildProcess version(BinaryPath("sluice"), {"--version"});
  EXPECT_EQ(version.WaitForExit(kExitTimeout), 0) << version.Describe();
  EXPECT_THAT(version.out(), HasSubstr("sluice "));

  ChildProcess unknown(BinaryPath("sluice"), {"serve"});
  EXPECT_EQ(unknown.WaitForExit(kExitTimeout), 2) << unknown.Describe();
  EXPECT_THAT(unknown.err(), HasSubstr("unknown command 'serve'"));
}

TEST(SluiceProgram, GatewayNeedsAWellFormedReachableQueue) {
  ChildProcess missing(BinaryPath("sluice"), {"gateway", "--rp_api_port", "0"});
  EXPECT_EQ(missing.WaitForExit(kExitTimeout), 2) << missing.Describe();
  EXPECT_THAT(missing.err(), HasSubstr("--queue is required"));

  ChildProcess malformed(BinaryPath("sluice"), {"gateway", "--queue", "redis://:hunter2@[::1/0"});
  EXPECT_EQ(malformed.WaitForExit(kExitTimeout), 2) << malformed.Describe();
  EXPECT_THAT(malformed.err(), HasSubstr("--queue"));
  EXPECT_THAT(malformed.err(), Not(HasSubstr("hunter2")));

  ChildProcess worker_flag(BinaryPath("sluice"), {"gateway", "--queue", "redis://127.0.0.1/0", "--concurrency", "2"});
  EXPECT_EQ(worker_flag.WaitForExit(kExitTimeout), 2) << worker_flag.Describe();
  EXPECT_THAT(worker_flag.err(), HasSubstr("--concurrency"));

  const std::uint16_t port = testing::PickFreePort();
  ASSERT_NE(port, 0);
  const Clock::time_point start = Clock::now();
  ChildProcess unreachable(BinaryPath("sluice"), {"gateway", "--queue", "redis://127.0.0.1:" + std::to_string(port),
                                                  "--rp_api_host", "127.0.0.1", "--rp_api_port", "0"});
  EXPECT_EQ(unreachable.WaitForExit(10s), 1) << unreachable.Describe();
  EXPECT_LT(Clock::now() - start, 10s);
  EXPECT_THAT(unreachable.err(), HasSubstr("Cannot reach Redis at redis://127.0.0.1:" + std::to_string(port) + "/0"));
  EXPECT_THAT(unreachable.err(), Not(HasSubstr("Job API listening")));
}

}  // namespace
}  // namespace sluice
