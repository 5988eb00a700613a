#include "core/job_store.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <ostream>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace sluice::core {

// Readable failure messages. Internal linkage: other test files may print these types too.
[[maybe_unused]] static void PrintTo(JobStatus status, std::ostream* os) { *os << ToString(status); }
[[maybe_unused]] static void PrintTo(StatusCode code, std::ostream* os) {
  *os << "StatusCode(" << static_cast<int>(code) << ")";
}

namespace {
namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using sluice::testing::FakeClock;  // the store's TTLs and durations without sleeping
using sluice::testing::WithClock;

NewJob Job(json::value input = 1, std::optional<Clock::duration> ttl = std::nullopt) {
  NewJob job;
  job.request.emplace("input", std::move(input));
  job.ttl = ttl;
  return job;
}

std::string SubmitOk(JobStore& store, NewJob job = Job()) {
  Result<std::string> id = store.Submit(std::move(job));
  EXPECT_TRUE(id.ok()) << id.status().message();
  return id.ok() ? *id : std::string();
}

JobStatus StatusOf(JobStore& store, const std::string& id) {
  const std::optional<JobView> view = store.Find(id);
  EXPECT_TRUE(view.has_value()) << "job " << id << " not found";
  return view ? view->status : JobStatus::kInQueue;
}

// Runs the io_context until `done` holds or `limit` passes (the watchdog); true when done.
bool RunUntil(asio::io_context& io, const std::function<bool()>& done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    if (io.stopped()) io.restart();
    if (io.run_one_for(5ms) == 0) std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Runs one Take to completion with a watchdog. Jobs must be queued, or the store closed; if the
// Take is still parked at the watchdog, the store is closed so that it ends before `io` does.
std::vector<JobRequest> TakeNow(JobStore& store, std::size_t max_jobs) {
  asio::io_context io;
  std::vector<JobRequest> taken;
  bool done = false;
  asio::co_spawn(io, store.Take(max_jobs), [&](std::exception_ptr error, std::vector<JobRequest> jobs) {
    if (error) std::rethrow_exception(error);
    taken = std::move(jobs);
    done = true;
  });
  const bool finished = RunUntil(io, [&] { return done; }, 10s);
  EXPECT_TRUE(finished) << "watchdog: Take did not complete";
  if (!finished) {
    store.Close();
    RunUntil(io, [&] { return done; }, 10s);
  }
  return taken;
}

std::vector<std::string> Ids(const std::vector<JobRequest>& jobs) {
  std::vector<std::string> ids;
  for (const JobRequest& job : jobs) ids.push_back(job.id);
  return ids;
}

// Takes the one queued job `id` and reports it started.
void TakeAndStart(JobStore& store, const std::string& id) {
  const std::vector<JobRequest> taken = TakeNow(store, 1);
  ASSERT_EQ(Ids(taken), std::vector<std::string>{id});
  store.OnStarted(id);
}

void Finish(JobStore& store, const std::string& id, JobStatus status, json::object result = {}) {
  JobOutcome outcome;
  outcome.status = status;
  outcome.result = std::move(result);
  store.OnFinished(id, std::move(outcome));
}

// Every call of the finish listener, thread-safely.
class FinishLog {
 public:
  std::function<void(const JobView&)> Listener() {
    return [this](const JobView& view) {
      std::lock_guard lock(mutex_);
      views_.push_back(view);
    };
  }
  int count(const std::string& id) {
    std::lock_guard lock(mutex_);
    return static_cast<int>(std::count_if(views_.begin(), views_.end(), [&](const JobView& v) { return v.id == id; }));
  }
  std::size_t total() {
    std::lock_guard lock(mutex_);
    return views_.size();
  }
  JobView last(const std::string& id) {
    std::lock_guard lock(mutex_);
    for (auto it = views_.rbegin(); it != views_.rend(); ++it) {
      if (it->id == id) return *it;
    }
    ADD_FAILURE() << "no finish reported for " << id;
    return {};
  }

 private:
  std::mutex mutex_;
  std::vector<JobView> views_;
};

// What a WaitForChange returned, and when.
struct Woken {
  std::optional<std::uint64_t> version;
  Clock::time_point at;
};

void SpawnWait(asio::io_context& io, Task<std::uint64_t> wait, Woken& woken) {
  asio::co_spawn(io, std::move(wait), [&woken](std::exception_ptr error, std::uint64_t version) {
    if (error) std::rethrow_exception(error);
    woken.version = version;
    woken.at = Clock::now();
  });
}

// What a WaitForEnd returned, and when.
struct Ended {
  bool done = false;
  std::optional<JobView> job;
  Clock::time_point at;
};

void SpawnWaitForEnd(asio::io_context& io, Task<std::optional<JobView>> wait, Ended& ended) {
  asio::co_spawn(io, std::move(wait), [&ended](std::exception_ptr error, std::optional<JobView> job) {
    if (error) std::rethrow_exception(error);
    ended.job = std::move(job);
    ended.at = Clock::now();
    ended.done = true;
  });
}

// Runs `body` on another thread; a deadlock there cannot be recovered from, so the watchdog
// reports it and aborts instead of hanging the suite.
void RunWithDeadlockWatchdog(const std::function<void()>& body, Clock::duration limit = 20s) {
  std::packaged_task<void()> task(body);
  std::future<void> done = task.get_future();
  std::thread thread(std::move(task));
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "watchdog: the store deadlocked (a callback ran under its lock?)\n");
    std::fflush(stderr);
    std::abort();
  }
  thread.join();
  done.get();
}

// ---------------------------------------------------------------------------------------------
// Submit, Take, OnStarted, OnFinished

TEST(JobStore, SubmitQueuesTheJobUnderANewUuid) {
  JobStore store;
  NewJob job = Job(json::object{{"x", 1}});
  job.webhook = "http://example.invalid/hook";
  const std::string id = SubmitOk(store, std::move(job));
  ASSERT_EQ(id.size(), 36u) << id;
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[14], '4') << "a version 4 UUID: " << id;
  EXPECT_NE(SubmitOk(store), id);

  const std::optional<JobView> view = store.Find(id);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->id, id);
  EXPECT_EQ(view->status, JobStatus::kInQueue);
  EXPECT_FALSE(view->delay_ms.has_value());
  EXPECT_FALSE(view->execution_ms.has_value());
  EXPECT_TRUE(view->result.empty());
  EXPECT_EQ(view->webhook, "http://example.invalid/hook");
  EXPECT_GE(view->version, 1u);

  EXPECT_FALSE(store.Find("no-such-job").has_value());
  const JobCounts counts = store.counts();
  EXPECT_EQ(counts.submitted, 2u);
  EXPECT_EQ(counts.in_queue, 2u);
  EXPECT_EQ(counts.in_progress, 0u);
}

