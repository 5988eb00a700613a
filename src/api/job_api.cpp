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

http::Response JobNotFound(std::string_view job_id) {
  return ErrorResponse(404, fmt::format("job {} not found", job_id));
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

}  // namespace

JobApi::JobApi(core::JobStore& store, WebhookSender& webhooks, JobApiOptions options, WorkerGauges gauges)
    : store_(store), webhooks_(webhooks), options_(std::move(options)), gauges_(std::move(gauges)) {}

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

Task<void> JobApi::Handle(http::Request& request, http::ResponseWriter& writer) {
  const std::string_view target = request.target;
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
  const std::optional<Route> route = MatchRoute(path);
  // Only /runsync and /stream wait, so only they answer by themselves; every other route is a
  // plain function of the request and the store, answered here.
  if (!Refuse(request) && route && Allows(route->allow, request.method)) {
    if (route->name == RouteName::kRunSync) {
      co_await RunSync(request, writer, QueryParameter(query, "wait"));
      co_return;
    }
    if (route->name == RouteName::kStream) {
      co_await Stream(request, writer, route->job_id);
      co_return;
    }
  }
  http::Response response = Answer(request, route, path);
  co_await writer.Send(std::move(response));
}

http::Response JobApi::Answer(const http::Request& request, const std::optional<Route>& route,
                              std::string_view path) {
  if (std::optional<http::Response> refusal = Refuse(request)) return std::move(*refusal);
  if (!route) return ErrorResponse(404, fmt::format("no route for {} {}", request.method, path));
  if (!Allows(route->allow, request.method)) {
    http::Response response =
        ErrorResponse(405, fmt::format("{} does not accept {}; use {}", path, request.method, route->allow));
    response.headers.push_back({"Allow", std::string(route->allow)});
    return response;
  }
  const std::string_view job_id = route->job_id;
  switch (route->name) {
    case RouteName::kRun: {
      const core::Result<std::string> id = Submit(request);
      return id.ok() ? JsonResponse(200, IdAndStatus(*id, JobStatus::kInQueue)) : StatusErrorResponse(id.status());
    }
    case RouteName::kStatus: {
      const std::optional<JobView> job = store_.Find(job_id);
      return job ? JsonResponse(200, StatusObject(*job)) : JobNotFound(job_id);
    }
    case RouteName::kCancel: {
      const core::Result<JobStatus> status = store_.Cancel(job_id);
      if (!status.ok()) return StatusErrorResponse(status.status());
      log::Debug(job_id, "Cancel requested.");
      return JsonResponse(200, IdAndStatus(job_id, *status));
    }
    case RouteName::kRetry: {
      const core::Status status = store_.Retry(job_id);
      return status.ok() ? JsonResponse(200, IdAndStatus(job_id, JobStatus::kInQueue)) : StatusErrorResponse(status);
    }
    case RouteName::kPurgeQueue:
      return JsonResponse(200, fmt::format("{{\"removed\":{},\"status\":\"completed\"}}", store_.Purge()));
    case RouteName::kHealth:
      return JsonResponse(200, HealthBody());
    case RouteName::kMetrics: {
      http::Response response;
      response.content_type = std::string(kPrometheusContentType);
      response.body = RenderMetrics();
      return response;
    }
    case RouteName::kRunSync:
    case RouteName::kStream:
      break;  // answered by their coroutines
  }
  return ErrorResponse(500, "unhandled route");
}

// Checks a /run or /runsync body and queues its job: the job's id, or why not.
core::Result<std::string> JobApi::Submit(const http::Request& request) {
  core::Result<core::NewJob> job = ParseJobRequest(request.body);
  if (!job.ok()) return job.status();
  return store_.Submit(std::move(job).value());
}

