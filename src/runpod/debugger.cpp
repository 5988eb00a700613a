// Coroutine-heavy: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames under the
// sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "runpod/debugger.hpp"

#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "log/logging.hpp"

namespace sluice::runpod {
namespace json = boost::json;

namespace {

double Milliseconds(WallClock::duration duration) {
  return std::chrono::duration<double, std::milli>(duration).count();
}

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
  }
  return {};
}

std::string CompilerName() {
#if defined(__clang__)
  return "Clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace

SystemInfo SystemInfo::OfThisMachine() {
  SystemInfo info;
  utsname names{};
  const bool named = uname(&names) == 0;
  info.os = named ? fmt::format("{} {}", names.sysname, names.release) : "unknown";
  info.processor = CpuModelName();
  if (info.processor.empty()) info.processor = named ? names.machine : "Unable to get processor info.";
  info.compiler = CompilerName();
  info.sluice = SLUICE_VERSION;
  return info;
}

std::string FormatUtc(WallClock::time_point time) {
  const auto since_epoch = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch());
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const std::time_t whole = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  gmtime_r(&whole, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, (since_epoch - seconds).count());
}

json::object DebuggerOutput(const SystemInfo& system, const std::vector<Checkpoint>& checkpoints,
                            double ready_delay_ms) {
  json::array timestamps;
  timestamps.reserve(checkpoints.size());
  for (const Checkpoint& checkpoint : checkpoints) {
    timestamps.push_back(json::object{{"name", checkpoint.name},
                                      {"start_utc", FormatUtc(checkpoint.start)},
                                      {"stop_utc", FormatUtc(checkpoint.stop)},
                                      {"duration_ms", Milliseconds(checkpoint.stop - checkpoint.start)}});
  }
  return json::object{{"system_info", json::object{{"os", system.os},
                                                   {"processor", system.processor},
                                                   {"compiler", system.compiler},
                                                   {"sluice", system.sluice}}},
                      {"timestamps", std::move(timestamps)},
                      {"ready_delay_ms", ready_delay_ms}};
}

bool AttachDebuggerOutput(json::object& result, json::object debugger_output) {
  auto output = result.find("output");
  if (output == result.end() || !output->value().is_object()) return false;
  output->value().as_object()["rp_debugger"] = std::move(debugger_output);
  return true;
}

std::optional<std::chrono::duration<double, std::milli>> ProcessAge() {
  // /proc/self/stat field 22 is the start time in clock ticks after boot; CLOCK_BOOTTIME counts
  // from boot too. The command name (field 2) may hold spaces and parentheses: skip to its last ')'.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  const auto name_end = stat.rfind(')');
  if (name_end == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(name_end + 1));
  std::string field;
  for (int number = 3; number < 22 && fields >> field; ++number) {
  }
  unsigned long long start_ticks = 0;
  if (!(fields >> start_ticks)) return std::nullopt;
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  timespec now{};
  if (ticks_per_second <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) != 0) return std::nullopt;
  const double now_ms = static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
  const double start_ms = static_cast<double>(start_ticks) * 1e3 / static_cast<double>(ticks_per_second);
  return std::chrono::duration<double, std::milli>(std::max(0.0, now_ms - start_ms));
}

void JobTimings::MarkReady(double ready_delay_ms) {
  if (ready_marked_.exchange(true)) return;
  ready_delay_ms_.store(ready_delay_ms);
}

void JobTimings::Taken(const std::string& job_id, WallClock::time_point take_start, WallClock::time_point take_stop) {
  std::lock_guard lock(mutex_);
  records_[job_id] = Record{take_start, take_stop, std::nullopt};
}

void JobTimings::Started(const std::string& job_id) {
  const WallClock::time_point now = WallClock::now();
  std::lock_guard lock(mutex_);
  if (auto it = records_.find(job_id); it != records_.end()) it->second.handler_start = now;
}

std::optional<json::object> JobTimings::Finish(const std::string& job_id) {
  const WallClock::time_point now = WallClock::now();
  Record record;
  {
    std::lock_guard lock(mutex_);
    auto it = records_.find(job_id);
    if (it == records_.end()) return std::nullopt;
    record = it->second;
    records_.erase(it);
  }
  std::vector<Checkpoint> checkpoints{{"job_take", record.take_start, record.take_stop}};
  if (record.handler_start) {
    checkpoints.push_back({"queue", record.take_stop, *record.handler_start});
    checkpoints.push_back({"handler", *record.handler_start, now});
  }
  return DebuggerOutput(system_, checkpoints, ready_delay_ms_.load());
}

std::size_t JobTimings::size() const {
  std::lock_guard lock(mutex_);
  return records_.size();
}

Task<std::vector<core::JobRequest>> DebuggerJobSource::Take(std::size_t max_jobs) {
  const WallClock::time_point start = WallClock::now();
  // Only the first take marks the worker ready: /proc is read once, not on every take.
  if (!first_take_done_) {
    first_take_done_ = true;
    if (const auto age = ProcessAge()) timings_.MarkReady(age->count());
  }
  std::vector<core::JobRequest> jobs = co_await inner_.Take(max_jobs);
  const WallClock::time_point stop = WallClock::now();
  for (const core::JobRequest& job : jobs) timings_.Taken(job.id, start, stop);
  co_return jobs;
}

void DebuggerResultSink::OnStarted(const std::string& job_id) {
  timings_.Started(job_id);
  inner_.OnStarted(job_id);
}

void DebuggerResultSink::OnProgress(const std::string& job_id, const json::value& update) {
  inner_.OnProgress(job_id, update);
}

void DebuggerResultSink::OnChunk(const std::string& job_id, const json::value& chunk) {
  inner_.OnChunk(job_id, chunk);
}

void DebuggerResultSink::OnFinished(const std::string& job_id, core::JobOutcome outcome) {
  std::optional<json::object> timings = timings_.Finish(job_id);
  if (timings && outcome.status != core::JobStatus::kCancelled &&
      !AttachDebuggerOutput(outcome.result, std::move(*timings)) && !warned_not_object_.exchange(true)) {
    log::Warn(job_id,
              "--rp_debugger: the result's output is not a JSON object, so no timings are added to it "
              "(the result is posted as it is; this is said once)");
  }
  inner_.OnFinished(job_id, std::move(outcome));
}

}  // namespace sluice::runpod
