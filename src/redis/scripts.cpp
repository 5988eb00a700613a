#include "redis/scripts.hpp"

#include <charconv>
#include <cstdio>
#include <optional>
#include <span>
#include <utility>

#include <boost/json/parse.hpp>
#include <boost/uuid/detail/sha1.hpp>

namespace sluice::redis {
namespace {

// Shared by the scripts that end a job (prepended to their source): `count` records a job's move
// in the counters of sluice:{q}:counts — one HINCRBY for a start (`started`) or an end (its
// status's total, and `ended_queued` when it ended without starting), from which the jobs queued
// and running now follow (see JobCounts in redis/job_backend.cpp); `ended` writes the end event, with what a gateway's finish listener needs (delay and
// execution time, whether a webhook is set) so that it need not read the job back.
constexpr std::string_view kEndHelpers = R"lua(
local function count(counts, from, to)
  if to == 'IN_PROGRESS' then
    redis.call('HINCRBY', counts, 'started', 1)
    return
  end
  redis.call('HINCRBY', counts, string.lower(to), 1)
  if from == 'IN_QUEUE' then redis.call('HINCRBY', counts, 'ended_queued', 1) end
end
local function ended(job, events, maxlen, id, status, v, t)
  t = t or redis.call('HMGET', job, 'submitted_ms', 'started_ms', 'finished_ms', 'webhook')
  local delay, run, hook = '', '', '0'
  if t[1] and t[2] then
    delay = tostring(tonumber(t[2]) - tonumber(t[1]))
    if t[3] then run = tostring(tonumber(t[3]) - tonumber(t[2])) end
  end
  if t[4] and t[4] ~= '' then hook = '1' end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', id, 'status', status, 'version', v,
    'delay_ms', delay, 'execution_ms', run, 'webhook', hook)
end
)lua";

// The jobs queued now, from the counters (redis/job_backend.cpp reads them the same way): what
// --max-queue limits.
constexpr std::string_view kQueuedHelper = R"lua(
local function queued(counts)
  local c = redis.call('HMGET', counts, 'submitted', 'retried', 'started', 'ended_queued')
  return tonumber(c[1] or '0') + tonumber(c[2] or '0') - tonumber(c[3] or '0') - tonumber(c[4] or '0')
end
)lua";

// KEYS: job, jobs, events, entries, counts[, idempotency]. ARGV: id, request, webhook,
// submitted_ms, execution_timeout_ms, events maxlen, max_queue (0: none), queue_ttl_ms (0: none),
// idempotency ttl_s. Answers {1, entry} queued; {0, entry} the id exists already (nothing
// changed: a producer's retry is harmless); {2, ''} the queue is full; {3, job_id} the
// idempotency key was seen: the first job's id.
constexpr std::string_view kSubmit = R"lua(
if KEYS[6] then
  local first = redis.call('GET', KEYS[6])
  if first then return {3, first} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'entry') or ''}
end
local max = tonumber(ARGV[7])
if max > 0 and queued(KEYS[5]) >= max then
  redis.call('HINCRBY', KEYS[5], 'rejected_queue_full', 1)
  return {2, ''}
end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'IN_QUEUE', 'request', ARGV[2], 'webhook', ARGV[3],
  'submitted_ms', ARGV[4], 'execution_timeout_ms', ARGV[5], 'queue_ttl_ms', ARGV[8], 'entry', entry,
  'deliveries', '0', 'version', '1')
redis.call('HSET', KEYS[4], entry, ARGV[1])
redis.call('HINCRBY', KEYS[5], 'submitted', 1)
if KEYS[6] then redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[9]) end
return {1, entry}
)lua";

