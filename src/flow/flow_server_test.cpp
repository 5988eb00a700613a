// FlowServer and FlowClient in one process, on a socket in a temporary directory. Every wait is
// bounded (kWatchdog): the io_context threads run for at most that long and every future is waited
// for with it, so a hang fails the test instead of blocking the suite.
#include <sluice/flow_client.hpp>
#include <sluice/flow_server.hpp>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "flow/wire.hpp"

namespace sluice {
namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr auto kWatchdog = 30s;

// The step under test: {"echo": input, "batch": N}, bytes + "|done"; {"fail": "why"} fails the
// task; {"sleep_ms": n} sleeps first (so answers come out of order).
void EchoStep(FlowBatch batch) {
  for (FlowTask& task : batch) {
    const json::object* object = task.data.if_object();
    if (object && object->contains("fail")) {
      task.fail(std::string(object->at("fail").as_string()));
      continue;
    }
    if (object && object->contains("sleep_ms")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(object->at("sleep_ms").to_number<int>()));
    }
    task.data = json::object{{"echo", std::move(task.data)}, {"batch", batch.size()}};
    task.bytes += "|done";
  }
}

// A blocking Unix socket with a receive deadline, for speaking the protocol by hand.
class RawSocket {
 public:
  explicit RawSocket(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    timeval timeout{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~RawSocket() { ::close(fd_); }

  bool connected() const { return connected_; }
  bool Send(std::string_view bytes) { return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()); }

  // One whole frame, or nothing (end of stream, error, timeout).
  std::optional<std::pair<flow::FrameHeader, std::string>> ReadFrame() {
    std::string header_bytes;
    if (!ReadExactly(flow::kFrameHeaderBytes, header_bytes)) return std::nullopt;
    auto header = flow::ParseFrameHeader(header_bytes);
    if (!header) return std::nullopt;
    std::string body;
    if (!ReadExactly(header->body_length, body)) return std::nullopt;
    return std::make_pair(*header, body);
  }

  // True when the peer has closed the connection (read gives 0 or a reset).
  bool AtEnd() {
    char byte;
    const ssize_t n = ::recv(fd_, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool ReadExactly(std::size_t n, std::string& out) {
    out.resize(n);
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
};

class FlowServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sluice-flow-server-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "flow.sock").string();
    flow_.add_step({.name = "echo", .handler = EchoStep, .workers = 2, .max_batch_size = 16,
                    .max_batch_delay = std::chrono::milliseconds(1)});
    flow_.start();
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run_for(kWatchdog); });
    StartServer();
  }

  void TearDown() override {
    if (server_) {
      EXPECT_TRUE(server_->stop(5s));
    }
    server_.reset();
    client_.reset();
    flow_.stop();
    work_.reset();
    io_.stop();
    for (auto& thread : threads_) thread.join();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void StartServer() {
    server_ = std::make_unique<FlowServer>(io_, flow_, FlowServerOptions{.socket_path = path_});
    server_->start();
  }

  FlowClient& client(FlowClientOptions options = {}) {
    if (!client_) client_ = std::make_unique<FlowClient>(io_.get_executor(), path_, options);
    return *client_;
  }

  // Runs client.process(tasks) on the io_context and waits (at most kWatchdog).
  void Process(std::vector<FlowTask>& tasks, FlowClient* on = nullptr) {
    FlowClient& used = on ? *on : client();
    auto done = boost::asio::co_spawn(io_, used.process(tasks, 10s), boost::asio::use_future);
    ASSERT_EQ(done.wait_for(kWatchdog), std::future_status::ready) << "the request never completed";
    done.get();
  }

  fs::path dir_;
  std::string path_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  Flow flow_;
  std::unique_ptr<FlowServer> server_;
  std::unique_ptr<FlowClient> client_;
};

