// The worker side of the Redis job queue end to end, against a redis-server of the test's own
// (tests/redis_server.hpp): RedisJobSource and RedisResultSink under a real Scheduler, with the
// heartbeat, reaper and cancel listener running. "Dead" workers are played by raw commands (an
// XREADGROUP whose entries are never finished). Every wait is bounded by a watchdog.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sluice/handler.hpp>
#include <sluice/job.hpp>
#include <sluice/stream.hpp>

#include "redis/background.hpp"
#include "redis/connection.hpp"
#include "redis/queue.hpp"
#include "redis_harness.hpp"

namespace sluice::redis {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;

using harness::Get;
using harness::kWatchdog;
using harness::Spawn;
using harness::Worker;
using RedisQueue = harness::RedisQueueFixture;

TEST_F(RedisQueue, ThousandJobsCompleteExactlyOnceWithTheirOutput) {
  constexpr int kJobs = 1000;
  for (int i = 0; i < kJobs; ++i) SubmitJob(fmt::format("job-{}", i), json::object{{"n", i}});
  std::atomic<int> calls{0};
  Do({"CONFIG", "RESETSTAT"});  // count what the worker makes Redis do, scripts' commands included
  Worker& worker = AddWorker(Options("w1"), Echo(&calls), 8);
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return worker.sink.written() == kJobs; })) << worker.sink.written();
  worker.Stop();
  long total = 0, evalsha = 0;
  for (const auto& [command, stat] : CommandStats()) {
    if (command == "evalsha") evalsha = stat.calls;
    if (!command.starts_with("config") && command != "info" && command != "evalsha") total += stat.calls;
  }
  std::printf("Redis commands for %d jobs: %ld inside and outside scripts (%.1f per job), %ld EVALSHA (%.2f per job)\n",
              kJobs, total, static_cast<double>(total) / kJobs, evalsha, static_cast<double>(evalsha) / kJobs);
  EXPECT_LT(total, 30 * kJobs);
  // A finish script per job; the take script reads and starts a batch of queued jobs per call.
  EXPECT_LT(evalsha, 3 * kJobs / 2);

  EXPECT_EQ(calls.load(), kJobs);
  EXPECT_EQ(worker.sink.dropped(), 0u);
  EXPECT_EQ(worker.sink.lost(), 0u);
  for (int i = 0; i < kJobs; ++i) {
    std::map<std::string, std::string> job = Hash(fmt::format("job-{}", i));
    ASSERT_EQ(job["status"], "COMPLETED") << i;
    EXPECT_EQ(json::parse(job["result"]), (json::value{{"output", {{"n", i}}}})) << i;
    EXPECT_EQ(job["deliveries"], "1");
    EXPECT_EQ(job["owner"], "w1");
  }
  EXPECT_EQ(PendingCount(), 0);
  // Finishing acknowledges; the reaper's trim (every visibility_timeout/2) then drops them all.
  EXPECT_EQ(Do({"XLEN", keys_.jobs()}).integer(), kJobs);
  EXPECT_EQ(Trim(), kJobs);
  EXPECT_EQ(Do({"XLEN", keys_.jobs()}).integer(), 0);
  EXPECT_EQ(Do({"HLEN", keys_.entries()}).integer(), 0);
  EXPECT_GT(Do({"TTL", keys_.job("job-0")}).integer(), 0);
  // Exactly one COMPLETED event per job.
  std::map<std::string, int> completed;
  const Reply events = Do({"XRANGE", keys_.events(), "-", "+"});
  for (const Reply& event : events.elements()) {
    const Reply& fields = event[1];
    if (fields[3].str() == "COMPLETED") ++completed[fields[1].str()];
  }
  EXPECT_EQ(completed.size(), static_cast<std::size_t>(kJobs));
  for (const auto& [id, count] : completed) EXPECT_EQ(count, 1) << id;
}

