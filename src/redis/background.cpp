// Coroutine TU: GCC 12 reports a false -Wmismatched-new-delete on coroutine frames (see
// src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "redis/background.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "log/logging.hpp"

namespace sluice::redis {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr auto kStopCheck = milliseconds(50);

// Waits until `until` or `stop`, whichever comes first.
Task<void> SleepUntil(Clock::time_point until, const std::atomic<bool>& stop) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stop.load() && Clock::now() < until) {
    timer.expires_at(std::min(until, Clock::now() + kStopCheck));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

milliseconds AtLeast(milliseconds value, milliseconds floor) { return std::max(value, floor); }

}  // namespace

std::function<std::vector<std::string>()> EntriesOf(const HeldJobs& held, const RedisJobSource& source) {
  return [&held, &source] {
    std::vector<std::string> entries = held.Entries();
    std::vector<std::string> waiting = source.WaitingEntries();
    entries.insert(entries.end(), waiting.begin(), waiting.end());
    return entries;
  };
}

Task<void> RunHeartbeat(Connection& commands, QueueOptions options, std::function<std::vector<std::string>()> entries,
                        std::function<WorkerLoad()> load, const std::atomic<bool>& stop) {
  const Keys keys(options.queue);
  const milliseconds interval = AtLeast(options.visibility_timeout / 3, milliseconds(10));
  const long long ttl_ms = std::max<long long>(3 * interval.count(), 1000);
  Clock::time_point next = Clock::now();
  while (!stop.load()) {
    std::vector<std::string> held = entries ? entries() : std::vector<std::string>{};
    if (!held.empty()) {
      ScriptCall call = HeartbeatCall(keys, options.consumer, held);  // named: g++ 12 and co_await
      core::Result<Reply> lost = co_await RunScript(commands, std::move(call));
      if (!lost.ok()) {
        log::Warn("", "Redis heartbeat failed: {}", lost.status().message());
      } else if (lost->is_array() && lost->size() > 0) {
        for (const Reply& entry : lost->elements()) {
          if (entry.is_string()) {
            log::Warn("", "Stream entry {} is no longer owned by this worker (reclaimed after a missed heartbeat); "
                          "its result will be dropped", entry.str());
          }
        }
      }
    }
    const WorkerLoad now = load ? load() : WorkerLoad{};
    std::vector<std::string> argv{"SET", keys.worker(options.consumer),
                                  fmt::format(R"({{"running":{},"limit":{}}})", now.running, now.limit), "PX",
                                  std::to_string(ttl_ms)};
    core::Result<Reply> set = co_await commands.Command(std::move(argv));
    if (!set.ok()) log::Debug("", "Writing the worker key failed: {}", set.status().message());
    // The roster /health counts workers from; a worker that vanished drops out when its score
    // (the unix ms its key expires) is past.
    std::vector<std::string> roster{"ZADD", keys.workers(), std::to_string(UnixMillis() + ttl_ms), options.consumer};
    co_await commands.Command(std::move(roster));
    next += interval;  // a fixed schedule: a slow round does not push the next one back
    if (next < Clock::now()) next = Clock::now();
    co_await SleepUntil(next, stop);
  }
  // A worker that stops leaves the roster at once rather than when its key would expire.
  std::vector<std::string> leave{"ZREM", keys.workers(), options.consumer};
  co_await commands.Command(std::move(leave));
  std::vector<std::string> forget{"DEL", keys.worker(options.consumer)};
  co_await commands.Command(std::move(forget));
}

Task<void> RunReaper(Connection& commands, QueueOptions options, RedisJobSource& source,
                     const std::atomic<bool>& stop) {
  const Keys keys(options.queue);
  const milliseconds interval = AtLeast(options.visibility_timeout / 2, milliseconds(10));
  Clock::time_point next = Clock::now() + interval;
  co_await SleepUntil(next, stop);
  while (!stop.load()) {
    std::string cursor = "0-0";
    std::size_t claimed = 0, deleted = 0;
    do {
      std::vector<std::string> argv{"XAUTOCLAIM", keys.jobs(), std::string(kGroup), options.consumer,
                                    std::to_string(options.visibility_timeout.count()), cursor, "COUNT", "100"};
      core::Result<Reply> reply = co_await commands.Command(std::move(argv));
      AutoclaimAnswer answer;
      if (!reply.ok() || reply->is_error() || !ParseAutoclaim(*reply, answer)) {
        const std::string why = !reply.ok() ? reply.status().message() : reply->Describe();
        // NOGROUP before the first job was ever read is normal; anything else is worth a line.
        if (why.find("NOGROUP") == std::string::npos) log::Warn("", "Redis reaper: XAUTOCLAIM failed: {}", why);
        break;
      }
      cursor = answer.cursor;
      claimed += answer.claimed.size();
      deleted += answer.deleted.size();
      std::vector<StreamEntry> handed = std::move(answer.claimed);
      for (std::string& entry : answer.deleted) handed.push_back(StreamEntry{std::move(entry), std::string()});
      if (!handed.empty()) source.HandOut(std::move(handed));
    } while (cursor != "0-0" && !stop.load());
    if (claimed > 0 || deleted > 0) {
      log::Warn("", "Redis reaper: reclaimed {} entries idle over {} ms (their worker stopped heartbeating), "
                    "{} deleted",
                claimed, options.visibility_timeout.count(), deleted);
    }
    // Finished jobs' entries are only acknowledged; they leave the stream here, in bulk.
    ScriptCall trim = TrimCall(keys);  // named: g++ 12 and co_await
    core::Result<Reply> trimmed = co_await RunScript(commands, std::move(trim));
    if (!trimmed.ok()) log::Debug("", "Redis reaper: trimming the jobs stream failed: {}", trimmed.status().message());
    next += interval;
    if (next < Clock::now()) next = Clock::now();
    co_await SleepUntil(next, stop);
  }
}

Task<void> RunCancelListener(Connection& reader, QueueOptions options, std::function<bool(const std::string&)> cancel,
                             const std::atomic<bool>& stop) {
  const Keys keys(options.queue);
  std::string last;  // empty until the stream's last id at start is known
  while (!stop.load()) {
    if (last.empty()) {
      std::vector<std::string> argv{"XREVRANGE", keys.cancels(), "+", "-", "COUNT", "1"};
      core::Result<Reply> reply = co_await reader.Command(std::move(argv));
      if (!reply.ok() || !reply->is_array()) {
        log::Warn("", "Redis cancel listener: {}", reply.ok() ? reply->Describe() : reply.status().message());
        co_await SleepUntil(Clock::now() + milliseconds(500), stop);
        continue;
      }
      last = reply->size() > 0 && (*reply)[0].is_array() ? (*reply)[0][0].str() : "0-0";
    }
    std::vector<std::string> argv{"XREAD", "COUNT", "100", "BLOCK", std::to_string(options.block.count()),
                                  "STREAMS", keys.cancels(), last};
    core::Result<Reply> reply = co_await reader.Command(std::move(argv), options.block + std::chrono::seconds(10));
    std::vector<std::string> job_ids;
    if (!reply.ok() || reply->is_error() || !ParseCancels(*reply, job_ids, last)) {
      log::Warn("", "Redis cancel listener: {}", reply.ok() ? reply->Describe() : reply.status().message());
      co_await SleepUntil(Clock::now() + milliseconds(500), stop);
      continue;
    }
    for (const std::string& job_id : job_ids) {
      if (cancel && cancel(job_id)) log::Info(job_id, "Job cancelled (cancels stream).");
    }
  }
}

}  // namespace sluice::redis
