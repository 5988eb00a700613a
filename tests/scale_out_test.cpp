// Scale-out across processes (issue #6, docs/scale-out.md): a redis-server of the test's own
// (tests/redis_server.hpp, appendonly), one `sluice gateway` serving RunPod's job API over it, and a
// fleet of tests/workers/queue_test_worker processes started with `--queue redis://...`. The test
// speaks HTTP to the gateway as a client would (tests/http_client.hpp) and reads Redis directly to
// check what the clients cannot see: how often each job was delivered, who ran it, and that its end
// was written once.
//
// queue_test_worker's output is {"worker": pid, "running_at_start": n, "echo": input}: the process
// that ran the job, and how many jobs that process was already running when the job began.
//
// Nothing here waits unbounded: every child is waited for by its log line with a timeout, every
// HTTP exchange has a deadline, every poll loop a limit, and a watchdog kills every child once the
// test's budget is spent (which fails whatever request was still waiting on one).
//
// A malformed --queue (exit 2) and a refused connection (exit 1) at start are tested in
// tests/queue_worker_test.cpp; here, the starts it does not cover: an address that accepts the
// connection and never answers, and a Redis that wants a password.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include "child_process.hpp"
#include "http_client.hpp"
#include "redis/keys.hpp"
#include "redis_server.hpp"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using namespace sluice::testing::http;
using Clock = std::chrono::steady_clock;
using sluice::testing::ChildOptions;
using sluice::testing::ChildProcess;
using sluice::testing::RedisServer;

// From a program's start to its "listening" or "consuming" line (ASan builds start slowly).
constexpr auto kStartTimeout = 20s;
// A test's whole run; then the watchdog kills every child of the test.
constexpr auto kTestBudget = 100s;
// How often a poll loop asks again.
constexpr auto kPollInterval = 50ms;

fs::path BinaryPath(std::string_view name) { return fs::path(SLUICE_BIN_DIR) / name; }

// ---------------------------------------------------------------------------------------------
// Redis, read directly (hiredis, blocking, with timeouts)

// One reply, owned.
struct RedisValue {
  enum class Type { kNil, kString, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string text;  // strings, status replies and errors
  long long integer = 0;
  std::vector<RedisValue> elements;

  static RedisValue From(const redisReply* reply) {
    RedisValue value;
    if (reply == nullptr) {
      value.type = Type::kError;
      value.text = "no reply";
      return value;
    }
    switch (reply->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
        value.type = Type::kString;
        value.text.assign(reply->str, reply->len);
        break;
      case REDIS_REPLY_ERROR:
        value.type = Type::kError;
        value.text.assign(reply->str, reply->len);
        break;
      case REDIS_REPLY_INTEGER:
        value.type = Type::kInteger;
        value.integer = reply->integer;
        break;
      case REDIS_REPLY_ARRAY:
        value.type = Type::kArray;
        for (std::size_t i = 0; i < reply->elements; ++i) value.elements.push_back(From(reply->element[i]));
        break;
      default:
        break;
    }
    return value;
  }

  bool nil() const { return type == Type::kNil; }
  bool error() const { return type == Type::kError; }
  const std::string& str() const { return text; }
  std::size_t size() const { return elements.size(); }
  const RedisValue& operator[](std::size_t i) const { return elements.at(i); }
};

// A blocking connection for checks. Each call reconnects once if the connection broke.
class RedisClient {
 public:
  explicit RedisClient(std::uint16_t port) : port_(port) {}
  ~RedisClient() {
    if (context_ != nullptr) redisFree(context_);
  }
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  RedisValue Do(const std::vector<std::string>& argv) { return Pipeline({argv}).at(0); }

  // Sends every command, then reads every reply: one round trip for all of them.
  std::vector<RedisValue> Pipeline(const std::vector<std::vector<std::string>>& commands) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!Connect()) break;
      bool sent = true;
      for (const auto& argv : commands) {
        std::vector<const char*> args;
        std::vector<std::size_t> lengths;
        for (const std::string& arg : argv) {
          args.push_back(arg.data());
          lengths.push_back(arg.size());
        }
        if (redisAppendCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data()) != REDIS_OK) {
          sent = false;
          break;
        }
      }
      std::vector<RedisValue> replies;
      for (std::size_t i = 0; sent && i < commands.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(context_, &reply) != REDIS_OK) {
          sent = false;
          break;
        }
        replies.push_back(RedisValue::From(static_cast<redisReply*>(reply)));
        freeReplyObject(reply);
      }
      if (sent) return replies;
      redisFree(context_);  // broken: reconnect and send again
      context_ = nullptr;
    }
    RedisValue failed;
    failed.type = RedisValue::Type::kError;
    failed.text = "cannot reach redis on port " + std::to_string(port_);
    return std::vector<RedisValue>(commands.size(), failed);
  }

  std::map<std::string, std::string> Hash(const std::string& key) {
    std::map<std::string, std::string> fields;
    const RedisValue reply = Do({"HGETALL", key});
    for (std::size_t i = 0; i + 1 < reply.size(); i += 2) fields[reply[i].str()] = reply[i + 1].str();
    return fields;
  }

 private:
  bool Connect() {
    if (context_ != nullptr) return true;
    const timeval timeout{5, 0};
    context_ = redisConnectWithTimeout("127.0.0.1", port_, timeout);
    if (context_ == nullptr || context_->err != 0 || redisSetTimeout(context_, timeout) != REDIS_OK) {
      if (context_ != nullptr) redisFree(context_);
      context_ = nullptr;
      return false;
    }
    return true;
  }

  std::uint16_t port_;
  redisContext* context_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// The programs

