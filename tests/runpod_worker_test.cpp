// The RunPod production worker end to end: example workers run as child processes with the
// environment RunPod sets, against the fake control plane (tests/fake_runpod.hpp), and every
// request they make is checked against runpod.md §4.
//
// Nothing here can hang: every wait on the fake has a timeout, and ChildProcess kills the worker
// when a test ends, whatever it asserted.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "child_process.hpp"
#include "fake_runpod.hpp"

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr auto kWait = 20s;

fs::path BinaryPath(std::string_view name) { return fs::path(SLUICE_BIN_DIR) / name; }

// A worker example started against `fake`, with `flags` after its own.
std::unique_ptr<ChildProcess> StartWorker(const FakeRunPod& fake, std::string_view example,
                                          std::vector<std::string> flags = {}) {
  std::vector<std::string> env = fake.WorkerEnvironment();
  env.push_back("RUNPOD_PING_INTERVAL=200");
  flags.insert(flags.begin(), {"--rp_log_level", "INFO"});
  auto worker = std::make_unique<ChildProcess>(BinaryPath(example), flags, ChildOptions{.env = env});
  EXPECT_TRUE(worker->started()) << worker->error();
  return worker;
}

void ExpectCleanExit(ChildProcess& worker) {
  ASSERT_TRUE(worker.Signal(SIGTERM));
  EXPECT_EQ(worker.WaitForExit(30s), 0) << worker.Describe();
}

