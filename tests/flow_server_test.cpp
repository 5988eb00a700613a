// End-to-end checks of examples/flow_server (the demo flow of examples/flow_worker/demo_flow.hpp on
// a Unix socket) through sluice::FlowClient, the way other processes use it: the real binary as a
// child process, clients on their own threads and io_contexts.
//
// Nothing here can hang: every client thread runs its io_context for at most kBudget, every wait
// has a timeout, and ChildProcess kills the server when the test ends, whatever it asserted.
#include <sluice/flow_client.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "child_process.hpp"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using sluice::FlowTask;
using sluice::FlowTaskStatus;
using sluice::testing::ChildProcess;

constexpr auto kStartTimeout = 20s;
constexpr auto kBudget = 90s;

fs::path BinaryPath(std::string_view name) { return fs::path(SLUICE_BIN_DIR) / name; }

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/sluice-flow-e2e-XXXXXX";
    if (::mkdtemp(pattern) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::unique_ptr<ChildProcess> StartServer(const std::string& socket) {
  auto server = std::make_unique<ChildProcess>(BinaryPath("flow_server"), std::vector<std::string>{"--socket", socket});
  if (!server->started()) {
    ADD_FAILURE() << server->error();
    return server;
  }
  const std::regex listening("INFO +\\| Flow server listening on unix:(.+)$");
  auto line = server->WaitForLine(listening, kStartTimeout);
  if (!line) {
    ADD_FAILURE() << "the flow server did not start\n" << server->Describe();
  } else {
    EXPECT_EQ((*line)[1], socket);
  }
  return server;
}

// What the demo flow makes of {"text": "Hello World <n>"}: preprocess lowercases and counts words,
// the model wraps it with its batch's size.
bool IsDemoResult(const FlowTask& task, int n) {
  const json::object* object = task.data.if_object();
  if (!object || !object->contains("input") || !object->contains("batch_size")) return false;
  const json::value expected = json::object{{"text", "hello world " + std::to_string(n)}, {"words", 3}};
  return object->at("input") == expected && task.bytes == "b" + std::to_string(n);
}

// One client process's worth of work: its own io_context and FlowClient, `concurrency` coroutines
// sending requests of `batch` tasks until its share is done. A request that ends UNAVAILABLE (the
// server was killed) is counted and sent again after a pause; every completed task is checked.
struct ClientStats {
  std::atomic<int> completed{0};
  std::atomic<int> unavailable{0};
  std::atomic<int> wrong{0};
  std::mutex mutex;
  std::string first_unavailable_error;  // guarded by mutex
};

void RunClient(const std::string& socket, int first, int count, ClientStats& stats) {
  boost::asio::io_context io;
  sluice::FlowClient client(io.get_executor(), socket, {.pool_size = 2});
  constexpr int kConcurrency = 4;
  constexpr int kBatch = 10;
  std::atomic<int> next{first};
  const int end = first + count;
  // The client's open connections keep the io_context busy: the last coroutine to finish stops it.
  int running = kConcurrency;
  for (int c = 0; c < kConcurrency; ++c) {
    boost::asio::co_spawn(
        io,
        [&]() -> sluice::Task<void> {
          boost::asio::steady_timer pause(co_await boost::asio::this_coro::executor);
          for (;;) {
            const int start = next.fetch_add(kBatch);
            if (start >= end) {
              if (--running == 0) io.stop();
              co_return;
            }
            const int stop = std::min(start + kBatch, end);
            bool done = false;
            while (!done) {
              std::vector<FlowTask> tasks;
              for (int n = start; n < stop; ++n) {
                tasks.emplace_back(json::object{{"text", "Hello World " + std::to_string(n)}}, "b" + std::to_string(n));
              }
              co_await client.process(tasks, std::chrono::seconds(20));
              done = true;
              for (int i = 0; i < stop - start; ++i) {
                if (tasks[i].status() == FlowTaskStatus::kUnavailable) {
                  done = false;
                } else if (tasks[i].status() != FlowTaskStatus::kCompleted || !IsDemoResult(tasks[i], start + i)) {
                  ++stats.wrong;
                }
              }
              if (done) {
                stats.completed += stop - start;
              } else {
                // At most once: a request lost with the server may have run; this test resends
                // it, as an application that knows its tasks are idempotent would.
                stats.unavailable += 1;
                {
                  std::lock_guard lock(stats.mutex);
                  if (stats.first_unavailable_error.empty()) stats.first_unavailable_error = tasks[0].error();
                }
                pause.expires_after(20ms);
                co_await pause.async_wait(boost::asio::use_awaitable);
              }
            }
          }
        },
        boost::asio::detached);
  }
  io.run_for(kBudget);
}

TEST(FlowServerExample, FourClientsSurviveAKilledServerAndEveryResultIsRight) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string socket = (dir.path() / "flow.sock").string();
  std::unique_ptr<ChildProcess> server = StartServer(socket);
  ASSERT_FALSE(::testing::Test::HasFailure());

  constexpr int kClients = 4;
  constexpr int kTasks = 10000;
  ClientStats stats;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] { RunClient(socket, c * (kTasks / kClients), kTasks / kClients, stats); });
  }

  // Kill the server (no drain, no unlink) once a part of the work is done, then start a new one on
  // the same path: it must replace the stale socket file, and the clients must come back.
  const auto deadline = std::chrono::steady_clock::now() + kBudget / 2;
  while (stats.completed.load() < kTasks / 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_LT(stats.completed.load(), kTasks) << "the work was done before the server could be killed";
  server->Kill();
  EXPECT_TRUE(fs::exists(socket)) << "a killed server leaves its socket file";
  std::this_thread::sleep_for(200ms);  // clients meet the dead socket
  server = StartServer(socket);

  for (auto& client : clients) client.join();
  EXPECT_EQ(stats.completed.load(), kTasks);
  EXPECT_EQ(stats.wrong.load(), 0);
  EXPECT_GT(stats.unavailable.load(), 0) << "no client noticed the killed server";
  {
    std::lock_guard lock(stats.mutex);
    EXPECT_NE(stats.first_unavailable_error.find("unix:" + socket), std::string::npos)
        << stats.first_unavailable_error;
  }

  // SIGTERM: answers what it read, removes its socket, exits 0.
  ASSERT_TRUE(server->Signal(SIGTERM));
  EXPECT_EQ(server->WaitForExit(20s), 0) << server->Describe();
  EXPECT_FALSE(fs::exists(socket));
}

TEST(FlowServerExample, RefusesASecondServerOnALiveSocket) {
  TempDir dir;
  const std::string socket = (dir.path() / "flow.sock").string();
  std::unique_ptr<ChildProcess> server = StartServer(socket);
  ASSERT_FALSE(::testing::Test::HasFailure());
  ChildProcess second(BinaryPath("flow_server"), {"--socket", socket});
  EXPECT_EQ(second.WaitForExit(20s), 1) << second.Describe();
  EXPECT_NE(second.err().find("another server is listening"), std::string::npos) << second.Describe();
  ASSERT_TRUE(server->Signal(SIGTERM));
  EXPECT_EQ(server->WaitForExit(20s), 0) << server->Describe();
}

}  // namespace
