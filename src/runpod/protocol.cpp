#include "runpod/protocol.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <charconv>

#include <boost/json/parse.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <fmt/format.h>

#include "core/json_text.hpp"

namespace sluice::runpod {
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string Get(const std::function<const char*(const char*)>& getenv, const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

bool IsUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool ContainsCaseInsensitive(std::string_view text, std::string_view word) {
  return std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         }) != text.end();
}

void AppendPython(std::string& out, const json::value& value) {
  switch (value.kind()) {
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& member : value.get_object()) {
        if (!first) out += ", ";
        first = false;
        core::AppendJson(out, json::value(member.key()));
        out += ": ";
        AppendPython(out, member.value());
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const json::value& element : value.get_array()) {
        if (!first) out += ", ";
        first = false;
        AppendPython(out, element);
      }
      out += ']';
      return;
    }
    default:
      core::AppendJson(out, value);
  }
}

}  // namespace

Environment Environment::Read(const std::function<const char*(const char*)>& getenv) {
  Environment environment;
  environment.get_job = Get(getenv, "RUNPOD_WEBHOOK_GET_JOB");
  environment.post_output = Get(getenv, "RUNPOD_WEBHOOK_POST_OUTPUT");
  environment.post_stream = Get(getenv, "RUNPOD_WEBHOOK_POST_STREAM");
  environment.ping = Get(getenv, "RUNPOD_WEBHOOK_PING");
  environment.ping_interval_ms = Get(getenv, "RUNPOD_PING_INTERVAL");
  environment.api_key = Get(getenv, "RUNPOD_AI_API_KEY");
  environment.ua_integration = Get(getenv, "RUNPOD_UA_INTEGRATION");
  return environment;
}

std::string ReplaceAll(std::string text, std::string_view from, std::string_view to) {
  if (from.empty()) return text;
  std::size_t at = 0;
  while ((at = text.find(from, at)) != std::string::npos) {
    text.replace(at, from.size(), to);
    at += to.size();
  }
  return text;
}

ControlPlaneUrls TemplateUrls(const Environment& environment, std::string_view worker_id) {
  ControlPlaneUrls urls;
  // Only the literal `$ID` in the take URL; `$RUNPOD_POD_ID` (which does not contain `$ID`) in
  // the others, whose `$ID` is the job's.
  urls.take = ReplaceAll(environment.get_job, "$ID", worker_id);
  urls.done_template = ReplaceAll(environment.post_output, "$RUNPOD_POD_ID", worker_id);
  urls.stream_template = ReplaceAll(environment.post_stream, "$RUNPOD_POD_ID", worker_id);
  urls.ping = ReplaceAll(environment.ping, "$RUNPOD_POD_ID", worker_id);
  if (urls.take.find("/job-take/") != std::string::npos) {
    urls.stop = ReplaceAll(urls.take, "/job-take/", "/job-stop/");
  }
  return urls;
}

std::string TakeUrl(const ControlPlaneUrls& urls, std::size_t jobs_wanted, bool job_in_progress) {
  const char* in_progress = job_in_progress ? "1" : "0";
  if (jobs_wanted > 1) {
    return fmt::format("{}&batch_size={}&job_in_progress={}",
                       ReplaceAll(urls.take, "/job-take/", "/job-take-batch/"), jobs_wanted, in_progress);
  }
  return fmt::format("{}&job_in_progress={}", urls.take, in_progress);
}

std::string JobUrl(std::string_view url_template, std::string_view job_id, bool is_stream) {
  return fmt::format("{}&isStream={}", ReplaceAll(std::string(url_template), "$ID", PercentEncode(job_id)),
                     is_stream ? "true" : "false");
}