TEST(RunpodWorker, EveryJobTakenIsAnsweredExactlyOnceWithRunpodsBody) {
  FakeRunPod fake;
  constexpr int kJobs = 20;
  for (int i = 0; i < kJobs; ++i) fake.AddJob("job-" + std::to_string(i), json::object{{"i", i}});
  auto worker = StartWorker(fake, "echo", {"--concurrency", "4"});

  std::set<std::string> request_ids;
  for (int i = 0; i < kJobs; ++i) {
    const std::string id = "job-" + std::to_string(i);
    const auto done = fake.WaitForDone(id, kWait);
    ASSERT_TRUE(done) << id << "\n" << worker->Describe();
    EXPECT_EQ(done->body, R"({"output": {"i": )" + std::to_string(i) + "}}") << done->Describe();
    EXPECT_EQ(done->Query("isStream").value_or(""), "false") << done->Describe();
    EXPECT_EQ(done->Header("Authorization"), "fake-runpod-key") << done->Describe();
    EXPECT_NE(done->Header("User-Agent").find("sluice"), std::string::npos) << done->Describe();
    request_ids.insert(std::string(done->Header("X-Request-ID")));
  }
  EXPECT_EQ(request_ids.size(), std::size_t{kJobs}) << "an X-Request-ID was shared between jobs";
  EXPECT_EQ(request_ids.count(""), 0u);
  // Exactly once: no job got a second answer, however long we look.
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(fake.DonePosts("job-" + std::to_string(i)).size(), 1u);
  // More than one slot free: batch takes, saying whether jobs are in progress.
  bool batch_take = false;
  for (const RecordedRequest& take : fake.Requests(Route::kJobTakeBatch)) {
    batch_take = true;
    EXPECT_TRUE(take.Query("job_in_progress") == "0" || take.Query("job_in_progress") == "1") << take.Describe();
  }
  EXPECT_TRUE(batch_take) << "a worker with 4 free slots never asked for a batch";
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, AStreamingJobPostsEachChunkThenTheFinalResultWithIsStream) {
  FakeRunPod fake;
  fake.AddJob("streamed", json::object{{"text", "a b c"}});
  auto worker = StartWorker(fake, "stream_tokens");
  const auto done = fake.WaitForDone("streamed", kWait);
  ASSERT_TRUE(done) << worker->Describe();
  // runpod.md §1.4, §4.5: every chunk to job-stream with isStream=false, in order; then job-done
  // with isStream=true and, without return_aggregate_stream, an empty list.
  const auto chunks = fake.WaitForStreams("streamed", 3, kWait);
  ASSERT_EQ(chunks.size(), 3u) << worker->Describe();
  const char* words[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(chunks[i].body,
              std::string(R"({"output": {"token": ")") + words[i] + R"(", "index": )" + std::to_string(i) + "}}");
    EXPECT_EQ(chunks[i].Query("isStream").value_or(""), "false") << chunks[i].Describe();
    EXPECT_LT(chunks[i].sequence, done->sequence) << "a chunk came after the final result";
  }
  EXPECT_EQ(done->Query("isStream").value_or(""), "true") << done->Describe();
  EXPECT_EQ(done->body, R"({"output": []})");
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, PingsCarryTheIdsOfTheJobsInProgress) {
  FakeRunPod fake;
  fake.AddJob("long-1", json::object{{"delay", 3}});
  auto worker = StartWorker(fake, "concurrent_handler");
  const bool seen = fake.WaitUntil(
      [](const std::vector<RecordedRequest>& requests) {
        for (const RecordedRequest& request : requests) {
          if (request.route != Route::kPing) continue;
          for (const std::string& id : request.PingJobIds()) {
            if (id == "long-1") return true;
          }
        }
        return false;
      },
      kWait);
  EXPECT_TRUE(seen) << "no ping named the running job\n" << worker->Describe();
  ASSERT_TRUE(fake.WaitForDone("long-1", kWait)) << worker->Describe();
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, AStopCancelsTheRunningJobAndNoResultIsPosted) {
  FakeRunPod fake;
  fake.AddJob("to-stop", json::object{{"delay", 30}});
  auto worker = StartWorker(fake, "concurrent_handler");
  ASSERT_FALSE(fake.WaitForTakes(1, kWait).empty());
  ASSERT_FALSE(fake.WaitForPings(2, kWait).empty());
  fake.StopJob("to-stop");
  // Once stopped, the job leaves the pings; its result is never posted.
  const bool left = fake.WaitUntil(
      [](const std::vector<RecordedRequest>& requests) {
        bool stop_answered = false;
        for (const RecordedRequest& request : requests) {
          if (request.route == Route::kJobStop && !request.jobs_to_stop.empty()) stop_answered = true;
          if (stop_answered && request.route == Route::kPing && request.PingJobIds().empty()) return true;
        }
        return false;
      },
      kWait);
  EXPECT_TRUE(left) << "the stopped job stayed in progress\n" << worker->Describe();
  std::this_thread::sleep_for(500ms);
  EXPECT_TRUE(fake.DonePosts("to-stop").empty()) << "a stopped job's result was posted";
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, AFailingResultPostIsRetriedUntilDelivered) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobDone, Fault::Status(500), 2);
  fake.AddJob("retried", json::object{{"x", 1}});
  auto worker = StartWorker(fake, "echo");
  const bool delivered = fake.WaitUntil(
      [](const std::vector<RecordedRequest>& requests) {
        for (const RecordedRequest& request : requests) {
          if (request.route == Route::kJobDone && request.job_id == "retried" && request.Accepted()) return true;
        }
        return false;
      },
      kWait);
  ASSERT_TRUE(delivered) << worker->Describe();
  const auto posts = fake.DonePosts("retried");
  ASSERT_EQ(posts.size(), 3u);
  EXPECT_EQ(posts[0].status, 500u);
  EXPECT_EQ(posts[2].body, R"({"output": {"x": 1}})");
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, TakeErrorsAreSurvivedWithBackoff) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobTake, Fault::Status(500), 3);
  fake.InjectFault(Route::kJobTakeBatch, Fault::Status(500), 3);
  fake.AddJob("after-errors", json::object{{"y", 2}});
  auto worker = StartWorker(fake, "echo");
  const auto done = fake.WaitForDone("after-errors", kWait);
  ASSERT_TRUE(done) << worker->Describe();
  EXPECT_EQ(done->body, R"({"output": {"y": 2}})");
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, SigtermDrainsTheRunningJobAndExitsZero) {
  FakeRunPod fake;
  fake.AddJob("draining", json::object{{"delay", 1}});
  auto worker = StartWorker(fake, "concurrent_handler");
  ASSERT_FALSE(fake.WaitForTakes(1, kWait).empty());
  ASSERT_FALSE(fake.WaitForPings(1, kWait).empty());
  ASSERT_TRUE(worker->Signal(SIGTERM));
  EXPECT_EQ(worker->WaitForExit(30s), 0) << worker->Describe();
  const auto done = fake.DonePosts("draining");
  ASSERT_EQ(done.size(), 1u) << "the running job was not finished before the exit";
  EXPECT_NE(done[0].body.find("Processed"), std::string::npos) << done[0].Describe();
}

}  // namespace
}  // namespace sluice::testing
