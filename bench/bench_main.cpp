// bench/bench_main.cpp — the main program of sluice_bench: runs the registered benchmarks with the
// usual console output, then prints every registered comparison (bench_common.hpp) as a table of
// "benchmark, value, reference, reference value, ratio", where ratio = value / reference value.

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

namespace sluice::bench {

std::string JobId(std::size_t index) {
  char id[48];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012zu", index);
  return id;
}

std::size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size_pages = 0, resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

std::size_t HeapBytesInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

void TrimHeap() { malloc_trim(0); }

namespace {

// Forwards to the display reporter the command line asks for (console by default, honouring
// --benchmark_format and --benchmark_color) and records each run's counters for the summary.
class SummaryReporter : public benchmark::BenchmarkReporter {
 public:
  struct Result {
    std::string full_name;
    benchmark::UserCounters counters;
    bool from_aggregate = false;
    std::string error;
  };

  explicit SummaryReporter(benchmark::BenchmarkReporter* display) : display_(display) {}

  bool ReportContext(const Context& context) override { return display_->ReportContext(context); }
  void Finalize() override { display_->Finalize(); }

  void ReportRuns(const std::vector<Run>& reports) override {
    display_->ReportRuns(reports);
    for (const Run& run : reports) {
      const std::string name = run.run_name.str();
      Result& result = results_[name];
      if (run.error_occurred) {
        result.full_name = name;
        result.error = run.error_message;
        continue;
      }
      if (run.run_type == Run::RT_Aggregate) {
        // With repetitions, the median of the repetitions stands for the run.
        if (run.aggregate_name != "median") continue;
        result.from_aggregate = true;
      } else if (result.from_aggregate) {
        continue;
      }
      result.full_name = name;
      result.counters = run.counters;
    }
  }

  // The result whose run name is `prefix` or begins with `prefix` followed by '/'.
  const Result* Find(std::string_view prefix) const {
    for (const auto& [name, result] : results_) {
      if (name == prefix || (name.size() > prefix.size() && name.starts_with(prefix) &&
                             name[prefix.size()] == '/')) {
        return &result;
      }
    }
    return nullptr;
  }

 private:
  benchmark::BenchmarkReporter* display_;  // owned by the benchmark library
  std::map<std::string, Result> results_;
};

void PrintSummary(const SummaryReporter& reporter) {
  const std::vector<Comparison>& comparisons = Comparisons();
  if (comparisons.empty()) return;
  std::printf("\nSummary: every figure as a ratio to its reference, measured in this run\n");
  std::printf("%-30s %-10s %10s  %-44s %10s %7s\n", "benchmark", "unit", "value", "reference",
              "ref. value", "ratio");
  std::printf("%s\n", std::string(118, '-').c_str());
  for (const Comparison& comparison : comparisons) {
    const SummaryReporter::Result* subject = reporter.Find(comparison.subject);
    const SummaryReporter::Result* reference = reporter.Find(comparison.reference);
    if (subject == nullptr) continue;  // filtered out with --benchmark_filter
    auto value_of = [&](const SummaryReporter::Result* result, double* value) {
      if (result == nullptr || !result->error.empty()) return false;
      auto it = result->counters.find(comparison.counter);
      if (it == result->counters.end()) return false;
      *value = it->second.value;
      return true;
    };
    double value = 0, reference_value = 0;
    const bool has_value = value_of(subject, &value);
    const bool has_reference = value_of(reference, &reference_value);
    char value_text[32] = "n/a", reference_text[32] = "n/a", ratio_text[32] = "n/a";
    if (has_value) std::snprintf(value_text, sizeof value_text, "%.0f", value);
    if (has_reference) std::snprintf(reference_text, sizeof reference_text, "%.0f", reference_value);
    if (has_value && has_reference && reference_value != 0) {
      std::snprintf(ratio_text, sizeof ratio_text, "%.3f", value / reference_value);
    }
    std::printf("%-30s %-10s %10s  %-44s %10s %7s", comparison.subject.c_str(),
                comparison.unit.c_str(), value_text, comparison.reference.c_str(), reference_text,
                ratio_text);
    if (!subject->error.empty()) std::printf("  (error: %s)", subject->error.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  sluice::bench::SummaryReporter reporter(benchmark::CreateDefaultDisplayReporter());
  benchmark::RunSpecifiedBenchmarks(&reporter);
  sluice::bench::PrintSummary(reporter);
  benchmark::Shutdown();
  return 0;
}
