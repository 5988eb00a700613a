#include "core/memory_job_backend.hpp"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <chrono>
#include <exception>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace sluice::core {
namespace {
namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using sluice::testing::FakeClock;  // the store's TTLs and durations without sleeping
using sluice::testing::WithClock;

NewJob Job(json::value input = 1) {
  NewJob job;
  job.request.emplace("input", std::move(input));
  return job;
}

// Runs one backend call to its end on an io_context of its own (with a watchdog) and returns its
// answer. (A Result has no default value, which co_spawn's own completion would need: the call is
// awaited by a void coroutine instead.)
template <class T>
T Await(Task<T> task) {
  asio::io_context io;
  std::optional<T> answer;
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> Task<void> {
        T value = co_await std::move(task);
        answer.emplace(std::move(value));
      },
      [&](std::exception_ptr error) { failure = error; });
  io.run_for(10s);
  if (failure) std::rethrow_exception(failure);
  if (!answer) throw std::runtime_error("the call did not end within 10 s");
  return std::move(*answer);
}

std::string SubmitOk(MemoryJobBackend& backend, std::optional<std::string> key, NewJob job = Job()) {
  Result<std::string> id = Await(backend.Submit(std::move(job), std::move(key)));
  EXPECT_TRUE(id.ok()) << id.status().message();
  return id.ok() ? *id : std::string();
}

TEST(MemoryJobBackend, WithoutAKeyEverySubmitQueuesANewJob) {
  JobStore store;
  MemoryJobBackend backend(store);
  const std::string first = SubmitOk(backend, std::nullopt);
  const std::string second = SubmitOk(backend, std::nullopt);
  EXPECT_NE(first, second);
  EXPECT_EQ(store.counts().submitted, 2u);
  EXPECT_EQ(backend.idempotency_keys(), 0u);
}

TEST(MemoryJobBackend, ARepeatedKeyReturnsTheFirstJobsIdAndQueuesNothing) {
  JobStore store;
  MemoryJobBackend backend(store);
  const std::string first = SubmitOk(backend, "order-17", Job(1));
  const std::string again = SubmitOk(backend, "order-17", Job(2));
  EXPECT_EQ(again, first);
  EXPECT_EQ(store.counts().submitted, 1u);
  EXPECT_EQ(store.counts().in_queue, 1u);
  const Result<JobView> job = Await(backend.Find(first));
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, JobStatus::kInQueue);
}

TEST(MemoryJobBackend, DifferentKeysMakeDifferentJobs) {
  JobStore store;
  MemoryJobBackend backend(store);
  const std::string a = SubmitOk(backend, "a");
  const std::string b = SubmitOk(backend, "b");
  const std::string none = SubmitOk(backend, std::nullopt);
  EXPECT_EQ((std::set<std::string>{a, b, none}).size(), 3u);
  EXPECT_EQ(SubmitOk(backend, "a"), a);
  EXPECT_EQ(SubmitOk(backend, "b"), b);
  EXPECT_EQ(store.counts().submitted, 3u);
  EXPECT_EQ(backend.idempotency_keys(), 2u);
}

TEST(MemoryJobBackend, AKeyIsRememberedForTheResultTtlFromItsFirstSubmission) {
  FakeClock clock;
  JobStoreOptions options = WithClock(clock);
  options.result_ttl = 10s;
  JobStore store(std::move(options));
  MemoryJobBackend backend(store);
  const std::string first = SubmitOk(backend, "k");
  clock.Advance(9s);
  EXPECT_EQ(SubmitOk(backend, "k"), first) << "within the TTL";
  clock.Advance(1s);
  const std::string later = SubmitOk(backend, "k");
  EXPECT_NE(later, first) << "10 s after the first submission the key is forgotten";
  EXPECT_EQ(SubmitOk(backend, "k"), later) << "and remembered again for the new job";
  EXPECT_EQ(store.counts().submitted, 2u);
}

TEST(MemoryJobBackend, ForgetExpiredDropsKeysPastTheirTimeWithoutASubmit) {
  FakeClock clock;
  JobStoreOptions options = WithClock(clock);
  options.result_ttl = 5s;
  JobStore store(std::move(options));
  MemoryJobBackend backend(store);
  SubmitOk(backend, "x");
  SubmitOk(backend, "y");
  backend.ForgetExpired();
  EXPECT_EQ(backend.idempotency_keys(), 2u);
  clock.Advance(5s);
  backend.ForgetExpired();
  EXPECT_EQ(backend.idempotency_keys(), 0u);
}