// Shared by the scripts that start jobs (after kEndHelpers): `start` begins one delivered job,
// the `n`th delivery of stream entry `entry`, for the consumer and queue in `q` (jobs, events,
// entries, counts: keys; group, consumer, now, max (max_deliveries, 0: none), ttl, maxlen). The
// delivery count is the stream's own (XREADGROUP and XAUTOCLAIM raise it; the heartbeat's XCLAIM
// JUSTID does not). A job that must not run ends here instead, acknowledged: cancelled while it
// was running on a worker that died (cancel_requested), queued past its policy.ttl (TIMED_OUT),
// or delivered too often (FAILED). Answers as StartAnswer reads them.
constexpr std::string_view kStartHelper = R"lua(
local function start(q, job, chunks, id, entry, n)
  local function drop()
    redis.call('XACK', q.jobs, q.group, entry)
    redis.call('HDEL', q.entries, entry)
  end
  local h = redis.call('HMGET', job, 'status', 'submitted_ms', 'queue_ttl_ms', 'cancel_requested', 'request',
    'version')
  local v = tonumber(h[6] or '0') + 1
  local status = h[1]
  if not status then drop() return {'missing'} end
  if status ~= 'IN_QUEUE' and status ~= 'IN_PROGRESS' then drop() return {'terminal', status} end
  local function finish(to, result)
    redis.call('HSET', job, 'status', to, 'result', result, 'finished_ms', q.now, 'deliveries', n, 'version', v)
    redis.call('EXPIRE', job, q.ttl)
    redis.call('EXPIRE', chunks, q.ttl)
    drop()
    count(q.counts, status, to)
    ended(job, q.events, q.maxlen, id, to, v)
  end
  if h[4] == '1' then
    finish('CANCELLED', '{}')
    return {'terminal', 'CANCELLED'}
  end
  local ttl = tonumber(h[3] or '0')
  if status == 'IN_QUEUE' and ttl > 0 and tonumber(q.now) - tonumber(h[2]) > ttl then
    finish('TIMED_OUT', cjson.encode({error = 'job expired: it waited in the queue longer than its policy.ttl'}))
    return {'terminal', 'TIMED_OUT'}
  end
  if q.max > 0 and n > q.max then
    local err = 'delivered ' .. n .. ' times; --max-deliveries is ' .. q.max
    finish('FAILED', cjson.encode({error = err}))
    return {'failed', err}
  end
  redis.call('HSET', job, 'status', 'IN_PROGRESS', 'started_ms', q.now, 'owner', q.consumer, 'entry', entry,
    'deliveries', n, 'version', v)
  if status == 'IN_QUEUE' then count(q.counts, 'IN_QUEUE', 'IN_PROGRESS') end
  return {'started', h[5], n}
end
)lua";

// KEYS: job, jobs, events, entries, chunks, counts. ARGV: id, entry, consumer, now_ms, group,
// max_deliveries, ttl_s, events maxlen. Starts an entry this consumer holds pending (read with
// XREADGROUP BLOCK, its own pending entries, or claimed by the reaper): only while it still owns it.
constexpr std::string_view kStart = R"lua(
local p = redis.call('XPENDING', KEYS[2], ARGV[5], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return {'not_owner'} end
local q = {jobs = KEYS[2], events = KEYS[3], entries = KEYS[4], counts = KEYS[6], group = ARGV[5],
  consumer = ARGV[3], now = ARGV[4], max = tonumber(ARGV[6]), ttl = ARGV[7], maxlen = ARGV[8]}
return start(q, KEYS[1], KEYS[5], ARGV[1], ARGV[2], p[1][4])
)lua";

// KEYS: jobs, events, entries, counts. ARGV: group, consumer, count, now_ms, max_deliveries,
// ttl_s, events maxlen, key prefix (sluice:{q}:). Reads up to `count` new entries for this
// consumer and starts each, in one step: an entry read here is this consumer's by construction,
// so no ownership check is needed, and a batch costs one script call instead of a read and a call
// per entry. The job keys are built from the prefix, inside the queue's hash tag. Answers
// {{entry, job_id, start answer}, ...} in stream order; job_id '' (and no answer) for an entry
// without an `id` field. Reads nothing when nothing is queued: the caller then blocks in
// XREADGROUP.
constexpr std::string_view kTake = R"lua(
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not read then return {} end
local q = {jobs = KEYS[1], events = KEYS[2], entries = KEYS[3], counts = KEYS[4], group = ARGV[1],
  consumer = ARGV[2], now = ARGV[4], max = tonumber(ARGV[5]), ttl = ARGV[6], maxlen = ARGV[7]}
