#include "api/job_api.hpp"

// GCC 12 reports a mismatched new/delete at the end of some coroutines here (seen in RunSync,
// in the sanitizer build): it pairs Asio's frame allocation (aligned_new through its recycling
// allocator) with the frame's sized operator delete, which do match. A false positive of its view
// of inlined coroutine frames.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>

#include "api/flow_metrics.hpp"
#include "core/json_text.hpp"
#include "flow/flow_registry.hpp"
#include "log/logging.hpp"

namespace sluice::api {
namespace json = boost::json;
using core::JobStatus;
using core::JobView;
using Clock = std::chrono::steady_clock;

enum class RouteName { kRun, kRunSync, kStatus, kStream, kCancel, kRetry, kPurgeQueue, kHealth, kMetrics };

struct Route {
  RouteName name;
  std::string_view job_id;  // for the routes that name a job
  std::string_view allow;   // the methods it accepts, for 405's Allow header
};

namespace {

constexpr std::size_t kMebibyte = 1024 * 1024;
constexpr std::int64_t kMinWaitMs = 1000;
constexpr std::int64_t kMaxWaitMs = 300000;
constexpr std::int64_t kMaxPolicyMs = 7LL * 24 * 3600 * 1000;
// A /runsync whose client left is noticed within this long (the wait wakes to look).
constexpr auto kClientCheckInterval = std::chrono::seconds(1);

// The route of a path, in either layout: /run or /v2/{endpoint_id}/run. Job ids are plain
// (UUIDs), so the path is matched as sent, without percent-decoding.
std::optional<Route> MatchRoute(std::string_view path) {
  std::array<std::string_view, 5> segments;
  std::size_t count = 0;
  if (path.empty() || path.front() != '/') return std::nullopt;
  path.remove_prefix(1);
  while (true) {
    const std::size_t slash = path.find('/');
    if (count == segments.size()) return std::nullopt;
    segments[count++] = path.substr(0, slash);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  std::size_t first = 0;
  if (count >= 3 && segments[0] == "v2" && !segments[1].empty()) first = 2;
  const std::size_t rest = count - first;
  const std::string_view name = segments[first];
  if (rest == 1) {
    if (name == "run") return Route{RouteName::kRun, {}, "POST"};
    if (name == "runsync") return Route{RouteName::kRunSync, {}, "POST"};
    if (name == "purge-queue") return Route{RouteName::kPurgeQueue, {}, "POST"};
    if (name == "health") return Route{RouteName::kHealth, {}, "GET, POST"};
    if (name == "metrics") return Route{RouteName::kMetrics, {}, "GET"};
    return std::nullopt;
  }
  if (rest != 2 || segments[first + 1].empty()) return std::nullopt;
  const std::string_view id = segments[first + 1];
  if (name == "status") return Route{RouteName::kStatus, id, "GET, POST"};
  if (name == "stream") return Route{RouteName::kStream, id, "GET, POST"};
  if (name == "cancel") return Route{RouteName::kCancel, id, "POST"};
  if (name == "retry") return Route{RouteName::kRetry, id, "POST"};
  return std::nullopt;
}

bool Allows(std::string_view allow, std::string_view method) {
  while (!allow.empty()) {
    const std::size_t comma = allow.find(',');
    std::string_view one = allow.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    if (one == method) return true;
    if (comma == std::string_view::npos) break;
    allow.remove_prefix(comma + 1);
  }
  return false;
}

http::Response JsonResponse(unsigned status, std::string body) {
  http::Response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

http::Response ErrorResponse(unsigned status, std::string_view message) {
  std::string body = "{\"error\":";
  core::AppendJson(body, json::value(message));
  body += '}';
  return JsonResponse(status, std::move(body));
}

unsigned HttpStatusOf(const core::Status& status) {
  switch (status.code()) {
    case core::StatusCode::kInvalidArgument: return 400;
    case core::StatusCode::kNotFound: return 404;
    case core::StatusCode::kFailedPrecondition: return 409;
    case core::StatusCode::kResourceExhausted: return 429;
    case core::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

http::Response StatusErrorResponse(const core::Status& status) {
  http::Response response = ErrorResponse(HttpStatusOf(status), status.message());
  if (response.status == 429) response.headers.push_back({"Retry-After", "1"});
  return response;
}

// {"id":…,"status":…}: the answer of /run, /retry, /cancel and an unfinished /runsync.
std::string IdAndStatus(std::string_view id, JobStatus status) {
  std::string body = "{\"id\":";
  core::AppendJson(body, json::value(id));
  body += ",\"status\":\"";
  body += core::ToString(status);
  body += "\"}";
  return body;
}

// The cloud's status object, keys in its order: delayTime, executionTime, id, output|error, status.
std::string StatusObject(const JobView& job) {
  std::string body = "{";
  if (job.delay_ms) fmt::format_to(std::back_inserter(body), "\"delayTime\":{},", *job.delay_ms);
  if (job.execution_ms) fmt::format_to(std::back_inserter(body), "\"executionTime\":{},", *job.execution_ms);
  body += "\"id\":";
  core::AppendJson(body, json::value(job.id));
  for (const char* key : {"output", "error"}) {
    if (auto it = job.result.find(key); it != job.result.end() && !(job.status == JobStatus::kCompleted && std::string_view(key) == "error")) {
      body += ",\"";
      body += key;
      body += "\":";
      core::AppendJson(body, it->value());
    }
  }
  body += ",\"status\":\"";
  body += core::ToString(job.status);
  body += "\"}";
  return body;
}

// The raw value of a query parameter; nothing when absent, "" when present without a value.
std::optional<std::string_view> QueryParameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t equals = pair.find('=');
    if (pair.substr(0, equals) == name) {
      return equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

// A whole number of milliseconds within [min, max] from JSON: an integer, or a double with no
// fraction (JavaScript clients send 60000.0 at times).
std::optional<std::int64_t> WholeMilliseconds(const json::value& value, std::int64_t min, std::int64_t max) {
  std::int64_t ms;
  if (value.is_int64()) {
    ms = value.get_int64();
  } else if (value.is_uint64()) {
    if (value.get_uint64() > static_cast<std::uint64_t>(max)) return std::nullopt;
    ms = static_cast<std::int64_t>(value.get_uint64());
  } else if (value.is_double()) {
    const double number = value.get_double();
    if (!(number >= static_cast<double>(min) && number <= static_cast<double>(max)) || std::floor(number) != number) {
      return std::nullopt;
    }
    ms = static_cast<std::int64_t>(number);
  } else {
    return std::nullopt;
  }
  if (ms < min || ms > max) return std::nullopt;
  return ms;
}

bool IsHttpUrl(std::string_view text) {
  auto url = boost::urls::parse_absolute_uri(text);
  if (!url) return false;
  const std::string_view scheme = url->scheme();
  return (scheme == "http" || scheme == "https") && url->has_authority() && !url->host().empty();
}

// Reads a /run or /runsync body into a job, or says what is wrong with it.
core::Result<core::NewJob> ParseJobRequest(std::string_view body) {
  core::Result<json::value> parsed = core::ParseJson(body);
  if (!parsed.ok()) return core::Status::InvalidArgument("malformed JSON: " + parsed.status().message());
  if (!parsed->is_object()) {
    return core::Status::InvalidArgument("the request body must be a JSON object with an \"input\" member");
  }
  core::NewJob job;
  job.request = std::move(parsed->get_object());
  const json::object& request = job.request;
  if (auto input = request.find("input"); input == request.end() || input->value().is_null()) {
    return core::Status::InvalidArgument("the request has no \"input\" (or it is null): send {\"input\": ...}");
  }
  if (auto webhook = request.find("webhook"); webhook != request.end() && !webhook->value().is_null()) {
    if (!webhook->value().is_string() || !IsHttpUrl(webhook->value().get_string())) {
      return core::Status::InvalidArgument(
          fmt::format("\"webhook\" must be an http:// or https:// URL, got {}", core::ToJson(webhook->value())));
    }
    job.webhook = std::string(webhook->value().get_string());
  }
  if (auto policy = request.find("policy"); policy != request.end() && !policy->value().is_null()) {
    if (!policy->value().is_object()) {
      return core::Status::InvalidArgument("\"policy\" must be an object, e.g. {\"executionTimeout\": 60000}");
    }
    const json::object& fields = policy->value().get_object();
    for (const char* key : {"executionTimeout", "ttl"}) {
      auto field = fields.find(key);
      if (field == fields.end() || field->value().is_null()) continue;
      const auto ms = WholeMilliseconds(field->value(), 1, kMaxPolicyMs);
      if (!ms) {
        return core::Status::InvalidArgument(fmt::format(
            "policy.{} must be a whole number of milliseconds from 1 to {}, got {}", key, kMaxPolicyMs,
            core::ToJson(field->value())));
      }
      (std::string_view(key) == "ttl" ? job.ttl : job.execution_timeout) = std::chrono::milliseconds(*ms);
    }
  }
  return job;
}

// Compares without an early exit, so the time taken does not tell how much of a guess was right.
bool SameSecret(std::string_view given, std::string_view expected) {
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ expected[i % std::max<std::size_t>(1, expected.size())]);
  }
  return difference == 0;
}

bool WantsEventStream(std::string_view accept) { return accept.find("text/event-stream") != std::string_view::npos; }

// The polling /stream answer: {"id","status","stream":[{"output":chunk},…]}.
std::string StreamBody(std::string_view job_id, const core::StreamRead& read) {
  std::string body = "{\"id\":";
  core::AppendJson(body, json::value(job_id));
  body += ",\"status\":\"";
  body += core::ToString(read.job.status);
  body += "\",\"stream\":[";
  for (std::size_t i = 0; i < read.chunks.size(); ++i) {
    if (i > 0) body += ',';
    body += "{\"output\":";
    core::AppendJson(body, read.chunks[i]);
    body += '}';
  }
  body += "]}";
  return body;
}

// The longest X-Idempotency-Key accepted.
constexpr std::size_t kMaxIdempotencyKeyBytes = 256;

// A /run or /runsync request, checked: the job, and the idempotency key it came with.
struct Submission {
  core::NewJob job;
  std::optional<std::string> idempotency_key;
};

core::Result<Submission> ParseSubmission(const http::Request& request) {
  core::Result<core::NewJob> job = ParseJobRequest(request.body);
  if (!job.ok()) return job.status();
  Submission submission{std::move(job).value(), std::nullopt};
  const std::string_view key = request.header("X-Idempotency-Key");
  if (key.size() > kMaxIdempotencyKeyBytes) {
    return core::Status::InvalidArgument(fmt::format("X-Idempotency-Key is {} bytes; it may have at most {}",
                                                     key.size(), kMaxIdempotencyKeyBytes));
  }
  if (!key.empty()) submission.idempotency_key.emplace(key);
  return submission;
}

}  // namespace

JobApi::JobApi(core::JobBackend& backend, WebhookSender& webhooks, JobApiOptions options, WorkerGauges gauges)
    : backend_(backend), webhooks_(webhooks), options_(std::move(options)), gauges_(std::move(gauges)) {}

std::size_t JobApi::BodyLimit(const http::RequestHead& head) const {
  if (options_.max_body_bytes) return *options_.max_body_bytes;
  const std::string_view target = head.target;
  const std::string_view path = target.substr(0, target.find('?'));
  const auto route = MatchRoute(path);
  if (route && route->name == RouteName::kRun) return 10 * kMebibyte;
  if (route && route->name == RouteName::kRunSync) return 20 * kMebibyte;
  return kMebibyte;
}

// The answer to a request that is not allowed in (a bad or missing token); nothing when it may.
std::optional<http::Response> JobApi::Refuse(const http::Request& request) const {
  if (options_.auth_token.empty()) return std::nullopt;
  const std::string_view authorization = request.header("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  const bool bearer = authorization.size() > kBearer.size() &&
                      std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                                 [](char a, char b) { return std::tolower(a) == std::tolower(b); });
  if (bearer && SameSecret(authorization.substr(kBearer.size()), options_.auth_token)) return std::nullopt;
  http::Response response = ErrorResponse(
      401, authorization.empty() ? "missing Authorization header: send 'Authorization: Bearer <token>'"
                                 : "wrong token in the Authorization header");
  response.headers.push_back({"WWW-Authenticate", "Bearer"});
  return response;
}

// Whether a request is turned away before its route: not allowed in (401), no route (404), or a
// method the route does not take (405); `response` is then the answer. (An out-parameter rather
// than an optional: Handle's coroutine frame stays smaller.)
bool JobApi::Reject(const http::Request& request, const std::optional<Route>& route, std::string_view path,
                    http::Response& response) const {
  if (std::optional<http::Response> refusal = Refuse(request)) {
    response = std::move(*refusal);
  } else if (!route) {
    response = ErrorResponse(404, fmt::format("no route for {} {}", request.method, path));
  } else if (!Allows(route->allow, request.method)) {
    response = ErrorResponse(405, fmt::format("{} does not accept {}; use {}", path, request.method, route->allow));
    response.headers.push_back({"Allow", std::string(route->allow)});
  } else {
    return false;
  }
  return true;
}

// /run, the hottest route, is answered in Handle's own frame, so it costs the backend's Submit
// frame and nothing more. The frames are kept under the 1020 bytes Asio's per-thread cache of
// coroutine frames recycles (larger ones are a malloc and a free per request): every route but
// /run awaits in a coroutine of its own, and each coroutine has one `response`.
Task<void> JobApi::Handle(http::Request& request, http::ResponseWriter& writer) {
  const std::string_view target = request.target;
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::optional<Route> route = MatchRoute(path);
  http::Response response;
  if (Reject(request, route, path, response)) {
    // answered below
  } else if (route->name == RouteName::kRunSync) {
    const std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
    co_await RunSync(request, writer, QueryParameter(query, "wait"));
    co_return;
  } else if (route->name == RouteName::kStream) {
    co_await Stream(request, writer, route->job_id);
    co_return;
  } else if (route->name != RouteName::kRun) {
    co_await Answer(writer, *route);
    co_return;
  } else if (core::Result<Submission> submission = ParseSubmission(request); !submission.ok()) {
    response = StatusErrorResponse(submission.status());
  } else {
    const core::Result<std::string> id =
        co_await backend_.Submit(std::move(submission->job), std::move(submission->idempotency_key));
    response = id.ok() ? JsonResponse(200, IdAndStatus(*id, JobStatus::kInQueue)) : StatusErrorResponse(id.status());
  }
  co_await writer.Send(std::move(response));
}

// The routes that read or change jobs and answer at once: /status, /cancel, /retry, /purge-queue,
// /health and /metrics.
Task<void> JobApi::Answer(http::ResponseWriter& writer, Route route) {
  const std::string_view job_id = route.job_id;
  http::Response response;
  switch (route.name) {
    case RouteName::kStatus: {
      const core::Result<JobView> job = co_await backend_.Find(job_id);
      response = job.ok() ? JsonResponse(200, StatusObject(*job)) : StatusErrorResponse(job.status());
      break;
    }
    case RouteName::kCancel: {
      const core::Result<JobStatus> status = co_await backend_.Cancel(job_id);
      if (!status.ok()) {
        response = StatusErrorResponse(status.status());
        break;
      }
      log::Debug(job_id, "Cancel requested.");
      response = JsonResponse(200, IdAndStatus(job_id, *status));
      break;
    }
    case RouteName::kRetry: {
      const core::Status status = co_await backend_.Retry(job_id);
      response = status.ok() ? JsonResponse(200, IdAndStatus(job_id, JobStatus::kInQueue)) : StatusErrorResponse(status);
      break;
    }
    case RouteName::kPurgeQueue: {
      const core::Result<std::size_t> removed = co_await backend_.Purge();
      response = removed.ok() ? JsonResponse(200, fmt::format("{{\"removed\":{},\"status\":\"completed\"}}", *removed))
                              : StatusErrorResponse(removed.status());
      break;
    }
    case RouteName::kHealth:
    case RouteName::kMetrics: {
      const Clock::time_point deadline = Clock::now() + options_.counts_deadline;
      const core::Result<core::JobCounts> counts = co_await backend_.Counts(deadline);
      if (!counts.ok()) {
        response = StatusErrorResponse(counts.status());
      } else if (route.name == RouteName::kHealth) {
        response = JsonResponse(200, HealthBody(*counts));
      } else {
        response.content_type = std::string(kPrometheusContentType);
        response.body = RenderMetrics(*counts);
      }
      break;
    }
    case RouteName::kRun:
    case RouteName::kRunSync:
    case RouteName::kStream:
      response = ErrorResponse(500, "unhandled route");  // Handle answers these
      break;
  }
  co_await writer.Send(std::move(response));
}

Task<void> JobApi::RunSync(http::Request& request, http::ResponseWriter& writer,
                           std::optional<std::string_view> wait) {
  http::Response response;
  std::int64_t wait_ms = options_.default_wait.count();
  bool wait_ok = true;
  if (wait) {
    const auto [end, error] = std::from_chars(wait->data(), wait->data() + wait->size(), wait_ms);
    wait_ok = error == std::errc() && end == wait->data() + wait->size() && wait_ms >= kMinWaitMs &&
              wait_ms <= kMaxWaitMs;
  }
  if (!wait_ok) {
    response = ErrorResponse(400, fmt::format("wait must be a whole number of milliseconds from {} to {}, got '{}'",
                                              kMinWaitMs, kMaxWaitMs, *wait));
  } else if (core::Result<Submission> submission = ParseSubmission(request); !submission.ok()) {
    response = StatusErrorResponse(submission.status());
  } else {
    const core::Result<std::string> submitted =
        co_await backend_.Submit(std::move(submission->job), std::move(submission->idempotency_key));
    if (!submitted.ok()) {
      response = StatusErrorResponse(submitted.status());
    } else {
      const std::string& id = *submitted;
      const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
      for (;;) {
        // Wakes when the job ends, and every kClientCheckInterval to see whether the client left.
        const Clock::time_point wake = std::min(deadline, Clock::now() + kClientCheckInterval);
        const core::Result<JobView> view = co_await backend_.WaitForEnd(id, wake);
        if (!view.ok()) {  // forgotten already (a tiny --result-ttl: 404), or the backend failed
          response = StatusErrorResponse(view.status());
          break;
        }
        if (core::IsTerminal(view->status) || Clock::now() >= deadline) {
          response =
              JsonResponse(200, core::IsTerminal(view->status) ? StatusObject(*view) : IdAndStatus(id, view->status));
          break;
        }
        if (writer.client_gone()) {
          log::Debug(id, "The /runsync client left; the job goes on, its result stays available.");
          co_return;
        }
      }
    }
  }
  co_await writer.Send(std::move(response));
}

Task<void> JobApi::Stream(const http::Request& request, http::ResponseWriter& writer, std::string_view job_id) {
  http::Response response;
  if (WantsEventStream(request.header("Accept"))) {
    const core::Result<JobView> job = co_await backend_.Find(job_id);
    if (job.ok()) {
      co_await StreamEvents(writer, std::string(job_id));
      co_return;
    }
    response = StatusErrorResponse(job.status());
  } else {
    const std::optional<std::size_t> since_last_call;  // RunPod's "new since the last /stream"
    const core::Result<core::StreamRead> read = co_await backend_.ReadChunks(job_id, since_last_call);
    response = read.ok() ? JsonResponse(200, StreamBody(job_id, *read)) : StatusErrorResponse(read.status());
  }
  co_await writer.Send(std::move(response));
}

// Server-Sent Events: every chunk from the first, live, then `event: done` with the status object.
// A job forgotten meanwhile, or a backend that fails, ends the stream with `event: error`.
Task<void> JobApi::StreamEvents(http::ResponseWriter& writer, std::string job_id) {
  http::StreamHead head;
  head.headers.push_back({"Cache-Control", "no-cache"});
  if (!co_await writer.StartStream(std::move(head))) co_return;
  std::size_t next = 0;
  for (;;) {
    const std::optional<std::size_t> from = next;
    const core::Result<core::StreamRead> read = co_await backend_.ReadChunks(job_id, from);
    if (!read.ok()) {
      std::string message = read.status().message();
      if (read.status().code() == core::StatusCode::kNotFound) message = fmt::format("job {} was forgotten", job_id);
      std::string gone = "event: error\ndata: {\"error\":";
      core::AppendJson(gone, json::value(message));
      gone += "}\n\n";
      co_await writer.SendChunk(gone);
      co_await writer.EndStream();
      co_return;
    }
    std::string text;
    for (const json::value& chunk : read->chunks) {
      text += "data: {\"output\":";
      core::AppendJson(text, chunk);
      text += "}\n\n";
    }
    next = read->next_index;
    const bool ended = core::IsTerminal(read->job.status);
    if (ended) {
      text += "event: done\ndata: ";
      text += StatusObject(read->job);
      text += "\n\n";
    }
    if (!text.empty() && !co_await writer.SendChunk(text)) co_return;
    if (ended) {
      co_await writer.EndStream();
      co_return;
    }
    const Clock::time_point wake = Clock::now() + options_.keep_alive_interval;
    const std::uint64_t seen = read->job.version;
    const core::Result<std::uint64_t> version = co_await backend_.WaitForChange(job_id, seen, wake);
    // A failed wait is met again by the next read, which ends the stream.
    if (version.ok() && *version == seen) {
      if (writer.client_gone() || !co_await writer.SendChunk(": keep-alive\n\n")) co_return;
    }
  }
}

std::string JobApi::HealthBody(const core::JobCounts& counts) const {
  // A fleet's backend (Redis) counts its workers; otherwise this process is the one worker.
  std::size_t idle = 0, busy = 0;
  if (counts.workers_idle && counts.workers_running) {
    idle = *counts.workers_idle;
    busy = *counts.workers_running;
  } else {
    const std::size_t running = gauges_.jobs_running ? gauges_.jobs_running() : counts.in_progress;
    (running == 0 ? idle : busy) = 1;
  }
  return fmt::format(
      "{{\"jobs\":{{\"completed\":{},\"failed\":{},\"inProgress\":{},\"inQueue\":{},\"retried\":{}}},"
      "\"workers\":{{\"idle\":{},\"running\":{}}}}}",
      counts.completed, counts.failed + counts.timed_out, counts.in_progress, counts.in_queue, counts.retried, idle,
      busy);
}

std::string JobApi::RenderMetrics(const core::JobCounts& counts) const {
  PrometheusText text;
  const std::pair<const char*, std::uint64_t> by_status[] = {
      {"COMPLETED", counts.completed}, {"FAILED", counts.failed}, {"CANCELLED", counts.cancelled},
      {"TIMED_OUT", counts.timed_out}};
  for (const auto& [status, value] : by_status) {
    text.Counter("sluice_jobs_total", "Jobs that ended, by terminal status.", static_cast<double>(value),
                 {{"status", status}});
  }
  text.Counter("sluice_jobs_submitted_total", "Jobs accepted by /run and /runsync.",
               static_cast<double>(counts.submitted), {});
  text.Counter("sluice_jobs_retried_total", "Retries accepted by /retry.", static_cast<double>(counts.retried), {});
  text.Counter("sluice_jobs_rejected_total", "Job requests refused.", static_cast<double>(counts.rejected_queue_full),
               {{"reason", "queue_full"}});
  text.Counter("sluice_jobs_rejected_total", "Job requests refused.", static_cast<double>(counts.rejected_closed),
               {{"reason", "draining"}});
  text.Gauge("sluice_queue_depth", "Jobs waiting in the queue.", static_cast<double>(counts.in_queue), {});
  const std::size_t running = gauges_.jobs_running ? gauges_.jobs_running() : counts.in_progress;
  text.Gauge("sluice_jobs_running", "Jobs running now.", static_cast<double>(running), {});
  if (gauges_.concurrency_limit) {
    text.Gauge("sluice_concurrency_limit", "The concurrency limit in force.",
               static_cast<double>(gauges_.concurrency_limit()), {});
  }
  text.Gauge("sluice_results_kept", "Finished jobs whose result is kept.", static_cast<double>(counts.retained), {});
  text.Histogram("sluice_job_delay_seconds", "Time from submission to start.", delay_seconds_.Snapshot());
  text.Histogram("sluice_job_execution_seconds", "Time from start to end.", execution_seconds_.Snapshot());
  text.Counter("sluice_webhooks_total", "Webhook deliveries.", static_cast<double>(webhooks_.delivered()),
               {{"result", "delivered"}});
  text.Counter("sluice_webhooks_total", "Webhook deliveries.", static_cast<double>(webhooks_.failed()),
               {{"result", "failed"}});
  // Flows running in this process (a flow backing this worker's handler, for one).
  for (const FlowMetrics& flow : flow::SnapshotRunningFlows()) WriteFlowMetrics(text, flow);
  return text.str();
}

void JobApi::OnJobFinished(const JobView& job) {
  if (job.delay_ms) delay_seconds_.Observe(static_cast<double>(*job.delay_ms) / 1000.0);
  if (job.execution_ms) execution_seconds_.Observe(static_cast<double>(*job.execution_ms) / 1000.0);
  if (log::Enabled(log::Level::kDebug)) {
    log::Debug(job.id, "Job ended {} after {} ms.", core::ToString(job.status), job.execution_ms.value_or(0));
  }
  if (!job.webhook.empty()) webhooks_.Send(job.id, job.webhook, StatusObject(job));
}

}  // namespace sluice::api