TEST_F(FlowServerTest, RoundTripCarriesDataAndBinaryBytes) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(json::parse(R"({"text":"Hello","x":[1,2.5]})"));
  tasks.emplace_back(json::value(), std::string("\0\x01\xfftensor\0", 10));
  tasks.emplace_back(json::parse("0.5"), "");
  Process(tasks);
  for (const FlowTask& task : tasks) ASSERT_EQ(task.status(), FlowTaskStatus::kCompleted) << task.error();
  EXPECT_EQ(tasks[0].data.at("echo"), json::parse(R"({"text":"Hello","x":[1,2.5]})"));
  EXPECT_TRUE(tasks[1].data.at("echo").is_null());
  EXPECT_EQ(tasks[1].bytes, std::string("\0\x01\xfftensor\0|done", 15));
  EXPECT_EQ(tasks[2].data.at("echo"), json::value(0.5));
  EXPECT_EQ(tasks[0].bytes, "|done");
}

TEST_F(FlowServerTest, AFailedTaskFailsAloneWithItsMessage) {
  std::vector<FlowTask> tasks;
  tasks.emplace_back(json::parse(R"({"n":1})"));
  tasks.emplace_back(json::parse(R"({"fail":"no thanks"})"));
  tasks.emplace_back(json::parse(R"({"n":3})"));
  Process(tasks);
  EXPECT_EQ(tasks[0].status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(tasks[1].status(), FlowTaskStatus::kFailed);
  EXPECT_EQ(tasks[1].error(), "no thanks");
  EXPECT_EQ(tasks[2].status(), FlowTaskStatus::kCompleted);
  EXPECT_EQ(tasks[2].data.at("echo").at("n"), 3);
}

TEST_F(FlowServerTest, ManyConcurrentRequestsOnTwoConnectionsEachGetTheirOwnAnswers) {
  FlowClient& shared = client({.pool_size = 2});
  constexpr int kRequests = 200;
  constexpr int kTasksEach = 5;
  std::vector<std::vector<FlowTask>> requests(kRequests);
  std::vector<std::future<void>> done;
  for (int r = 0; r < kRequests; ++r) {
    for (int i = 0; i < kTasksEach; ++i) {
      // Early requests sleep longest: their answers come after later ones (out of order).
      json::object input{{"request", r}, {"task", i}};
      if (r % 10 == 0) input["sleep_ms"] = 20 - r / 10;
      requests[r].emplace_back(std::move(input), "r" + std::to_string(r));
    }
    done.push_back(boost::asio::co_spawn(io_, shared.process(requests[r], 20s), boost::asio::use_future));
  }
  for (auto& future : done) ASSERT_EQ(future.wait_for(kWatchdog), std::future_status::ready);
  std::size_t largest_batch = 0;
  for (int r = 0; r < kRequests; ++r) {
    for (int i = 0; i < kTasksEach; ++i) {
      const FlowTask& task = requests[r][i];
      ASSERT_EQ(task.status(), FlowTaskStatus::kCompleted) << task.error();
      EXPECT_EQ(task.data.at("echo").at("request"), r);
      EXPECT_EQ(task.data.at("echo").at("task"), i);
      EXPECT_EQ(task.bytes, "r" + std::to_string(r) + "|done");
      largest_batch = std::max<std::size_t>(largest_batch, task.data.at("batch").to_number<std::size_t>());
    }
  }
  EXPECT_GT(largest_batch, 1u) << "tasks of different requests should share batches";
  EXPECT_LE(server_->connections(), 2u);
}

TEST_F(FlowServerTest, BlockingCallersOnManyThreadsShareOneClient) {
  FlowClient& shared = client({.pool_size = 3});
  std::vector<std::thread> callers;
  std::atomic<int> completed{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int r = 0; r < 25; ++r) {
        std::vector<FlowTask> tasks;
        tasks.emplace_back(json::object{{"thread", t}, {"round", r}});
        shared.process_blocking(tasks);
        if (tasks[0].status() == FlowTaskStatus::kCompleted && tasks[0].data.at("echo").at("thread") == t &&
            tasks[0].data.at("echo").at("round") == r) {
          ++completed;
        }
      }
    });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(completed.load(), 100);
}

TEST_F(FlowServerTest, ABadFrameGetsAnErrorFrameAndTheConnectionIsClosed) {
  RawSocket socket(path_);
  ASSERT_TRUE(socket.connected());
  ASSERT_TRUE(socket.Send(std::string("XXXX") + std::string(20, '\0')));
  auto frame = socket.ReadFrame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->first.kind, flow::FrameKind::kError);
  EXPECT_EQ(frame->first.request_id, 0u);
  EXPECT_NE(frame->second.find("bad magic"), std::string::npos) << frame->second;
  EXPECT_TRUE(socket.AtEnd());
}

