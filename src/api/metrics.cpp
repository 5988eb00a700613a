#include "api/metrics.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace sluice::api {
namespace {

// `# HELP` text escapes only backslash and newline; a double quote stays as it is.
std::string EscapeHelp(std::string_view help) {
  std::string escaped;
  escaped.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

// `{a="x",b="y"}`, or nothing when there are no labels.
void AppendLabels(std::string& out, const std::vector<Label>& labels) {
  if (labels.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    out += labels[i].name;
    out += "=\"";
    out += PrometheusText::EscapeLabelValue(labels[i].value);
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, const std::vector<Label>& labels,
                  double value) {
  out += name;
  AppendLabels(out, labels);
  out += ' ';
  out += PrometheusText::FormatValue(value);
  out += '\n';
}

}  // namespace

void Histogram::Observe(double seconds) noexcept {
  if (std::isnan(seconds)) return;
  seconds = std::max(seconds, 0.0);
  // The first bound >= seconds: buckets are inclusive ("le"). Past the last bound: +Inf.
  const auto bound = std::lower_bound(kUpperBounds.begin(), kUpperBounds.end(), seconds);
  const auto index = static_cast<std::size_t>(bound - kUpperBounds.begin());
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(seconds, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot snapshot;
  snapshot.buckets.reserve(counts_.size());
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const double upper_bound =
        i < kUpperBounds.size() ? kUpperBounds[i] : std::numeric_limits<double>::infinity();
    snapshot.buckets.push_back(HistogramSnapshot::Bucket{upper_bound, cumulative});
  }
  snapshot.count = cumulative;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

// ---------------------------------------------------------------------------------------------

std::string PrometheusText::FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0) return "0";  // -0 included
  // fmt's default is the shortest text that parses back to the same double.
  return fmt::format("{}", value);
}

std::string PrometheusText::EscapeLabelValue(std::string_view value) {
  std::string escaped;
  escaped.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '"') {
      escaped += "\\\"";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return escaped;
}

PrometheusText::Family& PrometheusText::FamilyFor(std::string_view name, std::string_view help,
                                                  std::string_view type) {
  for (Family& family : families_) {
    if (family.name == name) {
      assert(family.type == type && "one metric family written with two types");
      return family;
    }
  }
  families_.push_back(Family{std::string(name), std::string(help), type, {}});
  return families_.back();
}

void PrometheusText::Counter(std::string_view name, std::string_view help, double value,
                             const std::vector<Label>& labels) {
  AppendSample(FamilyFor(name, help, "counter").samples, name, labels, value);
}

void PrometheusText::Gauge(std::string_view name, std::string_view help, double value,
                           const std::vector<Label>& labels) {
  AppendSample(FamilyFor(name, help, "gauge").samples, name, labels, value);
}

void PrometheusText::Histogram(std::string_view name, std::string_view help,
                               const HistogramSnapshot& snapshot,
                               const std::vector<Label>& labels) {
  std::string& out = FamilyFor(name, help, "histogram").samples;
  const std::string bucket_name = fmt::format("{}_bucket", name);
  std::vector<Label> bucket_labels = labels;
  bucket_labels.push_back(Label{"le", ""});
  for (const HistogramSnapshot::Bucket& bucket : snapshot.buckets) {
    bucket_labels.back().value = FormatValue(bucket.upper_bound);
    AppendSample(out, bucket_name, bucket_labels, static_cast<double>(bucket.cumulative_count));
  }
  AppendSample(out, fmt::format("{}_sum", name), labels, snapshot.sum);
  AppendSample(out, fmt::format("{}_count", name), labels, static_cast<double>(snapshot.count));
}

std::string PrometheusText::str() const {
  std::string text;
  for (const Family& family : families_) {
    if (!family.help.empty()) {
      text += fmt::format("# HELP {} {}\n", family.name, EscapeHelp(family.help));
    }
    text += fmt::format("# TYPE {} {}\n", family.name, family.type);
    text += family.samples;
  }
  return text;
}

}  // namespace sluice::api
