// The job API's Redis backend (redis::RedisJobBackend) against a redis-server of the test's own,
// with in-process workers (tests/redis_harness.hpp) running the jobs: what /run, /runsync,
// /status, /stream, /cancel, /retry, /purge-queue and /health get from it, and that its waits are
// woken by the events stream rather than by rereading (the recheck interval is set far beyond the
// watchdog, so only an event can wake a waiter in time).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sluice/job.hpp>

#include "redis/job_backend.hpp"
#include "redis/scripts.hpp"
#include "redis_harness.hpp"

namespace sluice::redis {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using core::JobStatus;
using harness::Get;
using harness::Spawn;
using ::testing::HasSubstr;

class RedisBackend : public harness::RedisQueueFixture {
 protected:
  void SetUp() override {
    RedisQueueFixture::SetUp();
    if (HasFatalFailure()) return;
    backend_ = MakeBackend();
    ASSERT_TRUE(Start(*backend_).ok());
  }

  void TearDown() override {
    for (auto* backend : {backend_.get(), second_.get()}) {
      if (backend != nullptr) {
        auto stopped = Spawn(io_, backend->Stop());
        Get(stopped, "the backend's Stop");
      }
    }
    for (auto& worker : workers_) worker->Stop();
  }

  std::unique_ptr<RedisJobBackend> MakeBackend(std::size_t max_queue = 100) {
    BackendOptions options;
    options.max_queue = max_queue;
    options.result_ttl = 60s;
    options.block = 200ms;
    options.recheck = 10min;  // only events wake waiters within a test's time
    return std::make_unique<RedisJobBackend>(io_.get_executor(), endpoint_, options);
  }

  core::Status Start(RedisJobBackend& backend) {
    auto started = Spawn(io_, backend.Start());
    return Get(started, "the backend's Start");
  }

  static core::NewJob Request(json::value input) {
    core::NewJob job;
    job.request.emplace("input", std::move(input));
    return job;
  }

  core::Result<std::string> Submit(core::NewJob job, std::optional<std::string> key = std::nullopt) {
    auto submitted = Spawn(io_, backend_->Submit(std::move(job), std::move(key)));
    return Get(submitted, "Submit");
  }

  std::string SubmitOk(json::value input) {
    core::Result<std::string> id = Submit(Request(std::move(input)));
    EXPECT_TRUE(id.ok()) << id.status().message();
    return id.ok() ? *id : std::string();
  }

  core::Result<core::JobView> Find(const std::string& id) {
    auto found = Spawn(io_, backend_->Find(id));
    return Get(found, "Find");
  }

  core::JobCounts Counts() {
    auto counts = Spawn(io_, backend_->Counts(Clock::now() + 2s));
    core::Result<core::JobCounts> answer = Get(counts, "Counts");
    EXPECT_TRUE(answer.ok()) << answer.status().message();
    return answer.ok() ? *answer : core::JobCounts{};
  }

  void StartWorker(Handler handler, int concurrency = 4) {
    AddWorker(Options(fmt::format("worker-{}", workers_.size())), std::move(handler), concurrency).Start();
  }