TEST(JobStore, TakeHandsOutJobsInOrderAndAtMostMaxJobs) {
  JobStoreOptions options;
  options.default_execution_timeout = 90s;
  JobStore store(options);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    NewJob job = Job(i);
    if (i == 1) job.execution_timeout = 5s;
    ids.push_back(SubmitOk(store, std::move(job)));
  }

  const std::vector<JobRequest> first = TakeNow(store, 2);
  ASSERT_EQ(Ids(first), (std::vector<std::string>{ids[0], ids[1]}));
  EXPECT_EQ(first[0].request.at("input"), 0);
  EXPECT_EQ(first[1].request.at("input"), 1);
  EXPECT_EQ(first[0].execution_timeout, std::optional<Clock::duration>(90s)) << "the default";
  EXPECT_EQ(first[1].execution_timeout, std::optional<Clock::duration>(5s)) << "the job's own";
  EXPECT_EQ(store.counts().in_queue, 1u);
  EXPECT_EQ(store.counts().in_progress, 2u);
  // Taken but not started: still IN_QUEUE as RunPod shows it.
  EXPECT_EQ(StatusOf(store, ids[0]), JobStatus::kInQueue);

  const std::vector<JobRequest> second = TakeNow(store, 5);
  ASSERT_EQ(Ids(second), std::vector<std::string>{ids[2]});
  EXPECT_EQ(second[0].request.at("input"), 2);
  EXPECT_EQ(store.counts().in_queue, 0u);
  EXPECT_EQ(store.counts().in_progress, 3u);
}

TEST(JobStore, StartAndFinishGiveDelayExecutionTimeAndResult) {
  FakeClock clock;
  JobStore store(WithClock(clock));
  FinishLog log;
  store.SetFinishListener(log.Listener());
  NewJob job = Job();
  job.webhook = "http://example.invalid/hook";  // the listener gets the result for the webhook
  const std::string id = SubmitOk(store, std::move(job));
  const std::uint64_t queued_version = store.Find(id)->version;

  ASSERT_EQ(TakeNow(store, 1).size(), 1u);
  clock.Advance(250ms);
  store.OnStarted(id);
  std::optional<JobView> view = store.Find(id);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->status, JobStatus::kInProgress);
  EXPECT_EQ(view->delay_ms, std::optional<std::int64_t>(250));
  EXPECT_FALSE(view->execution_ms.has_value());
  EXPECT_GT(view->version, queued_version);
  const std::uint64_t started_version = view->version;
  EXPECT_EQ(log.total(), 0u);

  clock.Advance(1500ms);
  Finish(store, id, JobStatus::kCompleted, json::object{{"output", 42}});
  view = store.Find(id);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->status, JobStatus::kCompleted);
  EXPECT_EQ(view->delay_ms, std::optional<std::int64_t>(250));
  EXPECT_EQ(view->execution_ms, std::optional<std::int64_t>(1500));
  EXPECT_EQ(view->result, json::parse(R"({"output":42})"));
  EXPECT_GT(view->version, started_version);

  ASSERT_EQ(log.count(id), 1);
  EXPECT_EQ(log.last(id).status, JobStatus::kCompleted);
  EXPECT_EQ(log.last(id).execution_ms, std::optional<std::int64_t>(1500));
  EXPECT_EQ(log.last(id).result, json::parse(R"({"output":42})"));

  // A second report for an ended job is ignored.
  Finish(store, id, JobStatus::kFailed, json::object{{"error", "late"}});
  EXPECT_EQ(StatusOf(store, id), JobStatus::kCompleted);
  EXPECT_EQ(log.count(id), 1);

  const JobCounts counts = store.counts();
  EXPECT_EQ(counts.completed, 1u);
  EXPECT_EQ(counts.failed, 0u);
  EXPECT_EQ(counts.in_progress, 0u);
  EXPECT_EQ(counts.retained, 1u);
}

TEST(JobStore, TheFinishListenerGetsTheResultOnlyForAWebhook) {
  JobStore store;
  FinishLog log;
  store.SetFinishListener(log.Listener());
  const std::string id = SubmitOk(store);  // no webhook
  TakeAndStart(store, id);
  Finish(store, id, JobStatus::kCompleted, json::object{{"output", 42}});
  ASSERT_EQ(log.count(id), 1);
  const JobView view = log.last(id);
  EXPECT_EQ(view.status, JobStatus::kCompleted);
  EXPECT_TRUE(view.execution_ms.has_value());
  EXPECT_TRUE(view.result.empty()) << "no webhook: the result is not copied for the listener";
  EXPECT_EQ(store.Find(id)->result, json::parse(R"({"output":42})")) << "the store keeps it";
}

TEST(JobStore, FailedOutcomeKeepsItsError) {
  JobStore store;
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  Finish(store, id, JobStatus::kFailed, json::object{{"error", "boom"}});
  const std::optional<JobView> view = store.Find(id);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->status, JobStatus::kFailed);
  EXPECT_EQ(view->result, json::parse(R"({"error":"boom"})"));
  EXPECT_EQ(store.counts().failed, 1u);
}

TEST(JobStore, ReportsForUnknownOrUntakenJobsAreIgnored) {
  JobStore store;
  const std::string id = SubmitOk(store);
  store.OnStarted("no-such-job");
  Finish(store, "no-such-job", JobStatus::kCompleted);
  // Not taken yet: a start or finish report is stale.
  store.OnStarted(id);
  Finish(store, id, JobStatus::kCompleted);
  EXPECT_EQ(StatusOf(store, id), JobStatus::kInQueue);
  EXPECT_EQ(store.counts().completed, 0u);
}

// ---------------------------------------------------------------------------------------------
// Queue limit and Close

TEST(JobStore, SubmitBeyondMaxQueueIsResourceExhausted) {
  JobStoreOptions options;
  options.max_queue = 2;
  JobStore store(options);
  SubmitOk(store);
  SubmitOk(store);
  const Result<std::string> third = store.Submit(Job());
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(store.counts().rejected_queue_full, 1u);
  EXPECT_EQ(store.counts().submitted, 2u);
  // Only waiting jobs count: once one is taken there is room again.
  ASSERT_EQ(TakeNow(store, 1).size(), 1u);
  EXPECT_TRUE(store.Submit(Job()).ok());
}

TEST(JobStore, CloseRefusesSubmitsAndTakeEndsOnceDrained) {
  JobStore store;
  const std::string id = SubmitOk(store);
  store.Close();
  const Result<std::string> refused = store.Submit(Job());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.counts().rejected_closed, 1u);
  // What was queued is still handed out, then Take reports the end.
  EXPECT_EQ(Ids(TakeNow(store, 4)), std::vector<std::string>{id});
  EXPECT_TRUE(TakeNow(store, 4).empty());
  EXPECT_TRUE(TakeNow(store, 4).empty());
}

TEST(JobStore, CloseWakesAParkedTake) {
  asio::io_context io;
  JobStore store;
  bool done = false;
  std::vector<JobRequest> taken;
  asio::co_spawn(io, store.Take(4), [&](std::exception_ptr error, std::vector<JobRequest> jobs) {
    if (error) std::rethrow_exception(error);
    taken = std::move(jobs);
    done = true;
  });
  io.poll();
  ASSERT_FALSE(done) << "Take returned with nothing queued and the store open";
  std::thread closer([&] { store.Close(); });
  const bool finished = RunUntil(io, [&] { return done; }, 10s);
  closer.join();
  ASSERT_TRUE(finished) << "watchdog: Close did not wake the parked Take";
  EXPECT_TRUE(taken.empty());
}