TEST_F(RedisQueue, AJobCancelledWhileQueuedIsSkipped) {
  SubmitJob("doomed", json::object{{"x", 1}});
  SubmitJob("kept", json::object{{"x", 2}});
  auto cancelled = Spawn(io_, Cancel(*client_, keys_, "doomed", 60s));
  EXPECT_EQ(Get(cancelled, "Cancel").value(), "cancelled");
  std::atomic<int> calls{0};
  Worker& worker = AddWorker(Options("w1"), Echo(&calls));
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("kept") == "COMPLETED"; }));
  ASSERT_TRUE(WaitFor([&] { return PendingCount() == 0; }));
  worker.Stop();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(StatusOf("doomed"), "CANCELLED");
  EXPECT_EQ(worker.source.skipped(), 1u);
  EXPECT_EQ(PendingCount(), 0) << "the skipped entry is acknowledged too";
  EXPECT_EQ(Trim(), 2);
}

TEST_F(RedisQueue, TheTrimKeepsEveryEntryThatIsPendingOrNotYetRead) {
  Worker& worker = AddWorker(Options("w1"), Echo());
  worker.Start();
  for (int i = 0; i < 150; ++i) SubmitJob(fmt::format("early-{}", i), json::object{{"n", i}});
  ASSERT_TRUE(WaitFor([&] { return worker.sink.written() == 150u; }));
  worker.Stop();
  SubmitJob("held", json::object{{"n", 0}});
  const std::vector<StreamEntry> held = ReadAsDeadConsumer("dead", 1);  // pending, never finished
  ASSERT_EQ(held.size(), 1u);
  for (int i = 0; i < 50; ++i) SubmitJob(fmt::format("late-{}", i), json::object{{"n", i}});  // not read yet
  const std::int64_t trimmed = Trim();
  EXPECT_GE(trimmed, 100) << "whole stream nodes of finished entries go";
  EXPECT_LE(trimmed, 150) << "nothing at or after the oldest pending entry";
  EXPECT_EQ(Do({"XRANGE", keys_.jobs(), held[0].entry, held[0].entry}).size(), 1u);
  EXPECT_EQ(Do({"XLEN", keys_.jobs()}).integer(), 201 - trimmed);
  // A worker still finds the unread jobs and, past the visibility timeout, the dead one's.
  QueueOptions options = Options("w2");
  options.visibility_timeout = 300ms;
  Worker& second = AddWorker(options, Echo());
  second.Start();
  ASSERT_TRUE(WaitFor([&] { return second.sink.written() == 51u; }));
  second.Stop();
  EXPECT_EQ(StatusOf("held"), "COMPLETED");
}

TEST_F(RedisQueue, FencingDropsTheResultOfAConsumerThatLostTheEntry) {
  SubmitJob("j", json::object{{"x", 1}});
  const std::vector<StreamEntry> read = ReadAsDeadConsumer("w1", 1);
  ASSERT_EQ(read.size(), 1u);
  StartParams start;
  start.job_id = "j";
  start.entry = read[0].entry;
  start.consumer = "w1";
  auto started = Spawn(io_, RunScript(*client_, StartCall(keys_, start)));
  EXPECT_EQ(ParseStart(Get(started, "start").value()).kind, StartAnswer::Kind::kStarted);
  // Another worker's reaper takes the entry over.
  Do({"XCLAIM", keys_.jobs(), std::string(kGroup), "w2", "0", read[0].entry});

  // w1's late result goes through its sink and is dropped.
  QueueOptions w1 = Options("w1");
  HeldJobs held;
  held.Add("j", read[0].entry);
  RedisResultSink sink(io_.get_executor(), *client_, w1, held);
  core::JobOutcome late;
  late.result = json::object{{"output", "late"}};
  sink.OnFinished("j", late);
  auto drained = Spawn(io_, sink.Drain(10s));
  ASSERT_TRUE(Get(drained, "drain"));
  EXPECT_EQ(sink.dropped(), 1u);
  EXPECT_EQ(sink.written(), 0u);
  EXPECT_EQ(StatusOf("j"), "IN_PROGRESS");
  EXPECT_EQ(Hash("j").count("result"), 0u);

  // The owner's result is written; a second finish of the owner is fenced out too.
  FinishParams finish;
  finish.job_id = "j";
  finish.entry = read[0].entry;
  finish.consumer = "w2";
  finish.status = "COMPLETED";
  finish.result_json = R"({"output":"w2"})";
  finish.result_ttl_s = 60;
  auto first = Spawn(io_, Finish(*client_, keys_, finish, Clock::now() + 5s));
  EXPECT_EQ(Get(first, "finish").value().kind, FinishAnswer::Kind::kFinished);
  auto second = Spawn(io_, Finish(*client_, keys_, finish, Clock::now() + 5s));
  EXPECT_EQ(Get(second, "finish").value().kind, FinishAnswer::Kind::kNotPending);
  EXPECT_EQ(Hash("j")["result"], R"({"output":"w2"})");
  EXPECT_EQ(StatusOf("j"), "COMPLETED");
}

