// Pure tests of the Redis queue's key names, script calls and reply readers (no server).
#include "redis/scripts.hpp"

#include <boost/json/parse.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include "redis/keys.hpp"
#include "redis/queue.hpp"

namespace sluice::redis {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Reply S(std::string text) { return Reply::String(std::move(text)); }

TEST(RedisKeys, EveryKeyCarriesTheQueueAsHashTag) {
  const Keys keys("gpu");
  EXPECT_EQ(keys.jobs(), "sluice:{gpu}:jobs");
  EXPECT_EQ(keys.job("j1"), "sluice:{gpu}:job:j1");
  EXPECT_EQ(keys.chunks("j1"), "sluice:{gpu}:chunks:j1");
  EXPECT_EQ(keys.events(), "sluice:{gpu}:events");
  EXPECT_EQ(keys.cancels(), "sluice:{gpu}:cancels");
  EXPECT_EQ(keys.entries(), "sluice:{gpu}:entries");
  EXPECT_EQ(keys.worker("host:1"), "sluice:{gpu}:worker:host:1");
  EXPECT_EQ(keys.workers(), "sluice:{gpu}:workers");
  EXPECT_EQ(keys.counts(), "sluice:{gpu}:counts");
  EXPECT_EQ(keys.idempotency("k"), "sluice:{gpu}:idempotency:k");
  EXPECT_EQ(Keys().jobs(), "sluice:{default}:jobs");
}

TEST(RedisKeys, QueueNamesWithoutBracesOrSpaces) {
  EXPECT_TRUE(ValidQueueName("default"));
  EXPECT_TRUE(ValidQueueName("gpu-a100.eu_1"));
  EXPECT_FALSE(ValidQueueName(""));
  EXPECT_FALSE(ValidQueueName("a{b"));
  EXPECT_FALSE(ValidQueueName("a}b"));
  EXPECT_FALSE(ValidQueueName("a b"));
  EXPECT_FALSE(ValidQueueName(std::string(65, 'q')));
}

TEST(RedisScripts, Sha1OfKnownTexts) {
  EXPECT_EQ(Sha1Hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(Sha1Hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(SubmitScript().sha1, Sha1Hex(SubmitScript().source));
  EXPECT_NE(StartScript().sha1, FinishScript().sha1);
}

TEST(RedisScripts, EvalShaAndEvalArgv) {
  SubmitParams params;
  params.job_id = "j1";
  params.request_json = R"({"input":1})";
  params.submitted_ms = 42;
  const ScriptCall call = SubmitCall(Keys("q"), params);
  const std::vector<std::string> sha = call.EvalShaArgv();
  ASSERT_GE(sha.size(), 7u);
  EXPECT_EQ(sha[0], "EVALSHA");
  EXPECT_EQ(sha[1], SubmitScript().sha1);
  EXPECT_EQ(sha[2], "5");
  EXPECT_EQ(sha[3], "sluice:{q}:job:j1");
  EXPECT_EQ(sha[4], "sluice:{q}:jobs");
  EXPECT_EQ(sha[7], "sluice:{q}:counts");
  EXPECT_EQ(sha[8], "j1");
  EXPECT_EQ(sha[9], R"({"input":1})");
  EXPECT_EQ(sha[11], "42");
  const std::vector<std::string> eval = call.EvalArgv();
  EXPECT_EQ(eval[0], "EVAL");
  EXPECT_EQ(eval[1], SubmitScript().source);
  EXPECT_EQ(std::vector<std::string>(eval.begin() + 2, eval.end()),
            std::vector<std::string>(sha.begin() + 2, sha.end()));
  // An idempotency key is one more key, in the queue's hash tag.
  params.idempotency_key = "k";
  const ScriptCall keyed = SubmitCall(Keys("q"), params);
  EXPECT_THAT(keyed.keys, ElementsAre("sluice:{q}:job:j1", "sluice:{q}:jobs", "sluice:{q}:events",
                                      "sluice:{q}:entries", "sluice:{q}:counts", "sluice:{q}:idempotency:k"));
}

TEST(RedisScripts, SubmitReplies) {
  SubmitAnswer answer;
  ASSERT_TRUE(ParseSubmit(Reply::Array({Reply::Integer(1), S("1-0")}), answer));
  EXPECT_EQ(answer.kind, SubmitAnswer::Kind::kQueued);
  EXPECT_EQ(answer.entry, "1-0");
  ASSERT_TRUE(ParseSubmit(Reply::Array({Reply::Integer(2), S("")}), answer));
  EXPECT_EQ(answer.kind, SubmitAnswer::Kind::kQueueFull);
  ASSERT_TRUE(ParseSubmit(Reply::Array({Reply::Integer(3), S("first-id")}), answer));
  EXPECT_EQ(answer.kind, SubmitAnswer::Kind::kRepeatedKey);
  EXPECT_EQ(answer.job_id, "first-id");
  EXPECT_FALSE(ParseSubmit(Reply::Array({Reply::Integer(9), S("")}), answer));
}

TEST(RedisScripts, JobFieldsBecomeTheApiView) {
  // status, submitted_ms, started_ms, finished_ms, result, progress, webhook, version
  core::JobView view;
  ASSERT_TRUE(ParseJobFields("j", Reply::Array({S("COMPLETED"), S("1000"), S("1250"), S("1600"), S(R"({"output":7})"),
                                                Reply::Nil(), S("http://h/x"), S("4")}),
                             view));
  EXPECT_EQ(view.status, core::JobStatus::kCompleted);
  EXPECT_EQ(view.delay_ms, 250);
  EXPECT_EQ(view.execution_ms, 350);
  EXPECT_EQ(view.result.at("output").as_int64(), 7);
  EXPECT_EQ(view.webhook, "http://h/x");
  EXPECT_EQ(view.version, 4u);
  // Running: the latest progress update is the output; no execution time yet.
  ASSERT_TRUE(ParseJobFields("j", Reply::Array({S("IN_PROGRESS"), S("1000"), S("1250"), Reply::Nil(), Reply::Nil(),
                                                S(R"("half")"), Reply::Nil(), S("3")}),
                             view));
  EXPECT_EQ(view.result.at("output").as_string(), "half");
  EXPECT_FALSE(view.execution_ms);
  EXPECT_FALSE(ParseJobFields("j", Reply::Array({S("BOGUS"), S("1"), Reply::Nil(), Reply::Nil(), Reply::Nil(),
                                                 Reply::Nil(), Reply::Nil(), S("1")}),
                              view));
}

TEST(RedisScripts, FinishCallFencesUnlessTold) {
  FinishParams params;
  params.job_id = "j";
  params.entry = "1-0";
  params.consumer = "w1";
  params.status = "COMPLETED";
  params.result_json = "{}";
  params.result_ttl_s = 60;
  ScriptCall call = FinishCall(Keys(), params);
  EXPECT_THAT(call.keys, ElementsAre("sluice:{default}:jobs", "sluice:{default}:events", "sluice:{default}:entries",
                                     "sluice:{default}:counts", "sluice:{default}:job:j", "sluice:{default}:chunks:j"));
  EXPECT_THAT(call.args, ElementsAre("w1", "60", "workers", "100000", "j", "1-0", "COMPLETED", "{}", "0", "1"));
  params.fence = false;
  EXPECT_EQ(FinishCall(Keys(), params).args.back(), "0");
  // A batch: the shared part once, then each job's keys and arguments in order.
  FinishParams other = params;
  other.job_id = "k";
  other.entry = "2-0";
  other.status = "FAILED";
  other.now_ms = 7;
  const FinishParams* batch[] = {&params, &other};
  call = FinishCall(Keys(), batch);
  EXPECT_EQ(call.keys.size(), 8u);
  EXPECT_EQ(call.keys[6], "sluice:{default}:job:k");
  EXPECT_EQ(call.keys[7], "sluice:{default}:chunks:k");
  ASSERT_EQ(call.args.size(), 16u);
  EXPECT_THAT(std::vector<std::string>(call.args.begin() + 10, call.args.end()),
              ElementsAre("k", "2-0", "FAILED", "{}", "7", "0"));
  EXPECT_THAT(HeartbeatCall(Keys(), "w1", {"1-0", "2-0"}).args, ElementsAre("workers", "w1", "1-0", "2-0"));
}

TEST(RedisScripts, TakeCallAndReply) {
  const Keys keys("q");
  TakeParams params;
  params.consumer = "host:1";
  params.count = 16;
  params.now_ms = 1700000000000;
  params.max_deliveries = 3;
  params.result_ttl_s = 60;
  const ScriptCall call = TakeCall(keys, params);
  EXPECT_EQ(call.script, &TakeScript());
  EXPECT_EQ(call.keys, (std::vector<std::string>{keys.jobs(), keys.events(), keys.entries(), keys.counts()}));
  ASSERT_EQ(call.args.size(), 8u);
  EXPECT_EQ(call.args[1], "host:1");
  EXPECT_EQ(call.args[2], "16");
  EXPECT_EQ(call.args[7], "sluice:{q}:");
  EXPECT_EQ(keys.job("a"), call.args[7] + "job:a");  // the script builds job keys from the prefix

  std::vector<TakenEntry> taken;
  ASSERT_TRUE(ParseTake(Reply::Array({}), taken));
  EXPECT_TRUE(taken.empty());
  const Reply reply = Reply::Array({
      Reply::Array({S("1-0"), S("a"), Reply::Array({S("started"), S(R"({"input":1})"), Reply::Integer(1)})}),
      Reply::Array({S("1-1"), S("b"), Reply::Array({S("terminal"), S("CANCELLED")})}),
      Reply::Array({S("1-2"), S("")}),
  });
  ASSERT_TRUE(ParseTake(reply, taken));
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].entry.entry, "1-0");
  EXPECT_EQ(taken[0].entry.job_id, "a");
  EXPECT_EQ(taken[0].answer.kind, StartAnswer::Kind::kStarted);
  EXPECT_EQ(taken[0].answer.request, R"({"input":1})");
  EXPECT_EQ(taken[1].answer.kind, StartAnswer::Kind::kTerminal);
  EXPECT_EQ(taken[1].answer.detail, "CANCELLED");
  EXPECT_TRUE(taken[2].entry.job_id.empty());
  // Another shape is refused, not half read.
  std::vector<TakenEntry> bad;
  EXPECT_FALSE(ParseTake(Reply::Integer(0), bad));
  EXPECT_FALSE(ParseTake(Reply::Array({Reply::Array({S("1-0"), S("a")})}), bad));
  EXPECT_FALSE(ParseTake(Reply::Array({Reply::Array({S("1-0"), S("a"), Reply::Integer(1)})}), bad));
}

TEST(RedisScripts, FinishBatchReplyHasOneAnswerPerJob) {
  std::vector<FinishAnswer> answers;
  ASSERT_TRUE(ParseFinishReply(Reply::Array({Reply::Array({S("finished"), Reply::Integer(3)}),
                                             Reply::Array({S("not_owner"), S("w2")})}),
                               2, answers));
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].kind, FinishAnswer::Kind::kFinished);
  EXPECT_EQ(answers[0].version, 3);
  EXPECT_EQ(answers[1].kind, FinishAnswer::Kind::kNotOwner);
  EXPECT_EQ(answers[1].detail, "w2");
  std::vector<FinishAnswer> bad;
  EXPECT_FALSE(ParseFinishReply(Reply::Array({Reply::Array({S("finished"), Reply::Integer(3)})}), 2, bad));
  EXPECT_FALSE(ParseFinishReply(Reply::Array({Reply::Integer(1)}), 1, bad));
  EXPECT_FALSE(ParseFinishReply(Reply::Nil(), 1, bad));
}