local out = {}
for _, e in ipairs(read[1][2]) do
  local id
  local f = e[2]
  if f then
    for i = 1, #f, 2 do if f[i] == 'id' then id = f[i + 1] end end
  end
  if id then
    out[#out + 1] = {e[1], id, start(q, ARGV[8] .. 'job:' .. id, ARGV[8] .. 'chunks:' .. id, id, e[1], 1)}
  else
    out[#out + 1] = {e[1], ''}
  end
end
return out
)lua";

// KEYS: job, chunks, events. ARGV: id, consumer, 'progress' | 'chunk', value, events maxlen.
// Returns the new version, or 0 when the job is not running under this consumer.
constexpr std::string_view kUpdate = R"lua(
local h = redis.call('HMGET', KEYS[1], 'status', 'owner', 'version')
if h[1] ~= 'IN_PROGRESS' or h[2] ~= ARGV[2] then return 0 end
local v = tonumber(h[3] or '0') + 1
if ARGV[3] == 'chunk' then
  redis.call('RPUSH', KEYS[2], ARGV[4])
  redis.call('HSET', KEYS[1], 'version', v, 'streamed', '1')
else
  redis.call('HSET', KEYS[1], 'progress', ARGV[4], 'version', v)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1], 'status', 'IN_PROGRESS', 'version', v)
return v
)lua";

// KEYS: jobs, events, entries, counts, then each job's key and chunk list's key. ARGV: consumer,
// ttl_s, group, events maxlen, then for each job: id, entry, status, result, now_ms, fence ('1' |
// '0'). Ends the jobs of a batch (one or more), each as if alone: fenced (only while its entry is
// pending and owned by this consumer, when asked), and only once. Answers one FinishAnswer shape
// per job, in order.
constexpr std::string_view kFinish = R"lua(
local q = {jobs = KEYS[1], events = KEYS[2], entries = KEYS[3], counts = KEYS[4], consumer = ARGV[1],
  ttl = ARGV[2], group = ARGV[3], maxlen = ARGV[4]}
local function finish(job, chunks, id, entry, to, result, now, fence)
  if fence == '1' then
    local p = redis.call('XPENDING', q.jobs, q.group, entry, entry, 1)
    if #p == 0 then return {'not_pending'} end
    if p[1][2] ~= q.consumer then return {'not_owner', p[1][2]} end
  end
  local function drop()
    redis.call('XACK', q.jobs, q.group, entry)
    redis.call('HDEL', q.entries, entry)
  end
  local h = redis.call('HMGET', job, 'status', 'submitted_ms', 'started_ms', 'webhook', 'version', 'streamed')
  local status = h[1]
  if not status then drop() return {'missing'} end
  if status ~= 'IN_QUEUE' and status ~= 'IN_PROGRESS' then drop() return {'terminal', status} end
  local v = tonumber(h[5] or '0') + 1
  redis.call('HSET', job, 'status', to, 'result', result, 'finished_ms', now, 'version', v)
  redis.call('EXPIRE', job, q.ttl)
  if h[6] == '1' then redis.call('EXPIRE', chunks, q.ttl) end
  drop()
  count(q.counts, status, to)
  ended(job, q.events, q.maxlen, id, to, v, {h[2], h[3], now, h[4]})
  return {'finished', v}
end
local out = {}
local k = 5
for a = 5, #ARGV, 6 do
  out[#out + 1] = finish(KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
    ARGV[a + 5])
  k = k + 2
end
return out
)lua";

// KEYS: jobs. ARGV: group, consumer, entries... Re-claims (idle time to 0, delivery count kept)
// the entries still pending for this consumer; returns the others (lost to a reaper, or gone).
constexpr std::string_view kHeartbeat = R"lua(
local owned, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then owned[#owned + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
for i = 1, #owned, 500 do
  local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for j = i, math.min(i + 499, #owned) do args[#args + 1] = owned[j] end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return lost
)lua";

// KEYS: job, chunks, events, cancels, counts. ARGV: id, now_ms, ttl_s, events maxlen, cancels
// maxlen. A running job is marked (cancel_requested: if its worker died, the start script of the
// worker that reclaims it ends it CANCELLED) and announced on the cancels stream.
constexpr std::string_view kCancel = R"lua(
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'IN_QUEUE' then
  redis.call('HSET', KEYS[1], 'status', 'CANCELLED', 'result', '{}', 'finished_ms', ARGV[2])
  local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  count(KEYS[5], 'IN_QUEUE', 'CANCELLED')
  ended(KEYS[1], KEYS[3], ARGV[4], ARGV[1], 'CANCELLED', v)
  return 'cancelled'
end
if status == 'IN_PROGRESS' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1])
  return 'signalled'
