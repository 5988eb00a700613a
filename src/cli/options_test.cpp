#include "cli/options.hpp"

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::cli {
namespace {

// Parses `args` (without the program name) with a clean environment for the variables sluice
// reads, restoring nothing: tests that set variables unset them themselves.
std::variant<WorkerOptions, ExitNow> Parse(std::vector<std::string> args) {
  for (const char* name : {"RUNPOD_LOG_LEVEL", "RUNPOD_DEBUG_LEVEL", "SLUICE_CONCURRENCY",
                           "SLUICE_TEST_INPUT", "SLUICE_RP_API_PORT", "SLUICE_QUEUE"}) {
    unsetenv(name);
  }
  args.insert(args.begin(), "worker");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

WorkerOptions ParseOk(std::vector<std::string> args) {
  auto parsed = Parse(std::move(args));
  if (auto* exit_now = std::get_if<ExitNow>(&parsed)) {
    ADD_FAILURE() << "unexpected exit " << exit_now->code << ": " << exit_now->text;
    return {};
  }
  return std::get<WorkerOptions>(parsed);
}

ExitNow ParseExit(std::vector<std::string> args) {
  auto parsed = Parse(std::move(args));
  if (auto* exit_now = std::get_if<ExitNow>(&parsed)) return *exit_now;
  ADD_FAILURE() << "expected the parser to exit";
  return {};
}

TEST(Options, RunpodDefaults) {
  const WorkerOptions options = ParseOk({});
  EXPECT_EQ(options.log_level, log::Level::kDebug);
  EXPECT_FALSE(options.debugger);
  EXPECT_FALSE(options.serve_api);
  EXPECT_EQ(options.api_port, 8000);
  EXPECT_EQ(options.api_concurrency, 1);
  EXPECT_EQ(options.api_host, "localhost");
  EXPECT_FALSE(options.test_input.has_value());
  EXPECT_EQ(options.concurrency, 1);
  EXPECT_EQ(options.max_concurrency, 1000);
  EXPECT_DOUBLE_EQ(options.result_ttl, 1800);
  EXPECT_FALSE(options.max_body_bytes.has_value());
}

TEST(Options, EveryRunpodFlag) {
  const WorkerOptions options =
      ParseOk({"--rp_log_level", "warn", "--rp_debugger", "--rp_serve_api", "--rp_api_port", "0",
               "--rp_api_concurrency", "4", "--rp_api_host", "127.0.0.1", "--test_input",
               R"({"input":{}})"});
  EXPECT_EQ(options.log_level, log::Level::kWarn);
  EXPECT_TRUE(options.debugger);
  EXPECT_TRUE(options.serve_api);
  EXPECT_EQ(options.api_port, 0);
  EXPECT_EQ(options.api_concurrency, 4);
  EXPECT_EQ(options.api_host, "127.0.0.1");
  EXPECT_EQ(options.test_input, R"({"input":{}})");
}

TEST(Options, SluiceFlagsWithDecimalSeconds) {
  const WorkerOptions options =
      ParseOk({"--concurrency", "10", "--max-concurrency", "50", "--result-ttl", "0.5",
               "--drain-timeout", "2.5", "--log-format", "json", "--max-body-bytes", "1024",
               "--queue", "redis://127.0.0.1:6379/0", "--auth-token", "secret"});
  EXPECT_EQ(options.concurrency, 10);
  EXPECT_EQ(options.max_concurrency, 50);
  EXPECT_DOUBLE_EQ(options.result_ttl, 0.5);
  EXPECT_DOUBLE_EQ(options.drain_timeout, 2.5);
  EXPECT_EQ(options.log_format, log::Format::kJson);
  EXPECT_EQ(options.max_body_bytes, 1024u);
  EXPECT_EQ(options.queue, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(options.auth_token, "secret");
}

TEST(Options, EnvironmentVariablesAndTheCommandLineWins) {
  setenv("SLUICE_CONCURRENCY", "7", 1);
  std::vector<const char*> argv = {"worker"};
  auto from_env = ParseCommandLine(1, argv.data());
  ASSERT_TRUE(std::holds_alternative<WorkerOptions>(from_env));
  EXPECT_EQ(std::get<WorkerOptions>(from_env).concurrency, 7);
  argv = {"worker", "--concurrency", "3"};
  auto from_flag = ParseCommandLine(3, argv.data());
  EXPECT_EQ(std::get<WorkerOptions>(from_flag).concurrency, 3);
  unsetenv("SLUICE_CONCURRENCY");
}

TEST(Options, LogLevelFallsBackToRunpodVariables) {
  setenv("RUNPOD_DEBUG_LEVEL", "ERROR", 1);
  std::vector<const char*> argv = {"worker"};
  EXPECT_EQ(std::get<WorkerOptions>(ParseCommandLine(1, argv.data())).log_level, log::Level::kError);
  setenv("RUNPOD_LOG_LEVEL", "info", 1);
  EXPECT_EQ(std::get<WorkerOptions>(ParseCommandLine(1, argv.data())).log_level, log::Level::kInfo);
  unsetenv("RUNPOD_LOG_LEVEL");
  unsetenv("RUNPOD_DEBUG_LEVEL");
}

TEST(Options, UnknownFlagIsAnErrorThatNamesIt) {
  const ExitNow exit_now = ParseExit({"--bogus"});
  EXPECT_EQ(exit_now.code, 2);
  EXPECT_NE(exit_now.text.find("--bogus"), std::string::npos) << exit_now.text;
}

TEST(Options, BadValuesAreErrorsThatNameTheFlag) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--rp_log_level", "LOUD"},
           {"--rp_api_port", "70000"},
           {"--concurrency", "0"},
           {"--concurrency", "many"},
           {"--log-format", "xml"},
           {"--result-ttl", "-1"},
           {"--concurrency", "20", "--max-concurrency", "10"}}) {
    const ExitNow exit_now = ParseExit(args);
    EXPECT_EQ(exit_now.code, 2) << args[0];
    EXPECT_NE(exit_now.text.find(args[0]), std::string::npos) << exit_now.text;
  }
}

TEST(Options, HelpListsEveryFlagWithItsVariable) {
  const ExitNow exit_now = ParseExit({"--help"});
  EXPECT_EQ(exit_now.code, 0);
  for (const char* flag :
       {"--rp_log_level", "--rp_debugger", "--rp_serve_api", "--rp_api_port", "--rp_api_concurrency",
        "--rp_api_host", "--test_input", "--concurrency", "--max-concurrency", "--queue",
        "--max-queue", "--result-ttl", "--auth-token", "--log-format", "--drain-timeout",
        "--execution-timeout", "--visibility-timeout", "--max-deliveries", "--max-body-bytes",
        "SLUICE_CONCURRENCY"}) {
    EXPECT_NE(exit_now.text.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace sluice::cli
