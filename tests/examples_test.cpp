// End-to-end checks of the example programs: each one is run as a child process in local test mode,
// the way a user runs it, and judged only by its exit code, stdout and stderr.
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include "child_process.hpp"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

struct RunResult {
  // The exit status, or -N when the child died of signal N; 125, 126 and 127 are the runner's own
  // "the test process died first", "could not enter the directory" and "could not exec the program".
  int exit_code = -1;
  bool timed_out = false;
  std::string out;
  std::string err;
};

// A hang must fail the test that caused it, well before ctest's own timeout kills the whole binary.
constexpr std::chrono::seconds kWatchdog{60};

fs::path BinaryPath(std::string_view name) { return fs::path(SLUICE_BIN_DIR) / name; }
fs::path ExampleDir(std::string_view name) { return fs::path(SLUICE_EXAMPLES_DIR) / name; }

// Runs `program args...` in `cwd` (stdin on /dev/null, a hermetic environment: child_process.hpp)
// and collects stdout and stderr separately; after kWatchdog the child is killed and `timed_out`
// is set. With `interrupt_after` set, the child gets SIGINT once that much time has passed.
// With `interrupt_once`, SIGINT is sent as soon as a stderr line matches it (not after a fixed
// time: a loaded machine or a sanitizer build may not have installed the handler by then).
RunResult RunProgram(const fs::path& program, const std::vector<std::string>& args, const fs::path& cwd,
                     std::optional<std::regex> interrupt_once = std::nullopt) {
  RunResult result;
  sluice::testing::ChildProcess child(program, args, {.cwd = cwd});
  if (!child.started()) {
    ADD_FAILURE() << child.error();
    return result;
  }
  const auto deadline = std::chrono::steady_clock::now() + kWatchdog;
  if (interrupt_once && child.WaitForLine(*interrupt_once, kWatchdog)) child.Signal(SIGINT);
  std::optional<int> exit_code = child.WaitForExit(deadline - std::chrono::steady_clock::now());
  if (!exit_code) {
    result.timed_out = true;
    child.Kill();
    exit_code = child.WaitForExit(10s);
  }
  result.exit_code = exit_code.value_or(-1);
  result.out = child.out();
  result.err = child.err();
  return result;
}