end
return status
)lua";

// KEYS: job, jobs, events, entries, chunks, counts. ARGV: id, now_ms, events maxlen, max_queue.
// Queues a FAILED, TIMED_OUT or CANCELLED job again under its id, as a fresh submission (its
// result, chunks and times forgotten; its policy.ttl no longer applies). Answers {'queued'},
// {'missing'}, {'full'} or {'wrong_status', status}.
constexpr std::string_view kRetry = R"lua(
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'FAILED' and status ~= 'TIMED_OUT' and status ~= 'CANCELLED' then return {'wrong_status', status} end
local max = tonumber(ARGV[4])
if max > 0 and queued(KEYS[6]) >= max then return {'full'} end
redis.call('PERSIST', KEYS[1])
redis.call('DEL', KEYS[5])
redis.call('HDEL', KEYS[1], 'result', 'started_ms', 'finished_ms', 'owner', 'progress', 'stream_read',
  'cancel_requested', 'webhook_claimed', 'streamed')
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'IN_QUEUE', 'entry', entry, 'deliveries', '0', 'submitted_ms', ARGV[2],
  'queue_ttl_ms', '0')
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[4], entry, ARGV[1])
redis.call('HINCRBY', KEYS[6], 'retried', 1)
return {'queued'}
)lua";

// KEYS: jobs, events, entries, counts. ARGV: group, now_ms, ttl_s, events maxlen, key prefix
// (sluice:{q}:). Every entry no worker has read yet is deleted and its queued job ends CANCELLED;
// entries delivered to a worker are left to it. The job keys are built from the prefix, inside the
// queue's hash tag, so the script stays in the queue's cluster slot. Returns how many jobs ended.
constexpr std::string_view kPurge = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local from = '-'
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then from = '(' .. f['last-delivered-id'] end
end
local n = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[1], from, '+')) do
  local id
  for i = 1, #e[2], 2 do if e[2][i] == 'id' then id = e[2][i + 1] end end
  if id then
    local job = ARGV[5] .. 'job:' .. id
    if redis.call('HGET', job, 'status') == 'IN_QUEUE' then
      redis.call('HSET', job, 'status', 'CANCELLED', 'result', '{}', 'finished_ms', ARGV[2])
      local v = redis.call('HINCRBY', job, 'version', 1)
      redis.call('EXPIRE', job, ARGV[3])
      count(KEYS[4], 'IN_QUEUE', 'CANCELLED')
      ended(job, KEYS[2], ARGV[4], id, 'CANCELLED', v)
      n = n + 1
    end
  end
  redis.call('XDEL', KEYS[1], e[1])
  redis.call('HDEL', KEYS[3], e[1])
end
return n
)lua";

// KEYS: jobs. ARGV: group. Drops the entries every worker is done with — those below both the
// oldest entry still pending and the group's next undelivered one — with XTRIM MINID ~ (whole
// stream nodes: cheap, and never an entry at or above the bound). Finishing a job only
// acknowledges its entry (an XDEL per job costs more than this per round). Returns how many went.
constexpr std::string_view kTrim = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then last = f['last-delivered-id'] end
end
if not last then return 0 end
local ms, seq = string.match(last, '^(%d+)-(%d+)$')
if not ms then return 0 end
local bound = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
if p[1] > 0 then bound = p[2] end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', bound)
)lua";

// KEYS: job, chunks. ARGV: the first chunk's index, or -1 for the job's stream cursor (the chunks
// new since the last such read, which moves the cursor). Answers nil for an unknown job, else
// {fields (JobFields order), chunks, next index}.
constexpr std::string_view kReadChunks = R"lua(
local h = redis.call('HMGET', KEYS[1], 'status', 'submitted_ms', 'started_ms', 'finished_ms', 'result',
  'progress', 'webhook', 'version', 'stream_read')
if not h[1] then return false end
local len = redis.call('LLEN', KEYS[2])
local from = tonumber(ARGV[1])
if from < 0 then from = tonumber(h[9] or '0') end
if from > len then from = len end
local chunks = redis.call('LRANGE', KEYS[2], from, -1)
if ARGV[1] == '-1' then redis.call('HSET', KEYS[1], 'stream_read', len) end
h[9] = nil
return {h, chunks, len}
)lua";

