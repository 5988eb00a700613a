// tests/fake_runpod.hpp — a fake RunPod control plane for tests: the other end of a worker that
// runs in RunPod's production mode (runpod.md §4, issue #5).
//
// What it is for: a test starts a FakeRunPod, starts a worker with `WorkerEnvironment()`, gives it
// jobs with `AddJob`, and then checks what the worker sent: every job-take (with its
// `job_in_progress` and `batch_size`), every job-done and job-stream POST (body, `isStream`),
// progress updates, pings (with their job ids), the job-stop polls, and the headers of each
// (Authorization, User-Agent, X-Request-ID). It can stop a job (`StopJob`, answered on the
// job-stop long-poll) and inject faults: the next N requests of a route answered with a status
// (429, 500), late, never, or cut in the middle of the body; and connections refused altogether.
//
// It speaks the protocol as runpod.md §4 records it; the facts (paths, query names, body shapes,
// status codes) are in `namespace runpod_wire` below, each with its section. Where the spec leaves
// something open, this fake decides as follows:
//   - job-take-batch answers a JSON array of jobs, always (even of one). §4.3 says only that the
//     worker takes an object as [job] and an array as it is.
//   - job-done, job-stream and ping are answered 200 with an empty body (§4.5: "Response body is
//     read and ignored"; what RunPod writes is not recorded).
//   - a take, a batch take or a stop poll is held until there is something to answer or
//     `long_poll_timeout` passes, then answered 204 (the hold time RunPod uses is not recorded; the
//     worker's own limit is 90 s, §4.3, §4.7). A batch take answers as soon as one job is queued,
//     with up to `batch_size` of them.
//   - a job-done POST whose body is `{"status": "IN_PROGRESS", ...}` is a progress update (§4.5);
//     any other job-done POST is the job's result.
//   - there is no environment variable for the stop URL: the worker derives it from the take URL
//     (§4.7: `/job-take/` → `/job-stop/`, query kept), so the fake serves `/job-stop/<pod>?gpu=…`.
//   - a request for another endpoint or pod id than the fake's, or on an unknown path, gets 404; a
//     method other than the route's gets 405; a batch take without a positive `batch_size` gets
//     400. All are recorded, so a test sees the worker's mistake.
//   - the Authorization header is recorded, never checked: tests assert on it.
//   - "drop the connection mid-body" is a 200 application/json response whose chunked body stops
//     after a few bytes, then the connection closes (the HTTP server under the fake writes bodies of
//     unknown length chunked); the client sees a partial message. A faulted take hands out no job.
//   - "refuse connections" closes the listening socket (connects get ECONNREFUSED) and answers the
//     held long-polls 204 at once, with `Connection: close`; `AcceptConnections` listens again on
//     the same port.
//
// Threads and ownership: the fake owns an io_context and the one thread that runs it; the HTTP
// server and every request handler run there. All public member functions are thread-safe and may
// be called from any thread (the test's, a worker-driving thread). Every wait takes a timeout and
// returns what it has when the timeout passes, so a test fails instead of hanging. The recorded
// requests are returned as copies. The destructor stops serving, answers held long-polls, closes
// the connections and joins the thread; it blocks for at most a couple of seconds.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/status.hpp"
#include "http/header_field.hpp"
#include "http/server.hpp"