TEST_F(FlowServerTest, AFrameOverTheLimitIsRefusedFromItsHeader) {
  RawSocket socket(path_);
  ASSERT_TRUE(socket.connected());
  std::string header;
  flow::AppendFrameHeader(header, {.kind = flow::FrameKind::kRequest, .request_id = 3, .count = 1,
                                   .body_length = (64u << 20) + 1});
  ASSERT_TRUE(socket.Send(header));
  auto frame = socket.ReadFrame();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->first.kind, flow::FrameKind::kError);
  EXPECT_EQ(frame->first.request_id, 0u);
  EXPECT_NE(frame->second.find("over the limit"), std::string::npos) << frame->second;
  EXPECT_TRUE(socket.AtEnd());
}

TEST_F(FlowServerTest, InvalidJsonRefusesThatRequestAndTheConnectionGoesOn) {
  RawSocket socket(path_);
  ASSERT_TRUE(socket.connected());
  std::vector<FlowTask> good(1);
  good[0].data = json::parse(R"({"ok":true})");
  std::string frames;
  // Request 7 by hand: one task whose data is "[1,".
  std::string body = std::string("\0\0\0\0\3\0\0\0\0\0\0\0", 12) + "[1,";
  flow::AppendFrameHeader(frames, {.kind = flow::FrameKind::kRequest, .request_id = 7, .count = 1,
                                   .body_length = static_cast<std::uint32_t>(body.size())});
  frames += body;
  ASSERT_TRUE(flow::AppendRequestFrame(frames, 8, good, 0).ok());
  ASSERT_TRUE(socket.Send(frames));

  auto refused = socket.ReadFrame();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->first.kind, flow::FrameKind::kError);
  EXPECT_EQ(refused->first.request_id, 7u);
  EXPECT_NE(refused->second.find("task 0: data is not valid JSON"), std::string::npos) << refused->second;
  auto answered = socket.ReadFrame();
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->first.kind, flow::FrameKind::kResponse);
  EXPECT_EQ(answered->first.request_id, 8u);
  std::vector<FlowTask> back(1);
  ASSERT_TRUE(flow::DecodeResponseBody(answered->second, 1, back).ok());
  EXPECT_EQ(back[0].data.at("echo"), json::parse(R"({"ok":true})"));
}

TEST_F(FlowServerTest, ServerGoneIsUnavailableNamingTheSocketThenTheClientRecovers) {
  std::vector<FlowTask> first(1);
  Process(first);
  ASSERT_EQ(first[0].status(), FlowTaskStatus::kCompleted);

  ASSERT_TRUE(server_->stop(5s));
  server_.reset();
  EXPECT_FALSE(fs::exists(path_)) << "stop removes the socket file";

  std::vector<FlowTask> lost(2);
  Process(lost);
  for (const FlowTask& task : lost) {
    EXPECT_EQ(task.status(), FlowTaskStatus::kUnavailable);
    EXPECT_NE(task.error().find("unix:" + path_), std::string::npos) << task.error();
  }
  // The pooled connection broke when the server went; a fresh attempt finds no socket at all.
  std::vector<FlowTask> refused(1);
  Process(refused);
  EXPECT_EQ(refused[0].status(), FlowTaskStatus::kUnavailable);
  EXPECT_NE(refused[0].error().find("connect: No such file or directory"), std::string::npos) << refused[0].error();

  StartServer();
  std::vector<FlowTask> again;
  again.emplace_back(json::parse(R"({"back":1})"));
  Process(again);
  ASSERT_EQ(again[0].status(), FlowTaskStatus::kCompleted) << again[0].error();
  EXPECT_EQ(again[0].data.at("echo").at("back"), 1);
}