TEST(RedisScripts, StartAndFinishReplies) {
  StartAnswer started = ParseStart(Reply::Array({S("started"), S(R"({"input":1})"), Reply::Integer(2)}));
  EXPECT_EQ(started.kind, StartAnswer::Kind::kStarted);
  EXPECT_EQ(started.request, R"({"input":1})");
  EXPECT_EQ(started.deliveries, 2);
  EXPECT_EQ(ParseStart(Reply::Array({S("terminal"), S("CANCELLED")})).detail, "CANCELLED");
  EXPECT_EQ(ParseStart(Reply::Array({S("not_owner")})).kind, StartAnswer::Kind::kNotOwner);
  EXPECT_EQ(ParseStart(Reply::Array({S("failed"), S("delivered 4 times")})).kind, StartAnswer::Kind::kFailed);
  EXPECT_EQ(ParseStart(Reply::Integer(1)).kind, StartAnswer::Kind::kBadReply);
  EXPECT_EQ(ParseFinish(Reply::Array({S("finished"), Reply::Integer(5)})).version, 5);
  EXPECT_EQ(ParseFinish(Reply::Array({S("not_owner"), S("w2")})).detail, "w2");
  EXPECT_EQ(ParseFinish(Reply::Array({S("not_pending")})).kind, FinishAnswer::Kind::kNotPending);
  EXPECT_EQ(ParseFinish(Reply::Nil()).kind, FinishAnswer::Kind::kBadReply);
}