Script Make(std::string_view name, std::string_view source) {
  return Script{name, std::string(source), Sha1Hex(source)};
}
// A script that ends jobs: the shared helpers, then its own body.
Script MakeEnding(std::string_view name, std::string_view body) {
  return Make(name, std::string(kEndHelpers) + std::string(body));
}

std::vector<std::string> Argv(std::string_view command, std::string_view script, const ScriptCall& call) {
  std::vector<std::string> argv;
  argv.reserve(3 + call.keys.size() + call.args.size());
  argv.emplace_back(command);
  argv.emplace_back(script);
  argv.push_back(std::to_string(call.keys.size()));
  argv.insert(argv.end(), call.keys.begin(), call.keys.end());
  argv.insert(argv.end(), call.args.begin(), call.args.end());
  return argv;
}

bool IsText(const Reply& reply) { return reply.is_string() || reply.is_status(); }

}  // namespace

const Script& SubmitScript() {
  static const Script script = Make("submit", std::string(kQueuedHelper) + std::string(kSubmit));
  return script;
}
const Script& StartScript() {
  static const Script script = MakeEnding("start", std::string(kStartHelper) + std::string(kStart));
  return script;
}
const Script& TakeScript() {
  static const Script script = MakeEnding("take", std::string(kStartHelper) + std::string(kTake));
  return script;
}
const Script& UpdateScript() {
  static const Script script = Make("update", kUpdate);
  return script;
}
const Script& FinishScript() {
  static const Script script = MakeEnding("finish", kFinish);
  return script;
}
const Script& HeartbeatScript() {
  static const Script script = Make("heartbeat", kHeartbeat);
  return script;
}
const Script& RetryScript() {
  static const Script script = Make("retry", std::string(kQueuedHelper) + std::string(kRetry));
  return script;
}
const Script& PurgeScript() {
  static const Script script = MakeEnding("purge", kPurge);
  return script;
}
const Script& TrimScript() {
  static const Script script = Make("trim", kTrim);
  return script;
}
const Script& ReadChunksScript() {
  static const Script script = Make("read_chunks", kReadChunks);
  return script;
}
const Script& CancelScript() {
  static const Script script = MakeEnding("cancel", kCancel);
  return script;
}

std::string Sha1Hex(std::string_view bytes) {
  boost::uuids::detail::sha1 sha;
  sha.process_bytes(bytes.data(), bytes.size());
  boost::uuids::detail::sha1::digest_type digest;
  sha.get_digest(digest);
  char text[41];
  for (int i = 0; i < 5; ++i) std::snprintf(text + 8 * i, 9, "%08x", digest[i]);
  return std::string(text, 40);
}

std::vector<std::string> ScriptCall::EvalShaArgv() const { return Argv("EVALSHA", script->sha1, *this); }
std::vector<std::string> ScriptCall::EvalArgv() const { return Argv("EVAL", script->source, *this); }

std::int64_t UnixMillis(std::chrono::system_clock::time_point when) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
}

ScriptCall SubmitCall(const Keys& keys, const SubmitParams& params) {
  ScriptCall call;
  call.script = &SubmitScript();
  call.keys = {keys.job(params.job_id), keys.jobs(), keys.events(), keys.entries(), keys.counts()};
  if (!params.idempotency_key.empty()) call.keys.push_back(keys.idempotency(params.idempotency_key));
  call.args = {params.job_id,
               params.request_json,
               params.webhook,
               std::to_string(params.submitted_ms),
               std::to_string(params.execution_timeout_ms),
               std::to_string(kEventsMaxLen),
               std::to_string(params.max_queue),
               std::to_string(params.queue_ttl_ms),
               std::to_string(params.idempotency_ttl_s)};
  return call;
}

bool ParseSubmit(const Reply& reply, SubmitAnswer& out) {
  if (!reply.is_array() || reply.size() != 2 || !reply[0].is_integer() || !IsText(reply[1])) return false;
  switch (reply[0].integer()) {
    case 0:
      out.kind = SubmitAnswer::Kind::kExists;
      out.entry = reply[1].str();
      break;
    case 1:
      out.kind = SubmitAnswer::Kind::kQueued;
      out.entry = reply[1].str();
      break;
    case 2:
      out.kind = SubmitAnswer::Kind::kQueueFull;
      break;
    case 3:
      out.kind = SubmitAnswer::Kind::kRepeatedKey;
      out.job_id = reply[1].str();
      break;
    default:
      return false;
  }
  out.created = out.kind == SubmitAnswer::Kind::kQueued;
  return true;
}