TEST(JobStore, SubmitFromAnotherThreadWakesAParkedTake) {
  asio::io_context io;
  JobStore store;
  bool done = false;
  std::vector<JobRequest> taken;
  asio::co_spawn(io, store.Take(4), [&](std::exception_ptr error, std::vector<JobRequest> jobs) {
    if (error) std::rethrow_exception(error);
    taken = std::move(jobs);
    done = true;
  });
  io.poll();
  ASSERT_FALSE(done);
  std::string id;
  std::thread producer([&] { id = SubmitOk(store); });
  const bool finished = RunUntil(io, [&] { return done; }, 10s);
  producer.join();
  if (!finished) store.Close();  // let the Take end before the io_context does
  RunUntil(io, [&] { return done; }, 10s);
  ASSERT_TRUE(finished) << "watchdog: Submit did not wake the parked Take";
  EXPECT_EQ(Ids(taken), std::vector<std::string>{id});
}

// ---------------------------------------------------------------------------------------------
// Cancel

TEST(JobStore, CancelAQueuedJobEndsItAtOnceAndTakeSkipsIt) {
  JobStore store;
  FinishLog log;
  store.SetFinishListener(log.Listener());
  std::atomic<int> cancellers{0};
  store.SetCanceller([&](std::string_view) {
    ++cancellers;
    return true;
  });
  const std::string a = SubmitOk(store);
  const std::string b = SubmitOk(store);

  const Result<JobStatus> cancelled = store.Cancel(a);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(*cancelled, JobStatus::kCancelled);
  const std::optional<JobView> view = store.Find(a);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->status, JobStatus::kCancelled);
  EXPECT_FALSE(view->execution_ms.has_value()) << "it never ran";
  EXPECT_EQ(cancellers.load(), 0) << "a queued job is the store's own to cancel";
  EXPECT_EQ(log.count(a), 1);
  EXPECT_EQ(log.last(a).status, JobStatus::kCancelled);

  // Cancelling again reports the same end and does not end it twice.
  EXPECT_EQ(*store.Cancel(a), JobStatus::kCancelled);
  EXPECT_EQ(log.count(a), 1);

  EXPECT_EQ(Ids(TakeNow(store, 4)), std::vector<std::string>{b});
  const JobCounts counts = store.counts();
  EXPECT_EQ(counts.cancelled, 1u);
  EXPECT_EQ(counts.in_queue, 0u);
  EXPECT_EQ(counts.in_progress, 1u);
}

TEST(JobStore, CancelATakenJobGoesThroughTheCancellerAndEndsOnFinished) {
  JobStore store;
  FinishLog log;
  store.SetFinishListener(log.Listener());
  std::mutex mutex;
  std::vector<std::string> cancelled_ids;
  store.SetCanceller([&](std::string_view id) {
    std::lock_guard lock(mutex);
    cancelled_ids.emplace_back(id);
    return true;
  });
  const std::string running = SubmitOk(store);
  const std::string waiting = SubmitOk(store);
  TakeAndStart(store, running);
  ASSERT_EQ(TakeNow(store, 1).size(), 1u);  // `waiting` is taken, not started

  const Result<JobStatus> first = store.Cancel(running);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, JobStatus::kCancelled);
  const Result<JobStatus> second = store.Cancel(waiting);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, JobStatus::kCancelled);
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(cancelled_ids, (std::vector<std::string>{running, waiting}));
  }
  // Until the scheduler reports back, the jobs keep their status.
  EXPECT_EQ(StatusOf(store, running), JobStatus::kInProgress);
  EXPECT_EQ(StatusOf(store, waiting), JobStatus::kInQueue);
  EXPECT_EQ(log.total(), 0u);

  Finish(store, running, JobStatus::kCancelled);
  Finish(store, waiting, JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, running), JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, waiting), JobStatus::kCancelled);
  EXPECT_TRUE(store.Find(running)->execution_ms.has_value()) << "it started";
  EXPECT_FALSE(store.Find(waiting)->execution_ms.has_value()) << "it never started";
  EXPECT_EQ(log.count(running), 1);
  EXPECT_EQ(log.count(waiting), 1);
  EXPECT_EQ(store.counts().cancelled, 2u);
  EXPECT_EQ(store.counts().in_progress, 0u);
}

TEST(JobStore, ACancelTheSchedulerMissedIsSentAgainWhenTheJobStarts) {
  JobStore store;
  std::vector<std::string> cancelled_ids;  // only this thread calls the canceller here
  store.SetCanceller([&](std::string_view id) {
    cancelled_ids.emplace_back(id);
    return false;  // taken by the scheduler, but not yet in its backlog: it does not know the job
  });
  const std::string id = SubmitOk(store);
  ASSERT_EQ(TakeNow(store, 1).size(), 1u);
  ASSERT_TRUE(store.Cancel(id).ok());
  EXPECT_EQ(cancelled_ids, std::vector<std::string>{id});
  store.OnStarted(id);  // now the scheduler runs it, and must hear the cancel again
  EXPECT_EQ(cancelled_ids, (std::vector<std::string>{id, id}));
  Finish(store, id, JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, id), JobStatus::kCancelled);
}

TEST(JobStore, CancelATerminalJobReturnsItsStatus) {
  JobStore store;
  std::atomic<int> cancellers{0};
  store.SetCanceller([&](std::string_view) {
    ++cancellers;
    return true;
  });
  FinishLog log;
  store.SetFinishListener(log.Listener());
  const std::string done = SubmitOk(store);
  const std::string failed = SubmitOk(store);
  TakeAndStart(store, done);
  Finish(store, done, JobStatus::kCompleted, json::object{{"output", 1}});
  TakeAndStart(store, failed);
  Finish(store, failed, JobStatus::kFailed, json::object{{"error", "x"}});

  EXPECT_EQ(*store.Cancel(done), JobStatus::kCompleted);
  EXPECT_EQ(*store.Cancel(failed), JobStatus::kFailed);
  EXPECT_EQ(StatusOf(store, done), JobStatus::kCompleted);
  EXPECT_EQ(cancellers.load(), 0);
  EXPECT_EQ(log.count(done), 1);
  EXPECT_EQ(log.count(failed), 1);
  EXPECT_EQ(store.counts().cancelled, 0u);
}

TEST(JobStore, CancelAnUnknownJobIsNotFound) {
  JobStore store;
  const Result<JobStatus> result = store.Cancel("no-such-job");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
}

TEST(JobStore, CancelAllEndsQueuedJobsAndCancelsTakenOnes) {
  JobStore store;
  std::mutex mutex;
  std::vector<std::string> cancelled_ids;
  store.SetCanceller([&](std::string_view id) {
    std::lock_guard lock(mutex);
    cancelled_ids.emplace_back(id);
    return true;
  });
  const std::string running = SubmitOk(store);
  TakeAndStart(store, running);
  const std::string queued = SubmitOk(store);
  store.CancelAll();
  EXPECT_EQ(StatusOf(store, queued), JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, running), JobStatus::kInProgress);
  std::lock_guard lock(mutex);
  EXPECT_EQ(cancelled_ids, std::vector<std::string>{running});
}