TEST(RedisScripts, StreamReplies) {
  std::vector<StreamEntry> entries;
  ASSERT_TRUE(ParseReadGroup(Reply::Nil(), entries));
  EXPECT_TRUE(entries.empty());
  const Reply read = Reply::Array({Reply::Array(
      {S("sluice:{q}:jobs"), Reply::Array({Reply::Array({S("1-0"), Reply::Array({S("id"), S("a")})}),
                                           Reply::Array({S("2-0"), Reply::Nil()})})})});
  ASSERT_TRUE(ParseReadGroup(read, entries));
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].entry, "1-0");
  EXPECT_EQ(entries[0].job_id, "a");
  EXPECT_EQ(entries[1].entry, "2-0");
  EXPECT_EQ(entries[1].job_id, "");  // deleted while pending
  EXPECT_FALSE(ParseReadGroup(Reply::Integer(3), entries));

  AutoclaimAnswer claim;
  ASSERT_TRUE(ParseAutoclaim(
      Reply::Array({S("5-0"), Reply::Array({Reply::Array({S("3-0"), Reply::Array({S("id"), S("b")})})}),
                    Reply::Array({S("4-0")})}),
      claim));
  EXPECT_EQ(claim.cursor, "5-0");
  ASSERT_EQ(claim.claimed.size(), 1u);
  EXPECT_EQ(claim.claimed[0].job_id, "b");
  EXPECT_THAT(claim.deleted, ElementsAre("4-0"));

  std::vector<std::string> ids;
  std::string last = "0-0";
  ASSERT_TRUE(ParseCancels(read, ids, last));
  EXPECT_THAT(ids, ElementsAre("a"));
  EXPECT_EQ(last, "2-0");
}

TEST(RedisQueueOptions, DefaultConsumerNameIsHostAndPid) {
  const std::string name = DefaultConsumerName();
  EXPECT_THAT(name, ::testing::EndsWith(":" + std::to_string(::getpid())));
  EXPECT_GT(name.size(), std::to_string(::getpid()).size() + 1);
}

TEST(RedisQueueOptions, ExecutionTimeoutFromPolicy) {
  EXPECT_EQ(ExecutionTimeoutMs(boost::json::parse(R"({"input":1,"policy":{"executionTimeout":1500}})").as_object()),
            1500);
  EXPECT_EQ(ExecutionTimeoutMs(boost::json::parse(R"({"input":1})").as_object()), 0);
  EXPECT_EQ(ExecutionTimeoutMs(boost::json::parse(R"({"input":1,"policy":{"executionTimeout":-5}})").as_object()), 0);
}

}  // namespace
}  // namespace sluice::redis
