#include "runpod/protocol.hpp"

#include <map>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "http/header_field.hpp"

namespace sluice::runpod {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// The values of runpod.md §4.1 and the requests it records on the wire (§4.3, §4.6, §4.7).
Environment RealWorld() {
  Environment environment;
  environment.get_job = "https://api.runpod.ai/v2/ep1/job-take/$ID?gpu=SIM";
  environment.post_output = "https://api.runpod.ai/v2/ep1/job-done/$RUNPOD_POD_ID/$ID?gpu=SIM";
  environment.post_stream = "https://api.runpod.ai/v2/ep1/job-stream/$RUNPOD_POD_ID/$ID?gpu=SIM";
  environment.ping = "https://api.runpod.ai/v2/ep1/ping/$RUNPOD_POD_ID?gpu=SIM";
  return environment;
}

TEST(RunpodUrls, TemplatedAsRunpodPythonDoes) {
  const ControlPlaneUrls urls = TemplateUrls(RealWorld(), "pod-abc");
  EXPECT_EQ(urls.take, "https://api.runpod.ai/v2/ep1/job-take/pod-abc?gpu=SIM");
  EXPECT_EQ(urls.done_template, "https://api.runpod.ai/v2/ep1/job-done/pod-abc/$ID?gpu=SIM");
  EXPECT_EQ(urls.stream_template, "https://api.runpod.ai/v2/ep1/job-stream/pod-abc/$ID?gpu=SIM");
  EXPECT_EQ(urls.ping, "https://api.runpod.ai/v2/ep1/ping/pod-abc?gpu=SIM");
  ASSERT_TRUE(urls.stop);
  EXPECT_EQ(*urls.stop, "https://api.runpod.ai/v2/ep1/job-stop/pod-abc?gpu=SIM");
}

TEST(RunpodUrls, TakeReplacesOnlyTheLiteralId) {
  Environment environment = RealWorld();
  // `$RUNPOD_POD_ID` does not contain `$ID`: runpod-python leaves it in the take URL.
  environment.get_job = "http://h/job-take/$RUNPOD_POD_ID/$ID?x=1";
  EXPECT_EQ(TemplateUrls(environment, "w1").take, "http://h/job-take/$RUNPOD_POD_ID/w1?x=1");
}

TEST(RunpodUrls, NoStopChannelWithoutJobTakeInTheUrl) {
  Environment environment = RealWorld();
  environment.get_job = "http://h/take/$ID?x=1";
  EXPECT_FALSE(TemplateUrls(environment, "w1").stop);
}

TEST(RunpodUrls, SingleAndBatchTake) {
  const ControlPlaneUrls urls = TemplateUrls(RealWorld(), "pod-abc");
  EXPECT_EQ(TakeUrl(urls, 3, false),
            "https://api.runpod.ai/v2/ep1/job-take-batch/pod-abc?gpu=SIM&batch_size=3&job_in_progress=0");
  EXPECT_EQ(TakeUrl(urls, 1, true), "https://api.runpod.ai/v2/ep1/job-take/pod-abc?gpu=SIM&job_in_progress=1");
  EXPECT_EQ(TakeUrl(urls, 1, false), "https://api.runpod.ai/v2/ep1/job-take/pod-abc?gpu=SIM&job_in_progress=0");
}

TEST(RunpodUrls, JobUrlsCarryIsStream) {
  const ControlPlaneUrls urls = TemplateUrls(RealWorld(), "pod-abc");
  EXPECT_EQ(JobUrl(urls.done_template, "j-1", false),
            "https://api.runpod.ai/v2/ep1/job-done/pod-abc/j-1?gpu=SIM&isStream=false");
  EXPECT_EQ(JobUrl(urls.done_template, "j-1", true),
            "https://api.runpod.ai/v2/ep1/job-done/pod-abc/j-1?gpu=SIM&isStream=true");
  EXPECT_EQ(JobUrl(urls.stream_template, "j-1", false),
            "https://api.runpod.ai/v2/ep1/job-stream/pod-abc/j-1?gpu=SIM&isStream=false");
  // An id that would break the URL is encoded.
  EXPECT_EQ(JobUrl("http://h/done/$ID?a=1", "a b/c", false), "http://h/done/a%20b%2Fc?a=1&isStream=false");
}

TEST(RunpodUrls, PingCarriesTheJobsInProgress) {
  const ControlPlaneUrls urls = TemplateUrls(RealWorld(), "pod-abc");
  EXPECT_EQ(PingUrl(urls.ping, {"j-s1", "j-long"}, "1.12.0"),
            "https://api.runpod.ai/v2/ep1/ping/pod-abc?gpu=SIM&job_id=j-s1%2Cj-long&runpod_version=1.12.0");
  EXPECT_EQ(PingUrl(urls.ping, {}, "0.1.0"), "https://api.runpod.ai/v2/ep1/ping/pod-abc?gpu=SIM&runpod_version=0.1.0");
}

TEST(RunpodEnvironment, ReadsTheVariables) {
  const std::map<std::string, std::string> values{{"RUNPOD_WEBHOOK_GET_JOB", "g"},
                                                  {"RUNPOD_WEBHOOK_POST_OUTPUT", "o"},
                                                  {"RUNPOD_WEBHOOK_POST_STREAM", "s"},
                                                  {"RUNPOD_WEBHOOK_PING", "p"},
                                                  {"RUNPOD_PING_INTERVAL", "2500"},
                                                  {"RUNPOD_AI_API_KEY", "key"}};
  const Environment environment = Environment::Read([&](const char* name) -> const char* {
    auto it = values.find(name);
    return it == values.end() ? nullptr : it->second.c_str();
  });
  EXPECT_EQ(environment.get_job, "g");
  EXPECT_EQ(environment.post_output, "o");
  EXPECT_EQ(environment.post_stream, "s");
  EXPECT_EQ(environment.ping, "p");
  EXPECT_EQ(environment.ping_interval_ms, "2500");
  EXPECT_EQ(environment.api_key, "key");
  EXPECT_EQ(environment.ua_integration, "");
}

TEST(RunpodHeaders, RawAuthorizationUserAgentAndRequestId) {
  const auto headers = CommonHeaders("secret-key", "sluice/0.1.0 (Linux 6.1; x86_64) Language/C++", "rid-1");
  EXPECT_EQ(http::FindHeader(headers, "Authorization"), "secret-key");  // no "Bearer"
  EXPECT_EQ(http::FindHeader(headers, "Content-Type"), "application/json");
  EXPECT_EQ(http::FindHeader(headers, "User-Agent"), "sluice/0.1.0 (Linux 6.1; x86_64) Language/C++");
  EXPECT_EQ(http::FindHeader(headers, "X-Request-ID"), "rid-1");

  const auto post = PostHeaders("secret-key", "ua", "rid-2");
  EXPECT_EQ(http::FindHeader(post, "Content-Type"), "application/x-www-form-urlencoded");
  EXPECT_EQ(http::FindHeader(post, "charset"), "utf-8");
  EXPECT_EQ(http::FindHeader(post, "Authorization"), "secret-key");
  EXPECT_EQ(http::FindHeader(post, "X-Request-ID"), "rid-2");
}

TEST(RunpodHeaders, UserAgentNamesSluiceAndItsVersion) {
  EXPECT_EQ(UserAgent("0.1.0", "Linux", "6.1.0", "x86_64", ""), "sluice/0.1.0 (Linux 6.1.0; x86_64) Language/C++");
  EXPECT_EQ(UserAgent("0.1.0", "Linux", "6.1.0", "x86_64", "acme"),
            "sluice/0.1.0 (Linux 6.1.0; x86_64) Language/C++ Integration/acme");
  EXPECT_EQ(UserAgentForThisMachine("").rfind("sluice/" SLUICE_VERSION " (", 0), 0u);
}

TEST(RunpodHeaders, EveryRequestIdIsFresh) {
  const std::string first = NewRequestId();
  const std::string second = NewRequestId();
  EXPECT_EQ(first.size(), 36u);
  EXPECT_NE(first, second);
}

// Golden bodies from runpod.md §1.3-§1.5 and §4.5: json.dumps(R, ensure_ascii=False).
TEST(RunpodBodies, DoneBodiesAreWhatJsonDumpsWrites) {
  EXPECT_EQ(DoneBody(json::parse(R"({"output":{"x":1},"error":"bad thing"})").as_object()),
            R"({"output": {"x": 1}, "error": "bad thing"})");
  EXPECT_EQ(DoneBody(json::parse(R"({"output":7})").as_object()), R"({"output": 7})");
  EXPECT_EQ(DoneBody(json::parse(R"({"output":[{"tok":0},{"tok":1},{"tok":2}]})").as_object()),
            R"({"output": [{"tok": 0}, {"tok": 1}, {"tok": 2}]})");
  EXPECT_EQ(DoneBody(json::parse(R"({"output":{"a":1},"stopPod":true})").as_object()),
            R"({"output": {"a": 1}, "stopPod": true})");
  EXPECT_EQ(DoneBody(json::parse(R"({"output":null})").as_object()), R"({"output": null})");
  EXPECT_EQ(DoneBody(json::object()), "{}");
  // Numbers as Python writes them, UTF-8 kept (ensure_ascii=False).
  EXPECT_EQ(DoneBody(json::parse(R"({"output":{"p":0.5,"big":1e20,"s":"héllo \"q\""}})").as_object()),
            R"({"output": {"p": 0.5, "big": 1e+20, "s": "héllo \"q\""}})");
}

