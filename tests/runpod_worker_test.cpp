// The RunPod production worker end to end: example workers, and tests/workers/runpod_test_worker
// for the handlers the examples lack (progress updates, config-level refresh_worker, a
// concurrency_modifier that returns invalid limits), run as child processes with the environment
// RunPod sets, against the fake control plane (tests/fake_runpod.hpp), and every request they make
// is checked against runpod.md §1.5 and §4: answers, streams, progress, pings, stops, refresh_worker,
// SIGTERM, and faults of the control plane (error statuses, 429, late answers, a hang, refused
// connections, bodies cut mid-way) that the worker must survive without losing or repeating a result.
//
// Nothing here can hang: every wait on the fake has a timeout, and ChildProcess kills the worker
// when a test ends, whatever it asserted. Timings are asserted only with wide bounds.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
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

// tests/workers/runpod_test_worker in `mode` (RUNPOD_TEST_WORKER_MODE, see its file comment).
std::unique_ptr<ChildProcess> StartTestWorker(const FakeRunPod& fake, std::string_view mode,
                                              std::vector<std::string> flags = {}) {
  std::vector<std::string> env = fake.WorkerEnvironment();
  env.push_back("RUNPOD_PING_INTERVAL=200");
  env.push_back("RUNPOD_TEST_WORKER_MODE=" + std::string(mode));
  flags.insert(flags.begin(), {"--rp_log_level", "INFO"});
  auto worker =
      std::make_unique<ChildProcess>(BinaryPath("runpod_test_worker"), flags, ChildOptions{.env = env});
  EXPECT_TRUE(worker->started()) << worker->error();
  return worker;
}

// The job-done POSTs of a job that the fake accepted and that are its result, not progress.
std::vector<RecordedRequest> AcceptedResults(const FakeRunPod& fake, std::string_view job_id) {
  std::vector<RecordedRequest> results;
  for (RecordedRequest& post : fake.DonePosts(job_id)) {
    if (post.Accepted() && !post.IsProgress()) results.push_back(std::move(post));
  }
  return results;
}

// Every job-done POST of the job, one line each, for failure messages.
std::string DescribeDonePosts(const FakeRunPod& fake, std::string_view job_id) {
  std::string text;
  for (const RecordedRequest& post : fake.DonePosts(job_id)) text += "\n  " + post.Describe();
  return text;
}

std::string DescribeRequests(const std::vector<RecordedRequest>& requests) {
  std::string text;
  for (const RecordedRequest& request : requests) text += "\n  " + request.Describe();
  return text;
}

// Every job of `ids` has exactly one accepted result, with the body `{"output": <input>}` of the
// echo example; checked after a pause, so a late duplicate shows.
void ExpectEachEchoedExactlyOnce(const FakeRunPod& fake, const std::vector<std::pair<std::string, json::value>>& jobs,
                                 ChildProcess& worker) {
  for (const auto& [id, input] : jobs) {
    const auto done = fake.WaitForDone(id, kWait);
    ASSERT_TRUE(done) << id << " was never answered\n" << worker.Describe();
    EXPECT_EQ(done->Json(), (json::object{{"output", input}})) << done->Describe();
  }
  std::this_thread::sleep_for(300ms);
  for (const auto& [id, input] : jobs) {
    EXPECT_EQ(AcceptedResults(fake, id).size(), 1u)
        << id << " was not answered exactly once:" << DescribeDonePosts(fake, id) << "\n" << worker.Describe();
    std::size_t taken = 0;
    for (const std::string& taken_id : fake.TakenJobs()) taken += taken_id == id ? 1 : 0;
    EXPECT_EQ(taken, 1u) << id << " was handed out " << taken << " times";
  }
}