// A child process of the test with a name for messages.
class Program {
 public:
  Program(std::string name, const fs::path& binary, const std::vector<std::string>& args,
          std::vector<std::string> env = {})
      : name_(std::move(name)),
        child_(std::make_unique<ChildProcess>(binary, args, ChildOptions{.cwd = ".", .env = std::move(env)})) {}
  virtual ~Program() = default;

  const std::string& name() const { return name_; }
  ChildProcess& process() { return *child_; }
  const ChildProcess& process() const { return *child_; }
  pid_t pid() const { return child_->pid(); }
  std::string Log() const {
    return "--- " + name_ + " (pid " + std::to_string(child_->pid()) + ", " +
           (child_->exited() ? "exited" : "running") + ") stderr ---\n" + Tail(child_->err());
  }

 private:
  // The end of a long log is what explains a failure; 10,000 jobs' worth of it is not.
  static std::string Tail(const std::string& text) {
    constexpr std::size_t kMax = 6000;
    return text.size() <= kMax ? text : "[...]\n" + text.substr(text.size() - kMax);
  }

  std::string name_;
  std::unique_ptr<ChildProcess> child_;
};

// `sluice gateway --queue URL`: the job API over Redis, on a port of the system's choosing.
class Gateway : public Program {
 public:
  Gateway(const std::string& url, const std::vector<std::string>& flags)
      : Program("gateway", BinaryPath("sluice"), Args(url, flags)) {
    static const std::regex kListening(R"(Job API listening on http://127\.0\.0\.1:(\d+))");
    if (auto match = process().WaitForLine(kListening, kStartTimeout)) {
      port_ = static_cast<std::uint16_t>(std::stoi((*match)[1]));
    }
  }

  bool ready() const { return port_ != 0; }
  std::uint16_t port() const { return port_; }

 private:
  static std::vector<std::string> Args(const std::string& url, const std::vector<std::string>& flags) {
    std::vector<std::string> args{"gateway",       "--queue",     url, "--rp_api_host", "127.0.0.1",
                                  "--rp_api_port", "0",           "--rp_log_level", "INFO"};
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  }

  std::uint16_t port_ = 0;
};

// queue_test_worker --queue URL --concurrency N: one worker of the fleet.
class FleetWorker : public Program {
 public:
  FleetWorker(std::string name, const std::string& url, int concurrency, const std::vector<std::string>& flags,
              const std::string& mode)
      : Program(std::move(name), BinaryPath("queue_test_worker"), Args(url, concurrency, flags),
                {"QUEUE_TEST_WORKER_MODE=" + mode}),
        limit_(concurrency) {
    static const std::regex kConsuming(R"(Queue worker (\S+) consuming queue '([^']*)' at (redis://\S+))");
    if (auto match = process().WaitForLine(kConsuming, kStartTimeout)) consumer_ = (*match)[1];
  }

  bool ready() const { return !consumer_.empty(); }
  /// The consumer name it reads the group as (the `owner` of the jobs it runs).
  const std::string& consumer() const { return consumer_; }
  int limit() const { return limit_; }

 private:
  static std::vector<std::string> Args(const std::string& url, int concurrency, const std::vector<std::string>& flags) {
    std::vector<std::string> args{"--queue", url, "--concurrency", std::to_string(concurrency), "--rp_log_level", "INFO"};
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  }

  std::string consumer_;
  int limit_;
};

// Kills every registered child once the budget is spent, so a stuck wait fails instead of hanging.
class Watchdog {
 public:
  explicit Watchdog(Clock::duration budget)
      : thread_([this, deadline = Clock::now() + budget] {
          std::unique_lock lock(mutex_);
          if (!changed_.wait_until(lock, deadline, [this] { return stopping_; })) {
            fired_ = true;
            for (ChildProcess* child : children_) child->Signal(SIGKILL);
          }
        }) {}

  ~Watchdog() { Stop(); }

  void Watch(ChildProcess& child) {
    std::lock_guard lock(mutex_);
    children_.push_back(&child);
    if (fired_) child.Signal(SIGKILL);
  }