// ---------------------------------------------------------------------------------------------
// Retry and Purge

TEST(JobStore, RetryRequeuesFailedCancelledAndTimedOutJobsWithTheirRequest) {
  FakeClock clock;
  JobStore store(WithClock(clock));
  FinishLog log;
  store.SetFinishListener(log.Listener());

  const std::string failed = SubmitOk(store, Job("failed"));
  TakeAndStart(store, failed);
  store.OnChunk(failed, json::value(1));
  Finish(store, failed, JobStatus::kFailed, json::object{{"error", "x"}});

  const std::string cancelled = SubmitOk(store, Job("cancelled"));
  ASSERT_TRUE(store.Cancel(cancelled).ok());

  const std::string timed_out = SubmitOk(store, Job("timed_out"));
  TakeAndStart(store, timed_out);
  Finish(store, timed_out, JobStatus::kTimedOut, json::object{{"error", "execution timeout"}});

  const std::string expired = SubmitOk(store, Job("expired", 10s));
  clock.Advance(11s);
  ASSERT_EQ(StatusOf(store, expired), JobStatus::kTimedOut);

  const std::vector<std::string> ids{failed, cancelled, timed_out, expired};
  for (const std::string& id : ids) {
    const std::uint64_t before = store.Find(id)->version;
    const Status retried = store.Retry(id);
    ASSERT_TRUE(retried.ok()) << id << ": " << retried.message();
    const std::optional<JobView> view = store.Find(id);
    ASSERT_TRUE(view.has_value());
    EXPECT_EQ(view->status, JobStatus::kInQueue);
    EXPECT_TRUE(view->result.empty()) << "the old result is gone";
    EXPECT_FALSE(view->delay_ms.has_value());
    EXPECT_FALSE(view->execution_ms.has_value());
    EXPECT_GT(view->version, before);
  }
  const std::optional<StreamRead> chunks = store.ReadChunks(failed, 0);
  ASSERT_TRUE(chunks.has_value());
  EXPECT_TRUE(chunks->chunks.empty()) << "the old run's chunks are gone";

  JobCounts counts = store.counts();
  EXPECT_EQ(counts.retried, 4u);
  EXPECT_EQ(counts.in_queue, 4u);
  EXPECT_EQ(counts.retained, 0u);

  // The ttl counted from the first submission: a retried job is not expired by it again.
  clock.Advance(1h);
  EXPECT_EQ(StatusOf(store, expired), JobStatus::kInQueue);

  // Handed out again, in retry order, under the same ids with the same requests.
  const std::vector<JobRequest> again = TakeNow(store, 10);
  ASSERT_EQ(Ids(again), ids);
  EXPECT_EQ(again[0].request.at("input"), "failed");
  EXPECT_EQ(again[1].request.at("input"), "cancelled");
  EXPECT_EQ(again[2].request.at("input"), "timed_out");
  EXPECT_EQ(again[3].request.at("input"), "expired");
  for (const std::string& id : ids) {
    store.OnStarted(id);
    Finish(store, id, JobStatus::kCompleted, json::object{{"output", "second"}});
    EXPECT_EQ(StatusOf(store, id), JobStatus::kCompleted);
    EXPECT_EQ(log.count(id), 2) << "once per terminal transition";
  }
  counts = store.counts();
  EXPECT_EQ(counts.completed, 4u);
  EXPECT_EQ(counts.retained, 4u);
}

TEST(JobStore, RetryRefusesJobsThatAreNotFailedCancelledOrTimedOut) {
  JobStore store;
  const std::string completed = SubmitOk(store);
  TakeAndStart(store, completed);
  Finish(store, completed, JobStatus::kCompleted, json::object{{"output", 1}});
  const std::string in_progress = SubmitOk(store);
  TakeAndStart(store, in_progress);
  const std::string in_queue = SubmitOk(store);

  for (const std::string& id : {completed, in_progress, in_queue}) {
    const JobStatus before = StatusOf(store, id);
    const Status retried = store.Retry(id);
    EXPECT_EQ(retried.code(), StatusCode::kFailedPrecondition) << id;
    EXPECT_NE(retried.message().find(ToString(before)), std::string::npos) << retried.message();
    EXPECT_EQ(StatusOf(store, id), before);
  }
  EXPECT_EQ(store.Retry("no-such-job").code(), StatusCode::kNotFound);
  EXPECT_EQ(store.counts().retried, 0u);
  EXPECT_EQ(store.counts().in_queue, 1u);
}

TEST(JobStore, RetryRespectsTheQueueLimitAndClose) {
  JobStoreOptions options;
  options.max_queue = 1;
  JobStore store(options);
  const std::string cancelled = SubmitOk(store);
  ASSERT_TRUE(store.Cancel(cancelled).ok());
  SubmitOk(store);
  EXPECT_EQ(store.Retry(cancelled).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusOf(store, cancelled), JobStatus::kCancelled);
  EXPECT_EQ(store.counts().rejected_queue_full, 1u);
  store.Close();
  EXPECT_EQ(store.Retry(cancelled).code(), StatusCode::kUnavailable);
}

TEST(JobStore, PurgeCancelsEveryQueuedJobAndReturnsHowMany) {
  JobStore store;
  FinishLog log;
  store.SetFinishListener(log.Listener());
  const std::string running = SubmitOk(store);
  TakeAndStart(store, running);
  const std::string a = SubmitOk(store);
  const std::string b = SubmitOk(store);
  const std::string c = SubmitOk(store);
  ASSERT_TRUE(store.Cancel(b).ok());

  EXPECT_EQ(store.Purge(), 2u);
  EXPECT_EQ(StatusOf(store, a), JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, b), JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, c), JobStatus::kCancelled);
  EXPECT_EQ(StatusOf(store, running), JobStatus::kInProgress) << "Purge leaves running jobs alone";
  EXPECT_EQ(log.count(a), 1);
  EXPECT_EQ(log.count(b), 1);
  EXPECT_EQ(log.count(c), 1);
  EXPECT_EQ(log.count(running), 0);
  EXPECT_EQ(store.counts().in_queue, 0u);
  EXPECT_EQ(store.counts().cancelled, 3u);
  EXPECT_EQ(store.Purge(), 0u);

  // The queue is really empty: the next Take gets only what comes after.
  const std::string later = SubmitOk(store);
  EXPECT_EQ(Ids(TakeNow(store, 10)), std::vector<std::string>{later});
}

// ---------------------------------------------------------------------------------------------
// TTLs and the result cap