// Runs example `name` from its own folder, where its test_input.json lives.
RunResult RunExample(std::string_view name, const std::vector<std::string>& args = {}) {
  return RunProgram(BinaryPath(name), args, ExampleDir(name));
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    lines.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

// Every stdout line is one JSON value; a line that does not parse fails the test.
std::vector<json::value> JsonLines(const RunResult& run) {
  std::vector<json::value> values;
  for (const std::string& line : Lines(run.out)) {
    boost::system::error_code ec;
    json::value value = json::parse(line, ec);
    EXPECT_FALSE(ec) << "stdout line is not JSON: " << line;
    values.push_back(std::move(value));
  }
  return values;
}

// For failure messages: everything the child said.
std::string Describe(const RunResult& run) {
  return "exit code " + std::to_string(run.exit_code) + (run.timed_out ? " (killed by the watchdog)" : "") +
         "\n--- stdout ---\n" + run.out + "--- stderr ---\n" + run.err;
}

// The last stdout line of a run that should have succeeded.
json::value FinalResult(const RunResult& run) {
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_FALSE(run.timed_out);
  const std::vector<json::value> values = JsonLines(run);
  if (values.empty()) {
    ADD_FAILURE() << "no result on stdout\n" << Describe(run);
    return nullptr;
  }
  return values.back();
}

// ---------------------------------------------------------------------------------------------
// Each example with its own test_input.json

TEST(Examples, EchoReturnsItsTestInput) {
  EXPECT_EQ(FinalResult(RunExample("echo")), json::parse(R"({"output":{"message":"hello from echo"}})"));
}

TEST(Examples, CounterStartsAtOne) {
  EXPECT_EQ(FinalResult(RunExample("counter")), json::parse(R"({"output":{"counter":1}})"));
}

TEST(Examples, ConcurrentHandlerWaitsThenReportsItsInput) {
  const auto start = std::chrono::steady_clock::now();
  const json::value result = FinalResult(RunExample("concurrent_handler"));
  const auto elapsed = std::chrono::steady_clock::now() - start;

  const json::value* output = result.is_object() ? result.get_object().if_contains("output") : nullptr;
  ASSERT_TRUE(output != nullptr && output->is_string()) << json::serialize(result);
  const std::string_view text = output->get_string();
  constexpr std::string_view kPrefix = "Processed: ";
  ASSERT_TRUE(text.starts_with(kPrefix)) << text;
  // What follows the prefix is the input, as JSON: compare values, not spellings of numbers.
  EXPECT_EQ(json::parse(text.substr(kPrefix.size())),
            json::parse(R"({"message":"Test concurrent processing","delay":0.5})"));
  // test_input.json asks for 0.5 s: a shorter run means the handler never waited.
  EXPECT_GE(elapsed, 500ms);
}

TEST(Examples, IoThreadsSleepsAndSaysHowLong) {
  EXPECT_EQ(FinalResult(RunExample("io_threads")), json::parse(R"({"output":{"slept":0.2}})"));
}

TEST(Examples, StreamTokensStreamsOneChunkPerWordThenTheAggregate) {
  const RunResult run = RunExample("stream_tokens");
  ASSERT_EQ(run.exit_code, 0) << Describe(run);
  const std::vector<json::value> lines = JsonLines(run);

  // The words come from the example's own test_input.json, so the test follows it if it changes.
  std::ifstream file(ExampleDir("stream_tokens") / "test_input.json");
  const std::string contents{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  const json::value request = json::parse(contents);
  std::vector<std::string> words;
  std::istringstream text(std::string(request.at("input").at("text").as_string()));
  for (std::string word; text >> word;) words.push_back(word);
  ASSERT_EQ(words.size(), 3u) << "the example's test_input.json should stream three words";

  ASSERT_EQ(lines.size(), words.size() + 1) << Describe(run);
  json::array chunks;
  for (std::size_t i = 0; i < words.size(); ++i) {
    json::object chunk{{"token", words[i]}, {"index", static_cast<std::int64_t>(i)}};
    EXPECT_EQ(lines[i], (json::object{{"output", chunk}})) << "line " << i;
    chunks.push_back(std::move(chunk));
  }
  EXPECT_EQ(lines.back(), (json::object{{"output", chunks}}));
}

// ---------------------------------------------------------------------------------------------
// Command-line input and flags

TEST(Examples, EchoPrintsExactlyTheResultOfTestInputFlag) {
  const RunResult run = RunExample("echo", {"--test_input", R"({"input":{"x":1}})"});
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_EQ(run.out, "{\"output\":{\"x\":1}}\n");
}

TEST(Examples, IoThreadsRunsWithTenConcurrentSlots) {
  const RunResult run =
      RunExample("io_threads", {"--concurrency", "10", "--test_input", R"({"input":{"seconds":0.1}})"});
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  const std::vector<json::value> lines = JsonLines(run);
  ASSERT_FALSE(lines.empty()) << Describe(run);
  EXPECT_EQ(lines.back(), json::parse(R"({"output":{"slept":0.1}})"));
}

TEST(Examples, BadInputTypeFailsWithRunpodShapedError) {
  const RunResult run = RunExample("io_threads", {"--test_input", R"({"input":{"seconds":"soon"}})"});
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  const std::vector<json::value> lines = JsonLines(run);
  ASSERT_EQ(lines.size(), 1u) << Describe(run);
  ASSERT_TRUE(lines[0].is_object()) << run.out;
  const json::object& line = lines[0].get_object();
  ASSERT_EQ(line.size(), 1u) << run.out;
  const json::value* error = line.if_contains("error");
  ASSERT_TRUE(error != nullptr && error->is_string()) << run.out;

  // As in runpod-python, `error` is a string that holds a JSON object, keys in this order.
  const json::value report = json::parse(error->get_string());
  ASSERT_TRUE(report.is_object()) << *error;
  std::vector<std::string> keys;
  for (const auto& member : report.get_object()) keys.emplace_back(member.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"error_type", "error_message", "error_traceback", "hostname",
                                            "worker_id", "runpod_version"}));
  EXPECT_EQ(report.at("error_type"), "std::invalid_argument");
  EXPECT_NE(std::string_view(report.at("error_message").as_string()).find("seconds"), std::string_view::npos)
      << "the message should name the bad field: " << report.at("error_message");
}

TEST(Examples, RequestWithoutInputIsRejected) {
  const RunResult run = RunExample("echo", {"--test_input", R"({"nope":1})"});
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  EXPECT_NE(run.err.find("Job has no input parameter"), std::string::npos) << Describe(run);
}

