// redis/keys.hpp — the names of the Redis keys of one job queue (docs/scale-out.md), pure.
//
// Every key carries the queue name as a hash tag (`sluice:{q}:...`), so all keys of a queue, and so
// all keys one Lua script touches, share a cluster slot. A value type; thread-safe to share.
#pragma once

#include <string>
#include <string_view>

namespace sluice::redis {

/// The consumer group every worker of a queue reads the jobs stream in.
inline constexpr std::string_view kGroup = "workers";
/// Approximate caps (`MAXLEN ~`) of the events and cancels streams.
inline constexpr int kEventsMaxLen = 100000;
inline constexpr int kCancelsMaxLen = 10000;

class Keys {
 public:
  /// `queue` must not be empty nor hold `{` or `}` (ValidQueueName); "default" when not chosen.
  explicit Keys(std::string queue = "default");

  const std::string& queue() const noexcept { return queue_; }
  /// sluice:{q}: — what every key of the queue starts with (scripts that build job keys need it).
  const std::string& prefix() const noexcept { return prefix_; }
  /// sluice:{q}:jobs — the stream of queued jobs; entries `id <job_id>`; group `workers`.
  std::string jobs() const { return prefix_ + "jobs"; }
  /// sluice:{q}:job:<id> — the job's hash (status, request, result, ...).
  std::string job(std::string_view id) const { return prefix_ + "job:" + std::string(id); }
  /// sluice:{q}:chunks:<id> — the list of a streaming job's chunks (JSON texts).
  std::string chunks(std::string_view id) const { return prefix_ + "chunks:" + std::string(id); }
  /// sluice:{q}:events — one entry `id <job_id> status <S> version <v>` per change of a job.
  std::string events() const { return prefix_ + "events"; }
  /// sluice:{q}:cancels — entries `id <job_id>`; every worker reads all of them.
  std::string cancels() const { return prefix_ + "cancels"; }
  /// sluice:{q}:entries — hash from stream entry id to job id, for entries deleted while pending
  /// (XAUTOCLAIM reports only their entry ids).
  std::string entries() const { return prefix_ + "entries"; }
  /// sluice:{q}:worker:<consumer> — a worker's load, `{"running":n,"limit":m}`, with a TTL.
  std::string worker(std::string_view consumer) const { return prefix_ + "worker:" + std::string(consumer); }
  /// sluice:{q}:workers — sorted set of consumer names by the unix ms their worker key expires:
  /// the live workers, for /health.
  std::string workers() const { return prefix_ + "workers"; }
  /// sluice:{q}:counts — hash of counters the scripts keep: totals by terminal status
  /// (completed, failed, cancelled, timed_out), submitted, retried, rejected_queue_full, and the
  /// jobs in_queue and in_progress now.
  std::string counts() const { return prefix_ + "counts"; }
  /// sluice:{q}:idempotency:<key> — the job id first submitted with an `X-Idempotency-Key`.
  std::string idempotency(std::string_view key) const { return prefix_ + "idempotency:" + std::string(key); }

 private:
  std::string queue_;
  std::string prefix_;  // sluice:{q}:
};

/// True when `queue` can name a queue: 1 to 64 characters, none of them `{`, `}`, space or control.
bool ValidQueueName(std::string_view queue) noexcept;

}  // namespace sluice::redis
