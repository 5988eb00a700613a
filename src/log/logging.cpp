#include "log/logging.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace sluice::log {
namespace {

constexpr std::size_t kMaxMessage = 4096;

std::atomic<Level> g_level{Level::kDebug};
std::atomic<Format> g_format{Format::kText};

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kTrace: return "TRACE";
    case Level::kDebug: return "DEBUG";
    case Level::kInfo: return "INFO";
    case Level::kWarn: return "WARN";
    case Level::kError: return "ERROR";
  }
  return "INFO";
}

spdlog::level::level_enum ToSpdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

// spdlog supplies the locked, unbuffered stderr sink; sluice formats the line itself (the "%v"
// pattern), so both formats share one writer.
spdlog::logger& Logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto created = std::make_shared<spdlog::logger>("sluice", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    created->set_pattern("%v");
    created->set_level(spdlog::level::trace);
    created->flush_on(spdlog::level::trace);
    return created;
  }();
  return *logger;
}

std::string Shorten(std::string_view message) {
  if (message.size() <= kMaxMessage) return std::string(message);
  const std::size_t keep = (kMaxMessage - 5) / 2;
  return std::string(message.substr(0, keep)) + " ... " +
         std::string(message.substr(message.size() - keep));
}

}  // namespace

std::optional<Level> ParseLevel(std::string_view name) {
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (upper == "NOTSET" || upper == "TRACE") return Level::kTrace;
  if (upper == "DEBUG") return Level::kDebug;
  if (upper == "INFO") return Level::kInfo;
  if (upper == "WARN" || upper == "WARNING") return Level::kWarn;
  if (upper == "ERROR") return Level::kError;
  return std::nullopt;
}

void Configure(Level level, Format format) {
  g_level.store(level);
  g_format.store(format);
}

bool Enabled(Level level) noexcept { return level >= g_level.load(std::memory_order_relaxed); }

std::string FormatLine(Format format, Level level, std::string_view job_id, std::string_view message) {
  const std::string text = Shorten(message);
  if (format == Format::kJson) {
    std::string line = "{\"requestId\":";
    line += job_id.empty() ? std::string("null") : boost::json::serialize(boost::json::string(job_id));
    line += ",\"message\":";
    line += boost::json::serialize(boost::json::string(text));
    line += ",\"level\":\"";
    line += LevelName(level);
    line += "\"}";
    return line;
  }
  std::string line(LevelName(level));
  line.resize(7, ' ');
  line += "| ";
  if (!job_id.empty()) {
    line += job_id;
    line += " | ";
  }
  line += text;
  return line;
}

void Write(Level level, std::string_view job_id, std::string_view message) {
  if (!Enabled(level)) return;
  const std::string line = FormatLine(g_format.load(), level, job_id, message);
  Logger().log(ToSpdlog(level), spdlog::string_view_t(line.data(), line.size()));
}

std::string DescribeException(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

void LogFailure(std::string_view component, std::string_view what, const std::exception_ptr& failure) {
  if (!failure) return;
  Error("", "{}: {} failed: {}", component, what, DescribeException(failure));
}

}  // namespace sluice::log
