#include "api/metrics.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::api {
namespace {

// The cumulative count of the bucket whose upper bound is `le`.
std::uint64_t CountAtMost(const HistogramSnapshot& snapshot, double le) {
  for (const HistogramSnapshot::Bucket& bucket : snapshot.buckets) {
    if (bucket.upper_bound == le) return bucket.cumulative_count;
  }
  ADD_FAILURE() << "no bucket le=" << le;
  return 0;
}

TEST(Histogram, HasTheJobDurationBucketsAndInf) {
  const HistogramSnapshot snapshot = Histogram().Snapshot();
  const std::vector<double> expected = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,   5,    10,    30,   60,  300};
  ASSERT_EQ(snapshot.buckets.size(), expected.size() + 1);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(snapshot.buckets[i].upper_bound, expected[i]);
    EXPECT_EQ(snapshot.buckets[i].cumulative_count, 0u);
  }
  EXPECT_TRUE(std::isinf(snapshot.buckets.back().upper_bound));
  EXPECT_EQ(snapshot.count, 0u);
  EXPECT_EQ(snapshot.sum, 0.0);
}

TEST(Histogram, CountsAreCumulativeAndBoundsInclusive) {
  Histogram histogram;
  histogram.Observe(0.001);  // exactly on a bound: counted in it ("le")
  histogram.Observe(0.0011);
  histogram.Observe(0.5);
  histogram.Observe(42);
  histogram.Observe(1000);  // above every finite bound
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_EQ(CountAtMost(snapshot, 0.001), 1u);
  EXPECT_EQ(CountAtMost(snapshot, 0.005), 2u);
  EXPECT_EQ(CountAtMost(snapshot, 0.25), 2u);
  EXPECT_EQ(CountAtMost(snapshot, 0.5), 3u);
  EXPECT_EQ(CountAtMost(snapshot, 30), 3u);
  EXPECT_EQ(CountAtMost(snapshot, 60), 4u);
  EXPECT_EQ(CountAtMost(snapshot, 300), 4u);
  EXPECT_EQ(snapshot.buckets.back().cumulative_count, 5u);
  EXPECT_EQ(snapshot.count, 5u);
  EXPECT_DOUBLE_EQ(snapshot.sum, 0.001 + 0.0011 + 0.5 + 42 + 1000);
}

TEST(Histogram, NegativeCountsAsZeroAndNanIsIgnored) {
  Histogram histogram;
  histogram.Observe(-3);
  histogram.Observe(std::numeric_limits<double>::quiet_NaN());
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_EQ(CountAtMost(snapshot, 0.001), 1u);
  EXPECT_EQ(snapshot.count, 1u);
  EXPECT_EQ(snapshot.sum, 0.0);
}

TEST(Histogram, ConcurrentObservationsAreAllCounted) {
  Histogram histogram;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&histogram, t] {
      // 0.5 and 2 are exact in binary, so the sum is exact whatever the order.
      for (int i = 0; i < kPerThread; ++i) histogram.Observe(t % 2 == 0 ? 0.5 : 2.0);
    });
  }
  // Snapshots taken meanwhile always agree with themselves.
  for (int i = 0; i < 100; ++i) {
    const HistogramSnapshot snapshot = histogram.Snapshot();
    EXPECT_EQ(snapshot.count, snapshot.buckets.back().cumulative_count);
    EXPECT_LE(CountAtMost(snapshot, 0.5), CountAtMost(snapshot, 2.5));
  }
  for (std::thread& thread : threads) thread.join();
  const HistogramSnapshot snapshot = histogram.Snapshot();
  EXPECT_EQ(snapshot.count, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(CountAtMost(snapshot, 0.5), static_cast<std::uint64_t>(kThreads / 2 * kPerThread));
  EXPECT_EQ(snapshot.sum, kThreads / 2 * kPerThread * (0.5 + 2.0));
}

TEST(PrometheusText, CounterWithLabels) {
  PrometheusText text;
  text.Counter("sluice_jobs_total", "Jobs that ended, by terminal status.", 12,
               {{"status", "COMPLETED"}});
  text.Counter("sluice_jobs_total", "Jobs that ended, by terminal status.", 0,
               {{"status", "FAILED"}});
  text.Counter("sluice_webhooks_total", "Webhook deliveries.", 1234567,
               {{"result", "delivered"}, {"endpoint", "ep-1"}});
  EXPECT_EQ(text.str(),
            "# HELP sluice_jobs_total Jobs that ended, by terminal status.\n"
            "# TYPE sluice_jobs_total counter\n"
            "sluice_jobs_total{status=\"COMPLETED\"} 12\n"
            "sluice_jobs_total{status=\"FAILED\"} 0\n"
            "# HELP sluice_webhooks_total Webhook deliveries.\n"
            "# TYPE sluice_webhooks_total counter\n"
            "sluice_webhooks_total{result=\"delivered\",endpoint=\"ep-1\"} 1234567\n");
}