std::string PingUrl(std::string_view ping_url, const std::vector<std::string>& job_ids,
                    std::string_view version) {
  std::string url(ping_url);
  if (!job_ids.empty()) {
    std::string joined;
    for (const std::string& id : job_ids) {
      if (!joined.empty()) joined += ',';
      joined += id;
    }
    url += "&job_id=";
    url += PercentEncode(joined);
  }
  url += "&runpod_version=";
  url += PercentEncode(version);
  return url;
}

std::string PercentEncode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (IsUnreserved(c)) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string UserAgent(std::string_view version, std::string_view os, std::string_view release,
                      std::string_view machine, std::string_view integration) {
  std::string agent = fmt::format("sluice/{} ({} {}; {}) Language/C++", version, os, release, machine);
  if (!integration.empty()) agent += fmt::format(" Integration/{}", integration);
  return agent;
}

std::string UserAgentForThisMachine(std::string_view integration) {
  utsname names{};
  if (uname(&names) != 0) return UserAgent(SLUICE_VERSION, "unknown", "unknown", "unknown", integration);
  return UserAgent(SLUICE_VERSION, names.sysname, names.release, names.machine, integration);
}

std::string NewRequestId() {
  thread_local boost::uuids::random_generator generator;
  return boost::uuids::to_string(generator());
}

std::vector<http::HeaderField> CommonHeaders(std::string_view api_key, std::string_view user_agent,
                                             std::string_view request_id) {
  return {{"Content-Type", "application/json"},
          {"Authorization", std::string(api_key)},
          {"User-Agent", std::string(user_agent)},
          {"X-Request-ID", std::string(request_id)}};
}

std::vector<http::HeaderField> PostHeaders(std::string_view api_key, std::string_view user_agent,
                                           std::string_view request_id) {
  return {{"Content-Type", "application/x-www-form-urlencoded"},
          {"charset", "utf-8"},
          {"Authorization", std::string(api_key)},
          {"User-Agent", std::string(user_agent)},
          {"X-Request-ID", std::string(request_id)}};
}

std::string PythonDumps(const json::value& value) {
  std::string out;
  AppendPython(out, value);
  return out;
}

std::string DoneBody(const json::object& result) { return PythonDumps(result); }

std::string StreamBody(const json::value& chunk) {
  json::object body;
  body.emplace("output", chunk);
  return PythonDumps(body);
}

std::string ProgressBody(const json::value& update) {
  json::object body;
  body.emplace("status", "IN_PROGRESS");
  body.emplace("output", update);
  return PythonDumps(body);
}

TakeAnswer ParseTakeAnswer(int status, std::string_view content_type, std::string_view body) {
  TakeAnswer answer;
  if (status == 204 || status == 400) return answer;  // no job (400: FlashBoot)
  if (status == 429) {
    answer.kind = TakeAnswer::Kind::kTooManyRequests;
    return answer;
  }
  if (status < 200 || status >= 300) {
    answer.kind = TakeAnswer::Kind::kError;
    answer.error = fmt::format("job-take answered HTTP {}", status);
    return answer;
  }
  if (!ContainsCaseInsensitive(content_type, "application/json") || body.empty()) return answer;

  auto parsed = core::ParseJson(body);
  if (!parsed) {
    answer.kind = TakeAnswer::Kind::kError;
    answer.error = fmt::format("job-take answered malformed JSON: {}", parsed.status().message());
    return answer;
  }
  std::vector<json::value> items;
  if (parsed->is_object()) {
    items.push_back(std::move(*parsed));
  } else if (parsed->is_array()) {
    for (json::value& item : parsed->get_array()) items.push_back(std::move(item));
  } else if (parsed->is_null()) {
    return answer;
  } else {
    answer.kind = TakeAnswer::Kind::kError;
    answer.error = fmt::format("job-take answered JSON that is neither a job nor a list: {}", core::ToJson(*parsed));
    return answer;
  }

  std::vector<std::string> problems;
  for (json::value& item : items) {
    if (!item.is_object()) {
      problems.push_back(fmt::format("a job that is not an object: {}", core::ToJson(item)));
      continue;
    }
    json::object& object = item.get_object();
    const json::value* id = object.if_contains("id");
    if (id == nullptr || !id->is_string() || id->get_string().empty()) {
      problems.push_back(fmt::format("a job without a string id: {}", core::ToJson(object)));
      continue;
    }
    std::string job_id(id->get_string());
    const json::value* input = object.if_contains("input");
    if (input == nullptr || input->is_null()) {
      answer.rejected.emplace_back(std::move(job_id), "Job has missing field(s): id or input.");
      continue;
    }
    core::JobRequest request;
    request.id = std::move(job_id);
    if (auto timeout = ExecutionTimeoutOf(object)) request.execution_timeout = *timeout;
    request.request = std::move(object);
    answer.jobs.push_back(std::move(request));
  }
  if (!answer.jobs.empty()) {
    answer.kind = TakeAnswer::Kind::kJobs;
  } else if (!problems.empty()) {
    answer.kind = TakeAnswer::Kind::kError;
  }
  for (const std::string& problem : problems) {
    if (!answer.error.empty()) answer.error += "; ";
    answer.error += "job-take answered " + problem;
  }
  return answer;
}