// Lines of the worker's stderr that contain `text`.
std::size_t CountLines(const std::string& output, std::string_view text) {
  std::size_t count = 0;
  for (std::size_t at = output.find(text); at != std::string::npos; at = output.find(text, at + text.size())) ++count;
  return count;
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

TEST(RunpodWorker, MaxTakeBatchOneKeepsEveryTakeSingleWhateverTheFreeSlots) {
  FakeRunPod fake;
  constexpr int kJobs = 12;
  for (int i = 0; i < kJobs; ++i) fake.AddJob("single-" + std::to_string(i), json::object{{"i", i}});
  auto worker = StartWorker(fake, "echo", {"--concurrency", "4", "--max-take-batch", "1"});
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_TRUE(fake.WaitForDone("single-" + std::to_string(i), kWait)) << worker->Describe();
  }
  EXPECT_TRUE(fake.Requests(Route::kJobTakeBatch).empty()) << "a batch take despite --max-take-batch 1";
  EXPECT_GE(fake.Requests(Route::kJobTake).size(), std::size_t{kJobs});
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


double Seconds(std::chrono::steady_clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// runpod.md §1.5, §4.5: job.progress(p) POSTs {"status": "IN_PROGRESS", "output": p} to job-done with
// isStream=false. runpod-python sends them fire-and-forget, so the result can overtake them (#250);
// sluice sends a job's POSTs one after another. The first update is answered late here: the second
// update and the result must still wait for it.
TEST(RunpodWorker, ProgressUpdatesArePostedInOrderBeforeTheResult) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobDone, Fault::Delay(500ms));
  fake.AddJob("with-progress",
              json::object{{"updates", json::array{json::object{{"percent", 50}}, "almost done"}},
                           {"result", json::object{{"answer", 42}}}});
  auto worker = StartTestWorker(fake, "progress");
  const auto done = fake.WaitForDone("with-progress", kWait);
  ASSERT_TRUE(done) << worker->Describe();
  std::this_thread::sleep_for(300ms);  // anything after the result would show now
  const auto posts = fake.DonePosts("with-progress");
  ASSERT_EQ(posts.size(), 3u) << worker->Describe();
  EXPECT_EQ(posts[0].body, R"({"status": "IN_PROGRESS", "output": {"percent": 50}})") << posts[0].Describe();
  EXPECT_TRUE(posts[0].delayed) << posts[0].Describe();
  EXPECT_EQ(posts[1].body, R"({"status": "IN_PROGRESS", "output": "almost done"})") << posts[1].Describe();
  EXPECT_EQ(posts[2].body, R"({"output": {"answer": 42}})") << posts[2].Describe();
  EXPECT_EQ(posts[2].sequence, done->sequence);
  for (std::size_t i = 0; i < posts.size(); ++i) {
    EXPECT_TRUE(posts[i].Accepted()) << posts[i].Describe();
    EXPECT_EQ(posts[i].Query("isStream").value_or(""), "false") << posts[i].Describe();
    // Each POST was sent only once the one before it had been answered.
    if (i > 0) {
      EXPECT_GE(posts[i].received, posts[i - 1].answered) << posts[i].Describe();
    }
  }
  ExpectCleanExit(*worker);
}

// runpod.md §1.5: with the config-level flag every result carries stopPod, and the worker drains
// and exits 0 after its job: with 3 jobs queued it answers one and takes no other.
TEST(RunpodWorker, ConfigRefreshWorkerAnswersOneJobWithStopPodThenExitsZero) {
  FakeRunPod fake;
  for (int i = 0; i < 3; ++i) fake.AddJob("refresh-" + std::to_string(i), json::object{{"n", i}});
  auto worker = StartTestWorker(fake, "refresh_worker");
  EXPECT_EQ(worker->WaitForExit(kWait), 0) << "the worker did not leave by itself\n" << worker->Describe();
  const auto done = fake.WaitForDone("refresh-0", 1s);
  ASSERT_TRUE(done) << worker->Describe();
  EXPECT_EQ(done->body, R"({"output": {"n": 0}, "stopPod": true})") << done->Describe();
  EXPECT_EQ(AcceptedResults(fake, "refresh-0").size(), 1u);
  EXPECT_EQ(fake.TakenJobs(), std::vector<std::string>{"refresh-0"}) << worker->Describe();
  EXPECT_EQ(fake.QueuedJobs(), 2u);
  for (const char* id : {"refresh-1", "refresh-2"}) EXPECT_TRUE(fake.DonePosts(id).empty()) << id;
}