TEST(PrometheusText, Gauge) {
  PrometheusText text;
  text.Gauge("sluice_queue_depth", "Jobs waiting.", 7);
  text.Gauge("sluice_load", "", 0.25);
  EXPECT_EQ(text.str(),
            "# HELP sluice_queue_depth Jobs waiting.\n"
            "# TYPE sluice_queue_depth gauge\n"
            "sluice_queue_depth 7\n"
            "# TYPE sluice_load gauge\n"  // no help, no HELP line
            "sluice_load 0.25\n");
}

TEST(PrometheusText, Histogram) {
  Histogram histogram;
  // Binary fractions, so that the sum prints exactly.
  histogram.Observe(0.0009765625);
  histogram.Observe(0.25);
  histogram.Observe(0.5);
  histogram.Observe(2);
  histogram.Observe(1000);
  PrometheusText text;
  text.Histogram("sluice_job_execution_seconds", "Start to end.", histogram.Snapshot());
  EXPECT_EQ(text.str(),
            "# HELP sluice_job_execution_seconds Start to end.\n"
            "# TYPE sluice_job_execution_seconds histogram\n"
            "sluice_job_execution_seconds_bucket{le=\"0.001\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.005\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.01\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.025\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.05\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.1\"} 1\n"
            "sluice_job_execution_seconds_bucket{le=\"0.25\"} 2\n"
            "sluice_job_execution_seconds_bucket{le=\"0.5\"} 3\n"
            "sluice_job_execution_seconds_bucket{le=\"1\"} 3\n"
            "sluice_job_execution_seconds_bucket{le=\"2.5\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"5\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"10\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"30\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"60\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"300\"} 4\n"
            "sluice_job_execution_seconds_bucket{le=\"+Inf\"} 5\n"
            "sluice_job_execution_seconds_sum 1002.7509765625\n"
            "sluice_job_execution_seconds_count 5\n");
}

TEST(PrometheusText, HistogramLabelsComeBeforeLe) {
  Histogram histogram;
  histogram.Observe(0.002);
  PrometheusText text;
  text.Histogram("d_seconds", "D.", histogram.Snapshot(), {{"queue", "a\"b"}});
  const std::string out = text.str();
  EXPECT_NE(out.find("d_seconds_bucket{queue=\"a\\\"b\",le=\"0.001\"} 0\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("d_seconds_bucket{queue=\"a\\\"b\",le=\"+Inf\"} 1\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("d_seconds_sum{queue=\"a\\\"b\"} 0.002\n"), std::string::npos) << out;
  EXPECT_NE(out.find("d_seconds_count{queue=\"a\\\"b\"} 1\n"), std::string::npos) << out;
}

TEST(PrometheusText, EscapesLabelValuesAndHelp) {
  PrometheusText text;
  text.Counter("c_total", "Help with a \\ backslash,\na newline and \"quotes\".", 1,
               {{"path", "C:\\dir\\"}, {"quote", "say \"hi\""}, {"lines", "one\ntwo"}});
  EXPECT_EQ(text.str(),
            "# HELP c_total Help with a \\\\ backslash,\\na newline and \"quotes\".\n"
            "# TYPE c_total counter\n"
            "c_total{path=\"C:\\\\dir\\\\\",quote=\"say \\\"hi\\\"\",lines=\"one\\ntwo\"} 1\n");
  EXPECT_EQ(PrometheusText::EscapeLabelValue("plain"), "plain");
}

TEST(PrometheusText, FamiliesStayTogetherWhateverTheCallOrder) {
  PrometheusText text;
  text.Counter("a_total", "A.", 1, {{"k", "1"}});
  text.Gauge("b", "B.", 2);
  text.Counter("a_total", "A.", 3, {{"k", "2"}});
  EXPECT_EQ(text.str(),
            "# HELP a_total A.\n"
            "# TYPE a_total counter\n"
            "a_total{k=\"1\"} 1\n"
            "a_total{k=\"2\"} 3\n"
            "# HELP b B.\n"
            "# TYPE b gauge\n"
            "b 2\n");
}

TEST(PrometheusText, FormatsNumbersAsPrometheusClientsDo) {
  EXPECT_EQ(PrometheusText::FormatValue(0.005), "0.005");
  EXPECT_EQ(PrometheusText::FormatValue(1), "1");
  EXPECT_EQ(PrometheusText::FormatValue(2.5), "2.5");
  EXPECT_EQ(PrometheusText::FormatValue(300), "300");
  EXPECT_EQ(PrometheusText::FormatValue(0), "0");
  EXPECT_EQ(PrometheusText::FormatValue(-0.0), "0");
  EXPECT_EQ(PrometheusText::FormatValue(-1.5), "-1.5");
  EXPECT_EQ(PrometheusText::FormatValue(0.1 + 0.2), "0.30000000000000004");  // round-trips
  EXPECT_EQ(PrometheusText::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(PrometheusText::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(PrometheusText::FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(PrometheusText, EmptyWhenNothingWasWritten) { EXPECT_EQ(PrometheusText().str(), ""); }

}  // namespace
}  // namespace sluice::api