TEST(MemoryJobBackend, AtMostMaxResultsKeysAreKeptOldestForgottenFirst) {
  JobStoreOptions options;
  options.max_results = 2;
  JobStore store(std::move(options));
  MemoryJobBackend backend(store);
  const std::string a = SubmitOk(backend, "a");
  const std::string b = SubmitOk(backend, "b");
  const std::string c = SubmitOk(backend, "c");
  EXPECT_EQ(backend.idempotency_keys(), 2u);
  EXPECT_EQ(SubmitOk(backend, "c"), c);
  EXPECT_EQ(SubmitOk(backend, "b"), b);
  EXPECT_NE(SubmitOk(backend, "a"), a) << "the oldest key was forgotten";
}

TEST(MemoryJobBackend, ASubmissionThatFailsLeavesNoKeyBehind) {
  JobStoreOptions options;
  options.max_queue = 1;
  JobStore store(std::move(options));
  MemoryJobBackend backend(store);
  SubmitOk(backend, std::nullopt);
  const Result<std::string> refused = Await(backend.Submit(Job(), std::string("late")));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(backend.idempotency_keys(), 0u);
  const Result<std::size_t> purged = Await(backend.Purge());
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1u);
  const std::string accepted = SubmitOk(backend, "late");
  EXPECT_EQ(SubmitOk(backend, "late"), accepted);
}

TEST(MemoryJobBackend, ConcurrentSubmitsWithOneKeyMakeOneJob) {
  JobStore store;
  MemoryJobBackend backend(store);
  constexpr int kThreads = 8;
  std::vector<std::string> ids(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { ids[static_cast<std::size_t>(i)] = SubmitOk(backend, "same"); });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  EXPECT_EQ(store.counts().submitted, 1u);
}

TEST(MemoryJobBackend, UnknownJobsAreNotFound) {
  JobStore store;
  MemoryJobBackend backend(store);
  const std::string id = "no-such-job";
  const Result<JobView> found = Await(backend.Find(id));
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), StatusCode::kNotFound);
  EXPECT_NE(found.status().message().find(id), std::string::npos) << found.status().message();
  EXPECT_EQ(Await(backend.Cancel(id)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Await(backend.Retry(id)).code(), StatusCode::kNotFound);
  EXPECT_EQ(Await(backend.ReadChunks(id, std::nullopt)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Await(backend.WaitForEnd(id, Clock::now() + 1s)).status().code(), StatusCode::kNotFound);
  const Result<std::uint64_t> version = Await(backend.WaitForChange(id, 1, Clock::now() + 1s));
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 0u);
}

TEST(MemoryJobBackend, CancelRetryReadAndCountGiveTheStoresAnswers) {
  JobStore store;
  MemoryJobBackend backend(store);
  const std::string id = SubmitOk(backend, std::nullopt);
  const Result<JobStatus> cancelled = Await(backend.Cancel(id));
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(*cancelled, JobStatus::kCancelled);

  const Result<JobView> ended = Await(backend.WaitForEnd(id, Clock::now() + 5s));
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->status, JobStatus::kCancelled);
  const Result<StreamRead> read = Await(backend.ReadChunks(id, 0));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->job.status, JobStatus::kCancelled);
  EXPECT_TRUE(read->chunks.empty());

  EXPECT_TRUE(Await(backend.Retry(id)).ok());
  const Result<JobView> queued = Await(backend.Find(id));
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->status, JobStatus::kInQueue);
  EXPECT_EQ(Await(backend.Retry(id)).code(), StatusCode::kFailedPrecondition);

  const Result<std::uint64_t> changed = Await(backend.WaitForChange(id, 0, Clock::now() + 5s));
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, queued->version) << "a version other than `seen` returns at once";

  const Result<JobCounts> counts = Await(backend.Counts(Clock::now() + 1s));
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->submitted, 1u);
  EXPECT_EQ(counts->cancelled, 1u);
  EXPECT_EQ(counts->retried, 1u);
  EXPECT_EQ(counts->in_queue, 1u);
}

TEST(MemoryJobBackend, AClosedStoreMakesSubmitUnavailable) {
  JobStore store;
  MemoryJobBackend backend(store);
  store.Close();
  const Result<std::string> refused = Await(backend.Submit(Job(), std::string("k")));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(backend.idempotency_keys(), 0u);
}

}  // namespace
}  // namespace sluice::core
