// bench/bench_programs.hpp — what the stand-alone benchmark programs (runpod_bench,
// scale_out_bench) share: reading their knobs from the environment and finding the programs they
// start beside themselves in build/bin. Header-only; pure but for /proc/self/exe.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <system_error>

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

}  // namespace sluice::bench