  /// Ends the watch; true when the watchdog had fired.
  bool Stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;                // guarded by mutex_
  bool fired_ = false;                   // guarded by mutex_ until the thread is joined
  std::vector<ChildProcess*> children_;  // guarded by mutex_
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// HTTP helpers

// Sends `requests` (whole request texts, keep-alive) over `connections` connections at once, at
// most `depth` in flight on each (pipelined), and returns the answers in the order of `requests`.
// A request whose answer did not come back has status 0 and an `error`.
std::vector<HttpMessage> Pipelined(std::uint16_t port, const std::vector<std::string>& requests, int connections,
                                   int depth, Clock::duration timeout) {
  std::vector<HttpMessage> answers(requests.size());
  const auto deadline = Clock::now() + timeout;
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::size_t> mine;
      for (std::size_t i = static_cast<std::size_t>(t); i < requests.size(); i += static_cast<std::size_t>(connections)) {
        mine.push_back(i);
      }
      Connection connection = Connection::To(port);
      std::size_t next = 0;
      while (next < mine.size()) {
        const std::size_t end = std::min(mine.size(), next + static_cast<std::size_t>(depth));
        std::string batch;
        for (std::size_t k = next; k < end; ++k) batch += requests[mine[k]];
        if (!connection.ok() || !connection.Send(batch, deadline)) {
          for (std::size_t k = next; k < mine.size(); ++k) answers[mine[k]].error = "could not send";
          return;
        }
        for (std::size_t k = next; k < end; ++k) {
          answers[mine[k]] = connection.ReadMessage(deadline);
          if (answers[mine[k]].status == 0) {  // the connection is of no more use
            for (std::size_t rest = k + 1; rest < mine.size(); ++rest) answers[mine[rest]].error = "connection broke";
            return;
          }
        }
        next = end;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return answers;
}

std::string RunRequest(const std::string& body) { return RequestText("POST", "/run", body, {}, /*keep_alive=*/true); }
std::string StatusRequest(const std::string& id) { return RequestText("GET", "/status/" + id, {}, {}, /*keep_alive=*/true); }

// ---------------------------------------------------------------------------------------------
// The fixture: Redis, then the programs, then the watchdog over them.

class ScaleOut : public ::testing::Test {
 protected:
  ScaleOut() : watchdog_(kTestBudget) {}

  ~ScaleOut() override {
    if (watchdog_.Stop()) ADD_FAILURE() << "watchdog: the test ran past its budget; every child was killed\n" << Logs();
    programs_.clear();  // kills what still runs, before Redis goes
  }

  void SetUp() override {
    ASSERT_TRUE(redis_.ok()) << redis_.error();
    redis_client_ = std::make_unique<RedisClient>(redis_.port());
  }

  // Every program's log, for failure messages.
  std::string Logs() const {
    std::string text;
    for (const auto& program : programs_) text += program->Log() + "\n";
    return text;
  }

  // `url`: the queue's, unless another is given.
  Gateway& StartGateway(const std::vector<std::string>& flags = {}, const std::string& url = "") {
    auto gateway = std::make_unique<Gateway>(url.empty() ? redis_.Url() : url, flags);
    Gateway& started = *gateway;
    Register(std::move(gateway));
    return started;
  }

  FleetWorker& StartWorker(int concurrency, const std::vector<std::string>& flags = {}, const std::string& mode = "count",
                           const std::string& url = "") {
    auto worker = std::make_unique<FleetWorker>("worker " + std::to_string(programs_.size()),
                                                url.empty() ? redis_.Url() : url, concurrency, flags, mode);
    FleetWorker& started = *worker;
    Register(std::move(worker));
    return started;
  }

  RedisClient& redis() { return *redis_client_; }

  // /run of each body, pipelined; the job ids in the same order ("" for a refused one, with a failure).
  std::vector<std::string> SubmitAll(std::uint16_t port, const std::vector<std::string>& bodies, int connections = 8) {
    std::vector<std::string> requests;
    requests.reserve(bodies.size());
    for (const std::string& body : bodies) requests.push_back(RunRequest(body));
    const std::vector<HttpMessage> answers = Pipelined(port, requests, connections, 32, 60s);
    std::vector<std::string> ids;
    int failures = 0;
    for (std::size_t i = 0; i < answers.size(); ++i) {
      const json::value answer = answers[i].json();
      const bool accepted = answers[i].status == 200 && StatusOf(answer) == "IN_QUEUE" && !IdOf(answer).empty();
      if (!accepted && ++failures <= 5) ADD_FAILURE() << "/run " << bodies[i] << " was not accepted\n" << answers[i].Describe();
      ids.push_back(accepted ? IdOf(answer) : std::string());
    }
    EXPECT_EQ(failures, 0) << "of " << bodies.size() << " /run requests";
    return ids;
  }

  // Polls /status of every id (pipelined) until each is terminal or the timeout passed; the last
  // status object of each.
  std::vector<json::value> WaitAllTerminal(std::uint16_t port, const std::vector<std::string>& ids, Clock::duration timeout) {
    std::vector<json::value> statuses(ids.size());
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < ids.size(); ++i) open.push_back(i);
    const auto deadline = Clock::now() + timeout;
    while (!open.empty()) {
      std::vector<std::string> requests;
      for (std::size_t i : open) requests.push_back(StatusRequest(ids[i]));
      const std::vector<HttpMessage> answers =
          Pipelined(port, requests, std::min<int>(8, static_cast<int>(open.size())), 64, 30s);
      std::vector<std::size_t> still_open;
      for (std::size_t k = 0; k < open.size(); ++k) {
        statuses[open[k]] = answers[k].json();
        if (!IsTerminal(StatusOf(statuses[open[k]]))) still_open.push_back(open[k]);
      }
      open = std::move(still_open);
      if (open.empty() || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(100ms);
    }
    return statuses;
  }

  // Polls `done` until it holds or the timeout passed.
  static bool WaitFor(const std::function<bool()>& done, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(kPollInterval);
    }
    return true;
  }

  // Every event of the events stream: (job id, status) in order.
  std::vector<std::pair<std::string, std::string>> Events() {
    std::vector<std::pair<std::string, std::string>> events;
    std::string from = "-";
    while (true) {
      const RedisValue page = redis().Do({"XRANGE", keys_.events(), from, "+", "COUNT", "5000"});
      if (page.error()) {
        ADD_FAILURE() << "XRANGE events: " << page.str();
        return events;
      }
      for (const RedisValue& entry : page.elements) {
        const RedisValue& fields = entry[1];
        std::string id, status;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
          if (fields[i].str() == "id") id = fields[i + 1].str();
          if (fields[i].str() == "status") status = fields[i + 1].str();
        }
        events.emplace_back(id, status);
      }
      if (page.size() < 5000) return events;
      from = "(" + page[page.size() - 1][0].str();
    }
  }

