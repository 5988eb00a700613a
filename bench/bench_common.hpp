// bench/bench_common.hpp — what the benchmark files of sluice_bench share.
//
// Every figure sluice_bench prints is also given as a ratio to a reference measured in the same
// run (the bare cost of the same work without sluice), so that results from different machines
// can be compared. A benchmark file declares each such pair with `RegisterComparison`; the main
// program (bench_main.cpp) collects the results and prints the summary table at the end.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace sluice::bench {

/// One line of the final summary: `subject` (a benchmark run name, or a prefix of one such as
/// "BM_Sluice_Coroutine/limit:8") compared with `reference` (the run name of the reference), on
/// the user counter `counter` (e.g. "items_per_second"). `unit` labels the column.
struct Comparison {
  std::string subject;
  std::string reference;
  std::string counter;
  std::string unit;
};

/// The comparisons, in registration order. Registration happens during static initialisation.
inline std::vector<Comparison>& Comparisons() {
  static std::vector<Comparison> comparisons;
  return comparisons;
}

inline bool RegisterComparison(Comparison comparison) {
  Comparisons().push_back(std::move(comparison));
  return true;
}

/// A job id shaped like the ids RunPod and the job API hand out (a 36-character UUID), so that
/// copying and hashing ids costs what it costs in production: "00000000-0000-4000-8000-<index>".
std::string JobId(std::size_t index);

/// Resident set size of this process, in bytes: resident pages from /proc/self/statm × page size.
std::size_t ResidentBytes();

/// Bytes the heap has handed out and not taken back (glibc mallinfo2: uordblks + hblkhd).
std::size_t HeapBytesInUse();

/// Returns free heap memory to the kernel (glibc malloc_trim), so that an RSS baseline taken right
/// after is not inflated by pages freed earlier, and later growth is really new memory.
void TrimHeap();

}  // namespace sluice::bench
