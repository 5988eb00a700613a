// api/metrics.hpp — what `GET /metrics` is made of (docs/job-api.md, "Metrics"): a histogram of
// job durations that any thread may feed, and a writer of Prometheus' text exposition format
// (version 0.0.4).
//
// Histogram: fixed buckets chosen for job delay and execution times, from 1 ms to 5 minutes. An
// observation is two relaxed atomic additions and no lock, because every job records two of them
// from whichever thread it ends on. Snapshot() reads the atomics one by one, so under concurrent
// observations it may miss the newest ones; its buckets and count always agree (count is the +Inf
// bucket, as Prometheus requires), while the sum may include an observation the buckets miss.
//
// PrometheusText: collects samples and renders them grouped by metric family, whatever the order
// of the calls: families in the order they were first written, each opened once by `# HELP` (left
// out when the help is empty) and `# TYPE`. Label values and help text are escaped as the format
// says (backslash, newline, and in label values the double quote). Numbers are the shortest text
// that reads back as the same double, in plain notation below 1e16 ("0.005", "1", "2.5",
// "1234567", where client_golang writes "1.234567e+06": parsers read both alike), and "+Inf",
// "-Inf", "NaN"; so `le` labels read exactly as Prometheus clients write them. Metric and label
// names are the caller's and are written as given; they must follow the format's name rules.
//
// Threads: Histogram is thread-safe. A PrometheusText is a plain value for one rendering, used by
// one thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::api {

/// The Content-Type of an answer in Prometheus' text format.
inline constexpr std::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

struct HistogramSnapshot {
  struct Bucket {
    double upper_bound;  // inclusive ("le"); the last is +Inf
    std::uint64_t cumulative_count;  // observations <= upper_bound
  };
  std::vector<Bucket> buckets;  // ascending, the +Inf bucket last
  std::uint64_t count = 0;  // equals the +Inf bucket's cumulative_count
  double sum = 0;
};

class Histogram {
 public:
  /// The finite upper bounds, in seconds; a +Inf bucket follows them.
  static constexpr std::array<double, 15> kUpperBounds = {
      0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

  Histogram() = default;
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  /// Records one duration. A negative value counts as 0 (a duration cannot be negative; a clock
  /// step or a subtraction in the wrong order can make one); NaN is ignored.
  void Observe(double seconds) noexcept;

  HistogramSnapshot Snapshot() const;

 private:
  // Per bucket, not cumulative: one increment per observation. The last is +Inf.
  std::array<std::atomic<std::uint64_t>, kUpperBounds.size() + 1> counts_{};
  std::atomic<double> sum_{0.0};
};

/// One label of a sample: name="value".
struct Label {
  std::string name;
  std::string value;
};

class PrometheusText {
 public:
  /// One sample of a counter family; call once per label set.
  void Counter(std::string_view name, std::string_view help, double value,
               const std::vector<Label>& labels = {});
  /// One sample of a gauge family; call once per label set.
  void Gauge(std::string_view name, std::string_view help, double value,
             const std::vector<Label>& labels = {});
  /// A histogram's `_bucket` (one per bucket, with `le` after the given labels), `_sum` and
  /// `_count` samples.
  void Histogram(std::string_view name, std::string_view help, const HistogramSnapshot& snapshot,
                 const std::vector<Label>& labels = {});

  /// The exposition text: families in first-written order, each ended by a newline.
  std::string str() const;

  /// How Prometheus clients write a number: "0.005", "1", "+Inf", "NaN".
  static std::string FormatValue(double value);
  /// A label value escaped for use between double quotes.
  static std::string EscapeLabelValue(std::string_view value);

 private:
  struct Family {
    std::string name;
    std::string help;
    std::string_view type;  // "counter", "gauge", "histogram"
    std::string samples;  // complete lines
  };

  // The family named `name`, created with `help` and `type` when new. A name written again with
  // another type is a programming error (asserted); its samples still go to the first family.
  Family& FamilyFor(std::string_view name, std::string_view help, std::string_view type);

  std::vector<Family> families_;
};

}  // namespace sluice::api