namespace sluice::testing {

/// The protocol facts the fake serves, from runpod.md §4 (and §2.5 for the environment).
namespace runpod_wire {
// §2.5 / §4.1: the environment a worker reads, and the placeholders it replaces.
inline constexpr std::string_view kEnvGetJob = "RUNPOD_WEBHOOK_GET_JOB";          // `$ID` = worker id
inline constexpr std::string_view kEnvPostOutput = "RUNPOD_WEBHOOK_POST_OUTPUT";  // `$RUNPOD_POD_ID`, then `$ID` = job id
inline constexpr std::string_view kEnvPostStream = "RUNPOD_WEBHOOK_POST_STREAM";  // as POST_OUTPUT
inline constexpr std::string_view kEnvPing = "RUNPOD_WEBHOOK_PING";               // `$RUNPOD_POD_ID`
inline constexpr std::string_view kEnvPingInterval = "RUNPOD_PING_INTERVAL";      // milliseconds
inline constexpr std::string_view kEnvPodId = "RUNPOD_POD_ID";
inline constexpr std::string_view kEnvApiKey = "RUNPOD_AI_API_KEY";  // the raw Authorization value
inline constexpr std::string_view kEnvPodHostname = "RUNPOD_POD_HOSTNAME";  // only in error JSON
// §4.8: the fitness checks (a TCP connect to 8.8.8.8:53 among them) are for real machines.
inline constexpr std::string_view kEnvSkipSystemChecks = "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS";
inline constexpr std::string_view kEnvSkipGpuCheck = "RUNPOD_SKIP_GPU_CHECK";
inline constexpr std::string_view kWorkerIdPlaceholder = "$ID";         // §4.1, in GET_JOB
inline constexpr std::string_view kPodIdPlaceholder = "$RUNPOD_POD_ID"; // §4.1, done/stream/ping
inline constexpr std::string_view kJobIdPlaceholder = "$ID";            // §4.1, done/stream

// §4.1: every URL is /v2/<endpoint id>/<verb>/<pod id>[/<job id>]?<existing query>; the worker
// appends `&name=value`, so each template already has a query (RunPod's is `gpu=<model>`).
inline constexpr std::string_view kPathPrefix = "/v2/";
inline constexpr std::string_view kJobTake = "job-take";              // §4.3 GET …/job-take/<pod>
inline constexpr std::string_view kJobTakeBatch = "job-take-batch";   // §4.3 GET …/job-take-batch/<pod>
inline constexpr std::string_view kJobDone = "job-done";              // §4.5 POST …/job-done/<pod>/<job>
inline constexpr std::string_view kJobStream = "job-stream";          // §4.5 POST …/job-stream/<pod>/<job>
inline constexpr std::string_view kJobStop = "job-stop";              // §4.7 GET …/job-stop/<pod>
inline constexpr std::string_view kPing = "ping";                     // §4.6 GET …/ping/<pod>

// Query parameters the worker appends.
inline constexpr std::string_view kQueryJobInProgress = "job_in_progress";  // §4.3: "0" or "1"
inline constexpr std::string_view kQueryBatchSize = "batch_size";           // §4.3, batch take only
inline constexpr std::string_view kQueryIsStream = "isStream";              // §4.5: "true"/"false"
inline constexpr std::string_view kQueryJobIds = "job_id";                  // §4.6: comma-joined, omitted when none
inline constexpr std::string_view kQueryRunpodVersion = "runpod_version";   // §4.6
inline constexpr std::string_view kQueryHealthStatus = "status";            // §4.6 fitness report: "unhealthy"

// Bodies.
inline constexpr std::string_view kJobId = "id";                // §4.3: a job has `id` and `input`
inline constexpr std::string_view kJobInput = "input";
inline constexpr std::string_view kJobsToStop = "jobsToStop";   // §4.7: {"jobsToStop": ["id", …]}
inline constexpr std::string_view kProgressStatus = "IN_PROGRESS";  // §4.5: {"status": "IN_PROGRESS", "output": …}

// Status codes (§4.3, §4.7): 200 with JSON, 204 nothing now, 400 no job (FlashBoot), 429 back off.
inline constexpr unsigned kOk = 200;
inline constexpr unsigned kNoContent = 204;
inline constexpr unsigned kBadRequest = 400;
inline constexpr unsigned kTooManyRequests = 429;
}  // namespace runpod_wire

/// The routes of the control plane; kUnknown for anything else the worker sends.
enum class Route { kJobTake, kJobTakeBatch, kJobDone, kJobStream, kJobStop, kPing, kUnknown };

std::string_view RouteName(Route route);

using FakeClock = std::chrono::steady_clock;

/// One request as the fake received it, and how it was answered.
struct RecordedRequest {
  std::size_t sequence = 0;  // 0, 1, 2, … in order of arrival (all routes together)
  FakeClock::time_point received;
  FakeClock::time_point answered;  // when the answer was written; unset while held or never answered
  Route route = Route::kUnknown;
  std::string method;
  std::string target;  // path and query, as sent
  std::string path;    // decoded
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::vector<http::HeaderField> headers;  // in order, as sent
  std::string body;
  std::string pod_id;  // from the path
  std::string job_id;  // from the path of a job-done or job-stream POST
  /// What the fake answered: 0 while the request is held, and for a hang (never answered). A
  /// mid-body drop records 200, the status of the head it wrote before cutting the body.
  unsigned status = 0;
  bool faulted = false;  // answered (or not) by an injected fault other than a delay
  bool delayed = false;  // held by a Fault::Delay, then served as usual (so it may be Accepted)
  std::vector<std::string> jobs_served;  // a take: the ids it handed out, in order
  std::vector<std::string> jobs_to_stop;  // a stop poll: the ids it handed out

