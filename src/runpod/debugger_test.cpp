#include "runpod/debugger.hpp"

#include <future>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

namespace sluice::runpod {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

SystemInfo SomeMachine() { return SystemInfo{"Linux 6.1.0", "Some CPU", "GCC 12.2.0", "0.1.0"}; }

WallClock::time_point At(std::int64_t microseconds) { return WallClock::time_point(std::chrono::microseconds(microseconds)); }

TEST(RunpodDebugger, FormatsUtcWithMicroseconds) {
  EXPECT_EQ(FormatUtc(At(0)), "1970-01-01T00:00:00.000000Z");
  // 2026-11-23 04:30:00 UTC is 1795408200 s after the epoch.
  EXPECT_EQ(FormatUtc(At(1795408200LL * 1000000 + 123456)), "2026-11-23T04:30:00.123456Z");
}

TEST(RunpodDebugger, OutputHasTheShapeRunpodRecords) {
  const json::object output =
      DebuggerOutput(SomeMachine(), {{"handler", At(1'000'000), At(1'002'500)}}, 12.5);
  EXPECT_EQ(json::serialize(output),
            R"({"system_info":{"os":"Linux 6.1.0","processor":"Some CPU","compiler":"GCC 12.2.0","sluice":"0.1.0"},)"
            R"("timestamps":[{"name":"handler","start_utc":"1970-01-01T00:00:01.000000Z",)"
            R"("stop_utc":"1970-01-01T00:00:01.002500Z","duration_ms":2.5E0}],"ready_delay_ms":1.25E1})");
}

TEST(RunpodDebugger, AttachesOnlyToAnObjectOutput) {
  json::object result = json::parse(R"({"output":{"a":1},"stopPod":true})").as_object();
  EXPECT_TRUE(AttachDebuggerOutput(result, json::object{{"x", 1}}));
  EXPECT_EQ(json::serialize(result), R"({"output":{"a":1,"rp_debugger":{"x":1}},"stopPod":true})");

  // runpod-python raises on these and never sends the result; sluice sends them unchanged.
  for (const char* text : {R"({"output":"text"})", R"({"output":[1,2]})", R"({"output":null})",
                           R"({"error":"boom"})", R"({})"}) {
    json::object unchanged = json::parse(text).as_object();
    EXPECT_FALSE(AttachDebuggerOutput(unchanged, json::object{{"x", 1}})) << text;
    EXPECT_EQ(json::serialize(unchanged), text);
  }
}

TEST(RunpodDebugger, ProcessAgeIsThatOfThisProcess) {
  const auto age = ProcessAge();
  ASSERT_TRUE(age);
  EXPECT_GE(age->count(), 0.0);
  EXPECT_LT(age->count(), 24.0 * 3600 * 1000) << "a test process younger than a day";
}

TEST(RunpodDebugger, JobTimingsGiveTakeQueueAndHandlerInOrder) {
  JobTimings timings(SomeMachine());
  timings.MarkReady(42.0);
  timings.MarkReady(99.0);  // only the first take counts
  const WallClock::time_point take_start = WallClock::now() - 5ms;
  timings.Taken("job-1", take_start, take_start + 1ms);
  timings.Started("job-1");
  EXPECT_EQ(timings.size(), 1u);
  const auto output = timings.Finish("job-1");
  ASSERT_TRUE(output);
  EXPECT_EQ(timings.size(), 0u);
  EXPECT_EQ(output->at("ready_delay_ms").as_double(), 42.0);
  const json::array& stamps = output->at("timestamps").as_array();
  ASSERT_EQ(stamps.size(), 3u);
  const char* names[] = {"job_take", "queue", "handler"};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(stamps[i].at("name").as_string(), names[i]);
    EXPECT_GE(stamps[i].at("duration_ms").as_double(), 0.0);
    if (i > 0) {
      EXPECT_EQ(stamps[i].at("start_utc"), stamps[i - 1].at("stop_utc")) << "spans are contiguous";
    }
  }
  EXPECT_DOUBLE_EQ(stamps[0].at("duration_ms").as_double(), 1.0);
  EXPECT_FALSE(timings.Finish("job-1")) << "a job is finished once";
  EXPECT_FALSE(timings.Finish("never-taken"));
}

TEST(RunpodDebugger, AJobCancelledBeforeItStartedHasOnlyItsTake) {
  JobTimings timings(SomeMachine());
  timings.Taken("job-1", WallClock::now(), WallClock::now());
  const auto output = timings.Finish("job-1");
  ASSERT_TRUE(output);
  EXPECT_EQ(output->at("timestamps").as_array().size(), 1u);
}

class FixedSource : public core::JobSource {
 public:
  Task<std::vector<core::JobRequest>> Take(std::size_t max_jobs) override {
    std::vector<core::JobRequest> jobs;
    for (std::size_t i = 0; i < max_jobs; ++i) jobs.push_back(core::JobRequest{"job-" + std::to_string(i), {}, {}});
    co_return jobs;
  }
};

class RecordingSink : public core::ResultSink {
 public:
  void OnStarted(const std::string& job_id) override { events.push_back("started " + job_id); }
  void OnProgress(const std::string& job_id, const json::value& update) override {
    events.push_back("progress " + job_id + " " + json::serialize(update));
  }
  void OnChunk(const std::string& job_id, const json::value& chunk) override {
    events.push_back("chunk " + job_id + " " + json::serialize(chunk));
  }
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override {
    events.push_back("finished " + job_id);
    results.push_back(std::move(outcome.result));
  }
  std::vector<std::string> events;
  std::vector<json::object> results;
};

TEST(RunpodDebugger, TheWrappersTimeEachJobAndPassEverythingOn) {
  JobTimings timings(SomeMachine());
  FixedSource inner_source;
  DebuggerJobSource source(inner_source, timings);
  asio::io_context io;
  auto taken = asio::co_spawn(io, source.Take(3), asio::use_future);
  io.run();
  ASSERT_EQ(taken.get().size(), 3u);
  EXPECT_EQ(timings.size(), 3u);

  RecordingSink inner_sink;
  DebuggerResultSink sink(inner_sink, timings);
  sink.OnStarted("job-0");
  sink.OnProgress("job-0", json::value(50));
  sink.OnChunk("job-0", json::value("c"));
  sink.OnFinished("job-0", core::JobOutcome{core::JobStatus::kCompleted, json::parse(R"({"output":{"a":1}})").as_object()});
  sink.OnStarted("job-1");
  sink.OnFinished("job-1", core::JobOutcome{core::JobStatus::kCompleted, json::parse(R"({"output":"text"})").as_object()});
  sink.OnFinished("job-2", core::JobOutcome{core::JobStatus::kCancelled, {}});
  EXPECT_EQ(timings.size(), 0u) << "every record ends with its job";

  const std::vector<std::string> expected{"started job-0", "progress job-0 50", "chunk job-0 \"c\"",
                                          "finished job-0", "started job-1", "finished job-1", "finished job-2"};
  EXPECT_EQ(inner_sink.events, expected);
  ASSERT_EQ(inner_sink.results.size(), 3u);
  const json::object& debugged = inner_sink.results[0].at("output").as_object();
  EXPECT_EQ(debugged.at("a"), 1);
  EXPECT_EQ(debugged.at("rp_debugger").at("timestamps").as_array().size(), 3u);
  EXPECT_EQ(json::serialize(inner_sink.results[1]), R"({"output":"text"})");
  EXPECT_TRUE(inner_sink.results[2].empty()) << "a stopped job's empty result stays empty";
}

}  // namespace
}  // namespace sluice::runpod