TEST(JobStore, AQueuedJobPastItsTtlIsTimedOutOnFind) {
  FakeClock clock;
  JobStore store(WithClock(clock));
  FinishLog log;
  store.SetFinishListener(log.Listener());
  const std::string short_ttl = SubmitOk(store, Job(1, 10s));
  const std::string long_ttl = SubmitOk(store, Job(2, 60s));
  const std::string no_ttl = SubmitOk(store, Job(3));

  clock.Advance(9s);
  EXPECT_EQ(StatusOf(store, short_ttl), JobStatus::kInQueue);
  clock.Advance(1s);  // exactly at its deadline
  const std::optional<JobView> view = store.Find(short_ttl);
  ASSERT_TRUE(view.has_value());
  EXPECT_EQ(view->status, JobStatus::kTimedOut);
  ASSERT_TRUE(view->result.contains("error"));
  EXPECT_NE(std::string(view->result.at("error").as_string()).find("ttl"), std::string::npos)
      << view->result.at("error");
  EXPECT_EQ(log.count(short_ttl), 1);
  EXPECT_EQ(log.last(short_ttl).status, JobStatus::kTimedOut);
  EXPECT_EQ(store.counts().timed_out, 1u);
  EXPECT_EQ(store.counts().in_queue, 2u);

  EXPECT_EQ(Ids(TakeNow(store, 10)), (std::vector<std::string>{long_ttl, no_ttl}));
  EXPECT_EQ(log.count(short_ttl), 1);
}

TEST(JobStore, TakeSkipsAndExpiresJobsPastTheirTtl) {
  FakeClock clock;
  JobStore store(WithClock(clock));
  FinishLog log;
  store.SetFinishListener(log.Listener());
  const std::string a = SubmitOk(store, Job(1, 1s));
  const std::string b = SubmitOk(store, Job(2));
  const std::string c = SubmitOk(store, Job(3, 1s));
  clock.Advance(2s);
  EXPECT_EQ(Ids(TakeNow(store, 10)), std::vector<std::string>{b});
  EXPECT_EQ(StatusOf(store, a), JobStatus::kTimedOut);
  EXPECT_EQ(StatusOf(store, c), JobStatus::kTimedOut);
  EXPECT_TRUE(store.Find(a)->result.contains("error"));
  EXPECT_EQ(log.count(a), 1);
  EXPECT_EQ(log.count(c), 1);
  EXPECT_EQ(store.counts().timed_out, 2u);
  EXPECT_EQ(store.counts().in_queue, 0u);
  // A taken job is no longer subject to its queue ttl.
  clock.Advance(1h);
  store.OnStarted(b);
  EXPECT_EQ(StatusOf(store, b), JobStatus::kInProgress);
}