TEST(RunpodBodies, StreamAndProgressBodies) {
  EXPECT_EQ(StreamBody(json::parse(R"({"tok":0})")), R"({"output": {"tok": 0}})");
  EXPECT_EQ(StreamBody("word"), R"({"output": "word"})");
  EXPECT_EQ(ProgressBody(json::parse(R"({"step":2,"of":5})")), R"({"status": "IN_PROGRESS", "output": {"step": 2, "of": 5}})");
  EXPECT_EQ(ProgressBody("half way"), R"({"status": "IN_PROGRESS", "output": "half way"})");
}

TEST(RunpodTake, NoJobAnswers) {
  EXPECT_EQ(ParseTakeAnswer(204, "", "").kind, TakeAnswer::Kind::kNoJob);
  EXPECT_EQ(ParseTakeAnswer(400, "application/json", R"({"error":"x"})").kind, TakeAnswer::Kind::kNoJob);
  EXPECT_EQ(ParseTakeAnswer(200, "text/plain", R"({"id":"a","input":1})").kind, TakeAnswer::Kind::kNoJob);
  EXPECT_EQ(ParseTakeAnswer(200, "application/json", "").kind, TakeAnswer::Kind::kNoJob);
  EXPECT_EQ(ParseTakeAnswer(200, "application/json", "null").kind, TakeAnswer::Kind::kNoJob);
  EXPECT_EQ(ParseTakeAnswer(200, "application/json", "[]").kind, TakeAnswer::Kind::kNoJob);
}