TEST_F(FlowServerTest, NoAnswerByTheDeadlineEndsTheTasksTimedOut) {
  // A task that sleeps in the handler past its deadline: the server answers only when the batch
  // ends, so the client gives up at the deadline plus its grace, and drops the late answer.
  FlowClient& patient = client({.answer_grace = 100ms});
  std::vector<FlowTask> tasks;
  tasks.emplace_back(json::parse(R"({"sleep_ms":1500})"));
  const auto start = std::chrono::steady_clock::now();
  auto done = boost::asio::co_spawn(io_, patient.process(tasks, 200ms), boost::asio::use_future);
  ASSERT_EQ(done.wait_for(kWatchdog), std::future_status::ready);
  done.get();
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(tasks[0].status(), FlowTaskStatus::kTimedOut);
  EXPECT_EQ(tasks[0].error(), "no answer from the flow server at unix:" + path_ + " by the request's deadline");
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 1400ms);
  // The connection goes on: the late answer is dropped, the next request is answered.
  std::vector<FlowTask> next;
  next.emplace_back(json::parse(R"({"n":2})"));
  Process(next, &patient);
  EXPECT_EQ(next[0].status(), FlowTaskStatus::kCompleted) << next[0].error();
}

TEST_F(FlowServerTest, StopAnswersTheRequestsAlreadyRead) {
  std::vector<FlowTask> slow;
  for (int i = 0; i < 4; ++i) slow.emplace_back(json::object{{"sleep_ms", 300}, {"i", i}});
  auto done = boost::asio::co_spawn(io_, client().process(slow, 10s), boost::asio::use_future);
  std::this_thread::sleep_for(100ms);  // the request is read and in the flow
  EXPECT_TRUE(server_->stop(10s));
  ASSERT_EQ(done.wait_for(kWatchdog), std::future_status::ready);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(slow[i].status(), FlowTaskStatus::kCompleted) << slow[i].error();
    EXPECT_EQ(slow[i].data.at("echo").at("i"), i);
  }
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(FlowServerTest, ALiveServerKeepsItsSocketAndAStaleFileIsReplaced) {
  FlowServer second(io_, flow_, {.socket_path = path_});
  try {
    second.start();
    ADD_FAILURE() << "a second server started on a live socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another server is listening"), std::string::npos) << e.what();
  }
  std::vector<FlowTask> still(1);
  Process(still);
  EXPECT_EQ(still[0].status(), FlowTaskStatus::kCompleted);

  // A socket file whose server is gone: bound, never listening.
  const std::string stale = (dir_ / "stale.sock").string();
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, stale.c_str(), sizeof(address.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);
  }
  FlowServer replacing(io_, flow_, {.socket_path = stale});
  replacing.start();
  FlowClient other(io_.get_executor(), stale);
  std::vector<FlowTask> through(1);
  Process(through, &other);
  EXPECT_EQ(through[0].status(), FlowTaskStatus::kCompleted) << through[0].error();
  EXPECT_TRUE(replacing.stop(5s));
}

TEST_F(FlowServerTest, APathThatIsNotASocketIsRefused) {
  const std::string file = (dir_ / "plain").string();
  { std::FILE* f = std::fopen(file.c_str(), "w"); std::fclose(f); }
  FlowServer server(io_, flow_, {.socket_path = file});
  EXPECT_THROW(server.start(), std::runtime_error);
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(FlowServerTest, BackpressureBoundsTheTasksInFlightPerConnection) {
  ASSERT_TRUE(server_->stop(5s));
  server_ = std::make_unique<FlowServer>(io_, flow_, FlowServerOptions{.socket_path = path_, .max_inflight_tasks = 4});
  server_->start();
  FlowClient& one = client({.pool_size = 1});
  std::vector<std::vector<FlowTask>> requests(20);
  std::vector<std::future<void>> done;
  for (int r = 0; r < 20; ++r) {
    requests[r].emplace_back(json::object{{"r", r}, {"sleep_ms", 5}});
    requests[r].emplace_back(json::object{{"r", r}});
    done.push_back(boost::asio::co_spawn(io_, one.process(requests[r], 20s), boost::asio::use_future));
  }
  for (auto& future : done) ASSERT_EQ(future.wait_for(kWatchdog), std::future_status::ready);
  for (int r = 0; r < 20; ++r) {
    for (const FlowTask& task : requests[r]) {
      ASSERT_EQ(task.status(), FlowTaskStatus::kCompleted) << task.error();
      EXPECT_EQ(task.data.at("echo").at("r"), r);
    }
  }
}

}  // namespace
}  // namespace sluice