TEST_F(RedisQueue, TheReaperReclaimsTheEntriesOfADeadConsumer) {
  for (int i = 0; i < 5; ++i) SubmitJob(fmt::format("r{}", i), json::object{{"n", i}});
  ASSERT_EQ(ReadAsDeadConsumer("dead", 5).size(), 5u);
  QueueOptions options = Options("alive");
  options.visibility_timeout = 500ms;
  Worker& worker = AddWorker(options, Echo());
  const Clock::time_point started = Clock::now();
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return worker.sink.written() == 5; }));
  EXPECT_GE(Clock::now() - started, 500ms);  // not before the visibility timeout
  worker.Stop();
  for (int i = 0; i < 5; ++i) {
    std::map<std::string, std::string> job = Hash(fmt::format("r{}", i));
    EXPECT_EQ(job["status"], "COMPLETED");
    EXPECT_EQ(job["owner"], "alive");
    EXPECT_EQ(job["deliveries"], "2");
  }
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisQueue, AJobDeliveredMoreThanMaxDeliveriesFails) {
  SubmitJob("poison", json::object{{"x", 1}});
  const std::vector<StreamEntry> read = ReadAsDeadConsumer("dead1", 1);  // delivery 1
  ASSERT_EQ(read.size(), 1u);
  Do({"XCLAIM", keys_.jobs(), std::string(kGroup), "dead2", "0", read[0].entry});  // delivery 2
  QueueOptions options = Options("alive");
  options.visibility_timeout = 400ms;
  options.max_deliveries = 2;
  std::atomic<int> calls{0};
  Worker& worker = AddWorker(options, Echo(&calls));
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("poison") == "FAILED"; }));
  worker.Stop();
  EXPECT_EQ(calls.load(), 0);
  const json::value result = json::parse(Hash("poison")["result"]);
  EXPECT_EQ(result.at("error").as_string(), "delivered 3 times; --max-deliveries is 2");
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisQueue, TheHeartbeatKeepsALongJobOwnedPastTheVisibilityTimeout) {
  // 2.5 visibility timeouts long: without the heartbeat w2's reaper would take it (and did, when
  // the heartbeat was disabled to check this test).
  SubmitJob("long", json::object{{"sleep_ms", 2500}});
  std::atomic<int> calls{0};
  QueueOptions first = Options("w1");
  first.visibility_timeout = 1000ms;
  QueueOptions second = Options("w2");
  second.visibility_timeout = 1000ms;
  Worker& w1 = AddWorker(first, Sleeper(&calls));
  Worker& w2 = AddWorker(second, Sleeper(&calls));
  w1.Start();
  w2.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("long") == "COMPLETED"; }));
  // While they run, the worker keys carry each worker's load, and the roster names them.
  EXPECT_EQ(json::parse(Do({"GET", keys_.worker("w1")}).str()).at("limit").as_int64(), 4);
  EXPECT_EQ(Do({"ZCARD", keys_.workers()}).integer(), 2);
  w1.Stop();
  w2.Stop();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Hash("long")["deliveries"], "1");
  EXPECT_EQ(w1.sink.dropped() + w2.sink.dropped(), 0u);
  EXPECT_EQ(w1.source.started() + w2.source.started(), 1u);
  // A stopped worker leaves the roster and its key at once.
  EXPECT_EQ(Do({"ZCARD", keys_.workers()}).integer(), 0);
  EXPECT_TRUE(Do({"GET", keys_.worker("w1")}).is_nil());
}

