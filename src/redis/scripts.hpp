// redis/scripts.hpp — the Lua scripts of the Redis job queue and the calls that run them, pure.
//
// Every change to a job that must be atomic is one script (docs/scale-out.md): submit (hash +
// stream entry), start (skip a terminal job, count deliveries, mark IN_PROGRESS), take (read the
// new entries and start each: start's work for a whole read in one call), update (progress
// or a chunk, only by the owner), finish (fenced: only while this consumer still owns the pending
// entry, and only once), heartbeat (re-claim the entries this consumer still owns) and cancel (a
// producer's cancel). A `ScriptCall` holds the keys and arguments of one run; it is sent as
// EVALSHA with the script's SHA1, and as EVAL when the server answers NOSCRIPT (a restarted or
// flushed server), which also loads it again (redis/queue.hpp runs it).
//
// Also here: parsers of the scripts' replies into small structs, so the adapters and the tests
// share one reading. Everything is a pure value; thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/job_backend.hpp"
#include "redis/keys.hpp"
#include "redis/reply.hpp"

namespace sluice::redis {

struct Script {
  std::string_view name;    // for messages
  std::string source;       // Lua
  std::string sha1;         // hex, of `source`
};

const Script& SubmitScript();
const Script& StartScript();
const Script& TakeScript();
const Script& UpdateScript();
const Script& FinishScript();
const Script& HeartbeatScript();
const Script& CancelScript();
const Script& RetryScript();
const Script& PurgeScript();
const Script& ReadChunksScript();
const Script& TrimScript();

/// SHA1 of `bytes` as 40 lower-case hex digits (the name EVALSHA knows a script by).
std::string Sha1Hex(std::string_view bytes);

/// One run of a script.
struct ScriptCall {
  const Script* script = nullptr;
  std::vector<std::string> keys;
  std::vector<std::string> args;