ScriptCall StartCall(const Keys& keys, const StartParams& params) {
  ScriptCall call;
  call.script = &StartScript();
  call.keys = {keys.job(params.job_id), keys.jobs(),  keys.events(),
               keys.entries(),           keys.chunks(params.job_id), keys.counts()};
  call.args = {params.job_id,
               params.entry,
               params.consumer,
               std::to_string(params.now_ms),
               std::string(kGroup),
               std::to_string(params.max_deliveries),
               std::to_string(params.result_ttl_s),
               std::to_string(kEventsMaxLen)};
  return call;
}

StartAnswer ParseStart(const Reply& reply) {
  StartAnswer answer;
  if (!reply.is_array() || reply.size() == 0 || !IsText(reply[0])) return answer;
  const std::string& kind = reply[0].str();
  if (kind == "started" && reply.size() == 3 && IsText(reply[1]) && reply[2].is_integer()) {
    answer.kind = StartAnswer::Kind::kStarted;
    answer.request = reply[1].str();
    answer.deliveries = reply[2].integer();
  } else if (kind == "terminal" && reply.size() == 2 && IsText(reply[1])) {
    answer.kind = StartAnswer::Kind::kTerminal;
    answer.detail = reply[1].str();
  } else if (kind == "failed" && reply.size() == 2 && IsText(reply[1])) {
    answer.kind = StartAnswer::Kind::kFailed;
    answer.detail = reply[1].str();
  } else if (kind == "missing") {
    answer.kind = StartAnswer::Kind::kMissing;
  } else if (kind == "not_owner") {
    answer.kind = StartAnswer::Kind::kNotOwner;
  }
  return answer;
}

ScriptCall TakeCall(const Keys& keys, const TakeParams& params) {
  ScriptCall call;
  call.script = &TakeScript();
  call.keys = {keys.jobs(), keys.events(), keys.entries(), keys.counts()};
  call.args = {std::string(kGroup),
               params.consumer,
               std::to_string(params.count),
               std::to_string(params.now_ms),
               std::to_string(params.max_deliveries),
               std::to_string(params.result_ttl_s),
               std::to_string(kEventsMaxLen),
               keys.prefix()};
  return call;
}

bool ParseTake(const Reply& reply, std::vector<TakenEntry>& out) {
  if (!reply.is_array()) return false;
  for (const Reply& item : reply.elements()) {
    if (!item.is_array() || item.size() < 2 || !IsText(item[0]) || !IsText(item[1])) return false;
    TakenEntry taken;
    taken.entry.entry = item[0].str();
    taken.entry.job_id = item[1].str();
    if (!taken.entry.job_id.empty()) {
      if (item.size() != 3) return false;
      taken.answer = ParseStart(item[2]);
      if (taken.answer.kind == StartAnswer::Kind::kBadReply) return false;
    }
    out.push_back(std::move(taken));
  }
  return true;
}

ScriptCall UpdateCall(const Keys& keys, const std::string& job_id, const std::string& consumer, UpdateKind kind,
                      std::string value_json) {
  ScriptCall call;
  call.script = &UpdateScript();
  call.keys = {keys.job(job_id), keys.chunks(job_id), keys.events()};
  call.args = {job_id, consumer, kind == UpdateKind::kChunk ? "chunk" : "progress", std::move(value_json),
               std::to_string(kEventsMaxLen)};
  return call;
}

ScriptCall FinishCall(const Keys& keys, std::span<const FinishParams* const> batch) {
  ScriptCall call;
  call.script = &FinishScript();
  call.keys.reserve(4 + 2 * batch.size());
  call.keys = {keys.jobs(), keys.events(), keys.entries(), keys.counts()};
  call.args.reserve(4 + 6 * batch.size());
  // The batch shares its consumer and result TTL: one sink's finishes (FinishBatch).
  call.args = {batch.empty() ? std::string() : batch.front()->consumer,
               std::to_string(batch.empty() ? 0 : batch.front()->result_ttl_s), std::string(kGroup),
               std::to_string(kEventsMaxLen)};
  for (const FinishParams* params : batch) {
    call.keys.push_back(keys.job(params->job_id));
    call.keys.push_back(keys.chunks(params->job_id));
    call.args.push_back(params->job_id);
    call.args.push_back(params->entry);
    call.args.push_back(params->status);
    call.args.push_back(params->result_json);
    call.args.push_back(std::to_string(params->now_ms));
    call.args.emplace_back(params->fence ? "1" : "0");
  }
  return call;
}