// runpod.md §1.5: `refresh_worker: true` in a returned object adds stopPod to that result only, and
// the worker keeps taking jobs. The echo example returns its input, flag included.
TEST(RunpodWorker, ReturnedRefreshWorkerSetsStopPodOnThatResultOnlyAndTheWorkerGoesOn) {
  FakeRunPod fake;
  fake.AddJob("plain-1", json::object{{"a", 1}});
  fake.AddJob("refresh", json::object{{"b", 2}, {"refresh_worker", true}});
  fake.AddJob("plain-2", json::object{{"c", 3}});
  auto worker = StartWorker(fake, "echo");
  const std::pair<const char*, const char*> expected[] = {
      {"plain-1", R"({"output": {"a": 1}})"},
      {"refresh", R"({"output": {"b": 2}, "stopPod": true})"},
      {"plain-2", R"({"output": {"c": 3}})"}};
  std::size_t last = 0;
  for (const auto& [id, body] : expected) {
    const auto done = fake.WaitForDone(id, kWait);
    ASSERT_TRUE(done) << id << "\n" << worker->Describe();
    EXPECT_EQ(done->body, body) << done->Describe();
    last = std::max(last, done->sequence);
  }
  // Still taking after the last result.
  const bool took_again = fake.WaitUntil(
      [last](const std::vector<RecordedRequest>& requests) {
        for (const RecordedRequest& request : requests) {
          if (request.sequence > last && request.route == Route::kJobTake) return true;
        }
        return false;
      },
      kWait);
  EXPECT_TRUE(took_again) << worker->Describe();
  EXPECT_FALSE(worker->exited()) << worker->Describe();
  for (const char* id : {"plain-1", "refresh", "plain-2"}) EXPECT_EQ(AcceptedResults(fake, id).size(), 1u) << id;
  ExpectCleanExit(*worker);
}

// runpod.md §4.3: a 429 on job-take means "back off" (runpod-python sleeps 5 s). The worker waits at
// least that long before it asks again, then takes and answers the job once.
TEST(RunpodWorker, A429OnTakeIsWaitedOutAndTheJobAnsweredOnce) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobTake, Fault::Status(429));
  fake.AddJob("after-429", json::object{{"z", 1}});
  auto worker = StartWorker(fake, "echo");
  ExpectEachEchoedExactlyOnce(fake, {{"after-429", json::object{{"z", 1}}}}, *worker);
  const auto takes = fake.Requests(Route::kJobTake);
  ASSERT_GE(takes.size(), 2u) << worker->Describe();
  EXPECT_EQ(takes[0].status, 429u) << takes[0].Describe();
  const double pause = Seconds(takes[1].received - takes[0].answered);
  EXPECT_GE(pause, 4.0) << "the take after a 429 came " << pause << " s later";
  ExpectCleanExit(*worker);
}

// Takes and result POSTs answered late (but within the worker's timeouts) lose and repeat nothing.
TEST(RunpodWorker, LateAnswersToTakesAndResultsLoseNothing) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobTake, Fault::Delay(700ms), 2);
  fake.InjectFault(Route::kJobDone, Fault::Delay(700ms), 2);
  std::vector<std::pair<std::string, json::value>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.emplace_back("late-" + std::to_string(i), json::object{{"i", i}});
    fake.AddJob(jobs.back().first, jobs.back().second);
  }
  auto worker = StartWorker(fake, "echo");
  ExpectEachEchoedExactlyOnce(fake, jobs, *worker);
  const auto takes = fake.Requests(Route::kJobTake);
  ASSERT_GE(takes.size(), 2u);
  EXPECT_TRUE(takes[0].delayed && takes[1].delayed);
  EXPECT_EQ(takes[0].jobs_served, std::vector<std::string>{"late-0"}) << takes[0].Describe();
  EXPECT_TRUE(fake.DonePosts("late-0").front().delayed);
  ExpectCleanExit(*worker);
}

