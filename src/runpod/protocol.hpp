// runpod/protocol.hpp — RunPod's production control-plane protocol as pure functions (runpod.md §4):
// the URLs a worker calls, the headers it sends, the bodies it posts, and what it makes of the
// answers. Everything with I/O (job_source, result_sink, heartbeat, stop_channel) is built on these,
// so the wire format is tested here without sockets.
//
// Where sluice differs from runpod-python on purpose (decisions.md §5): every request carries an
// X-Request-ID of its own (runpod-python shares the last job's id across the session), and the
// job-take loop backs off exponentially with jitter on errors (runpod-python retries at once).
//
// Pure functions and value types; thread-safe. `TakePacer` is a value with state: one per loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/job_ports.hpp"
#include "http/backoff.hpp"
#include "http/header_field.hpp"

namespace sluice::runpod {

/// The environment variables of runpod.md §2.5 the production worker reads. Empty means unset.
struct Environment {
  std::string get_job;       // RUNPOD_WEBHOOK_GET_JOB
  std::string post_output;   // RUNPOD_WEBHOOK_POST_OUTPUT
  std::string post_stream;   // RUNPOD_WEBHOOK_POST_STREAM
  std::string ping;          // RUNPOD_WEBHOOK_PING
  std::string ping_interval_ms;  // RUNPOD_PING_INTERVAL
  std::string api_key;       // RUNPOD_AI_API_KEY
  std::string ua_integration;  // RUNPOD_UA_INTEGRATION