TEST(RunpodTake, ErrorAnswers) {
  EXPECT_EQ(ParseTakeAnswer(429, "", "").kind, TakeAnswer::Kind::kTooManyRequests);
  const TakeAnswer server_error = ParseTakeAnswer(500, "text/plain", "oops");
  EXPECT_EQ(server_error.kind, TakeAnswer::Kind::kError);
  EXPECT_NE(server_error.error.find("500"), std::string::npos);
  const TakeAnswer malformed = ParseTakeAnswer(200, "application/json", R"({"id": "a",)");
  EXPECT_EQ(malformed.kind, TakeAnswer::Kind::kError);
  EXPECT_NE(malformed.error.find("malformed"), std::string::npos);
  EXPECT_EQ(ParseTakeAnswer(200, "application/json", "42").kind, TakeAnswer::Kind::kError);
  EXPECT_EQ(ParseTakeAnswer(200, "application/json", R"({"input": 1})").kind, TakeAnswer::Kind::kError);
}

TEST(RunpodTake, OneJobPassesThroughUnchanged) {
  const TakeAnswer answer = ParseTakeAnswer(200, "application/json; charset=utf-8",
                                            R"({"id":"j1","input":{"a":1},"webhook":"http://w"})");
  ASSERT_EQ(answer.kind, TakeAnswer::Kind::kJobs);
  ASSERT_EQ(answer.jobs.size(), 1u);
  EXPECT_EQ(answer.jobs[0].id, "j1");
  EXPECT_EQ(json::value(answer.jobs[0].request), json::parse(R"({"id":"j1","input":{"a":1},"webhook":"http://w"})"));
  EXPECT_FALSE(answer.jobs[0].execution_timeout);
}

TEST(RunpodTake, ABatch) {
  const TakeAnswer answer = ParseTakeAnswer(
      200, "application/json",
      R"([{"id":"a","input":1},{"id":"b","input":2,"policy":{"executionTimeout":1500}},{"id":"c"},{"input":3}])");
  ASSERT_EQ(answer.kind, TakeAnswer::Kind::kJobs);
  ASSERT_EQ(answer.jobs.size(), 2u);
  EXPECT_EQ(answer.jobs[0].id, "a");
  EXPECT_EQ(answer.jobs[1].id, "b");
  ASSERT_TRUE(answer.jobs[1].execution_timeout);
  EXPECT_EQ(*answer.jobs[1].execution_timeout, 1500ms);
  // `c` has an id to answer with an error; the job without an id can only be logged.
  ASSERT_EQ(answer.rejected.size(), 1u);
  EXPECT_EQ(answer.rejected[0].first, "c");
  EXPECT_EQ(answer.rejected[0].second, "Job has missing field(s): id or input.");
  EXPECT_NE(answer.error.find("without a string id"), std::string::npos);
}

TEST(RunpodStop, ParsesTheIdsToStop) {
  EXPECT_EQ(ParseStopAnswer(200, "application/json", R"({"jobsToStop":["a",1,"b",null]})"),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ParseStopAnswer(204, "", "").empty());
  EXPECT_TRUE(ParseStopAnswer(200, "application/json", R"({"jobsToStop":"a"})").empty());
  EXPECT_TRUE(ParseStopAnswer(200, "application/json", R"(["a"])").empty());
  EXPECT_TRUE(ParseStopAnswer(200, "application/json", "nope").empty());
  EXPECT_TRUE(ParseStopAnswer(200, "text/html", R"({"jobsToStop":["a"]})").empty());
}

TEST(RunpodPing, IntervalIsInMilliseconds) {
  EXPECT_EQ(PingInterval(""), 10000ms);
  EXPECT_EQ(PingInterval("2500"), 2500ms);
  EXPECT_EQ(PingInterval("10"), 100ms);  // never a tight loop
  EXPECT_EQ(PingInterval("soon"), 10000ms);
}

TEST(RunpodTakePacer, JobsAndLongPolledEmptiesGoOnAtOnce) {
  TakePacer pacer;
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kJobs, 1ms, 1.0), 0ms);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 30s, 1.0), 0ms);
}