  std::unique_ptr<RedisJobBackend> backend_;
  std::unique_ptr<RedisJobBackend> second_;
};

TEST_F(RedisBackend, SubmitQueuesAJobTheApiCanFindAndCount) {
  const std::string id = SubmitOk(json::object{{"n", 1}});
  const core::Result<core::JobView> job = Find(id);
  ASSERT_TRUE(job.ok()) << job.status().message();
  EXPECT_EQ(job->status, JobStatus::kInQueue);
  EXPECT_GT(job->version, 0u);
  EXPECT_FALSE(job->delay_ms);
  const core::JobCounts counts = Counts();
  EXPECT_EQ(counts.submitted, 1u);
  EXPECT_EQ(counts.in_queue, 1u);
  EXPECT_EQ(counts.workers_idle, 0u);
  EXPECT_EQ(counts.workers_running, 0u);
  EXPECT_EQ(Find("no-such-job").status().code(), core::StatusCode::kNotFound);
}

TEST_F(RedisBackend, WaitForEndIsWokenByTheWorkersResultWithItsOutputAndTimes) {
  std::vector<core::JobView> ended;
  std::mutex ended_mutex;
  backend_->SetFinishListener([&](const core::JobView& job) {
    std::lock_guard lock(ended_mutex);
    ended.push_back(job);
  });
  StartWorker(Sleeper());
  const std::string id = SubmitOk(json::object{{"sleep_ms", 300}});
  const Clock::time_point began = Clock::now();
  auto waited = Spawn(io_, backend_->WaitForEnd(id, Clock::now() + 20s));
  const core::Result<core::JobView> job = Get(waited, "WaitForEnd");
  ASSERT_TRUE(job.ok()) << job.status().message();
  EXPECT_LT(Clock::now() - began, 5s) << "woken by the end event, not by a recheck";
  EXPECT_EQ(job->status, JobStatus::kCompleted);
  EXPECT_EQ(json::serialize(job->result.at("output")), R"({"sleep_ms":300})");
  ASSERT_TRUE(job->execution_ms);
  EXPECT_GE(*job->execution_ms, 250);
  ASSERT_TRUE(job->delay_ms);
  EXPECT_GE(*job->delay_ms, 0);

  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(ended_mutex);
    return !ended.empty();
  }));
  std::lock_guard lock(ended_mutex);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].id, id);
  EXPECT_EQ(ended[0].status, JobStatus::kCompleted);
  EXPECT_TRUE(ended[0].execution_ms && *ended[0].execution_ms >= 250) << "times come with the end event";
  const core::JobCounts counts = Counts();
  EXPECT_EQ(counts.completed, 1u);
  EXPECT_EQ(counts.in_queue, 0u);
  EXPECT_EQ(counts.in_progress, 0u);
}

TEST_F(RedisBackend, WaitForEndGivesTheJobAsItIsAtTheDeadline) {
  const std::string id = SubmitOk(json::object{{"sleep_ms", 1}});  // no worker: it stays queued
  auto waited = Spawn(io_, backend_->WaitForEnd(id, Clock::now() + 300ms));
  const core::Result<core::JobView> job = Get(waited, "WaitForEnd");
  ASSERT_TRUE(job.ok()) << job.status().message();
  EXPECT_EQ(job->status, JobStatus::kInQueue);
  auto unknown = Spawn(io_, backend_->WaitForEnd("no-such-job", Clock::now() + 5s));
  EXPECT_EQ(Get(unknown, "WaitForEnd").status().code(), core::StatusCode::kNotFound);
}

TEST_F(RedisBackend, WaitForChangeIsWokenByProgressAndChunksAreReadFromTheCursor) {
  StartWorker([](Job& job) -> Task<json::value> {
    job.progress(json::value("half"));
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(300ms);
    co_await timer.async_wait(asio::use_awaitable);
    co_return json::value("done");
  });
  const std::string id = SubmitOk(json::object{});
  std::uint64_t seen = 0;
  std::optional<core::JobView> running;
  const Clock::time_point deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    auto changed = Spawn(io_, backend_->WaitForChange(id, seen, Clock::now() + 5s));
    core::Result<std::uint64_t> version = Get(changed, "WaitForChange");
    ASSERT_TRUE(version.ok()) << version.status().message();
    seen = *version;
    core::Result<core::JobView> job = Find(id);
    ASSERT_TRUE(job.ok());
    if (job->status == JobStatus::kInProgress && job->result.contains("output")) {
      running = *job;
      break;
    }
  }
  ASSERT_TRUE(running) << "the progress update was seen while the job ran";
  EXPECT_EQ(json::serialize(running->result.at("output")), R"("half")");
  auto waited = Spawn(io_, backend_->WaitForEnd(id, Clock::now() + 10s));
  EXPECT_EQ(Get(waited, "WaitForEnd")->status, JobStatus::kCompleted);

  // Chunks: written as a worker's sink writes them; read from the cursor, or from an index.
  Do({"RPUSH", keys_.chunks(id), "1", R"({"t":2})"});
  auto first = Spawn(io_, backend_->ReadChunks(id, std::nullopt));
  core::Result<core::StreamRead> read = Get(first, "ReadChunks");
  ASSERT_TRUE(read.ok()) << read.status().message();
  ASSERT_EQ(read->chunks.size(), 2u);
  EXPECT_EQ(json::serialize(read->chunks[1]), R"({"t":2})");
  EXPECT_EQ(read->next_index, 2u);
  EXPECT_EQ(read->job.status, JobStatus::kCompleted);
  Do({"RPUSH", keys_.chunks(id), "3"});
  auto second = Spawn(io_, backend_->ReadChunks(id, std::nullopt));
  read = Get(second, "ReadChunks");
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->chunks.size(), 1u) << "only the chunks new since the last read";
  EXPECT_EQ(read->chunks[0].as_int64(), 3);
  auto indexed = Spawn(io_, backend_->ReadChunks(id, std::size_t{1}));
  read = Get(indexed, "ReadChunks");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->chunks.size(), 2u);
  EXPECT_EQ(read->next_index, 3u);
  auto unknown = Spawn(io_, backend_->ReadChunks("no-such-job", std::nullopt));
  EXPECT_EQ(Get(unknown, "ReadChunks").status().code(), core::StatusCode::kNotFound);
}