  // How many terminal events each job has on the events stream.
  std::map<std::string, std::map<std::string, int>> EndEvents() {
    std::map<std::string, std::map<std::string, int>> ends;
    for (const auto& [id, status] : Events()) {
      if (IsTerminal(status)) ++ends[id][status];
    }
    return ends;
  }

  // The queue holds nothing more: every entry of the jobs stream was delivered to the group (lag
  // 0) and acknowledged (none pending), and no entry → job mapping is left. (Acknowledged entries
  // leave the stream itself at a reaper's next trim, so its length is not checked.)
  void ExpectQueueEmpty() {
    const RedisValue groups = redis().Do({"XINFO", "GROUPS", keys_.jobs()});
    ASSERT_FALSE(groups.error()) << groups.str();
    ASSERT_EQ(groups.size(), 1u) << "one consumer group";
    std::map<std::string, RedisValue> fields;
    for (std::size_t i = 0; i + 1 < groups[0].size(); i += 2) fields[groups[0][i].str()] = groups[0][i + 1];
    EXPECT_EQ(fields["name"].str(), std::string(sluice::redis::kGroup));
    EXPECT_EQ(fields["pending"].integer, 0) << "entries still pending in the group";
    EXPECT_EQ(fields["lag"].integer, 0) << "entries never delivered to the group";
    EXPECT_TRUE(fields["lag"].type == RedisValue::Type::kInteger) << "XINFO GROUPS has no lag: Redis 7 is needed";
    EXPECT_EQ(redis().Do({"HLEN", keys_.entries()}).integer, 0) << "entry → job mappings left";
  }


  RedisServer redis_;
  sluice::redis::Keys keys_;

 private:
  void Register(std::unique_ptr<Program> program) {
    watchdog_.Watch(program->process());
    programs_.push_back(std::move(program));
  }

  std::unique_ptr<RedisClient> redis_client_;
  std::vector<std::unique_ptr<Program>> programs_;
  Watchdog watchdog_;
};

#define ASSERT_STARTED(program)                                                                  \
  ASSERT_TRUE((program).ready()) << (program).name() << " did not start\n"                        \
                                 << (program).process().Describe()

// The output object of a COMPLETED status object, or null.
json::value OutputOf(const json::value& status) {
  if (!status.is_object()) return nullptr;
  const json::value* output = status.get_object().if_contains("output");
  return output != nullptr ? *output : json::value(nullptr);
}

std::int64_t WorkerPidOf(const json::value& status) {
  const auto pid = Member(OutputOf(status), "worker");
  return pid ? *pid : -1;
}

// =============================================================================================

TEST_F(ScaleOut, TenThousandJobsThroughAGatewayAndThreeWorkersEachCompleteExactlyOnce) {
  constexpr int kJobs = 10000;
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  std::vector<FleetWorker*> workers;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(&StartWorker(8));
    ASSERT_STARTED(*workers.back());
  }
  std::map<std::int64_t, const FleetWorker*> by_pid;
  for (const FleetWorker* worker : workers) by_pid[worker->pid()] = worker;

  std::vector<std::string> bodies;
  for (int i = 0; i < kJobs; ++i) bodies.push_back(R"({"input":{"n":)" + std::to_string(i) + "}}");
  const std::vector<std::string> ids = SubmitAll(gateway.port(), bodies);
  ASSERT_FALSE(HasFailure()) << Logs();
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), static_cast<std::size_t>(kJobs)) << "ids must be unique";

  const std::vector<json::value> statuses = WaitAllTerminal(gateway.port(), ids, 60s);
  std::map<std::int64_t, int> ran_by;
  int wrong = 0;
  for (int i = 0; i < kJobs; ++i) {
    const json::value& status = statuses[static_cast<std::size_t>(i)];
    const json::value expected_echo = json::object{{"n", i}};
    const bool ok = StatusOf(status) == "COMPLETED" && IdOf(status) == ids[static_cast<std::size_t>(i)] &&
                    OutputOf(status).is_object() && OutputOf(status).at("echo") == expected_echo &&
                    by_pid.contains(WorkerPidOf(status));
    if (!ok && ++wrong <= 5) ADD_FAILURE() << "job " << i << " " << ids[static_cast<std::size_t>(i)] << ": " << Describe(status);
    ++ran_by[WorkerPidOf(status)];
  }
  ASSERT_EQ(wrong, 0) << "of " << kJobs << " jobs\n" << Logs();
  for (const FleetWorker* worker : workers) {
    EXPECT_GT(ran_by[worker->pid()], 0) << worker->name() << " ran no job: the fleet did not share the queue";
  }

  // In Redis: each job delivered once, owned by the worker that answered, ended once.
  std::vector<std::vector<std::string>> reads;
  for (const std::string& id : ids) reads.push_back({"HMGET", keys_.job(id), "status", "deliveries", "owner"});
  const std::vector<RedisValue> hashes = redis().Pipeline(reads);
  int bad_hashes = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const RedisValue& hash = hashes[i];
    const FleetWorker* runner = by_pid.contains(WorkerPidOf(statuses[i])) ? by_pid[WorkerPidOf(statuses[i])] : nullptr;
    const bool ok = hash.size() == 3 && hash[0].str() == "COMPLETED" && hash[1].str() == "1" && runner != nullptr &&
                    hash[2].str() == runner->consumer();
    if (!ok && ++bad_hashes <= 5) {
      ADD_FAILURE() << "job " << ids[i] << ": status " << (hash.size() == 3 ? hash[0].str() : "?") << ", deliveries "
                    << (hash.size() == 3 ? hash[1].str() : "?") << ", owner " << (hash.size() == 3 ? hash[2].str() : "?")
                    << ", ran by " << (runner != nullptr ? runner->consumer() : "?");
    }
  }
  EXPECT_EQ(bad_hashes, 0);
  const auto ends = EndEvents();
  EXPECT_EQ(ends.size(), static_cast<std::size_t>(kJobs)) << "jobs with an end event";
  int ended_twice = 0;
  for (const std::string& id : ids) {
    const auto found = ends.find(id);
    const bool once = found != ends.end() && found->second.size() == 1 && found->second.begin()->first == "COMPLETED" &&
                      found->second.begin()->second == 1;
    if (!once && ++ended_twice <= 5) ADD_FAILURE() << "job " << id << " did not end exactly once, COMPLETED";
  }
  EXPECT_EQ(ended_twice, 0);
  ExpectQueueEmpty();
}