TEST(JobStore, AFinishedJobIsForgottenAfterResultTtl) {
  FakeClock clock;
  JobStoreOptions options;
  options.result_ttl = 60s;
  JobStore store(WithClock(clock, options));
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  clock.Advance(5min);  // running time does not count
  Finish(store, id, JobStatus::kCompleted, json::object{{"output", 1}});
  clock.Advance(59s);
  EXPECT_EQ(StatusOf(store, id), JobStatus::kCompleted);
  EXPECT_EQ(store.counts().retained, 1u);
  clock.Advance(1s);
  EXPECT_FALSE(store.Find(id).has_value());
  EXPECT_FALSE(store.ReadChunks(id, std::nullopt).has_value());
  EXPECT_EQ(store.Cancel(id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.Retry(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(store.counts().retained, 0u);
  EXPECT_EQ(store.counts().completed, 1u) << "totals are kept";
}

TEST(JobStore, AtMostMaxResultsAreKeptOldestForgottenFirst) {
  FakeClock clock;
  JobStoreOptions options;
  options.max_results = 2;
  JobStore store(WithClock(clock, options));
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(SubmitOk(store, Job(i)));
  // Finish in the order 2, 0, 3, 1: "oldest" is by the end, not by submission.
  const std::vector<JobRequest> taken = TakeNow(store, 4);
  ASSERT_EQ(taken.size(), 4u);
  for (int i : {2, 0, 3}) {
    clock.Advance(1s);
    Finish(store, ids[i], JobStatus::kCompleted);
  }
  EXPECT_FALSE(store.Find(ids[2]).has_value()) << "the oldest result is forgotten";
  EXPECT_TRUE(store.Find(ids[0]).has_value());
  EXPECT_TRUE(store.Find(ids[3]).has_value());
  EXPECT_EQ(store.counts().retained, 2u);
  clock.Advance(1s);
  Finish(store, ids[1], JobStatus::kFailed);
  EXPECT_FALSE(store.Find(ids[0]).has_value());
  EXPECT_TRUE(store.Find(ids[3]).has_value());
  EXPECT_TRUE(store.Find(ids[1]).has_value());
  EXPECT_EQ(store.counts().retained, 2u);
}

TEST(JobStore, MaxResultsHoldsAsJobsEndWithoutAnyLookup) {
  FakeClock clock;
  JobStoreOptions options;
  options.max_results = 3;
  JobStore store(WithClock(clock, options));
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(SubmitOk(store, Job(i)));
  ASSERT_EQ(TakeNow(store, 10).size(), 10u);
  for (const std::string& id : ids) Finish(store, id, JobStatus::kCompleted);
  EXPECT_EQ(store.counts().retained, 3u);  // counts() looks nothing up, so it shows the sweep's work
}

TEST(JobStore, ForgetExpiredGivesResultsBackWhenNoRequestComes) {
  FakeClock clock;
  JobStoreOptions options;
  options.result_ttl = 10s;
  JobStore store(WithClock(clock, options));
  const std::string id = SubmitOk(store);
  ASSERT_EQ(TakeNow(store, 1).size(), 1u);
  Finish(store, id, JobStatus::kCompleted);
  EXPECT_EQ(store.counts().retained, 1u);
  clock.Advance(11s);
  EXPECT_EQ(store.counts().retained, 1u);
  store.ForgetExpired();
  EXPECT_EQ(store.counts().retained, 0u);
  EXPECT_FALSE(store.Find(id).has_value());
}

TEST(JobStore, ARetriedJobIsNotForgottenByItsOldFinishEntry) {
  FakeClock clock;
  JobStoreOptions options;
  options.result_ttl = 60s;
  JobStore store(WithClock(clock, options));
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  Finish(store, id, JobStatus::kFailed);  // t0: the first entry expires at t0 + 60 s

  // Retried and still queued when the first entry expires.
  clock.Advance(30s);
  ASSERT_TRUE(store.Retry(id).ok());
  clock.Advance(40s);  // t0 + 70
  EXPECT_EQ(StatusOf(store, id), JobStatus::kInQueue);
  EXPECT_EQ(store.counts().retained, 0u);

  // Failed again at t0 + 70 (an entry expiring at t0 + 130) and retried again, then failed a third
  // time at t0 + 80: that entry (expiring at t0 + 140) is the one that counts.
  TakeAndStart(store, id);
  Finish(store, id, JobStatus::kFailed);
  ASSERT_TRUE(store.Retry(id).ok());
  clock.Advance(10s);
  TakeAndStart(store, id);
  Finish(store, id, JobStatus::kFailed);
  clock.Advance(55s);  // t0 + 135: past the second entry's expiry (t0 + 130), not the third's
  EXPECT_EQ(StatusOf(store, id), JobStatus::kFailed);
  EXPECT_EQ(store.counts().retained, 1u);
  clock.Advance(5s);  // t0 + 140
  EXPECT_FALSE(store.Find(id).has_value());
  EXPECT_EQ(store.counts().retained, 0u);
}

// ---------------------------------------------------------------------------------------------
// Chunks and progress

TEST(JobStore, ReadChunksWithTheSharedCursorAndWithAnIndex) {
  JobStore store;
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  store.OnChunk(id, json::value(1));
  store.OnChunk(id, json::value(2));

  std::optional<StreamRead> read = store.ReadChunks(id, std::nullopt);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->chunks, (std::vector<json::value>{1, 2}));
  EXPECT_EQ(read->next_index, 2u);
  EXPECT_EQ(read->job.status, JobStatus::kInProgress);

  store.OnChunk(id, json::value(3));
  read = store.ReadChunks(id, std::nullopt);
  EXPECT_EQ(read->chunks, std::vector<json::value>{3}) << "only what is new since the last read";
  EXPECT_EQ(read->next_index, 3u);
  read = store.ReadChunks(id, std::nullopt);
  EXPECT_TRUE(read->chunks.empty());
  EXPECT_EQ(read->next_index, 3u);

  // An explicit index reads from there and leaves the shared cursor alone.
  read = store.ReadChunks(id, 1);
  EXPECT_EQ(read->chunks, (std::vector<json::value>{2, 3}));
  EXPECT_EQ(read->next_index, 3u);
  read = store.ReadChunks(id, 0);
  EXPECT_EQ(read->chunks.size(), 3u);
  read = store.ReadChunks(id, 99);
  EXPECT_TRUE(read->chunks.empty());
  EXPECT_EQ(read->next_index, 3u);
  store.OnChunk(id, json::value(4));
  read = store.ReadChunks(id, std::nullopt);
  EXPECT_EQ(read->chunks, std::vector<json::value>{4});

  // The result is shown only once the job ended; chunks after the end are dropped.
  store.OnProgress(id, json::value("half"));
  EXPECT_TRUE(store.ReadChunks(id, 0)->job.result.empty());
  Finish(store, id, JobStatus::kCompleted, json::object{{"output", "all"}});
  store.OnChunk(id, json::value(5));
  read = store.ReadChunks(id, 0);
  EXPECT_EQ(read->chunks, (std::vector<json::value>{1, 2, 3, 4}));
  EXPECT_EQ(read->job.status, JobStatus::kCompleted);
  EXPECT_EQ(read->job.result, json::parse(R"({"output":"all"})"));

  EXPECT_FALSE(store.ReadChunks("no-such-job", std::nullopt).has_value());
}

TEST(JobStore, ProgressShowsAsOutputWhileInProgress) {
  JobStore store;
  const std::string id = SubmitOk(store);
  store.OnProgress(id, json::value("ignored while queued"));
  EXPECT_TRUE(store.Find(id)->result.empty());
  TakeAndStart(store, id);
  const std::uint64_t before = store.Find(id)->version;
  store.OnProgress(id, json::value("10%"));
  std::optional<JobView> view = store.Find(id);
  EXPECT_EQ(view->result, json::parse(R"({"output":"10%"})"));
  EXPECT_GT(view->version, before);
  store.OnProgress(id, json::object{{"percent", 50}});
  EXPECT_EQ(store.Find(id)->result, json::parse(R"({"output":{"percent":50}})"));
  Finish(store, id, JobStatus::kFailed, json::object{{"error", "boom"}});
  EXPECT_EQ(store.Find(id)->result, json::parse(R"({"error":"boom"})")) << "the outcome replaces the progress";
  store.OnProgress(id, json::value("too late"));
  EXPECT_EQ(store.Find(id)->result, json::parse(R"({"error":"boom"})"));
}

// ---------------------------------------------------------------------------------------------
// WaitForChange and WaitForEnd

TEST(JobStoreWait, WaitForChangeReturnsAtOnceWhenTheVersionDiffers) {
  asio::io_context io;
  JobStore store;
  const std::string id = SubmitOk(store);
  const std::uint64_t version = store.Find(id)->version;
  Woken woken;
  SpawnWait(io, store.WaitForChange(id, version - 1, Clock::now() + 30s), woken);
  Woken unknown;
  const std::string missing = "no-such-job";
  SpawnWait(io, store.WaitForChange(missing, 7, Clock::now() + 30s), unknown);
  ASSERT_TRUE(RunUntil(io, [&] { return woken.version && unknown.version; }, 10s)) << "watchdog";
  EXPECT_EQ(*woken.version, version);
  EXPECT_EQ(*unknown.version, 0u);
}

TEST(JobStoreWait, WaitForChangeWakesOnAChangeFromAnotherThread) {
  asio::io_context io;
  JobStore store;
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  const std::uint64_t seen = store.Find(id)->version;
  const auto start = Clock::now();
  Woken woken;
  SpawnWait(io, store.WaitForChange(id, seen, start + 60s), woken);
  io.poll();  // parks it
  ASSERT_FALSE(woken.version) << "returned before any change";
  std::thread changer([&] { store.OnChunk(id, json::value("chunk")); });
  const bool done = RunUntil(io, [&] { return woken.version.has_value(); }, 20s);
  changer.join();
  ASSERT_TRUE(done) << "watchdog: the chunk did not wake the waiter";
  EXPECT_GT(*woken.version, seen);
  EXPECT_EQ(*woken.version, store.Find(id)->version);
  EXPECT_LT(woken.at - start, 20s) << "woken by the change, not the deadline";
}

TEST(JobStoreWait, WaitForChangeReturnsAtTheDeadlineWithoutAChange) {
  asio::io_context io;
  JobStore store;
  const std::string id = SubmitOk(store);
  const std::uint64_t seen = store.Find(id)->version;
  const auto start = Clock::now();
  Woken woken;
  SpawnWait(io, store.WaitForChange(id, seen, start + 50ms), woken);
  ASSERT_TRUE(RunUntil(io, [&] { return woken.version.has_value(); }, 10s)) << "watchdog";
  EXPECT_EQ(*woken.version, seen);
  EXPECT_GE(woken.at - start, 50ms);
  // A second wait on the same job still works (the first one left no waiter behind).
  Woken again;
  SpawnWait(io, store.WaitForChange(id, seen, Clock::now() + 60s), again);
  io.poll();
  ASSERT_FALSE(again.version);
  ASSERT_TRUE(store.Cancel(id).ok());
  ASSERT_TRUE(RunUntil(io, [&] { return again.version.has_value(); }, 10s)) << "watchdog";
  EXPECT_EQ(*again.version, store.Find(id)->version);
}

TEST(JobStoreWait, WaitForEndWakesOnlyOnTheEnd) {
  asio::io_context io;
  JobStore store;
  const std::string id = SubmitOk(store);
  ASSERT_EQ(TakeNow(store, 1).size(), 1u);
  const auto start = Clock::now();
  Ended ended;
  SpawnWaitForEnd(io, store.WaitForEnd(id, start + 60s), ended);
  io.poll();
  ASSERT_FALSE(ended.done);

  // Changes that are not the end, from another thread; every wake-up they could cause has been
  // posted once the thread is joined, and poll runs them all.
  std::thread([&] {
    store.OnStarted(id);
    store.OnChunk(id, json::value(1));
    store.OnProgress(id, json::value("half"));
  }).join();
  io.poll();
  EXPECT_FALSE(ended.done) << "WaitForEnd woke on a change that is not the end";

  std::thread finisher([&] { Finish(store, id, JobStatus::kCompleted, json::object{{"output", 1}}); });
  const bool done = RunUntil(io, [&] { return ended.done; }, 20s);
  finisher.join();
  ASSERT_TRUE(done) << "watchdog: the end did not wake WaitForEnd";
  EXPECT_LT(ended.at - start, 20s);
  ASSERT_TRUE(ended.job.has_value());
  EXPECT_EQ(ended.job->status, JobStatus::kCompleted);
  EXPECT_EQ(ended.job->result, json::parse(R"({"output":1})")) << "with its result";
  EXPECT_EQ(ended.job->version, store.Find(id)->version);

  // On an ended job it returns at once; on an unknown one at once with nothing.
  Ended again;
  SpawnWaitForEnd(io, store.WaitForEnd(id, Clock::now() + 60s), again);
  Ended unknown;
  const std::string missing = "no-such-job";
  SpawnWaitForEnd(io, store.WaitForEnd(missing, Clock::now() + 60s), unknown);
  ASSERT_TRUE(RunUntil(io, [&] { return again.done && unknown.done; }, 10s)) << "watchdog";
  ASSERT_TRUE(again.job.has_value());
  EXPECT_EQ(again.job->status, JobStatus::kCompleted);
  EXPECT_EQ(again.job->result, json::parse(R"({"output":1})"));
  EXPECT_FALSE(unknown.job.has_value());
}

TEST(JobStoreWait, WaitForEndReturnsTheJobAtTheDeadline) {
  asio::io_context io;
  JobStore store;
  const std::string id = SubmitOk(store);
  TakeAndStart(store, id);
  const auto start = Clock::now();
  Ended ended;
  SpawnWaitForEnd(io, store.WaitForEnd(id, start + 50ms), ended);
  ASSERT_TRUE(RunUntil(io, [&] { return ended.done; }, 10s)) << "watchdog";
  EXPECT_GE(ended.at - start, 50ms);
  ASSERT_TRUE(ended.job.has_value());
  EXPECT_EQ(ended.job->status, JobStatus::kInProgress);
}

TEST(JobStoreWait, ForgettingAJobWakesItsWaiters) {
  asio::io_context io;
  FakeClock clock;
  JobStoreOptions options;
  options.result_ttl = 60s;
  JobStore store(WithClock(clock, options));
  const std::string id = SubmitOk(store);
  ASSERT_TRUE(store.Cancel(id).ok());
  const std::uint64_t seen = store.Find(id)->version;
  const auto start = Clock::now();
  Woken woken;
  SpawnWait(io, store.WaitForChange(id, seen, start + 60s), woken);
  io.poll();
  ASSERT_FALSE(woken.version);
  clock.Advance(61s);
  const std::string other = SubmitOk(store);  // any call that sweeps
  (void)store.Find(other);
  ASSERT_TRUE(RunUntil(io, [&] { return woken.version.has_value(); }, 20s)) << "watchdog";
  EXPECT_EQ(*woken.version, 0u) << "forgotten";
  EXPECT_LT(woken.at - start, 20s);
}

// Bug: Cancel, Retry and Submit return early from inside the lock when they fail, and so drop
// what their sweep deferred: the waiters of a job forgotten by that sweep were never woken and
// slept until their deadline.
TEST(JobStoreWait, ForgettingAJobInAFailingCallStillWakesItsWaiters) {
  const std::vector<std::pair<std::string, std::function<StatusCode(JobStore&)>>> failing_calls{
      {"Cancel of an unknown job", [](JobStore& store) { return store.Cancel("no-such-job").status().code(); }},
      {"Retry of an unknown job", [](JobStore& store) { return store.Retry("no-such-job").code(); }},
      {"Submit to a full queue", [](JobStore& store) { return store.Submit(Job()).status().code(); }},
  };
  for (const auto& [name, call] : failing_calls) {
    SCOPED_TRACE(name);
    asio::io_context io;
    FakeClock clock;
    JobStoreOptions options;
    options.result_ttl = 60s;
    options.max_queue = 1;
    JobStore store(WithClock(clock, options));
    const std::string id = SubmitOk(store);
    ASSERT_TRUE(store.Cancel(id).ok());
    SubmitOk(store);  // fills the queue
    const std::uint64_t seen = store.Find(id)->version;
    const auto start = Clock::now();
    Woken woken;
    SpawnWait(io, store.WaitForChange(id, seen, start + 3s), woken);
    io.poll();
    ASSERT_FALSE(woken.version);
    clock.Advance(61s);
    // This call's sweep forgets `id`; then the call fails.
    EXPECT_NE(call(store), StatusCode::kOk);
    ASSERT_TRUE(RunUntil(io, [&] { return woken.version.has_value(); }, 10s)) << "watchdog";
    EXPECT_EQ(*woken.version, 0u);
    EXPECT_LT(woken.at - start, 2s) << "the waiter of the forgotten job slept until its deadline";
  }
}

// ---------------------------------------------------------------------------------------------
// The finish listener

TEST(JobStore, TheFinishListenerRunsOutsideTheLock) {
  FakeClock clock;
  JobStore store(WithClock(clock));
  std::mutex mutex;
  std::map<std::string, int> calls;
  store.SetFinishListener([&](const JobView& view) {
    // Would deadlock if called under the store's lock.
    const std::optional<JobView> found = store.Find(view.id);
    EXPECT_TRUE(found.has_value());
    if (found) {
      EXPECT_EQ(found->status, view.status);
    }
    (void)store.counts();
    (void)store.ReadChunks(view.id, 0);
    std::lock_guard lock(mutex);
    ++calls[view.id];
  });
  std::vector<std::string> ids;
  RunWithDeadlockWatchdog([&] {
    const std::string cancelled = SubmitOk(store);  // Cancel in the queue
    ASSERT_TRUE(store.Cancel(cancelled).ok());
    const std::string finished = SubmitOk(store);  // OnFinished
    TakeAndStart(store, finished);
    Finish(store, finished, JobStatus::kCompleted);
    const std::string found_expired = SubmitOk(store, Job(1, 1s));  // expired by Find
    const std::string taken_expired = SubmitOk(store, Job(2, 1s));  // expired by Take
    clock.Advance(2s);
    (void)store.Find(found_expired);
    const std::string run_later = SubmitOk(store);
    ASSERT_EQ(Ids(TakeNow(store, 1)), std::vector<std::string>{run_later});
    const std::string purged = SubmitOk(store);  // Purge
    EXPECT_EQ(store.Purge(), 1u);
    const std::string cancelled_all = SubmitOk(store);  // CancelAll
    store.CancelAll();
    Finish(store, run_later, JobStatus::kCompleted);
    ids = {cancelled, finished, found_expired, taken_expired, run_later, purged, cancelled_all};
  });
  std::lock_guard lock(mutex);
  for (const std::string& id : ids) EXPECT_EQ(calls[id], 1) << id;
  EXPECT_EQ(calls.size(), ids.size());
}

// ---------------------------------------------------------------------------------------------
// Memory safety: queue entries of jobs that ended in the queue

// Bug: a job that ends while queued (cancelled, expired) leaves its entry in the queue; once its
// result is forgotten its record is freed, and the next Take reads the freed record through that
// entry (a heap use-after-free; run under ASan or valgrind to see it).
TEST(JobStore, TakeAfterAJobThatEndedInTheQueueWasForgotten) {
  FakeClock clock;
  JobStoreOptions options;
  options.result_ttl = 10s;
  JobStore store(WithClock(clock, options));
  const std::string cancelled = SubmitOk(store);
  const std::string expired = SubmitOk(store, Job(1, 1s));
  const std::string kept = SubmitOk(store);
  ASSERT_TRUE(store.Cancel(cancelled).ok());
  clock.Advance(2s);
  ASSERT_EQ(StatusOf(store, expired), JobStatus::kTimedOut);
  clock.Advance(20s);
  ASSERT_FALSE(store.Find(cancelled).has_value());
  ASSERT_FALSE(store.Find(expired).has_value());
  EXPECT_EQ(Ids(TakeNow(store, 10)), std::vector<std::string>{kept});
}

TEST(JobStore, TakeAfterManyJobsEndedInTheQueueWithNoResultsKept) {
  JobStoreOptions options;
  options.max_results = 0;
  JobStore store(options);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store.Cancel(SubmitOk(store, Job(i))).ok());
  const std::string kept = SubmitOk(store);
  EXPECT_EQ(Ids(TakeNow(store, 10)), std::vector<std::string>{kept});
  EXPECT_EQ(store.counts().retained, 0u);
}

// ---------------------------------------------------------------------------------------------
// Concurrency (run under TSan)

// A closable queue of job ids between the Take coroutine and the "scheduler" thread.
class IdChannel {
 public:
  void Push(std::string id) {
    std::lock_guard lock(mutex_);
    ids_.push_back(std::move(id));
    changed_.notify_all();
  }
  void Close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
  }
  // Empty once closed and drained, or at the watchdog.
  std::optional<std::string> Pop(std::chrono::milliseconds limit) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, limit, [&] { return !ids_.empty() || closed_; })) {
      ADD_FAILURE() << "watchdog: no job id came";
      return std::nullopt;
    }
    if (ids_.empty()) return std::nullopt;
    std::string id = std::move(ids_.front());
    ids_.pop_front();
    return id;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> ids_;
  bool closed_ = false;
};