ScriptCall FinishCall(const Keys& keys, const FinishParams& params) {
  const FinishParams* one[] = {&params};
  return FinishCall(keys, one);
}

bool ParseFinishReply(const Reply& reply, std::size_t count, std::vector<FinishAnswer>& out) {
  if (!reply.is_array() || reply.size() != count) return false;
  for (const Reply& item : reply.elements()) {
    FinishAnswer answer = ParseFinish(item);
    if (answer.kind == FinishAnswer::Kind::kBadReply) return false;
    out.push_back(std::move(answer));
  }
  return true;
}

FinishAnswer ParseFinish(const Reply& reply) {
  FinishAnswer answer;
  if (!reply.is_array() || reply.size() == 0 || !IsText(reply[0])) return answer;
  const std::string& kind = reply[0].str();
  if (kind == "finished" && reply.size() == 2 && reply[1].is_integer()) {
    answer.kind = FinishAnswer::Kind::kFinished;
    answer.version = reply[1].integer();
  } else if (kind == "not_pending") {
    answer.kind = FinishAnswer::Kind::kNotPending;
  } else if (kind == "not_owner" && reply.size() == 2 && IsText(reply[1])) {
    answer.kind = FinishAnswer::Kind::kNotOwner;
    answer.detail = reply[1].str();
  } else if (kind == "terminal" && reply.size() == 2 && IsText(reply[1])) {
    answer.kind = FinishAnswer::Kind::kTerminal;
    answer.detail = reply[1].str();
  } else if (kind == "missing") {
    answer.kind = FinishAnswer::Kind::kMissing;
  }
  return answer;
}

ScriptCall HeartbeatCall(const Keys& keys, const std::string& consumer, const std::vector<std::string>& entries) {
  ScriptCall call;
  call.script = &HeartbeatScript();
  call.keys = {keys.jobs()};
  call.args.reserve(2 + entries.size());
  call.args.emplace_back(kGroup);
  call.args.push_back(consumer);
  call.args.insert(call.args.end(), entries.begin(), entries.end());
  return call;
}

ScriptCall CancelCall(const Keys& keys, const std::string& job_id, std::int64_t now_ms, std::int64_t result_ttl_s) {
  ScriptCall call;
  call.script = &CancelScript();
  call.keys = {keys.job(job_id), keys.chunks(job_id), keys.events(), keys.cancels(), keys.counts()};
  call.args = {job_id, std::to_string(now_ms), std::to_string(result_ttl_s), std::to_string(kEventsMaxLen),
               std::to_string(kCancelsMaxLen)};
  return call;
}

ScriptCall RetryCall(const Keys& keys, const std::string& job_id, std::int64_t now_ms, std::size_t max_queue) {
  ScriptCall call;
  call.script = &RetryScript();
  call.keys = {keys.job(job_id), keys.jobs(), keys.events(), keys.entries(), keys.chunks(job_id), keys.counts()};
  call.args = {job_id, std::to_string(now_ms), std::to_string(kEventsMaxLen), std::to_string(max_queue)};
  return call;
}

ScriptCall PurgeCall(const Keys& keys, std::int64_t now_ms, std::int64_t result_ttl_s) {
  ScriptCall call;
  call.script = &PurgeScript();
  call.keys = {keys.jobs(), keys.events(), keys.entries(), keys.counts()};
  call.args = {std::string(kGroup), std::to_string(now_ms), std::to_string(result_ttl_s),
               std::to_string(kEventsMaxLen), keys.prefix()};
  return call;
}