TEST_F(ScaleOut, AWorkerKilledMidJobHasEveryOneOfItsJobsCompletedByAnother) {
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  // Ten slots each: the twenty jobs all start at once, ten on each worker.
  FleetWorker& doomed = StartWorker(10, {"--visibility-timeout", "2"});
  ASSERT_STARTED(doomed);
  FleetWorker& survivor = StartWorker(10, {"--visibility-timeout", "2"});
  ASSERT_STARTED(survivor);

  std::vector<std::string> bodies;
  for (int i = 0; i < 20; ++i) bodies.push_back(R"({"input":{"sleep_ms":3000,"k":)" + std::to_string(i) + "}}");
  const std::vector<std::string> ids = SubmitAll(gateway.port(), bodies);
  ASSERT_FALSE(HasFailure()) << Logs();

  // Wait until every job runs, then kill -9 one worker in the middle of its ten.
  std::set<std::string> doomed_jobs;
  const bool all_running = WaitFor(
      [&] {
        doomed_jobs.clear();
        for (const std::string& id : ids) {
          auto hash = redis().Hash(keys_.job(id));
          if (hash["status"] != "IN_PROGRESS") return false;
          if (hash["owner"] == doomed.consumer()) doomed_jobs.insert(id);
        }
        return true;
      },
      10s);
  ASSERT_TRUE(all_running) << Logs();
  ASSERT_EQ(doomed_jobs.size(), 10u) << "each worker should run ten of the twenty\n" << Logs();
  ASSERT_TRUE(doomed.process().Signal(SIGKILL));
  ASSERT_TRUE(doomed.process().WaitForExit(10s).has_value());

  const std::vector<json::value> statuses = WaitAllTerminal(gateway.port(), ids, 30s);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const json::value& status = statuses[i];
    ASSERT_EQ(StatusOf(status), "COMPLETED") << ids[i] << ": " << Describe(status) << "\n" << Logs();
    const json::value expected_echo = json::object{{"sleep_ms", 3000}, {"k", static_cast<int>(i)}};
    EXPECT_EQ(OutputOf(status).at("echo"), expected_echo) << Describe(status);
    EXPECT_EQ(WorkerPidOf(status), survivor.pid()) << "only the survivor can have answered: " << Describe(status);
    auto hash = redis().Hash(keys_.job(ids[i]));
    EXPECT_EQ(hash["owner"], survivor.consumer()) << ids[i];
    EXPECT_EQ(hash["deliveries"], doomed_jobs.contains(ids[i]) ? "2" : "1")
        << ids[i] << (doomed_jobs.contains(ids[i]) ? " ran on the killed worker, then again" : " ran once");
  }
  auto ends = EndEvents();
  for (const std::string& id : ids) {
    EXPECT_EQ(ends[id], (std::map<std::string, int>{{"COMPLETED", 1}})) << id << " should end once";
  }
  ExpectQueueEmpty();
}