std::vector<std::string> ParseStopAnswer(int status, std::string_view content_type, std::string_view body) {
  std::vector<std::string> ids;
  if (status != 200 || !ContainsCaseInsensitive(content_type, "application/json")) return ids;
  auto parsed = core::ParseJson(body);
  if (!parsed || !parsed->is_object()) return ids;
  const json::value* list = parsed->get_object().if_contains("jobsToStop");
  if (list == nullptr || !list->is_array()) return ids;
  for (const json::value& id : list->get_array()) {
    if (id.is_string()) ids.emplace_back(id.get_string());
  }
  return ids;
}

std::optional<std::chrono::milliseconds> ExecutionTimeoutOf(const json::object& request) {
  const json::value* policy = request.if_contains("policy");
  if (policy == nullptr || !policy->is_object()) return std::nullopt;
  const json::value* timeout = policy->get_object().if_contains("executionTimeout");
  if (timeout == nullptr) return std::nullopt;
  double ms = 0;
  if (timeout->is_int64()) {
    ms = static_cast<double>(timeout->get_int64());
  } else if (timeout->is_uint64()) {
    ms = static_cast<double>(timeout->get_uint64());
  } else if (timeout->is_double()) {
    ms = timeout->get_double();
  } else {
    return std::nullopt;
  }
  if (!(ms > 0)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(ms, 1e12)));
}

std::chrono::milliseconds PingInterval(std::string_view interval_ms) {
  constexpr std::chrono::milliseconds kDefault(10000), kFloor(100);
  if (interval_ms.empty()) return kDefault;
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(interval_ms.data(), interval_ms.data() + interval_ms.size(), value);
  if (error != std::errc() || end != interval_ms.data() + interval_ms.size()) return kDefault;
  return std::max(kFloor, std::chrono::milliseconds(value));
}

Clock::duration TakePacer::After(TakeAnswer::Kind kind, Clock::duration elapsed, double uniform_0_1) {
  switch (kind) {
    case TakeAnswer::Kind::kJobs:
      errors_ = 0;
      quick_empties_ = 0;
      return Clock::duration::zero();
    case TakeAnswer::Kind::kNoJob:
      errors_ = 0;
      if (elapsed >= options_.long_poll_floor) {
        quick_empties_ = 0;
        return Clock::duration::zero();
      }
      return options_.quick_empty.Delay(quick_empties_++, uniform_0_1);
    case TakeAnswer::Kind::kTooManyRequests:
      return std::max(options_.too_many_requests, options_.errors.Delay(errors_++, uniform_0_1));
    case TakeAnswer::Kind::kError:
      return options_.errors.Delay(errors_++, uniform_0_1);
  }
  return Clock::duration::zero();
}

}  // namespace sluice::runpod