Task<void> TakeAll(JobStore& store, IdChannel& out) {
  for (;;) {
    std::vector<JobRequest> jobs = co_await store.Take(3);
    if (jobs.empty()) break;
    for (JobRequest& job : jobs) out.Push(std::move(job.id));
  }
  out.Close();
}

Task<void> WatchUntilEnd(JobStore& store, std::string id, std::atomic<bool>& saw_end) {
  for (;;) {
    const std::optional<JobView> view = store.Find(id);
    if (!view) co_return;
    if (IsTerminal(view->status)) {
      saw_end = true;
      co_return;
    }
    const Clock::time_point deadline = Clock::now() + 30s;
    co_await store.WaitForChange(id, view->version, deadline);
  }
}

TEST(JobStoreConcurrency, EveryJobEndsExactlyOnce) {
  constexpr int kSubmitters = 4;
  constexpr int kJobsEach = 150;
  asio::io_context io;
  JobStore store;
  FinishLog log;
  store.SetFinishListener(log.Listener());
  std::mutex cancel_mutex;
  std::set<std::string> cancel_requested;
  store.SetCanceller([&](std::string_view id) {
    std::lock_guard lock(cancel_mutex);
    cancel_requested.emplace(id);
    return true;
  });

  const std::string watched = SubmitOk(store);
  IdChannel channel;
  std::atomic<bool> take_done{false};
  std::atomic<bool> watch_done{false};
  std::atomic<bool> saw_end{false};
  asio::co_spawn(io, TakeAll(store, channel), [&](std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
    take_done = true;
  });
  asio::co_spawn(io, WatchUntilEnd(store, watched, saw_end), [&](std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
    watch_done = true;
  });
  std::thread io_thread([&] { io.run_for(60s); });

  // The "scheduler": runs each taken job, or reports it cancelled if asked to.
  std::atomic<int> ran{0};
  std::thread runner([&] {
    while (std::optional<std::string> id = channel.Pop(30s)) {
      store.OnStarted(*id);
      store.OnChunk(*id, json::value(1));
      store.OnProgress(*id, json::value("half"));
      bool cancel = false;
      {
        std::lock_guard lock(cancel_mutex);
        cancel = cancel_requested.contains(*id);
      }
      JobOutcome outcome;
      outcome.status = cancel ? JobStatus::kCancelled : JobStatus::kCompleted;
      if (!cancel) outcome.result.emplace("output", *id);
      store.OnFinished(*id, std::move(outcome));
      ++ran;
    }
  });

  std::vector<std::vector<std::string>> submitted(kSubmitters);
  std::vector<std::thread> submitters;
  for (int t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&, t] {
      std::vector<std::string>& mine = submitted[t];
      for (int i = 0; i < kJobsEach; ++i) {
        Result<std::string> id = store.Submit(Job(i));
        if (!id.ok()) {
          ADD_FAILURE() << id.status().message();
          continue;
        }
        mine.push_back(*id);
        if (i % 3 == 0) (void)store.Cancel(mine[static_cast<std::size_t>(i) / 2]);
        if (i % 5 == 0) (void)store.Find(mine[static_cast<std::size_t>(i) / 3]);
        if (i % 7 == 0) (void)store.ReadChunks(mine.back(), std::nullopt);
        if (i % 11 == 0) (void)store.counts();
      }
    });
  }
  for (std::thread& thread : submitters) thread.join();
  store.Close();

  const auto deadline = Clock::now() + 30s;
  while (!(take_done && watch_done) && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(take_done.load()) << "watchdog: Take did not end after Close";
  EXPECT_TRUE(watch_done.load()) << "watchdog: the watcher did not see the end";
  if (!(take_done && watch_done)) {
    channel.Close();
    io.stop();
  }
  runner.join();
  io_thread.join();

  EXPECT_TRUE(saw_end.load());
  std::size_t total = 1;
  EXPECT_EQ(log.count(watched), 1);
  for (const std::vector<std::string>& mine : submitted) {
    for (const std::string& id : mine) {
      ++total;
      EXPECT_EQ(log.count(id), 1) << id;
      const std::optional<JobView> view = store.Find(id);
      ASSERT_TRUE(view.has_value()) << id;
      EXPECT_TRUE(IsTerminal(view->status)) << id << " is " << ToString(view->status);
    }
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kSubmitters * kJobsEach + 1));
  EXPECT_EQ(log.total(), total);
  const JobCounts counts = store.counts();
  EXPECT_EQ(counts.submitted, total);
  EXPECT_EQ(counts.completed + counts.cancelled, total);
  EXPECT_EQ(counts.in_queue, 0u);
  EXPECT_EQ(counts.in_progress, 0u);
  EXPECT_EQ(counts.retained, total);
  EXPECT_GT(ran.load(), 0);
}

}  // namespace
}  // namespace sluice::core
