#include "cli/options.hpp"

#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::cli {
namespace {

// Parses `args` (without the program name) with a clean environment for the variables sluice
// reads, restoring nothing: tests that set variables unset them themselves.
std::variant<WorkerOptions, ExitNow> Parse(std::vector<std::string> args, Program program = Program::kWorker) {
  for (const char* name : {"RUNPOD_LOG_LEVEL", "RUNPOD_DEBUG_LEVEL", "SLUICE_CONCURRENCY",
                           "SLUICE_TEST_INPUT", "SLUICE_RP_API_PORT", "SLUICE_QUEUE",
                           "SLUICE_MAX_TAKE_BATCH", "SLUICE_QUEUE_NAME", "SLUICE_CONSUMER_NAME"}) {
    unsetenv(name);
  }
  args.insert(args.begin(), program == Program::kWorker ? "worker" : "gateway");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data(), program);
}

WorkerOptions ParseOk(std::vector<std::string> args, Program program = Program::kWorker) {
  auto parsed = Parse(std::move(args), program);
  if (auto* exit_now = std::get_if<ExitNow>(&parsed)) {
    ADD_FAILURE() << "unexpected exit " << exit_now->code << ": " << exit_now->text;
    return {};
  }
  return std::get<WorkerOptions>(parsed);
}

ExitNow ParseExit(std::vector<std::string> args, Program program = Program::kWorker) {
  auto parsed = Parse(std::move(args), program);
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
  EXPECT_EQ(options.max_take_batch, 64u);
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
               "--drain-timeout", "2.5", "--post-timeout", "0.25", "--log-format", "json", "--max-body-bytes", "1024",
               "--queue", "redis://127.0.0.1:6379/0", "--auth-token", "secret"});
  EXPECT_EQ(options.concurrency, 10);
  EXPECT_EQ(options.max_concurrency, 50);
  EXPECT_DOUBLE_EQ(options.result_ttl, 0.5);
  EXPECT_DOUBLE_EQ(options.drain_timeout, 2.5);
  EXPECT_DOUBLE_EQ(options.post_timeout, 0.25);
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

TEST(Options, MaxTakeBatchFromTheFlagOrItsVariable) {
  EXPECT_EQ(ParseOk({"--max-take-batch", "1"}).max_take_batch, 1u);
  EXPECT_EQ(ParseOk({"--max-take-batch", "500"}).max_take_batch, 500u);
  setenv("SLUICE_MAX_TAKE_BATCH", "8", 1);
  std::vector<const char*> argv = {"worker"};
  auto from_env = ParseCommandLine(1, argv.data());
  ASSERT_TRUE(std::holds_alternative<WorkerOptions>(from_env));
  EXPECT_EQ(std::get<WorkerOptions>(from_env).max_take_batch, 8u);
  argv = {"worker", "--max-take-batch", "2"};
  EXPECT_EQ(std::get<WorkerOptions>(ParseCommandLine(3, argv.data())).max_take_batch, 2u);
  unsetenv("SLUICE_MAX_TAKE_BATCH");
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
           {"--max-take-batch", "0"},
           {"--post-timeout", "0"},
           {"--visibility-timeout", "0"},
           {"--consumer-name", ""},
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
        "--execution-timeout", "--post-timeout", "--visibility-timeout", "--max-deliveries", "--max-body-bytes",
        "--max-take-batch", "--queue-name", "--consumer-name", "SLUICE_CONCURRENCY", "SLUICE_MAX_TAKE_BATCH",
        "SLUICE_QUEUE_NAME"}) {
    EXPECT_NE(exit_now.text.find(flag), std::string::npos) << flag;
  }
}

