// log/logging.hpp — the worker's log: one line per event on stderr, tagged with the job it concerns.
//
// Two formats (`--log-format`): `text`, runpod-python's layout (`INFO   | job-id | message`), and
// `json`, one object per line (`{"requestId": ..., "message": ..., "level": ...}`, the shape
// runpod-python uses when RUNPOD_ENDPOINT_ID is set). Levels follow `--rp_log_level`: NOTSET and
// TRACE, DEBUG, INFO, WARN, ERROR. Messages over 4096 characters are shortened in the middle.
//
// Thread-safe: lines from different threads never interleave. Configure() is called once at start
// (before any other thread logs); until then lines go out as text at DEBUG.
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace sluice::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError };
enum class Format { kText, kJson };

/// Parses a `--rp_log_level` value (case-insensitive; WARNING is accepted for WARN).
std::optional<Level> ParseLevel(std::string_view name);

void Configure(Level level, Format format);
bool Enabled(Level level) noexcept;

/// Writes one line; `job_id` may be empty for lines about the worker itself.
void Write(Level level, std::string_view job_id, std::string_view message);

/// Formats one line as it would be written, without writing it (for tests).
std::string FormatLine(Format format, Level level, std::string_view job_id, std::string_view message);

template <class... Args>
void Log(Level level, std::string_view job_id, fmt::format_string<Args...> format, Args&&... args) {
  if (Enabled(level)) Write(level, job_id, fmt::format(format, std::forward<Args>(args)...));
}

template <class... Args>
void Debug(std::string_view job_id, fmt::format_string<Args...> format, Args&&... args) {
  Log(Level::kDebug, job_id, format, std::forward<Args>(args)...);
}
template <class... Args>
void Info(std::string_view job_id, fmt::format_string<Args...> format, Args&&... args) {
  Log(Level::kInfo, job_id, format, std::forward<Args>(args)...);
}
template <class... Args>
void Warn(std::string_view job_id, fmt::format_string<Args...> format, Args&&... args) {
  Log(Level::kWarn, job_id, format, std::forward<Args>(args)...);
}
template <class... Args>
void Error(std::string_view job_id, fmt::format_string<Args...> format, Args&&... args) {
  Log(Level::kError, job_id, format, std::forward<Args>(args)...);
}

/// What `failure` says: what() of a std::exception, "unknown exception" for anything else.
std::string DescribeException(const std::exception_ptr& failure);

/// Logs at error level that `what` (e.g. "a connection") of `component` (e.g. "flow server") ended
/// with `failure`; nothing when it is null. For the completion handlers of detached coroutines.
void LogFailure(std::string_view component, std::string_view what, const std::exception_ptr& failure);

}  // namespace sluice::log