TEST(Examples, MalformedJsonIsReportedWithItsPosition) {
  const RunResult run = RunExample("echo", {"--test_input", R"({"input": })"});
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  EXPECT_NE(run.err.find("not valid JSON"), std::string::npos) << Describe(run);
  EXPECT_NE(run.err.find("line 1, column"), std::string::npos) << Describe(run);
}

TEST(Examples, MissingTestInputFileFails) {
  // A fresh directory, so neither this checkout nor an earlier run can leave a test_input.json there.
  std::string pattern = (fs::temp_directory_path() / "sluice-examples-XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
  const fs::path empty_dir(pattern);
  const RunResult run = RunProgram(BinaryPath("echo"), {}, empty_dir);
  std::error_code ignored;
  fs::remove_all(empty_dir, ignored);

  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  EXPECT_NE(run.err.find("test_input.json not found"), std::string::npos) << Describe(run);
}

TEST(Examples, SigintCancelsTheJobAndExitsZeroAsRunpodDoes) {
  const auto start = std::chrono::steady_clock::now();
  const RunResult run = RunProgram(BinaryPath("concurrent_handler"),
                                   {"--test_input", R"({"input":{"delay":30}})"},
                                   ExampleDir("concurrent_handler"), std::regex("local_test \\| Started\\."));
  ASSERT_FALSE(run.timed_out) << Describe(run);
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "the 30 s job was not cancelled";
  EXPECT_EQ(FinalResult(run), json::object{}) << Describe(run);
  EXPECT_NE(run.err.find("SIGINT received. Shutting down."), std::string::npos) << Describe(run);
  EXPECT_NE(run.err.find("local_test | Job cancelled."), std::string::npos) << Describe(run);
}

TEST(Examples, ATimedOutJobPrintsItsErrorAndExitsOne) {
  const RunResult run =
      RunExample("io_threads", {"--execution-timeout", "0.2", "--test_input", R"({"input":{"seconds":30}})"});
  ASSERT_FALSE(run.timed_out) << Describe(run);
  EXPECT_EQ(run.exit_code, 1) << Describe(run);
  const std::vector<json::value> lines = JsonLines(run);
  ASSERT_EQ(lines.size(), 1u) << Describe(run);
  EXPECT_EQ(lines[0], json::parse(R"({"error":"job timed out: execution timeout of 200 ms exceeded"})"))
      << Describe(run);
}

TEST(Examples, UnknownFlagIsAUsageError) {
  const RunResult run = RunExample("echo", {"--bogus"});
  EXPECT_EQ(run.exit_code, 2) << Describe(run);
  EXPECT_NE(run.err.find("--bogus"), std::string::npos) << Describe(run);
}

TEST(Examples, HelpListsTheFlags) {
  const RunResult run = RunExample("echo", {"--help"});
  EXPECT_EQ(run.exit_code, 0) << Describe(run);
  EXPECT_NE(run.out.find("--concurrency"), std::string::npos) << Describe(run);
  EXPECT_NE(run.out.find("--rp_serve_api"), std::string::npos) << Describe(run);
}

// ---------------------------------------------------------------------------------------------
// Logs

TEST(Examples, EveryJobLogLineCarriesTheJobId) {
  const RunResult run = RunExample("echo");
  ASSERT_EQ(run.exit_code, 0) << Describe(run);

  // The only lines about the worker rather than the job: startup, where the input came from, exit.
  const std::vector<std::string_view> worker_messages{"--- Starting Serverless Worker",
                                                      "Using test_input.json as job input.",
                                                      "Using --test_input as job input.",
                                                      "Local testing complete"};
  bool saw_started = false;
  bool saw_completed = false;
  for (const std::string& line : Lines(run.err)) {
    // Text format: "LEVEL  | job id | message", or "LEVEL  | message" without a job.
    const std::size_t bar = line.find("| ");
    ASSERT_NE(bar, std::string::npos) << "not a log line: " << line;
    const std::string_view rest = std::string_view(line).substr(bar + 2);
    bool about_worker = false;
    for (std::string_view message : worker_messages) about_worker = about_worker || rest.starts_with(message);
    if (about_worker) continue;
    EXPECT_TRUE(rest.starts_with("local_test | ")) << "job log line without the job id: " << line;
    saw_started = saw_started || rest == "local_test | Started.";
    saw_completed = saw_completed || rest.find("completed successfully") != std::string_view::npos;
  }
  EXPECT_TRUE(saw_started) << run.err;
  EXPECT_TRUE(saw_completed) << run.err;
}

}  // namespace