TEST(Options, QueueNameAndConsumerName) {
  const WorkerOptions defaults = ParseOk({"--queue", "redis://127.0.0.1/0"});
  EXPECT_EQ(defaults.queue_name, "default");
  EXPECT_EQ(defaults.consumer_name, "") << "empty: the worker takes host:pid";

  const WorkerOptions flags =
      ParseOk({"--queue", "redis://127.0.0.1/0", "--queue-name", "gpu-a100", "--consumer-name", "w1"});
  EXPECT_EQ(flags.queue_name, "gpu-a100");
  EXPECT_EQ(flags.consumer_name, "w1");
}

TEST(Options, QueueNameFromItsVariable) {
  std::vector<const char*> argv{"worker", "--queue", "redis://127.0.0.1/0"};
  setenv("SLUICE_QUEUE_NAME", "from-env", 1);
  auto parsed = ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  unsetenv("SLUICE_QUEUE_NAME");
  ASSERT_TRUE(std::holds_alternative<WorkerOptions>(parsed));
  EXPECT_EQ(std::get<WorkerOptions>(parsed).queue_name, "from-env");
}

TEST(Options, AMalformedQueueUrlIsAUsageErrorNamingTheFlagAndTheProblem) {
  const ExitNow scheme = ParseExit({"--queue", "http://127.0.0.1:6379"});
  EXPECT_EQ(scheme.code, 2);
  EXPECT_NE(scheme.text.find("--queue"), std::string::npos) << scheme.text;
  EXPECT_NE(scheme.text.find("scheme"), std::string::npos) << scheme.text;

  const ExitNow port = ParseExit({"--queue", "redis://:hunter2@127.0.0.1:70000"});
  EXPECT_EQ(port.code, 2);
  EXPECT_NE(port.text.find("port"), std::string::npos) << port.text;
  EXPECT_EQ(port.text.find("hunter2"), std::string::npos) << "the password is hidden: " << port.text;

  const ExitNow name = ParseExit({"--queue", "redis://127.0.0.1/0", "--queue-name", "a b"});
  EXPECT_EQ(name.code, 2);
  EXPECT_NE(name.text.find("--queue-name"), std::string::npos) << name.text;
}

TEST(Options, GatewayTakesTheJobApiAndQueueFlagsAndNeedsQueue) {
  const WorkerOptions options =
      ParseOk({"--queue", "redis://127.0.0.1:6380/2", "--rp_api_host", "0.0.0.0", "--rp_api_port", "0",
               "--rp_api_concurrency", "4", "--queue-name", "q", "--result-ttl", "60", "--max-queue", "5",
               "--auth-token", "t", "--max-body-bytes", "1000", "--log-format", "json", "--rp_log_level", "INFO"},
              Program::kGateway);
  EXPECT_EQ(options.queue, "redis://127.0.0.1:6380/2");
  EXPECT_EQ(options.api_host, "0.0.0.0");
  EXPECT_EQ(options.api_port, 0);
  EXPECT_EQ(options.api_concurrency, 4);
  EXPECT_EQ(options.queue_name, "q");
  EXPECT_DOUBLE_EQ(options.result_ttl, 60);
  EXPECT_EQ(options.max_queue, 5u);
  EXPECT_EQ(options.max_body_bytes, 1000u);

  const ExitNow missing = ParseExit({"--rp_api_port", "0"}, Program::kGateway);
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.text.find("--queue is required"), std::string::npos) << missing.text;

  // A gateway runs no handler: worker flags are errors, not silently ignored.
  for (const char* flag : {"--concurrency", "--test_input", "--visibility-timeout", "--consumer-name"}) {
    const ExitNow worker_flag = ParseExit({"--queue", "redis://127.0.0.1/0", flag, "1"}, Program::kGateway);
    EXPECT_EQ(worker_flag.code, 2) << flag;
    EXPECT_NE(worker_flag.text.find(flag), std::string::npos) << worker_flag.text;
  }

  const ExitNow help = ParseExit({"--help"}, Program::kGateway);
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.text.find("sluice gateway"), std::string::npos) << help.text;
  EXPECT_EQ(help.text.find("--rp_serve_api"), std::string::npos) << help.text;
}

}  // namespace
}  // namespace sluice::cli