TEST(RunpodTakePacer, ErrorsBackOffExponentiallyAndResetOnSuccess) {
  TakePacer pacer;
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kError, 1ms, 1.0), 100ms);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kError, 1ms, 1.0), 200ms);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kError, 1ms, 0.5), 200ms);  // jitter: half of 400 ms
  EXPECT_EQ(pacer.consecutive_errors(), 3);
  for (int i = 0; i < 20; ++i) (void)pacer.After(TakeAnswer::Kind::kError, 1ms, 1.0);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kError, 1ms, 1.0), 30s);  // capped
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kJobs, 1ms, 1.0), 0ms);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kError, 1ms, 1.0), 100ms);
}

TEST(RunpodTakePacer, TooManyRequestsWaitsAtLeastFiveSeconds) {
  TakePacer pacer;
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kTooManyRequests, 1ms, 0.0), 5s);
}

TEST(RunpodTakePacer, QuickEmptyAnswersAreNotAHotLoop) {
  TakePacer pacer;
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 1ms, 1.0), 50ms);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 1ms, 1.0), 100ms);
  for (int i = 0; i < 10; ++i) (void)pacer.After(TakeAnswer::Kind::kNoJob, 1ms, 1.0);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 1ms, 1.0), 1s);
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 2s, 1.0), 0ms);  // long-polled again
  EXPECT_EQ(pacer.After(TakeAnswer::Kind::kNoJob, 1ms, 1.0), 50ms);
}

}  // namespace
}  // namespace sluice::runpod