// A job-done POST that is never answered: the worker's request timeout (--post-timeout) ends it and
// the same POST is sent again, with the same X-Request-ID; the job is answered once.
TEST(RunpodWorker, AHangingResultPostTimesOutAndIsSentAgain) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobDone, Fault::Hang());
  fake.AddJob("hung", json::object{{"h", 1}});
  auto worker = StartWorker(fake, "echo", {"--post-timeout", "1"});
  ExpectEachEchoedExactlyOnce(fake, {{"hung", json::object{{"h", 1}}}}, *worker);
  const auto posts = fake.DonePosts("hung");
  ASSERT_EQ(posts.size(), 2u) << worker->Describe();
  EXPECT_TRUE(posts[0].faulted) << posts[0].Describe();
  EXPECT_EQ(posts[0].status, 0u) << "the hung POST was answered: " << posts[0].Describe();
  EXPECT_EQ(posts[1].body, posts[0].body);
  EXPECT_EQ(posts[1].Header("X-Request-ID"), posts[0].Header("X-Request-ID"));
  const double waited = Seconds(posts[1].received - posts[0].received);
  EXPECT_GE(waited, 0.9) << "sent again before the 1 s timeout";
  EXPECT_LT(waited, 10.0);
  ExpectCleanExit(*worker);
}

// The control plane unreachable (connections refused) for 2 s, with jobs queued meanwhile: the
// worker keeps trying, with backoff (a handful of failed takes, not runpod-python's thousands,
// runpod.md §4.3), and answers every job once when it can connect again.
TEST(RunpodWorker, RefusedConnectionsAreRetriedWithBackoffAndQueuedJobsAllDoneAfter) {
  FakeRunPod fake;
  auto worker = StartWorker(fake, "echo");
  ASSERT_FALSE(fake.WaitForTakes(1, kWait).empty()) << worker->Describe();
  fake.RefuseConnections();
  const std::size_t failures_before = CountLines(worker->err(), "Failed to get job");
  std::vector<std::pair<std::string, json::value>> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.emplace_back("queued-" + std::to_string(i), json::object{{"q", i}});
    fake.AddJob(jobs.back().first, jobs.back().second);
  }
  std::this_thread::sleep_for(2s);
  const std::size_t failures = CountLines(worker->err(), "Failed to get job") - failures_before;
  EXPECT_GE(failures, 1u) << "no take failed while connections were refused\n" << worker->Describe()
                          << "\n--- requests ---" << DescribeRequests(fake.Requests());
  EXPECT_LE(failures, 25u) << "a hot loop: " << failures << " failed takes in 2 s";
  const core::Status accepting = fake.AcceptConnections();
  ASSERT_TRUE(accepting.ok()) << accepting.message() << "\n" << worker->Describe();
  ExpectEachEchoedExactlyOnce(fake, jobs, *worker);
  ExpectCleanExit(*worker);
}

// A job-done POST whose answer is cut mid-body: the worker cannot know it got through, so it sends
// the result again; the fake accepted it exactly once.
TEST(RunpodWorker, AResultPostWhoseAnswerIsCutIsSentAgainAndAcceptedOnce) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobDone, Fault::DropMidBody());
  fake.AddJob("cut-answer", json::object{{"d", 1}});
  auto worker = StartWorker(fake, "echo");
  ExpectEachEchoedExactlyOnce(fake, {{"cut-answer", json::object{{"d", 1}}}}, *worker);
  const auto posts = fake.DonePosts("cut-answer");
  ASSERT_EQ(posts.size(), 2u) << worker->Describe();
  EXPECT_TRUE(posts[0].faulted && !posts[0].Accepted()) << posts[0].Describe();
  EXPECT_EQ(posts[1].body, posts[0].body);
  ExpectCleanExit(*worker);
}

// A take whose body is cut mid-way hands out no job (fake_runpod.hpp); the worker takes again and
// gets the job, which is answered once.
TEST(RunpodWorker, ATakeWhoseBodyIsCutIsTakenAgainAndTheJobAnsweredOnce) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobTake, Fault::DropMidBody(), 2);
  fake.AddJob("cut-take", json::object{{"t", 1}});
  auto worker = StartWorker(fake, "echo");
  ExpectEachEchoedExactlyOnce(fake, {{"cut-take", json::object{{"t", 1}}}}, *worker);
  const auto takes = fake.Requests(Route::kJobTake);
  ASSERT_GE(takes.size(), 3u) << worker->Describe();
  EXPECT_TRUE(takes[0].faulted && takes[1].faulted);
  EXPECT_TRUE(takes[0].jobs_served.empty() && takes[1].jobs_served.empty());
  EXPECT_GE(CountLines(worker->err(), "Failed to get job"), 2u) << worker->Describe();
  ExpectCleanExit(*worker);
}