TEST_F(RedisBackend, AnIdempotencyKeyReturnsTheFirstJobsId) {
  const core::Result<std::string> first = Submit(Request(json::object{{"n", 1}}), "key-1");
  ASSERT_TRUE(first.ok()) << first.status().message();
  const core::Result<std::string> again = Submit(Request(json::object{{"n", 2}}), "key-1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *first);
  const core::Result<std::string> other = Submit(Request(json::object{{"n", 3}}), "key-2");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*other, *first);
  EXPECT_EQ(Counts().submitted, 2u);
  const Reply ttl = Do({"TTL", keys_.idempotency("key-1")});
  EXPECT_GT(ttl.integer(), 0) << "the key lives as long as results do";
}

TEST_F(RedisBackend, AFullQueueRefusesWithResourceExhausted) {
  backend_ = MakeBackend(/*max_queue=*/2);
  ASSERT_TRUE(Start(*backend_).ok());
  SubmitOk(json::object{});
  SubmitOk(json::object{});
  const core::Result<std::string> third = Submit(Request(json::object{}));
  EXPECT_EQ(third.status().code(), core::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("--max-queue"));
  EXPECT_EQ(Counts().rejected_queue_full, 1u);
}

TEST_F(RedisBackend, CancelRetryAndPurge) {
  const std::string queued = SubmitOk(json::object{{"n", 1}});
  auto cancelled = Spawn(io_, backend_->Cancel(queued));
  EXPECT_EQ(Get(cancelled, "Cancel").value(), JobStatus::kCancelled);
  EXPECT_EQ(Find(queued)->status, JobStatus::kCancelled);
  auto again = Spawn(io_, backend_->Cancel(queued));
  EXPECT_EQ(Get(again, "Cancel").value(), JobStatus::kCancelled) << "a terminal job reports its status";
  auto unknown = Spawn(io_, backend_->Cancel("no-such-job"));
  EXPECT_EQ(Get(unknown, "Cancel").status().code(), core::StatusCode::kNotFound);

  auto retried = Spawn(io_, backend_->Retry(queued));
  EXPECT_TRUE(Get(retried, "Retry").ok());
  EXPECT_EQ(Find(queued)->status, JobStatus::kInQueue);
  auto twice = Spawn(io_, backend_->Retry(queued));
  const core::Status refused = Get(twice, "Retry");
  EXPECT_EQ(refused.code(), core::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("IN_QUEUE"));

  const std::string other = SubmitOk(json::object{{"n", 2}});
  auto purged = Spawn(io_, backend_->Purge());
  EXPECT_EQ(Get(purged, "Purge").value(), 2u);
  EXPECT_EQ(Find(queued)->status, JobStatus::kCancelled);
  EXPECT_EQ(Find(other)->status, JobStatus::kCancelled);
  const core::JobCounts counts = Counts();
  EXPECT_EQ(counts.in_queue, 0u);
  EXPECT_EQ(counts.cancelled, 3u);
  EXPECT_EQ(counts.retried, 1u);

  // The purged entries are gone from the stream: a worker started now runs nothing.
  std::atomic<int> calls{0};
  StartWorker(Echo(&calls));
  const std::string fresh = SubmitOk(json::object{{"n", 3}});
  auto waited = Spawn(io_, backend_->WaitForEnd(fresh, Clock::now() + 10s));
  EXPECT_EQ(Get(waited, "WaitForEnd")->status, JobStatus::kCompleted);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(RedisBackend, CancellingARunningJobReachesItsWorker) {
  StartWorker(Sleeper());
  const std::string id = SubmitOk(json::object{{"sleep_ms", 20000}});
  ASSERT_TRUE(WaitFor([&] { return Find(id)->status == JobStatus::kInProgress; }));
  auto cancelled = Spawn(io_, backend_->Cancel(id));
  EXPECT_EQ(Get(cancelled, "Cancel").value(), JobStatus::kCancelled);
  auto waited = Spawn(io_, backend_->WaitForEnd(id, Clock::now() + 10s));
  EXPECT_EQ(Get(waited, "WaitForEnd")->status, JobStatus::kCancelled);
}

TEST_F(RedisBackend, AQueuedJobPastItsPolicyTtlEndsTimedOutInsteadOfRunning) {
  core::NewJob job = Request(json::object{});
  job.ttl = 1ms;
  const core::Result<std::string> id = Submit(std::move(job));
  ASSERT_TRUE(id.ok());
  std::this_thread::sleep_for(20ms);
  std::atomic<int> calls{0};
  StartWorker(Echo(&calls));
  auto waited = Spawn(io_, backend_->WaitForEnd(*id, Clock::now() + 10s));
  const core::Result<core::JobView> ended = Get(waited, "WaitForEnd");
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->status, JobStatus::kTimedOut);
  EXPECT_THAT(json::serialize(ended->result), HasSubstr("policy.ttl"));
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(Counts().timed_out, 1u);
}