std::optional<std::int64_t> ParseInteger(std::string_view text) {
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

const std::vector<std::string>& JobFields() {
  static const std::vector<std::string> fields{"status", "submitted_ms", "started_ms", "finished_ms",
                                               "result", "progress",     "webhook",    "version"};
  return fields;
}

namespace {

std::optional<std::int64_t> Integer(const Reply& field) {
  return IsText(field) ? ParseInteger(field.str()) : std::nullopt;
}

}  // namespace

bool ParseJobFields(std::string_view job_id, const Reply& fields, core::JobView& out) {
  if (!fields.is_array() || fields.size() < JobFields().size() || !IsText(fields[0])) return false;
  const std::optional<core::JobStatus> status = core::JobStatusNamed(fields[0].str());
  if (!status) return false;
  out = core::JobView{};
  out.id = std::string(job_id);
  out.status = *status;
  const std::optional<std::int64_t> submitted = Integer(fields[1]);
  const std::optional<std::int64_t> started = Integer(fields[2]);
  const std::optional<std::int64_t> finished = Integer(fields[3]);
  if (submitted && started) {
    out.delay_ms = *started - *submitted;
    if (finished && core::IsTerminal(*status)) out.execution_ms = *finished - *started;
  }
  const Reply& text = core::IsTerminal(*status) ? fields[4] : fields[5];
  if (IsText(text)) {
    boost::system::error_code ec;
    boost::json::value parsed = boost::json::parse(text.str(), ec);
    if (ec) return false;
    if (core::IsTerminal(*status)) {
      if (!parsed.is_object()) return false;
      out.result = std::move(parsed.as_object());
    } else {
      out.result.emplace("output", std::move(parsed));  // the latest progress update, as RunPod shows it
    }
  }
  if (IsText(fields[6])) out.webhook = fields[6].str();
  out.version = static_cast<std::uint64_t>(Integer(fields[7]).value_or(0));
  return true;
}

ScriptCall TrimCall(const Keys& keys) {
  ScriptCall call;
  call.script = &TrimScript();
  call.keys = {keys.jobs()};
  call.args = {std::string(kGroup)};
  return call;
}

ScriptCall ReadChunksCall(const Keys& keys, const std::string& job_id, std::int64_t from_index) {
  ScriptCall call;
  call.script = &ReadChunksScript();
  call.keys = {keys.job(job_id), keys.chunks(job_id)};
  call.args = {std::to_string(from_index < 0 ? -1 : from_index)};
  return call;
}

namespace {

// [id, [field, value, ...]] or [id, nil] → an entry; false on another shape.
bool ParseEntry(const Reply& item, StreamEntry& out) {
  if (!item.is_array() || item.size() != 2 || !IsText(item[0])) return false;
  out.entry = item[0].str();
  out.job_id.clear();
  if (item[1].is_nil()) return true;
  if (!item[1].is_array()) return false;
  const Reply& fields = item[1];
  for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
    if (IsText(fields[i]) && fields[i].str() == "id" && IsText(fields[i + 1])) out.job_id = fields[i + 1].str();
  }
  return true;
}

bool ParseEntryList(const Reply& list, std::vector<StreamEntry>& out) {
  if (!list.is_array()) return false;
  for (const Reply& item : list.elements()) {
    StreamEntry entry;
    if (!ParseEntry(item, entry)) return false;
    out.push_back(std::move(entry));
  }
  return true;
}

}  // namespace

bool ParseReadGroup(const Reply& reply, std::vector<StreamEntry>& out) {
  if (reply.is_nil()) return true;
  if (!reply.is_array()) return false;
  for (const Reply& stream : reply.elements()) {
    if (!stream.is_array() || stream.size() != 2) return false;
    if (!ParseEntryList(stream[1], out)) return false;
  }
  return true;
}

bool ParseAutoclaim(const Reply& reply, AutoclaimAnswer& out) {
  if (!reply.is_array() || reply.size() < 2 || !IsText(reply[0])) return false;
  out.cursor = reply[0].str();
  if (!ParseEntryList(reply[1], out.claimed)) return false;
  if (reply.size() >= 3) {
    if (!reply[2].is_array()) return false;
    for (const Reply& id : reply[2].elements()) {
      if (!IsText(id)) return false;
      out.deleted.push_back(id.str());
    }
  }
  return true;
}

bool ParseCancels(const Reply& reply, std::vector<std::string>& job_ids, std::string& last_entry) {
  std::vector<StreamEntry> entries;
  if (!ParseReadGroup(reply, entries)) return false;  // XREAD answers in the same shape
  for (StreamEntry& entry : entries) {
    last_entry = entry.entry;
    if (!entry.job_id.empty()) job_ids.push_back(std::move(entry.job_id));
  }
  return true;
}

}  // namespace sluice::redis