// spec/decisions.md §2 (runpod-python #458: a bad modifier result crashed the loop): a
// concurrency_modifier that returns 0, -1, 1001 (above --max-concurrency 1000), INT_MAX or throws
// is ignored with a warning. The worker keeps taking and answering jobs at the old limit, 2: two
// jobs run at once, never more.
TEST(RunpodWorker, AConcurrencyModifierReturningInvalidLimitsKeepsTheOldLimit) {
  FakeRunPod fake;
  constexpr int kJobs = 6;
  for (int i = 0; i < kJobs; ++i) fake.AddJob("mod-" + std::to_string(i), json::object{{"ms", 300}});
  auto worker = StartTestWorker(fake, "bad_modifier", {"--concurrency", "2"});
  std::int64_t most_running = 0;
  for (int i = 0; i < kJobs; ++i) {
    const std::string id = "mod-" + std::to_string(i);
    const auto done = fake.WaitForDone(id, kWait);
    ASSERT_TRUE(done) << id << "\n" << worker->Describe();
    const json::value result = done->Json();
    ASSERT_TRUE(result.is_object() && result.as_object().contains("output")) << done->Describe();
    most_running = std::max(most_running, result.at("output").at("running").to_number<std::int64_t>());
  }
  EXPECT_EQ(most_running, 2) << "the limit did not stay 2\n" << worker->Describe();
  for (const RecordedRequest& take : fake.Requests(Route::kJobTakeBatch)) {
    EXPECT_LE(std::stoi(take.Query("batch_size").value_or("0")), 2) << take.Describe();
  }
  for (const char* reason : {"0 is below 1", "-1 is below 1", "1001 is above --max-concurrency 1000",
                             "2147483647 is above --max-concurrency 1000", "on purpose"}) {
    EXPECT_TRUE(worker->WaitForLine(std::regex("concurrency_modifier result ignored.*" + std::string(reason)), kWait))
        << reason << "\n" << worker->Describe();
  }
  EXPECT_FALSE(worker->exited()) << worker->Describe();
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(AcceptedResults(fake, "mod-" + std::to_string(i)).size(), 1u);
  ExpectCleanExit(*worker);
}

TEST(RunpodWorker, RpDebuggerAddsTimingsToAnObjectOutputAndPostsOtherOutputsUnchanged) {
  FakeRunPod fake;
  fake.AddJob("timed", json::object{{"x", 1}});
  fake.AddJob("not-an-object", json::value("text"));
  auto worker = StartWorker(fake, "echo", {"--rp_debugger"});
  const auto timed = fake.WaitForDone("timed", kWait);
  ASSERT_TRUE(timed) << worker->Describe();
  const json::value result = timed->Json();
  ASSERT_TRUE(result.is_object()) << timed->Describe();
  const json::object& output = result.at("output").as_object();
  EXPECT_EQ(output.at("x"), 1) << "the handler's output is kept";
  // runpod.md §1.5: {"system_info", "timestamps": [{"name", "start_utc", "stop_utc", "duration_ms"}], "ready_delay_ms"}
  const json::object& debugger = output.at("rp_debugger").as_object();
  for (const char* key : {"os", "processor", "compiler", "sluice"}) {
    EXPECT_FALSE(debugger.at("system_info").at(key).as_string().empty()) << key;
  }
  const json::array& stamps = debugger.at("timestamps").as_array();
  ASSERT_EQ(stamps.size(), 3u) << timed->Describe();
  const char* names[] = {"job_take", "queue", "handler"};
  for (std::size_t i = 0; i < stamps.size(); ++i) {
    EXPECT_EQ(stamps[i].at("name").as_string(), names[i]);
    EXPECT_GE(stamps[i].at("duration_ms").as_double(), 0.0);
    EXPECT_TRUE(std::regex_match(std::string(stamps[i].at("start_utc").as_string()),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")))
        << stamps[i].at("start_utc");
  }
  EXPECT_GT(debugger.at("ready_delay_ms").as_double(), 0.0);
  // An output that is not an object cannot hold the timings: posted as it is, not lost.
  const auto untimed = fake.WaitForDone("not-an-object", kWait);
  ASSERT_TRUE(untimed) << worker->Describe();
  EXPECT_EQ(untimed->body, R"({"output": "text"})");
  ExpectCleanExit(*worker);
}

}  // namespace
}  // namespace sluice::testing