TEST_F(ScaleOut, ARedisRestartMidRunLosesNoAcceptedJob) {
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  FleetWorker& first = StartWorker(4);
  ASSERT_STARTED(first);
  FleetWorker& second = StartWorker(4);
  ASSERT_STARTED(second);

  // A client submits without pause, one job per connection, and keeps the id of every job the
  // gateway accepted (200 IN_QUEUE); a refusal while Redis is away is retried.
  std::mutex mutex;
  std::vector<std::pair<int, std::string>> accepted;  // guarded by mutex: (n, id)
  int refused = 0;                                    // guarded by mutex
  std::atomic<bool> stop{false};
  std::thread client([&] {
    const auto deadline = Clock::now() + 60s;
    for (int n = 0; !stop.load() && Clock::now() < deadline; ++n) {
      const std::string body = R"({"input":{"sleep_ms":20,"n":)" + std::to_string(n) + "}}";
      const HttpMessage answer = Http(gateway.port(), "POST", "/run", body, {}, 10s);
      std::lock_guard lock(mutex);
      if (answer.status == 200 && StatusOf(answer.json()) == "IN_QUEUE") {
        accepted.emplace_back(n, IdOf(answer.json()));
      } else {
        ++refused;
        std::this_thread::sleep_for(20ms);
      }
    }
  });
  auto accepted_count = [&] {
    std::lock_guard lock(mutex);
    return accepted.size();
  };
  auto completed_count = [&] {
    std::vector<std::string> ids;
    {
      std::lock_guard lock(mutex);
      for (const auto& job : accepted) ids.push_back(job.second);
    }
    std::vector<std::vector<std::string>> reads;
    for (const std::string& id : ids) reads.push_back({"HGET", keys_.job(id), "status"});
    std::size_t completed = 0;
    for (const RedisValue& status : redis().Pipeline(reads)) completed += status.str() == "COMPLETED" ? 1 : 0;
    return completed;
  };

  const bool running = WaitFor([&] { return accepted_count() >= 150 && completed_count() >= 50; }, 30s);
  if (running) {
    // SIGTERM: Redis writes its append-only file out and exits; then it starts again on it.
    EXPECT_TRUE(redis_.Stop());
    EXPECT_TRUE(redis_.Restart()) << redis_.error();
  }
  const std::size_t at_restart = accepted_count();
  const bool more = running && WaitFor([&] { return accepted_count() >= at_restart + 150; }, 30s);
  stop.store(true);
  client.join();
  ASSERT_TRUE(running) << "jobs did not flow before the restart\n" << Logs();
  ASSERT_TRUE(more) << "the gateway accepted no more jobs after Redis came back (" << refused << " refused)\n" << Logs();

  std::vector<std::string> ids;
  for (const auto& job : accepted) ids.push_back(job.second);
  const std::vector<json::value> statuses = WaitAllTerminal(gateway.port(), ids, 30s);
  int lost = 0;
  for (std::size_t i = 0; i < accepted.size(); ++i) {
    const json::value& status = statuses[i];
    const json::value expected_echo = json::object{{"sleep_ms", 20}, {"n", accepted[i].first}};
    const bool ok = StatusOf(status) == "COMPLETED" && OutputOf(status).is_object() &&
                    OutputOf(status).at("echo") == expected_echo;
    if (!ok && ++lost <= 5) ADD_FAILURE() << "accepted job " << accepted[i].second << ": " << Describe(status);
  }
  std::printf("%zu jobs accepted, %zu of them before the restart; %d submissions refused while Redis was away\n",
              accepted.size(), at_restart, refused);
  EXPECT_EQ(lost, 0) << "of " << accepted.size() << " accepted jobs (" << at_restart << " before the restart, "
                     << refused << " submissions refused while Redis was away)\n"
                     << Logs();
  ExpectQueueEmpty();
}

TEST_F(ScaleOut, EachWorkersConcurrencyLimitHoldsAcrossTheFleet) {
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  std::map<std::int64_t, FleetWorker*> by_pid;
  for (int limit : {2, 3, 4}) {
    FleetWorker& worker = StartWorker(limit);
    ASSERT_STARTED(worker);
    by_pid[worker.pid()] = &worker;
  }

  // 90 jobs of 150 ms on 9 slots: a backlog for the whole run, so every slot stays busy.
  std::vector<std::string> bodies;
  for (int i = 0; i < 90; ++i) bodies.push_back(R"({"input":{"sleep_ms":150,"i":)" + std::to_string(i) + "}}");
  const auto submitted = Clock::now();
  const std::vector<std::string> ids = SubmitAll(gateway.port(), bodies);
  ASSERT_FALSE(HasFailure()) << Logs();

  // While they run, each worker's key in Redis reports its own limit.
  for (const auto& [pid, worker] : by_pid) {
    const RedisValue load = redis().Do({"GET", keys_.worker(worker->consumer())});
    const json::value parsed = ParseOrNull(load.str());
    EXPECT_EQ(Member(parsed, "limit"), worker->limit()) << worker->name() << ": " << load.str();
  }

  const std::vector<json::value> statuses = WaitAllTerminal(gateway.port(), ids, 30s);
  const auto elapsed = Clock::now() - submitted;
  std::map<std::int64_t, std::int64_t> most_at_once;
  std::map<std::int64_t, int> jobs;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const json::value& status = statuses[i];
    ASSERT_EQ(StatusOf(status), "COMPLETED") << Describe(status) << "\n" << Logs();
    const std::int64_t pid = WorkerPidOf(status);
    ASSERT_TRUE(by_pid.contains(pid)) << Describe(status);
    const std::int64_t others = Member(OutputOf(status), "running_at_start").value_or(-1);
    EXPECT_GE(others, 0) << Describe(status);
    EXPECT_LE(others + 1, by_pid[pid]->limit())
        << by_pid[pid]->name() << " ran more jobs at once than --concurrency " << by_pid[pid]->limit() << ": "
        << Describe(status);
    most_at_once[pid] = std::max(most_at_once[pid], others + 1);
    ++jobs[pid];
  }
  for (const auto& [pid, worker] : by_pid) {
    EXPECT_EQ(most_at_once[pid], worker->limit())
        << worker->name() << " never filled its " << worker->limit() << " slots (" << jobs[pid] << " jobs)";
  }
  // Run one after another, the jobs would take 13.5 s; on 9 slots, about 1.5 s.
  EXPECT_LT(elapsed, 9s) << "the jobs did not run concurrently";
}