TEST_F(RedisQueue, TheCancelListenerCancelsARunningJob) {
  SubmitJob("c", json::object{{"sleep_ms", 20000}});
  Worker& worker = AddWorker(Options("w1"), Sleeper());
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("c") == "IN_PROGRESS"; }));
  ASSERT_TRUE(WaitFor([&] { return worker.scheduler.running() == 1; }));
  auto signalled = Spawn(io_, Cancel(*client_, keys_, "c", 60s));
  EXPECT_EQ(Get(signalled, "Cancel").value(), "signalled");
  ASSERT_TRUE(WaitFor([&] { return StatusOf("c") == "CANCELLED"; }, 5s));
  worker.Stop();
  EXPECT_EQ(PendingCount(), 0);
}

FinishParams Completed(const std::string& job_id, const std::string& entry, const std::string& consumer) {
  FinishParams finish;
  finish.job_id = job_id;
  finish.entry = entry;
  finish.consumer = consumer;
  finish.status = "COMPLETED";
  finish.result_json = fmt::format(R"({{"output":"{}"}})", job_id);
  finish.result_ttl_s = 60;
  return finish;
}

// Finishes that come while a batch is in flight go out together, and each gets the answer it would
// have got alone: here 19 are written and one, whose entry another worker took over, is fenced out.
TEST_F(RedisQueue, FinishesThatComeTogetherGoOutInOneCallEachAnsweredAsAlone) {
  constexpr int kJobs = 20;
  for (int i = 0; i < kJobs; ++i) SubmitJob(fmt::format("f{}", i), json::object{{"i", i}});
  const std::vector<std::string> entries = ReadAndStartAs("w1", kJobs);
  ASSERT_EQ(entries.size(), static_cast<std::size_t>(kJobs));
  Do({"XCLAIM", keys_.jobs(), std::string(kGroup), "w2", "0", entries[5]});

  // A connection of the batch's own, held up by a blocking command: its first call waits behind
  // it, and every later finish joins the next batch meanwhile.
  Connection connection(io_.get_executor(), endpoint_);
  FinishBatch batch(io_.get_executor(), connection, keys_);
  auto gate = Spawn(io_, connection.Command({"BLPOP", "sluice-test-gate", "0.5"}));
  std::vector<std::future<core::Result<FinishAnswer>>> answers;
  for (int i = 0; i < kJobs; ++i) {
    answers.push_back(Spawn(io_, batch.Finish(Completed(fmt::format("f{}", i), entries[i], "w1"), Clock::now() + 10s)));
  }
  for (int i = 0; i < kJobs; ++i) {
    const core::Result<FinishAnswer> answer = Get(answers[i], "a batched finish");
    ASSERT_TRUE(answer.ok()) << answer.status().message();
    if (i == 5) {
      EXPECT_EQ(answer->kind, FinishAnswer::Kind::kNotOwner);
      EXPECT_EQ(answer->detail, "w2");
      EXPECT_EQ(StatusOf("f5"), "IN_PROGRESS");
    } else {
      EXPECT_EQ(answer->kind, FinishAnswer::Kind::kFinished) << i;
      EXPECT_EQ(StatusOf(fmt::format("f{}", i)), "COMPLETED");
      EXPECT_EQ(Hash(fmt::format("f{}", i))["result"], fmt::format(R"({{"output":"f{}"}})", i));
    }
  }
  ASSERT_TRUE(Get(gate, "the gate").ok());
  EXPECT_EQ(batch.jobs(), static_cast<std::size_t>(kJobs));
  // The finishes that joined before the first call went out go in it (one, or a few on a slow
  // machine); all the others came while it waited behind the gate, and go in one more call.
  EXPECT_LE(batch.calls(), 2u);
  EXPECT_EQ(PendingCount(), 1);  // f5's entry, still w2's
  EXPECT_EQ(Do({"XLEN", keys_.events()}).integer(), kJobs - 1);  // one end event per finished job
}