Task<void> JobApi::RunSync(http::Request& request, http::ResponseWriter& writer,
                           std::optional<std::string_view> wait) {
  std::int64_t wait_ms = options_.default_wait.count();
  if (wait) {
    const auto [end, error] = std::from_chars(wait->data(), wait->data() + wait->size(), wait_ms);
    if (error != std::errc() || end != wait->data() + wait->size() || wait_ms < kMinWaitMs || wait_ms > kMaxWaitMs) {
      http::Response response = ErrorResponse(
          400, fmt::format("wait must be a whole number of milliseconds from {} to {}, got '{}'", kMinWaitMs,
                           kMaxWaitMs, *wait));
      co_await writer.Send(std::move(response));
      co_return;
    }
  }
  const core::Result<std::string> submitted = Submit(request);
  if (!submitted.ok()) {
    http::Response response = StatusErrorResponse(submitted.status());
    co_await writer.Send(std::move(response));
    co_return;
  }
  const std::string& id = *submitted;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    // Wakes when the job ends, and every kClientCheckInterval to see whether the client left.
    const Clock::time_point wake = std::min(deadline, Clock::now() + kClientCheckInterval);
    const std::optional<JobView> view = co_await store_.WaitForEnd(id, wake);
    if (!view) {  // forgotten already (a tiny --result-ttl)
      http::Response response = JobNotFound(id);
      co_await writer.Send(std::move(response));
      co_return;
    }
    if (core::IsTerminal(view->status) || Clock::now() >= deadline) {
      http::Response response =
          JsonResponse(200, core::IsTerminal(view->status) ? StatusObject(*view) : IdAndStatus(id, view->status));
      co_await writer.Send(std::move(response));
      co_return;
    }
    if (writer.client_gone()) {
      log::Debug(id, "The /runsync client left; the job goes on, its result stays available.");
      co_return;
    }
  }
}

Task<void> JobApi::Stream(const http::Request& request, http::ResponseWriter& writer, std::string_view job_id) {
  if (WantsEventStream(request.header("Accept"))) {
    if (!store_.Find(job_id)) {
      http::Response response = JobNotFound(job_id);
      co_await writer.Send(std::move(response));
      co_return;
    }
    co_await StreamEvents(writer, std::string(job_id));
    co_return;
  }
  const std::optional<core::StreamRead> read = store_.ReadChunks(job_id, std::nullopt);
  if (!read) {
    http::Response response = JobNotFound(job_id);
    co_await writer.Send(std::move(response));
    co_return;
  }
  std::string body = "{\"id\":";
  core::AppendJson(body, json::value(job_id));
  body += ",\"status\":\"";
  body += core::ToString(read->job.status);
  body += "\",\"stream\":[";
  for (std::size_t i = 0; i < read->chunks.size(); ++i) {
    if (i > 0) body += ',';
    body += "{\"output\":";
    core::AppendJson(body, read->chunks[i]);
    body += '}';
  }
  body += "]}";
  co_await writer.Send(JsonResponse(200, std::move(body)));
}

// Server-Sent Events: every chunk from the first, live, then `event: done` with the status object.
Task<void> JobApi::StreamEvents(http::ResponseWriter& writer, std::string job_id) {
  http::StreamHead head;
  head.headers.push_back({"Cache-Control", "no-cache"});
  if (!co_await writer.StartStream(std::move(head))) co_return;
  std::size_t next = 0;
  for (;;) {
    const std::optional<core::StreamRead> read = store_.ReadChunks(job_id, next);
    if (!read) {
      const std::string gone = fmt::format("event: error\ndata: {{\"error\":\"job {} was forgotten\"}}\n\n", job_id);
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
    const std::uint64_t version = co_await store_.WaitForChange(job_id, read->job.version, wake);
    if (version == read->job.version) {
      if (writer.client_gone() || !co_await writer.SendChunk(": keep-alive\n\n")) co_return;
    }
  }
}

std::string JobApi::HealthBody() const {
  const core::JobCounts counts = store_.counts();
  const std::size_t running = gauges_.jobs_running ? gauges_.jobs_running() : counts.in_progress;
  return fmt::format(
      "{{\"jobs\":{{\"completed\":{},\"failed\":{},\"inProgress\":{},\"inQueue\":{},\"retried\":{}}},"
      "\"workers\":{{\"idle\":{},\"running\":{}}}}}",
      counts.completed, counts.failed + counts.timed_out, counts.in_progress, counts.in_queue, counts.retried,
      running == 0 ? 1 : 0, running == 0 ? 0 : 1);
}

std::string JobApi::RenderMetrics() const {
  const core::JobCounts counts = store_.counts();
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