  /// Reads them from the process environment through `getenv` (a test passes its own function).
  static Environment Read(const std::function<const char*(const char*)>& getenv);
};

/// The control plane's URLs for one worker, templated as §4.1 says. The job URLs still hold the
/// literal `$ID`, replaced per job by `JobUrl`.
struct ControlPlaneUrls {
  std::string take;                  // GET_JOB with `$ID` → worker id
  std::string done_template;         // POST_OUTPUT with `$RUNPOD_POD_ID` → worker id
  std::string stream_template;       // POST_STREAM with `$RUNPOD_POD_ID` → worker id
  std::string ping;                  // PING with `$RUNPOD_POD_ID` → worker id; "" when unset
  std::optional<std::string> stop;   // take with /job-take/ → /job-stop/; none without /job-take/
};

/// Replaces every occurrence of `from` in `text` with `to` (Python's str.replace).
std::string ReplaceAll(std::string text, std::string_view from, std::string_view to);

/// Templates the URLs. runpod-python's defaults for unset done/stream/ping variables are
/// placeholders ("JOB_DONE_URL", ...) that fail on use; here they stay empty and the callers
/// skip (and log) what has no URL.
ControlPlaneUrls TemplateUrls(const Environment& environment, std::string_view worker_id);

/// The job-take URL: `take&job_in_progress=0|1` for one job; for more, `/job-take/` becomes
/// `/job-take-batch/` and `&batch_size=N&job_in_progress=0|1` is appended (§4.3).
std::string TakeUrl(const ControlPlaneUrls& urls, std::size_t jobs_wanted, bool job_in_progress);

/// A job's done or stream URL: `$ID` → the job id (percent-encoded where a URL needs it), then
/// `&isStream=true|false`.
std::string JobUrl(std::string_view url_template, std::string_view job_id, bool is_stream);

/// The ping URL (§4.6): `&job_id=<ids joined by ",", percent-encoded>` when any job is in
/// progress, then `&runpod_version=<version>`.
std::string PingUrl(std::string_view ping_url, const std::vector<std::string>& job_ids,
                    std::string_view version);

/// Percent-encodes everything but RFC 3986's unreserved characters (as python-requests does for
/// query values).
std::string PercentEncode(std::string_view text);

/// `sluice/<version> (<os> <release>; <machine>) Language/C++[ Integration/<x>]`.
std::string UserAgent(std::string_view version, std::string_view os, std::string_view release,
                      std::string_view machine, std::string_view integration);
/// The same for this machine (uname).
std::string UserAgentForThisMachine(std::string_view integration);

/// A fresh random X-Request-ID (a UUID). Thread-safe.
std::string NewRequestId();

/// The headers of every control-plane GET: Content-Type: application/json, the raw Authorization
/// key (no "Bearer"), the User-Agent and the request id.
std::vector<http::HeaderField> CommonHeaders(std::string_view api_key, std::string_view user_agent,
                                             std::string_view request_id);
/// The headers of a result, stream or progress POST (§4.5): the common ones with
/// `Content-Type: application/x-www-form-urlencoded` (sic: the body is JSON, and the control
/// plane may depend on it) and the literal `charset: utf-8`.
std::vector<http::HeaderField> PostHeaders(std::string_view api_key, std::string_view user_agent,
                                           std::string_view request_id);

/// JSON text as Python's `json.dumps(value, ensure_ascii=False)` writes it: separators ", " and
/// ": ", members in order, UTF-8 kept, numbers in their shortest round-trip form.
std::string PythonDumps(const boost::json::value& value);

/// The body of job-done (and of the final job-done of a streaming handler): the result object.
std::string DoneBody(const boost::json::object& result);
/// A stream partial: `{"output": chunk}`.
std::string StreamBody(const boost::json::value& chunk);
/// A progress update, posted to the job-done URL with isStream=false:
/// `{"status": "IN_PROGRESS", "output": update}`.
std::string ProgressBody(const boost::json::value& update);

/// What a job-take answer means (§4.3).
struct TakeAnswer {
  enum class Kind {
    kJobs,             // `jobs` holds at least one job
    kNoJob,            // 204, 400 (FlashBoot), an empty or non-JSON 200
    kTooManyRequests,  // 429: wait
    kError,            // another status ≥ 300, or a body that is JSON but no job: `error` says
  };
  Kind kind = Kind::kNoJob;
  std::vector<core::JobRequest> jobs;
  /// Jobs that could not be run (no `input`, or `input` null), by id, with why: the caller answers
  /// them with an error instead of leaving them to time out.
  std::vector<std::pair<std::string, std::string>> rejected;
  std::string error;
};

/// Parses a job-take or job-take-batch answer. A JSON object is one job, an array a batch; each
/// job needs a string `id` and a non-null `input` (other members pass through to the handler).
/// A job without a usable id cannot be answered and is dropped with an error message.
TakeAnswer ParseTakeAnswer(int status, std::string_view content_type, std::string_view body);

/// The ids in a job-stop answer `{"jobsToStop": ["id", ...]}` (§4.7); non-string ids are dropped,
/// a wrong shape gives none.
std::vector<std::string> ParseStopAnswer(int status, std::string_view content_type,
                                         std::string_view body);

/// The execution time a job asks for in `policy.executionTimeout` (ms), if it does.
std::optional<std::chrono::milliseconds> ExecutionTimeoutOf(const boost::json::object& request);

/// RUNPOD_PING_INTERVAL (ms; default 10000). sluice keeps milliseconds (runpod-python truncates to
/// whole seconds, so values under 1000 make it ping in a tight loop) and never goes below 100 ms.
std::chrono::milliseconds PingInterval(std::string_view interval_ms);

/// How long the job-take loop waits before its next take (§4.3, decisions.md §5). After jobs: no
/// wait. After an error: exponential backoff with full jitter, growing with consecutive errors.
/// After 429: at least 5 s (runpod-python's wait) or the backoff, whichever is longer. After an
/// empty answer: none when the server long-polled (the answer took at least `long_poll_floor`), and
/// a short backoff when it answered at once, so a server that does not long-poll is not hammered.
class TakePacer {
 public:
  struct Options {
    http::BackoffPolicy errors{std::chrono::milliseconds(100), std::chrono::seconds(30), 2.0};
    http::BackoffPolicy quick_empty{std::chrono::milliseconds(50), std::chrono::seconds(1), 2.0};
    std::chrono::steady_clock::duration long_poll_floor = std::chrono::milliseconds(500);
    std::chrono::steady_clock::duration too_many_requests = std::chrono::seconds(5);
  };
  TakePacer() = default;
  explicit TakePacer(Options options) : options_(options) {}

  /// The wait after an answer of `kind` that took `elapsed`; `uniform_0_1` is the jitter.
  std::chrono::steady_clock::duration After(TakeAnswer::Kind kind,
                                            std::chrono::steady_clock::duration elapsed,
                                            double uniform_0_1);
  int consecutive_errors() const noexcept { return errors_; }

 private:
  Options options_;
  int errors_ = 0;
  int quick_empties_ = 0;
};

}  // namespace sluice::runpod