// A script error part-way through a batch stays the failing job's: Redis keeps what the script
// wrote before it, and every other job of the batch is finished and answered as written.
TEST_F(RedisQueue, AJobThatBreaksItsBatchFailsAloneAndTheOthersAreFinished) {
  constexpr int kJobs = 4;
  for (int i = 0; i < kJobs; ++i) SubmitJob(fmt::format("g{}", i), json::object{{"i", i}});
  const std::vector<std::string> entries = ReadAndStartAs("w1", kJobs);
  ASSERT_EQ(entries.size(), static_cast<std::size_t>(kJobs));
  Do({"DEL", keys_.job("g2")});
  Do({"SET", keys_.job("g2"), "not a hash"});  // its finish raises WRONGTYPE inside the script

  Connection connection(io_.get_executor(), endpoint_);
  FinishBatch batch(io_.get_executor(), connection, keys_);
  auto gate = Spawn(io_, connection.Command({"BLPOP", "sluice-test-gate", "0.5"}));
  std::vector<std::future<core::Result<FinishAnswer>>> answers;
  for (int i = 0; i < kJobs; ++i) {  // at most 2 calls (see above); the one holding g2 fails there
    answers.push_back(Spawn(io_, batch.Finish(Completed(fmt::format("g{}", i), entries[i], "w1"), Clock::now() + 10s)));
  }
  for (int i = 0; i < kJobs; ++i) {
    const core::Result<FinishAnswer> answer = Get(answers[i], "a batched finish");
    if (i == 2) {
      ASSERT_FALSE(answer.ok());
      EXPECT_THAT(answer.status().message(), HasSubstr("WRONGTYPE"));
    } else {
      ASSERT_TRUE(answer.ok()) << i << ": " << answer.status().message();
      EXPECT_EQ(answer->kind, FinishAnswer::Kind::kFinished) << i;
      EXPECT_EQ(StatusOf(fmt::format("g{}", i)), "COMPLETED") << i;
    }
  }
  ASSERT_TRUE(Get(gate, "the gate").ok());
  EXPECT_LE(batch.calls(), 2u);
  EXPECT_EQ(PendingCount(), 1);                              // g2's entry only
  EXPECT_EQ(Do({"XLEN", keys_.events()}).integer(), kJobs - 1);  // g0, g1, g3 ended once each
}

// A batch that gets no answer (its connection dropped) is retried job by job until each deadline.
TEST_F(RedisQueue, ABatchWithoutAnAnswerIsRetriedJobByJob) {
  constexpr int kJobs = 5;
  for (int i = 0; i < kJobs; ++i) SubmitJob(fmt::format("r{}", i), json::object{{"i", i}});
  const std::vector<std::string> entries = ReadAndStartAs("w1", kJobs);
  ASSERT_EQ(entries.size(), static_cast<std::size_t>(kJobs));
  ConnectionOptions options;
  options.command_timeout = 300ms;  // the gate below outlasts it: the connection is dropped
  Connection connection(io_.get_executor(), endpoint_, options);
  FinishBatch batch(io_.get_executor(), connection, keys_);
  auto gate = Spawn(io_, connection.Command({"BLPOP", "sluice-test-gate", "2"}));
  std::vector<std::future<core::Result<FinishAnswer>>> answers;
  for (int i = 0; i < kJobs; ++i) {
    answers.push_back(Spawn(io_, batch.Finish(Completed(fmt::format("r{}", i), entries[i], "w1"), Clock::now() + 10s)));
  }
  for (int i = 0; i < kJobs; ++i) {
    const core::Result<FinishAnswer> answer = Get(answers[i], "a batched finish");
    ASSERT_TRUE(answer.ok()) << answer.status().message();
    EXPECT_EQ(answer->kind, FinishAnswer::Kind::kFinished) << i;
    EXPECT_EQ(StatusOf(fmt::format("r{}", i)), "COMPLETED");
  }
  EXPECT_FALSE(Get(gate, "the gate").ok());
  EXPECT_EQ(PendingCount(), 0);
  EXPECT_EQ(Do({"XLEN", keys_.events()}).integer(), kJobs);  // each ended once
}

