// sluice — the command-line program beside the workers (build/bin/sluice). Its subcommands run
// what is not a user's handler:
//
//   sluice gateway --queue redis://HOST:PORT/DB [--rp_api_host H] [--rp_api_port P] ...
//       serves RunPod's job API over a Redis queue (runtime/gateway_mode.hpp, docs/scale-out.md)
//   sluice --help | --version
//
// The subcommand is argv[1]; its flags are parsed by cli::ParseCommandLine, as a worker's are,
// with the same names, environment variables and exit codes (2 for a usage error).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>
#include <variant>

#include <sluice/version.hpp>

#include "cli/options.hpp"
#include "log/logging.hpp"
#include "runtime/gateway_mode.hpp"

namespace {

constexpr const char* kUsage =
    "Usage: sluice COMMAND [FLAGS]\n"
    "\n"
    "Commands:\n"
    "  gateway    serve RunPod's job API over a Redis queue, with no handler of its own; workers\n"
    "             started with --queue on the same queue run the jobs\n"
    "             (sluice gateway --queue redis://HOST:PORT/DB --rp_api_host H --rp_api_port P)\n"
    "\n"
    "  sluice COMMAND --help lists the command's flags; sluice --version prints the version.\n";

int Gateway(int argc, char** argv) {
  // The subcommand stands where a program name would: the parser skips argv[0].
  auto parsed = sluice::cli::ParseCommandLine(argc - 1, argv + 1, sluice::cli::Program::kGateway);
  if (auto* exit_now = std::get_if<sluice::cli::ExitNow>(&parsed)) {
    std::fputs(exit_now->text.c_str(), exit_now->code == 0 ? stdout : stderr);
    return exit_now->code;
  }
  const auto& options = std::get<sluice::cli::WorkerOptions>(parsed);
  sluice::log::Configure(options.log_level, options.log_format);
  sluice::log::Info("", "--- Starting sluice gateway |  Version sluice {} ---", sluice::kVersion);
  try {
    return sluice::runtime::RunGateway(options);
  } catch (const std::exception& error) {
    sluice::log::Error("", "Uncaught exception | {}", error.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view command = argc > 1 ? argv[1] : "";
  if (command == "gateway") return Gateway(argc, argv);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "--version") {
    std::printf("sluice %s\n", sluice::kVersion);
    return 0;
  }
  if (command.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::fprintf(stderr, "error: unknown command '%s'\n\n%s", argv[1], kUsage);
  return 2;
}