TEST_F(RedisBackend, HealthCountsTheWorkersOfTheFleet) {
  StartWorker(Sleeper(), 2);
  StartWorker(Sleeper(), 2);
  SubmitOk(json::object{{"sleep_ms", 20000}});
  ASSERT_TRUE(WaitFor([&] {
    const core::JobCounts counts = Counts();
    return counts.workers_running == 1u && counts.workers_idle == 1u;
  }, 20s)) << "one worker runs the job, the other is idle (the heartbeat reports within a third of the visibility timeout)";
  EXPECT_EQ(Counts().in_progress, 1u);
}

TEST_F(RedisBackend, EveryGatewayCountsAnEndButOnlyOneSendsItsWebhook) {
  second_ = MakeBackend();
  ASSERT_TRUE(Start(*second_).ok());
  std::mutex mutex;
  std::vector<core::JobView> seen;
  auto record = [&](const core::JobView& job) {
    std::lock_guard lock(mutex);
    seen.push_back(job);
  };
  backend_->SetFinishListener(record);
  second_->SetFinishListener(record);
  StartWorker(Echo());
  constexpr int kJobs = 20;
  for (int i = 0; i < kJobs; ++i) {
    core::NewJob job = Request(json::object{{"n", i}});
    job.webhook = "http://127.0.0.1:1/hook";
    ASSERT_TRUE(Submit(std::move(job)).ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard lock(mutex);
    return seen.size() == 2 * kJobs;
  })) << "each of the two gateways sees every end";
  std::lock_guard lock(mutex);
  int with_webhook = 0;
  for (const core::JobView& job : seen) {
    if (job.webhook.empty()) continue;
    ++with_webhook;
    EXPECT_TRUE(job.result.contains("output")) << "the webhook's sender has the result";
  }
  EXPECT_EQ(with_webhook, kJobs);
}

TEST_F(RedisBackend, AnUnreachableRedisFailsStartNamingIt) {
  BackendOptions options;
  options.connection.connect_timeout = 2s;
  Endpoint nowhere;
  nowhere.host = "127.0.0.1";
  nowhere.port = 1;
  RedisJobBackend backend(io_.get_executor(), nowhere, options);
  const core::Status started = Start(backend);
  EXPECT_EQ(started.code(), core::StatusCode::kUnavailable);
  EXPECT_THAT(started.message(), HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace sluice::redis