  /// The first value of a query parameter, if present.
  std::optional<std::string> Query(std::string_view name) const;
  /// The first value of a header (case-insensitive), or "".
  std::string_view Header(std::string_view name) const;
  /// The body as JSON; null when it is not JSON.
  boost::json::value Json() const;
  /// A ping's `job_id` split at commas; empty when the parameter is absent (§4.6).
  std::vector<std::string> PingJobIds() const;
  /// A job-done POST that is a progress update (§4.5).
  bool IsProgress() const;
  /// Answered 2xx and not faulted: the worker's request got through (a mid-body drop did not).
  bool Accepted() const { return !faulted && status >= 200 && status < 300; }
  /// One line for failure messages.
  std::string Describe() const;
};

/// A fault for one request of a route (see `FakeRunPod::InjectFault`).
struct Fault {
  enum class Kind {
    kStatus,       // answer `status` (429, 500, …) with a JSON error body, at once
    kDelay,        // wait `delay`, then serve the request normally
    kHang,         // never answer; the handler lets go when the client closes or the fake stops
    kDropMidBody,  // write a 200 head and a few bytes of body, then close the connection
  };
  Kind kind = Kind::kStatus;
  unsigned status = 500;
  FakeClock::duration delay{};

  static Fault Status(unsigned status) { return Fault{Kind::kStatus, status, {}}; }
  static Fault Delay(FakeClock::duration delay) { return Fault{Kind::kDelay, 0, delay}; }
  static Fault Hang() { return Fault{Kind::kHang, 0, {}}; }
  static Fault DropMidBody() { return Fault{Kind::kDropMidBody, 0, {}}; }
};

struct FakeRunPodOptions {
  std::string endpoint_id = "ep1";
  std::string pod_id = "pod-abc";  // RUNPOD_POD_ID: the worker id in every path
  std::string gpu = "SIM";         // the `?gpu=` every template carries (§4.1)
  std::string api_key = "fake-runpod-key";
  std::string pod_hostname = "fake-runpod-host";
  /// How long a take, batch take or stop poll is held before its 204.
  FakeClock::duration long_poll_timeout = std::chrono::seconds(1);
  /// RUNPOD_PING_INTERVAL (§2.5: milliseconds; runpod-python uses whole seconds of it).
  std::chrono::milliseconds ping_interval = std::chrono::milliseconds(1000);
};

class FakeRunPod {
 public:
  /// Starts listening on 127.0.0.1 on a free port; throws std::runtime_error if it cannot.
  explicit FakeRunPod(FakeRunPodOptions options = {});
  ~FakeRunPod();
  FakeRunPod(const FakeRunPod&) = delete;
  FakeRunPod& operator=(const FakeRunPod&) = delete;

  const FakeRunPodOptions& options() const { return options_; }
  std::uint16_t port() const { return port_; }
  /// http://127.0.0.1:<port>/v2/<endpoint id>
  std::string BaseUrl() const;

  /// The URL templates as RunPod sets them (§4.1), with the placeholders still in.
  std::string TakeUrlTemplate() const;    // …/job-take/$ID?gpu=…
  std::string DoneUrlTemplate() const;    // …/job-done/$RUNPOD_POD_ID/$ID?gpu=…
  std::string StreamUrlTemplate() const;  // …/job-stream/$RUNPOD_POD_ID/$ID?gpu=…
  std::string PingUrlTemplate() const;    // …/ping/$RUNPOD_POD_ID?gpu=…
  /// The environment a worker needs to talk to this fake, "NAME=value" (ChildOptions::env):
  /// the four templates, RUNPOD_POD_ID, RUNPOD_AI_API_KEY, RUNPOD_PING_INTERVAL,
  /// RUNPOD_POD_HOSTNAME, and the two fitness-check skips. RUNPOD_ENDPOINT_ID is not set: it
  /// switches the worker's logs to JSON lines (§2.5); add it where a test wants that.
  std::vector<std::string> WorkerEnvironment() const;

  // ----- jobs ---------------------------------------------------------------------------------

  /// Queues {"id": id, "input": input}; a held take gets it at once.
  void AddJob(const std::string& id, boost::json::value input);
  /// Queues a job as given (it must have a string "id"); for jobs with more fields than id/input.
  void AddJob(boost::json::object job);
  /// Jobs queued and not yet taken.
  std::size_t QueuedJobs() const;
  /// Ids handed out by takes, in order (a job given twice would show twice).
  std::vector<std::string> TakenJobs() const;
  /// Asks the worker to stop a job: the next job-stop poll answers {"jobsToStop": [id, …]} with
  /// every id asked for since the last one (§4.7).
  void StopJob(const std::string& id);

