// runpod/debugger.hpp — `--rp_debugger`: timings added to every result a RunPod production worker
// posts (runpod.md §1.5), so a user can see where a job's time went without a profiler.
//
// With the flag, a completed job's result gets `output.rp_debugger`:
//
//   {"system_info": {"os", "processor", "compiler", "sluice"},
//    "timestamps": [{"name", "start_utc", "stop_utc", "duration_ms"}, ...],
//    "ready_delay_ms": <float>}
//
// The checkpoints are, in order: `job_take` (the job-take request that brought the job, long-poll
// included), `queue` (taken → handler started: the wait for a free slot) and `handler` (the
// handler's own run). `ready_delay_ms` is how long the worker process took from its start to its
// first job-take: the cold start (model loading in `main` included), the same for every job.
// runpod-python reports the Python version and its own version where sluice reports the compiler
// and sluice's version.
//
// What sluice fixes: runpod-python raises when the output is not an object (a string, a list, a
// streaming handler's aggregate, an error), and that job's result is then never sent. sluice posts
// such a result unchanged, without timings, and says so once in the log.
//
// The adapters decorate the production mode's job source and result sink (LevelDB-style
// wrappers): the RunPod adapters know nothing of the debugger. Threads: `DebuggerJobSource::Take`
// is called as its inner source's is (one call at a time); `DebuggerResultSink`'s calls come from
// any thread, as the ResultSink contract says; `JobTimings` is thread-safe. The wrappers borrow
// the inner source or sink and the JobTimings, which outlive them.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/json/object.hpp>

#include "core/job_ports.hpp"

namespace sluice::runpod {

using WallClock = std::chrono::system_clock;

/// One named span of a job's life.
struct Checkpoint {
  std::string name;
  WallClock::time_point start;
  WallClock::time_point stop;
};

struct SystemInfo {
  std::string os;         // "Linux 6.1.0-26-amd64"
  std::string processor;  // the CPU's model name, or the machine type when it cannot be read
  std::string compiler;   // the compiler sluice was built with
  std::string sluice;     // sluice's version

  static SystemInfo OfThisMachine();
};

/// ISO 8601 in UTC with microseconds: "2026-11-23T04:30:00.123456Z".
std::string FormatUtc(WallClock::time_point time);

/// The `rp_debugger` object (see the file comment). Pure.
boost::json::object DebuggerOutput(const SystemInfo& system, const std::vector<Checkpoint>& checkpoints,
                                   double ready_delay_ms);

/// Puts `debugger_output` into `result.output.rp_debugger` when `output` is an object; returns
/// false, leaving `result` unchanged, when it is not (or is missing). Pure.
bool AttachDebuggerOutput(boost::json::object& result, boost::json::object debugger_output);

/// How long this process has been running (from /proc; 10 ms resolution), or nullopt.
std::optional<std::chrono::duration<double, std::milli>> ProcessAge();

/// The checkpoints of the jobs in flight, from their take to their result.
class JobTimings {
 public:
  explicit JobTimings(SystemInfo system) : system_(std::move(system)) {}

  /// The worker is ready: called at its first take; later calls change nothing.
  void MarkReady(double ready_delay_ms);
  void Taken(const std::string& job_id, WallClock::time_point take_start, WallClock::time_point take_stop);
  void Started(const std::string& job_id);
  /// Ends the job's record; the `rp_debugger` object for it, or nullopt if it was never taken here.
  std::optional<boost::json::object> Finish(const std::string& job_id);

  /// Jobs recorded and not yet finished (tests).
  std::size_t size() const;

 private:
  struct Record {
    WallClock::time_point take_start, take_stop;
    std::optional<WallClock::time_point> handler_start;
  };

  const SystemInfo system_;
  std::atomic<bool> ready_marked_{false};
  std::atomic<double> ready_delay_ms_{0.0};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Record> records_;  // guarded by mutex_
};

/// Times each take of `inner` and records it for the jobs it returned.
class DebuggerJobSource : public core::JobSource {
 public:
  DebuggerJobSource(core::JobSource& inner, JobTimings& timings) : inner_(inner), timings_(timings) {}
  Task<std::vector<core::JobRequest>> Take(std::size_t max_jobs) override;

 private:
  core::JobSource& inner_;
  JobTimings& timings_;
  bool first_take_done_ = false;  // Take is called one call at a time (JobSource contract)
};

/// Records each job's start and adds the timings to its result before `inner` posts it.
class DebuggerResultSink : public core::ResultSink {
 public:
  DebuggerResultSink(core::ResultSink& inner, JobTimings& timings) : inner_(inner), timings_(timings) {}

  void OnStarted(const std::string& job_id) override;
  void OnProgress(const std::string& job_id, const boost::json::value& update) override;
  void OnChunk(const std::string& job_id, const boost::json::value& chunk) override;
  void OnFinished(const std::string& job_id, core::JobOutcome outcome) override;

 private:
  core::ResultSink& inner_;
  JobTimings& timings_;
  std::atomic<bool> warned_not_object_{false};
};

}  // namespace sluice::runpod
