// bench/bench_programs.hpp — what the stand-alone benchmark programs (runpod_bench,
// scale_out_bench) share: reading their knobs from the environment, finding the programs they
// start beside themselves in build/bin, measuring CPU time and printing figures. Header-only.
#pragma once

#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>

#include <fmt/format.h>

namespace sluice::bench {

/// A whole number above 0 (an environment knob such as BENCH_SCALE_JOBS); none otherwise.
inline std::optional<std::size_t> PositiveNumber(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (*end != '\0' || value == 0) return std::nullopt;
  return static_cast<std::size_t>(value);
}

/// The directory this program runs from (build/bin), where the programs it starts are.
inline std::filesystem::path BinDir() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::filesystem::path("build/bin") : self.parent_path();
}

/// `value` rounded, with thousands separated by commas (12,345).
inline std::string Grouped(double value) {
  const std::string digits = fmt::format("{:.0f}", value);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

/// The calling thread's CPU time, in seconds.
inline double ThreadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

/// User + system CPU of a process or thread from its stat file (/proc/PID/stat or
/// /proc/self/task/TID/stat: fields 14 and 15, in clock ticks); none when it cannot be read.
inline std::optional<double> StatCpuSeconds(const std::string& stat_path) {
  std::ifstream file(stat_path);
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const std::size_t name_end = text.rfind(')');  // the command name may hold spaces
  if (name_end == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int index = 3; fields >> field; ++index) {  // the first field after the name is the 3rd
    if (index == 14) utime = std::stoull(field);
    if (index == 15) {
      stime = std::stoull(field);
      return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return std::nullopt;
}

}  // namespace sluice::bench
