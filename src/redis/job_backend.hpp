// redis/job_backend.hpp — the job API's port (core/job_backend.hpp) answered by a Redis queue
// (docs/scale-out.md): what `sluice gateway` and a worker started with both `--rp_serve_api` and
// `--queue` serve /run, /runsync, /status, /stream, /cancel, /retry, /purge-queue, /health and
// /metrics from. Any number of gateways may share one queue: everything a request needs is in
// Redis, nothing in the process.
//
// How each call maps onto the keys of redis/keys.hpp:
//   - Submit: the submit script (hash IN_QUEUE + stream entry + event + counters), refused with
//     kResourceExhausted when `max_queue` jobs are queued already. An idempotency key is a
//     `SET sluice:{q}:idempotency:<key> <id> NX EX <result ttl>` made before the submit; a key seen
//     before returns its job's id; a submit that fails deletes the key again.
//   - Find, ReadChunks: the job's hash (and its chunks list), read in one script; /stream without
//     an index reads from a cursor kept in the hash (`stream_read`).
//   - Cancel, Retry, Purge: scripts (a queued job ends CANCELLED at once; a running one is
//     announced on the cancels stream, where its worker's listener cancels it).
//   - WaitForChange, WaitForEnd: no polling. One reader per backend follows the events stream
//     (XREAD BLOCK on a connection of its own) and wakes the waiters of each job it sees change. A
//     waiter registers, then reads the job, then sleeps until woken or its deadline; it also re-reads
//     the job every `recheck` in case an event was missed (the reader reconnecting, the events
//     stream trimmed). Events are written for progress updates, chunks and ends only, so a
//     WaitForChange sees a job start at its next such change or recheck; /runsync rereads the job
//     only on its end event.
//   - Counts: the counters hash the scripts keep (totals by status, queued and running now) and the
//     workers' keys (idle and running workers), in one round trip each.
//   - Jobs that end: the events reader calls the finish listener (webhooks, /metrics histograms)
//     for each job it sees end. Every gateway records the histograms; the webhook of a job is sent by
//     the one gateway that claims it first (`HSETNX webhook_claimed`).
//
// Failures: a Redis that does not answer in time makes kUnavailable naming it (the API's 503).
//
// Threads: every call is thread-safe. Start() once before the first call; Stop() ends the events
// reader (waiters are woken and answer with what they have). The io_context must run until Stop's
// Task has completed. Borrows nothing but the executor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

#include "core/job_backend.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/url.hpp"

namespace sluice::redis {

struct BackendOptions {
  std::string queue = "default";
  /// How long a finished job's hash, chunks and idempotency key stay.
  std::chrono::seconds result_ttl{1800};
  /// Jobs queued at most (submitted and not started); more are refused (429).
  std::size_t max_queue = 10000;
  /// The BLOCK of the events reader.
  std::chrono::milliseconds block{2000};
  /// A sleeping waiter re-reads its job this often, whatever the events say.
  std::chrono::steady_clock::duration recheck = std::chrono::seconds(2);
  ConnectionOptions connection;
};

class RedisJobBackend final : public core::JobBackend {
 public:
  RedisJobBackend(boost::asio::any_io_executor executor, Endpoint endpoint, BackendOptions options);
  ~RedisJobBackend() override;
  RedisJobBackend(const RedisJobBackend&) = delete;
  RedisJobBackend& operator=(const RedisJobBackend&) = delete;

  /// Checks that Redis answers (PING within the connect timeout), creates the consumer group, and
  /// starts the events reader from the newest event. A failure names the endpoint and the reason;
  /// nothing is started then.
  Task<core::Status> Start();
  /// Ends the events reader and wakes every waiter; returns when the reader has stopped.
  Task<void> Stop();

  /// Called for every job the events reader sees end (set before Start): the job with its times
  /// and, for the gateway that claimed its webhook, the webhook (empty otherwise).
  void SetFinishListener(std::function<void(const core::JobView&)> listener);

  Task<core::Result<std::string>> Submit(core::NewJob job, std::optional<std::string> idempotency_key) override;
  Task<core::Result<core::JobView>> Find(std::string_view job_id) override;
  Task<core::Result<core::JobStatus>> Cancel(std::string_view job_id) override;
  Task<core::Status> Retry(std::string_view job_id) override;
  Task<core::Result<std::size_t>> Purge() override;
  Task<core::Result<core::StreamRead>> ReadChunks(std::string_view job_id,
                                                  std::optional<std::size_t> from_index) override;
  Task<core::Result<std::uint64_t>> WaitForChange(std::string_view job_id, std::uint64_t seen,
                                                  Clock::time_point deadline) override;
  Task<core::Result<core::JobView>> WaitForEnd(std::string_view job_id, Clock::time_point deadline) override;
  Task<core::Result<core::JobCounts>> Counts(Clock::time_point deadline) override;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::redis