TEST_F(ScaleOut, CancelThroughTheGatewayStopsTheJobOnTheWorkerThatRunsIt) {
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  // One slot each: a worker whose job was not really stopped cannot take another.
  FleetWorker& first = StartWorker(1);
  ASSERT_STARTED(first);
  FleetWorker& second = StartWorker(1);
  ASSERT_STARTED(second);

  const std::vector<std::string> ids =
      SubmitAll(gateway.port(), {R"({"input":{"sleep_ms":60000,"k":0}})", R"({"input":{"sleep_ms":60000,"k":1}})"});
  ASSERT_FALSE(HasFailure()) << Logs();
  std::map<std::string, std::string> owners;
  const bool both_running = WaitFor(
      [&] {
        for (const std::string& id : ids) {
          auto hash = redis().Hash(keys_.job(id));
          if (hash["status"] != "IN_PROGRESS") return false;
          owners[id] = hash["owner"];
        }
        return true;
      },
      10s);
  ASSERT_TRUE(both_running) << Logs();
  ASSERT_NE(owners[ids[0]], owners[ids[1]]) << "one slot each: the two jobs must run on different workers";
  const FleetWorker& runner = owners[ids[0]] == first.consumer() ? first : second;
  const FleetWorker& other = &runner == &first ? second : first;

  const HttpMessage cancel = Http(gateway.port(), "POST", "/cancel/" + ids[0]);
  ASSERT_EQ(cancel.status, 200) << cancel.Describe();
  EXPECT_EQ(IdOf(cancel.json()), ids[0]) << cancel.Describe();
  EXPECT_EQ(StatusOf(cancel.json()), "CANCELLED") << cancel.Describe();

  // The worker that ran it stops it and frees its slot: a new job lands there and completes at once,
  // while the other worker's one slot is still taken by the job that was not cancelled.
  const std::vector<std::string> next = SubmitAll(gateway.port(), {R"({"input":{"after":"cancel"}})"});
  ASSERT_EQ(next.size(), 1u);
  const std::vector<json::value> next_status = WaitAllTerminal(gateway.port(), next, 15s);
  ASSERT_EQ(StatusOf(next_status[0]), "COMPLETED") << Describe(next_status[0]) << "\n" << Logs();
  EXPECT_EQ(WorkerPidOf(next_status[0]), runner.pid()) << "the cancelled job's worker should have run it";

  const json::value cancelled = Http(gateway.port(), "GET", "/status/" + ids[0]).json();
  EXPECT_EQ(StatusOf(cancelled), "CANCELLED") << Describe(cancelled);
  const json::value untouched = Http(gateway.port(), "GET", "/status/" + ids[1]).json();
  EXPECT_EQ(StatusOf(untouched), "IN_PROGRESS") << Describe(untouched);
  EXPECT_EQ(redis().Hash(keys_.job(ids[1]))["owner"], other.consumer());
  // The cancelled job's entry was acknowledged by its worker; only the running one is pending.
  const RedisValue pending = redis().Do({"XPENDING", keys_.jobs(), std::string(sluice::redis::kGroup)});
  EXPECT_EQ(pending[0].integer, 1) << "only the job still running should be pending";
  EXPECT_EQ(EndEvents()[ids[0]], (std::map<std::string, int>{{"CANCELLED", 1}}));
}