  /// EVALSHA sha1 numkeys keys... args...
  std::vector<std::string> EvalShaArgv() const;
  /// EVAL source numkeys keys... args...
  std::vector<std::string> EvalArgv() const;
};

/// Unix time in milliseconds, as the job hash stores it.
std::int64_t UnixMillis(std::chrono::system_clock::time_point when = std::chrono::system_clock::now());

// ---- submit (producers) ----
struct SubmitParams {
  std::string job_id;
  std::string request_json;  // the whole request; its `input` is present
  std::string webhook;       // may be empty
  std::int64_t submitted_ms = 0;
  std::int64_t execution_timeout_ms = 0;  // 0: none
  std::int64_t queue_ttl_ms = 0;          // policy.ttl; 0: none
  std::size_t max_queue = 0;              // refuse when this many are queued; 0: no limit
  std::string idempotency_key;            // empty: none
  std::int64_t idempotency_ttl_s = 0;     // how long the key names its job
};
ScriptCall SubmitCall(const Keys& keys, const SubmitParams& params);
struct SubmitAnswer {
  enum class Kind {
    kQueued,
    kExists,      // a job with this id exists already (nothing changed)
    kQueueFull,   // max_queue jobs are queued
    kRepeatedKey, // the idempotency key was seen; `job_id` is the first job's
  } kind = Kind::kQueued;
  bool created = false;  // kQueued
  std::string entry;     // the stream entry id (kQueued, kExists)
  std::string job_id;    // kRepeatedKey
};
/// False when the reply has not the script's shape.
bool ParseSubmit(const Reply& reply, SubmitAnswer& out);

// ---- start (worker, for each entry read or claimed) ----
struct StartParams {
  std::string job_id;
  std::string entry;
  std::string consumer;
  std::int64_t now_ms = 0;
  int max_deliveries = 0;       // 0: unlimited
  std::int64_t result_ttl_s = 0;
};
ScriptCall StartCall(const Keys& keys, const StartParams& params);
struct StartAnswer {
  enum class Kind {
    kStarted,      // IN_PROGRESS now; `request` and `deliveries` are set
    kTerminal,     // already ended (cancelled while queued): acknowledged and skipped; `detail` = status
    kMissing,      // no job hash (expired): acknowledged and skipped
    kNotOwner,     // the entry is not pending for this consumer (claimed by another): skipped
    kFailed,       // delivered more than max_deliveries times: ended FAILED; `detail` = the error
    kBadReply,
  } kind = Kind::kBadReply;
  std::string request;
  std::int64_t deliveries = 0;
  std::string detail;
};
StartAnswer ParseStart(const Reply& reply);

// ---- update: progress or a stream chunk (only while this consumer owns the running job) ----
enum class UpdateKind { kProgress, kChunk };
ScriptCall UpdateCall(const Keys& keys, const std::string& job_id, const std::string& consumer, UpdateKind kind,
                      std::string value_json);

// ---- finish ----
struct FinishParams {
  std::string job_id;
  std::string entry;
  std::string consumer;
  std::string status;       // COMPLETED, FAILED, CANCELLED, TIMED_OUT
  std::string result_json;  // the result object
  std::int64_t now_ms = 0;
  std::int64_t result_ttl_s = 0;
  /// Only while `entry` is pending and owned by `consumer`. Off for an entry already gone from the
  /// pending list (deleted while pending): then only the not-yet-terminal guard holds.
  bool fence = true;
};
/// One job's finish: a batch of one.
ScriptCall FinishCall(const Keys& keys, const FinishParams& params);
/// Several jobs' finishes in one script call, each as if alone. They must share `consumer` and
/// `result_ttl_s` (one sink's finishes); the batch is not empty.
ScriptCall FinishCall(const Keys& keys, std::span<const FinishParams* const> batch);
struct FinishAnswer {
  enum class Kind {
    kFinished,    // written; `version` set
    kNotPending,  // fenced out: the entry is no longer pending
    kNotOwner,    // fenced out: another consumer owns the entry; `detail` = it
    kTerminal,    // the job had ended already (`detail` = its status); the entry is acknowledged
    kMissing,     // no job hash; the entry is acknowledged
    kBadReply,
  } kind = Kind::kBadReply;
  std::int64_t version = 0;
  std::string detail;
};
/// One job's answer (an element of the script's reply).
FinishAnswer ParseFinish(const Reply& reply);
/// The script's reply for a batch of `count`: one answer per job, in order. False (and `out` not
/// to be used) when the reply has not that shape.
bool ParseFinishReply(const Reply& reply, std::size_t count, std::vector<FinishAnswer>& out);

// ---- heartbeat: XCLAIM ... JUSTID the entries this consumer still owns; returns those it lost ----
ScriptCall HeartbeatCall(const Keys& keys, const std::string& consumer, const std::vector<std::string>& entries);

// ---- cancel (producers): a queued job ends CANCELLED at once; a running one is signalled ----
ScriptCall CancelCall(const Keys& keys, const std::string& job_id, std::int64_t now_ms, std::int64_t result_ttl_s);

// ---- retry (producers): a FAILED, TIMED_OUT or CANCELLED job queued again under its id ----
ScriptCall RetryCall(const Keys& keys, const std::string& job_id, std::int64_t now_ms, std::size_t max_queue);

// ---- purge (producers): every entry no worker has read yet; queued jobs end CANCELLED ----
ScriptCall PurgeCall(const Keys& keys, std::int64_t now_ms, std::int64_t result_ttl_s);

// ---- trim (the reaper): the jobs stream's entries below the oldest pending and undelivered ones ----
ScriptCall TrimCall(const Keys& keys);

// ---- reading a job ----
/// A whole decimal integer, as Redis stores numbers in hashes and stream fields; none otherwise.
std::optional<std::int64_t> ParseInteger(std::string_view text);
/// The fields of a job hash a reader needs, in this order (HMGET, and the read_chunks script).
const std::vector<std::string>& JobFields();
/// The job as the API shows it, from the JobFields values; false when the job is unknown (no
/// status) or a field is malformed.
bool ParseJobFields(std::string_view job_id, const Reply& fields, core::JobView& out);
/// `from_index` < 0: from the job's stream cursor, which the read moves.
ScriptCall ReadChunksCall(const Keys& keys, const std::string& job_id, std::int64_t from_index);

// ---- stream replies (RESP2 nested arrays) ----
/// One jobs-stream entry as read; `job_id` is empty for an entry deleted while pending (Redis
/// answers its id with nil fields) or one without an `id` field.
struct StreamEntry {
  std::string entry;
  std::string job_id;
};
/// The entries of an XREADGROUP reply on one stream (`[[stream, [[id, [f, v, ...]], ...]]]`; nil
/// when nothing came). False when the reply has another shape.
bool ParseReadGroup(const Reply& reply, std::vector<StreamEntry>& out);

// ---- take (worker): read up to `count` new entries and start each, one script call ----
struct TakeParams {
  std::string consumer;
  std::size_t count = 1;
  std::int64_t now_ms = 0;
  int max_deliveries = 0;  // 0: unlimited
  std::int64_t result_ttl_s = 0;
};
ScriptCall TakeCall(const Keys& keys, const TakeParams& params);
/// One entry the take script read: its start script's answer, or, when `entry.job_id` is empty
/// (an entry without an `id` field), none (kBadReply).
struct TakenEntry {
  StreamEntry entry;
  StartAnswer answer;
};
/// The entries of a take reply, in stream order (none when nothing was queued). False when the
/// reply has not the script's shape.
bool ParseTake(const Reply& reply, std::vector<TakenEntry>& out);
/// An XAUTOCLAIM reply (Redis 7): `[cursor, [[id, fields], ...], [deleted ids]]`.
struct AutoclaimAnswer {
  std::string cursor;  // "0-0" when the scan is complete
  std::vector<StreamEntry> claimed;
  std::vector<std::string> deleted;
};
bool ParseAutoclaim(const Reply& reply, AutoclaimAnswer& out);
/// The entries of an XREAD reply on the cancels stream: the job ids, and the last entry id read.
bool ParseCancels(const Reply& reply, std::vector<std::string>& job_ids, std::string& last_entry);

}  // namespace sluice::redis