TEST_F(RedisQueue, ARedisRestartMidRunLosesNoAcceptedJob) {
  constexpr int kBefore = 200, kAfter = 100;
  for (int i = 0; i < kBefore; ++i) SubmitJob(fmt::format("a{}", i), json::object{{"sleep_ms", 40}});
  Worker& worker = AddWorker(Options("w1"), Sleeper(), 8);
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return worker.sink.written() >= 20; }));
  ASSERT_TRUE(server_.Stop());
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(server_.Restart());
  for (int i = 0; i < kAfter; ++i) SubmitJob(fmt::format("b{}", i), json::object{{"sleep_ms", 40}});
  auto all_done = [&] {
    for (int i = 0; i < kBefore; ++i) {
      if (StatusOf(fmt::format("a{}", i)) != "COMPLETED") return false;
    }
    for (int i = 0; i < kAfter; ++i) {
      if (StatusOf(fmt::format("b{}", i)) != "COMPLETED") return false;
    }
    return true;
  };
  ASSERT_TRUE(WaitFor(all_done, 20s));
  worker.Stop();
  EXPECT_EQ(worker.sink.lost(), 0u);
  EXPECT_EQ(worker.sink.dropped(), 0u);  // a write whose reply died with the server counts as written
  EXPECT_EQ(worker.sink.written(), static_cast<std::size_t>(kBefore + kAfter));
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(RedisQueue, ProgressAndChunksReachTheJobInOrderWithEvents) {
  SubmitJob("s", json::object{{"chunks", 5}});
  Handler streamer = [](Job& job, Stream& out) -> Task<void> {
    job.progress(json::object{{"step", "warming"}});
    const int count = job.input().as_object().at("chunks").to_number<int>();
    for (int i = 0; i < count; ++i) {
      json::value chunk = json::object{{"token", i}};
      co_await out.emit(std::move(chunk));
    }
    co_return;
  };
  Worker& worker = AddWorker(Options("w1"), std::move(streamer));
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("s") == "COMPLETED"; }));
  worker.Stop();
  EXPECT_EQ(json::parse(Hash("s")["progress"]), (json::value{{"step", "warming"}}));
  const Reply chunks = Do({"LRANGE", keys_.chunks("s"), "0", "-1"});
  ASSERT_EQ(chunks.size(), 5u);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(json::parse(chunks[i].str()), (json::value{{"token", static_cast<int>(i)}}));
  }
  EXPECT_GT(Do({"TTL", keys_.chunks("s")}).integer(), 0);
  // Queued (version 1) and started (2) change the job without an event: no waiter waits for
  // them. Then 1 progress, 5 chunks, completed: events for versions 3..9, in order.
  std::vector<std::string> versions;
  const Reply events = Do({"XRANGE", keys_.events(), "-", "+"});
  for (const Reply& event : events.elements()) versions.push_back(event[1][5].str());
  EXPECT_EQ(versions, (std::vector<std::string>{"3", "4", "5", "6", "7", "8", "9"}));
  EXPECT_EQ(Hash("s")["version"], "9");
}

TEST_F(RedisQueue, AnEntryDeletedWhilePendingEndsFailed) {
  SubmitJob("gone", json::object{{"x", 1}});
  const std::vector<StreamEntry> read = ReadAsDeadConsumer("dead", 1);
  ASSERT_EQ(read.size(), 1u);
  Do({"XDEL", keys_.jobs(), read[0].entry});  // trimmed by hand while pending
  QueueOptions options = Options("alive");
  options.visibility_timeout = 300ms;
  Worker& worker = AddWorker(options, Echo());
  worker.Start();
  ASSERT_TRUE(WaitFor([&] { return StatusOf("gone") == "FAILED"; }));
  worker.Stop();
  EXPECT_THAT(std::string(json::parse(Hash("gone")["result"]).at("error").as_string()), HasSubstr("deleted"));
  EXPECT_EQ(PendingCount(), 0);
  EXPECT_EQ(Do({"HLEN", keys_.entries()}).integer(), 0);
}

}  // namespace
}  // namespace sluice::redis