TEST_F(ScaleOut, EventStreamThroughTheGatewayDeliversEachChunkAsTheWorkerEmitsIt) {
  Gateway& gateway = StartGateway();
  ASSERT_STARTED(gateway);
  FleetWorker& worker = StartWorker(2, {}, "stream");
  ASSERT_STARTED(worker);

  constexpr int kChunks = 5;
  const std::vector<std::string> ids = SubmitAll(gateway.port(), {R"({"input":{"chunks":5,"sleep_ms":300}})"});
  ASSERT_EQ(ids.size(), 1u);
  ASSERT_FALSE(ids[0].empty());
  std::string failure;
  std::optional<SseReader> events = OpenEventStream(gateway.port(), "/stream/" + ids[0], &failure);
  ASSERT_TRUE(events.has_value()) << failure;
  ASSERT_EQ(events->head().status, 200) << events->head().Describe();
  EXPECT_TRUE(events->head().header("content-type").starts_with("text/event-stream")) << events->head().Describe();

  const auto deadline = Clock::now() + 20s;
  std::vector<Clock::time_point> arrivals;
  for (int i = 0; i < kChunks; ++i) {
    std::optional<SseEvent> event = events->Next(deadline);
    ASSERT_TRUE(event.has_value()) << "chunk " << i << " missing\n" << Logs();
    EXPECT_EQ(event->event, "");
    const json::value expected = json::object{{"output", json::object{{"index", i}, {"worker", worker.pid()}}}};
    EXPECT_EQ(ParseOrNull(event->data), expected) << event->data;
    arrivals.push_back(event->received);
    if (i == 0) {
      const json::value status = Http(gateway.port(), "GET", "/status/" + ids[0]).json();
      EXPECT_EQ(StatusOf(status), "IN_PROGRESS") << "the first chunk should arrive while the job runs: " << Describe(status);
    }
  }
  // The worker emits a chunk every 300 ms: they arrive one by one, not in a batch at the end (wide
  // bounds: one late chunk on a loaded machine may come close behind the one before it).
  int spaced = 0;
  for (std::size_t i = 1; i < arrivals.size(); ++i) spaced += arrivals[i] - arrivals[i - 1] >= 150ms ? 1 : 0;
  EXPECT_GE(spaced, kChunks - 2) << "the chunks came in bunches";
  EXPECT_GE(arrivals.back() - arrivals.front(), 900ms) << "the chunks should arrive live, 300 ms apart";
  std::optional<SseEvent> done = events->Next(deadline);
  ASSERT_TRUE(done.has_value()) << "no done event\n" << Logs();
  EXPECT_EQ(done->event, "done") << done->data;
  EXPECT_EQ(StatusOf(ParseOrNull(done->data)), "COMPLETED") << done->data;
  EXPECT_FALSE(events->Next(Clock::now() + 3s).has_value()) << "nothing after done";
  EXPECT_TRUE(events->ended());
}

// =============================================================================================
// Errors at start that tests/queue_worker_test.cpp does not cover

// A port that completes TCP handshakes (the kernel does, for the listen backlog) and never says a
// word: an address that is not Redis, or a Redis that hangs.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 && ::listen(fd_, 64) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~SilentListener() {
    if (fd_ >= 0) ::close(fd_);
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

TEST(ScaleOutStart, AnAddressThatNeverAnswersFailsTheStartWithinSecondsNamingIt) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  const std::string url = "redis://127.0.0.1:" + std::to_string(silent.port()) + "/0";
  const std::vector<std::pair<std::string, std::vector<std::string>>> programs = {
      {"sluice", {"gateway", "--queue", url, "--rp_api_host", "127.0.0.1", "--rp_api_port", "0"}},
      {"queue_test_worker", {"--queue", url}},
      {"queue_test_worker", {"--queue", url, "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", "0"}},
  };
  // All at once: each waits out its own connect timeout.
  std::vector<std::unique_ptr<ChildProcess>> children;
  const auto start = Clock::now();
  for (const auto& [program, args] : programs) children.push_back(std::make_unique<ChildProcess>(BinaryPath(program), args));
  for (std::size_t i = 0; i < children.size(); ++i) {
    ChildProcess& child = *children[i];
    EXPECT_EQ(child.WaitForExit(20s), 1) << programs[i].first << " " << programs[i].second.back() << "\n" << child.Describe();
    EXPECT_NE(child.err().find("Cannot reach Redis at " + url), std::string::npos) << child.Describe();
    EXPECT_EQ(child.err().find("Job API listening"), std::string::npos) << "nothing may be served\n" << child.Describe();
  }
  EXPECT_LT(Clock::now() - start, 20s);
}

TEST_F(ScaleOut, ARedisThatWantsAPasswordRefusesAStartWithoutItAndServesOneWithIt) {
  // This connection stays authenticated; every new one must AUTH.
  ASSERT_EQ(redis().Do({"CONFIG", "SET", "requirepass", "s3cret-pw"}).str(), "OK");
  const std::string without = redis_.Url();
  ChildProcess refused_worker(BinaryPath("queue_test_worker"), {"--queue", without});
  ChildProcess refused_gateway(BinaryPath("sluice"),
                               {"gateway", "--queue", without, "--rp_api_host", "127.0.0.1", "--rp_api_port", "0"});
  for (ChildProcess* child : {&refused_worker, &refused_gateway}) {
    EXPECT_EQ(child->WaitForExit(20s), 1) << child->Describe();
    EXPECT_NE(child->err().find("Cannot reach Redis at " + without), std::string::npos) << child->Describe();
    EXPECT_NE(child->err().find("NOAUTH"), std::string::npos) << "the server's own reason\n" << child->Describe();
  }

  const std::string with = "redis://:s3cret-pw@127.0.0.1:" + std::to_string(redis_.port()) + "/0";
  Gateway& gateway = StartGateway({}, with);
  ASSERT_STARTED(gateway);
  FleetWorker& worker = StartWorker(2, {}, "count", with);
  ASSERT_STARTED(worker);
  const HttpMessage answer = Http(gateway.port(), "POST", "/runsync", R"({"input":{"auth":true}})");
  EXPECT_EQ(StatusOf(answer.json()), "COMPLETED") << answer.Describe() << "\n" << Logs();
  EXPECT_EQ(WorkerPidOf(answer.json()), worker.pid()) << answer.Describe();
  for (const Program* program : {static_cast<const Program*>(&gateway), static_cast<const Program*>(&worker)}) {
    EXPECT_EQ(program->process().err().find("s3cret-pw"), std::string::npos)
        << "the password must not be logged\n" << program->Log();
  }
}

}  // namespace
