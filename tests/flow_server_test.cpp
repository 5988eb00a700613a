// End-to-end checks of examples/flow_server (the demo flow of examples/flow_worker/demo_flow.hpp on
// a Unix socket) through sluice::FlowClient, the way other processes use it: the real binary as a
// child process, and four client processes (this test program run again, in the role of
// FlowServerExample.ClientProcess), each with its own FlowClient.
//
// Nothing here can hang: every client runs its io_context for at most kBudget, every wait
// has a timeout, and ChildProcess kills the server when the test ends, whatever it asserted.
#include <sluice/flow_client.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
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

// `on_progress(completed)` is called after each completed request, on the client's thread.
void RunClient(const std::string& socket, int first, int count, ClientStats& stats,
               const std::function<void(int)>& on_progress) {
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
                on_progress(stats.completed += stop - start);
                // A short pause, so that the run lasts long enough for the server to be killed
                // in its middle.
                pause.expires_after(1ms);
                co_await pause.async_wait(boost::asio::use_awaitable);
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

// The client process's side of FourClientProcessesSurviveAKilledServerAndEveryResultIsRight: run
// with SLUICE_FLOW_CLIENT_SOCKET, _FIRST and _COUNT set, it sends its share, prints "progress N"
// lines and a last "client completed=N unavailable=U wrong=W error=...", and passes when every
// task completed with the right content.
TEST(FlowServerExample, ClientProcess) {
  const char* socket = std::getenv("SLUICE_FLOW_CLIENT_SOCKET");
  const char* first = std::getenv("SLUICE_FLOW_CLIENT_FIRST");
  const char* count = std::getenv("SLUICE_FLOW_CLIENT_COUNT");
  if (!socket || !first || !count) {
    GTEST_SKIP() << "runs only as a client process of FourClientProcessesSurviveAKilledServer...";
  }
  ClientStats stats;
  int reported = 0;
  RunClient(socket, std::atoi(first), std::atoi(count), stats, [&](int completed) {
    if (completed - reported >= 100) {
      reported = completed;
      std::fprintf(stderr, "progress %d\n", completed);
    }
  });
  std::string error;
  {
    std::lock_guard lock(stats.mutex);
    error = stats.first_unavailable_error;
  }
  std::fprintf(stderr, "client completed=%d unavailable=%d wrong=%d error=%s\n", stats.completed.load(),
               stats.unavailable.load(), stats.wrong.load(), error.c_str());
  EXPECT_EQ(stats.completed.load(), std::atoi(count));
  EXPECT_EQ(stats.wrong.load(), 0);
}

TEST(FlowServerExample, FourClientProcessesSurviveAKilledServerAndEveryResultIsRight) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string socket = (dir.path() / "flow.sock").string();
  std::unique_ptr<ChildProcess> server = StartServer(socket);
  ASSERT_FALSE(::testing::Test::HasFailure());

  constexpr int kClients = 4;
  constexpr int kTasks = 10000;
  constexpr int kShare = kTasks / kClients;
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::make_unique<ChildProcess>(
        BinaryPath("sluice_tests"), std::vector<std::string>{"--gtest_filter=FlowServerExample.ClientProcess"},
        sluice::testing::ChildOptions{.env = {"SLUICE_FLOW_CLIENT_SOCKET=" + socket,
                                              "SLUICE_FLOW_CLIENT_FIRST=" + std::to_string(c * kShare),
                                              "SLUICE_FLOW_CLIENT_COUNT=" + std::to_string(kShare)}}));
    ASSERT_TRUE(clients.back()->started()) << clients.back()->error();
  }

  // Kill the server (no drain, no unlink) once a client has done a part of its share, then start a
  // new one on the same path: it must replace the stale socket file, and the clients come back.
  const std::regex quarter_done("progress ([6-9][0-9]{2}|[0-9]{4,})");  // 600 of its 2,500
  const auto progress = clients[0]->WaitForLine(quarter_done, kBudget / 2);
  ASSERT_TRUE(progress) << clients[0]->Describe();
  server->Kill();
  EXPECT_TRUE(fs::exists(socket)) << "a killed server leaves its socket file";
  std::this_thread::sleep_for(200ms);  // clients meet the dead socket
  server = StartServer(socket);

  int unavailable = 0;
  for (auto& client : clients) {
    EXPECT_EQ(client->WaitForExit(kBudget), 0) << client->Describe();
    const std::regex summary("client completed=(\\d+) unavailable=(\\d+) wrong=(\\d+) error=(.*)$");
    const auto line = client->WaitForLine(summary, 1s);
    ASSERT_TRUE(line) << client->Describe();
    EXPECT_EQ(std::stoi((*line)[1]), kShare);
    EXPECT_EQ(std::stoi((*line)[3]), 0);
    unavailable += std::stoi((*line)[2]);
    if (std::stoi((*line)[2]) > 0) {
      EXPECT_NE((*line)[4].find("unix:" + socket), std::string::npos) << "the error names the socket: " << (*line)[4];
    }
  }
  EXPECT_GT(unavailable, 0) << "no client noticed the killed server";

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