  // ----- faults -------------------------------------------------------------------------------

  /// The next `count` requests of `route` get `fault` instead of their normal answer (after any
  /// faults already queued for the route). The request is still recorded, with `faulted` (or
  /// `delayed` for a Fault::Delay, after which it is served as usual and may be Accepted).
  void InjectFault(Route route, Fault fault, std::size_t count = 1);
  /// Forgets the faults not yet used.
  void ClearFaults();
  /// Closes the listening socket: connects are refused until `AcceptConnections`. Held long-polls
  /// are answered 204 at once; idle keep-alive connections are closed.
  void RefuseConnections();
  /// Listens again on the same port; kUnavailable if the port cannot be bound again.
  core::Status AcceptConnections();

  // ----- what the worker sent -----------------------------------------------------------------

  /// Every request so far, in order of arrival.
  std::vector<RecordedRequest> Requests() const;
  /// Those of one route.
  std::vector<RecordedRequest> Requests(Route route) const;
  /// Waits until `done(requests)` is true (it is called under the fake's lock, with every request
  /// so far, after each arrival and each answer) or `timeout` passes; returns the last verdict.
  bool WaitUntil(const std::function<bool(const std::vector<RecordedRequest>&)>& done,
                 FakeClock::duration timeout) const;
  /// Waits for `count` requests of `route` (answered or not); returns those there are then.
  std::vector<RecordedRequest> WaitForRequests(Route route, std::size_t count, FakeClock::duration timeout) const;
  /// Waits for `count` takes, single and batch together.
  std::vector<RecordedRequest> WaitForTakes(std::size_t count, FakeClock::duration timeout) const;
  /// Waits for the job's result: the first accepted job-done POST for it that is not a progress
  /// update. Nothing when the timeout passes first.
  std::optional<RecordedRequest> WaitForDone(std::string_view job_id, FakeClock::duration timeout) const;
  /// Waits for `count` accepted job-stream POSTs of the job; returns those there are then.
  std::vector<RecordedRequest> WaitForStreams(std::string_view job_id, std::size_t count,
                                              FakeClock::duration timeout) const;
  /// Waits for `count` accepted progress updates of the job; returns those there are then.
  std::vector<RecordedRequest> WaitForProgress(std::string_view job_id, std::size_t count,
                                               FakeClock::duration timeout) const;
  /// Waits for `count` pings (answered or not); returns those there are then.
  std::vector<RecordedRequest> WaitForPings(std::size_t count, FakeClock::duration timeout) const;
  /// Every job-done POST of the job (results, progress, failed attempts), in order.
  std::vector<RecordedRequest> DonePosts(std::string_view job_id) const;

 private:
  Task<void> Serve(http::Request& request, http::ResponseWriter& writer);
  Task<void> ServeTake(std::size_t index, std::size_t batch_size, bool batch, http::ResponseWriter& writer);
  Task<void> ServeStopPoll(std::size_t index, http::ResponseWriter& writer);
  Task<void> ServeFault(std::size_t index, const Fault& fault, http::ResponseWriter& writer);
  Task<void> Answer(std::size_t index, http::Response response, http::ResponseWriter& writer);
  void WakeLocked();
  // A timer for `deadline` that WakeLocked cancels (a job, a stop id, refusal, shutdown). The
  // caller checks its condition and registers under the same lock, then awaits `Sleep` at once.
  std::shared_ptr<boost::asio::steady_timer> RegisterWaiterLocked(FakeClock::time_point deadline);
  Task<void> Sleep(std::shared_ptr<boost::asio::steady_timer> timer);
  core::Status StartServerLocked(std::uint16_t port);
  std::string Url(std::string_view verb, std::string_view rest) const;

  const FakeRunPodOptions options_;
  std::uint16_t port_ = 0;

  // The I/O side. The io_context is declared first so that it outlives everything using it.
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread io_thread_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  // State below is protected by mutex_.
  std::unique_ptr<http::Server> server_;
  bool refusing_ = false;
  bool stopping_ = false;
  std::deque<boost::json::object> queued_jobs_;
  std::vector<std::string> taken_jobs_;
  std::vector<std::string> stop_requests_;
  std::map<Route, std::deque<Fault>> faults_;
  std::vector<RecordedRequest> requests_;
  // The timers of handlers waiting for something to happen; cancelled (on the I/O thread) to wake.
  std::vector<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

}  // namespace sluice::testing
