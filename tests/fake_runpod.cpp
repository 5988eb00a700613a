#include "fake_runpod.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <future>
#include <stdexcept>
#include <system_error>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>

#include <sluice/json.hpp>

// GCC 12 reports a mismatched new/delete inside coroutine frames under the sanitizers; a false
// positive (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace sluice::testing {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// How often a hung request looks whether its client has gone.
constexpr auto kHangPollInterval = 20ms;
// What a mid-body drop writes before it closes: the start of a job object, cut.
constexpr std::string_view kTruncatedBody = R"({"id": "dropped-mid-bo)";
// How long the destructor lets connections end by themselves.
constexpr auto kShutdownDrain = 2s;

std::string ErrorBody(std::string_view message) {
  json::object body;
  body["error"] = message;
  return to_json(body);
}

http::Response JsonResponse(unsigned status, std::string body) {
  http::Response response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

// What the path and method say the request is: the route, the ids in the path, and, when the fake
// must refuse it, the status and why.
struct Classified {
  Route route = Route::kUnknown;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::string pod_id;
  std::string job_id;
  std::size_t batch_size = 1;
  unsigned reject_status = 0;
  std::string reject_reason;
};

std::optional<std::string> FindQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                     std::string_view name) {
  for (const auto& [key, value] : query) {
    if (key == name) return value;
  }
  return std::nullopt;
}

// runpod.md §4.1: /v2/<endpoint>/<verb>/<pod>[/<job>]; which verbs take a job id and which method
// each uses come from §4.3 (take, batch take: GET), §4.5 (done, stream: POST), §4.6 (ping: GET)
// and §4.7 (stop: GET).
Classified Classify(const http::Request& request, const FakeRunPodOptions& options) {
  Classified result;
  auto parsed = boost::urls::parse_origin_form(request.target);
  if (!parsed) {
    result.reject_status = runpod_wire::kBadRequest;
    result.reject_reason = "malformed request target";
    return result;
  }
  const boost::urls::url_view url = *parsed;
  result.path = std::string(url.path());
  for (const auto& param : url.params()) result.query.emplace_back(param.key, param.value);
  std::vector<std::string> segments;
  for (const auto& segment : url.segments()) segments.push_back(segment);

  auto reject = [&result](unsigned status, std::string reason) {
    result.reject_status = status;
    result.reject_reason = std::move(reason);
    return result;
  };
  if (segments.size() < 4 || "/" + segments[0] + "/" != runpod_wire::kPathPrefix) {
    return reject(404, "unknown path");
  }
  const std::string& verb = segments[2];
  std::size_t expected_segments = 4;
  std::string_view method = "GET";
  if (verb == runpod_wire::kJobTake) {
    result.route = Route::kJobTake;
  } else if (verb == runpod_wire::kJobTakeBatch) {
    result.route = Route::kJobTakeBatch;
  } else if (verb == runpod_wire::kJobStop) {
    result.route = Route::kJobStop;
  } else if (verb == runpod_wire::kPing) {
    result.route = Route::kPing;
  } else if (verb == runpod_wire::kJobDone) {
    result.route = Route::kJobDone;
    expected_segments = 5;
    method = "POST";
  } else if (verb == runpod_wire::kJobStream) {
    result.route = Route::kJobStream;
    expected_segments = 5;
    method = "POST";
  } else {
    return reject(404, "unknown path");
  }
  if (segments.size() != expected_segments) return reject(404, "unknown path");
  result.pod_id = segments[3];
  if (expected_segments == 5) result.job_id = segments[4];
  if (segments[1] != options.endpoint_id) {
    return reject(404, fmt::format("unknown endpoint \"{}\"", segments[1]));
  }
  if (result.pod_id != options.pod_id) return reject(404, fmt::format("unknown pod \"{}\"", result.pod_id));
  if (request.method != method) {
    return reject(405, fmt::format("{} takes {}, not {}", verb, method, request.method));
  }
  if (result.route == Route::kJobTakeBatch) {
    const std::string size = FindQuery(result.query, runpod_wire::kQueryBatchSize).value_or("");
    std::size_t batch_size = 0;
    const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), batch_size);
    if (ec != std::errc() || end != size.data() + size.size() || batch_size == 0) {
      return reject(runpod_wire::kBadRequest, "job-take-batch needs a positive batch_size");
    }
    result.batch_size = batch_size;
  }
  return result;
}

}  // namespace

std::string_view RouteName(Route route) {
  switch (route) {
    case Route::kJobTake: return runpod_wire::kJobTake;
    case Route::kJobTakeBatch: return runpod_wire::kJobTakeBatch;
    case Route::kJobDone: return runpod_wire::kJobDone;
    case Route::kJobStream: return runpod_wire::kJobStream;
    case Route::kJobStop: return runpod_wire::kJobStop;
    case Route::kPing: return runpod_wire::kPing;
    case Route::kUnknown: break;
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------

std::optional<std::string> RecordedRequest::Query(std::string_view name) const { return FindQuery(query, name); }

std::string_view RecordedRequest::Header(std::string_view name) const { return http::FindHeader(headers, name); }

json::value RecordedRequest::Json() const {
  boost::system::error_code ec;
  json::value value = json::parse(body, ec);
  return ec ? json::value(nullptr) : value;
}

std::vector<std::string> RecordedRequest::PingJobIds() const {
  std::vector<std::string> ids;
  const std::optional<std::string> joined = Query(runpod_wire::kQueryJobIds);
  if (!joined) return ids;
  std::string_view rest = *joined;
  while (true) {
    const std::size_t comma = rest.find(',');
    ids.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return ids;
}

bool RecordedRequest::IsProgress() const {
  if (route != Route::kJobDone) return false;
  const json::value value = Json();
  const json::object* object = value.if_object();
  if (object == nullptr) return false;
  const json::value* status = object->if_contains("status");
  return status != nullptr && status->is_string() && status->get_string() == runpod_wire::kProgressStatus;
}

std::string RecordedRequest::Describe() const {
  return fmt::format("#{} {} {} -> {}{}{}", sequence, method, target, status,
                     faulted ? " (fault)" : delayed ? " (late)" : "",
                     body.empty() ? "" : " body " + body.substr(0, 500));
}

// ---------------------------------------------------------------------------------------------

FakeRunPod::FakeRunPod(FakeRunPodOptions options)
    : options_(std::move(options)), work_(io_.get_executor()) {
  {
    std::lock_guard lock(mutex_);
    const core::Status started = StartServerLocked(0);
    if (!started.ok()) throw std::runtime_error("fake RunPod: " + started.message());
  }
  io_thread_ = std::thread([this] { io_.run(); });
}

FakeRunPod::~FakeRunPod() {
  std::unique_ptr<http::Server> server;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    WakeLocked();
    server = std::move(server_);
  }
  if (server) {
    // Held long-polls answer 204 now and hung requests let go; Drain closes what remains.
    auto drained = std::make_shared<std::promise<void>>();
    asio::co_spawn(io_, server->Drain(kShutdownDrain),
                   [drained](std::exception_ptr, bool) { drained->set_value(); });
    drained->get_future().wait_for(kShutdownDrain + 3s);
  }
  work_.reset();
  io_.stop();
  io_thread_.join();
}

core::Status FakeRunPod::StartServerLocked(std::uint16_t port) {
  http::ServerOptions server_options;
  server_options.host = "127.0.0.1";
  server_options.port = port;
  server_options.io_threads = 1;
  auto server = std::make_unique<http::Server>(
      io_, [this](http::Request& request, http::ResponseWriter& writer) { return Serve(request, writer); },
      server_options);
  core::Status started = server->Start();
  if (!started.ok()) return started;
  port_ = server->port();
  server_ = std::move(server);
  return core::Status::Ok();
}

std::string FakeRunPod::BaseUrl() const {
  return fmt::format("http://127.0.0.1:{}{}{}", port_, runpod_wire::kPathPrefix, options_.endpoint_id);
}

std::string FakeRunPod::Url(std::string_view verb, std::string_view rest) const {
  return fmt::format("{}/{}/{}?gpu={}", BaseUrl(), verb, rest, options_.gpu);
}

std::string FakeRunPod::TakeUrlTemplate() const {
  return Url(runpod_wire::kJobTake, runpod_wire::kWorkerIdPlaceholder);
}
std::string FakeRunPod::DoneUrlTemplate() const {
  return Url(runpod_wire::kJobDone,
             fmt::format("{}/{}", runpod_wire::kPodIdPlaceholder, runpod_wire::kJobIdPlaceholder));
}
std::string FakeRunPod::StreamUrlTemplate() const {
  return Url(runpod_wire::kJobStream,
             fmt::format("{}/{}", runpod_wire::kPodIdPlaceholder, runpod_wire::kJobIdPlaceholder));
}
std::string FakeRunPod::PingUrlTemplate() const { return Url(runpod_wire::kPing, runpod_wire::kPodIdPlaceholder); }

std::vector<std::string> FakeRunPod::WorkerEnvironment() const {
  auto entry = [](std::string_view name, std::string_view value) { return fmt::format("{}={}", name, value); };
  return {
      entry(runpod_wire::kEnvGetJob, TakeUrlTemplate()),
      entry(runpod_wire::kEnvPostOutput, DoneUrlTemplate()),
      entry(runpod_wire::kEnvPostStream, StreamUrlTemplate()),
      entry(runpod_wire::kEnvPing, PingUrlTemplate()),
      entry(runpod_wire::kEnvPingInterval, std::to_string(options_.ping_interval.count())),
      entry(runpod_wire::kEnvPodId, options_.pod_id),
      entry(runpod_wire::kEnvApiKey, options_.api_key),
      entry(runpod_wire::kEnvPodHostname, options_.pod_hostname),
      entry(runpod_wire::kEnvSkipSystemChecks, "true"),
      entry(runpod_wire::kEnvSkipGpuCheck, "true"),
  };
}

// ----- jobs, stops, faults ---------------------------------------------------------------------

void FakeRunPod::AddJob(const std::string& id, json::value input) {
  json::object job;
  job[runpod_wire::kJobId] = id;
  job[runpod_wire::kJobInput] = std::move(input);
  AddJob(std::move(job));
}

void FakeRunPod::AddJob(json::object job) {
  const json::value* id = job.if_contains(runpod_wire::kJobId);
  if (id == nullptr || !id->is_string()) throw std::invalid_argument("fake RunPod: a job needs a string \"id\"");
  std::lock_guard lock(mutex_);
  queued_jobs_.push_back(std::move(job));
  WakeLocked();
}

std::size_t FakeRunPod::QueuedJobs() const {
  std::lock_guard lock(mutex_);
  return queued_jobs_.size();
}

std::vector<std::string> FakeRunPod::TakenJobs() const {
  std::lock_guard lock(mutex_);
  return taken_jobs_;
}

void FakeRunPod::StopJob(const std::string& id) {
  std::lock_guard lock(mutex_);
  stop_requests_.push_back(id);
  WakeLocked();
}

void FakeRunPod::InjectFault(Route route, Fault fault, std::size_t count) {
  std::lock_guard lock(mutex_);
  auto& queue = faults_[route];
  for (std::size_t i = 0; i < count; ++i) queue.push_back(fault);
}

void FakeRunPod::ClearFaults() {
  std::lock_guard lock(mutex_);
  faults_.clear();
}

void FakeRunPod::RefuseConnections() {
  std::unique_ptr<http::Server> retired;
  {
    std::lock_guard lock(mutex_);
    if (refusing_ || stopping_) return;
    refusing_ = true;
    WakeLocked();
    retired = std::move(server_);
  }
  // Stop posts the acceptor's close to the I/O thread; that one thread runs handlers in order, so
  // once a later post has run, the socket is closed and connects are refused.
  retired->Stop();
  auto closed = std::make_shared<std::promise<void>>();
  asio::post(io_, [closed] { closed->set_value(); });
  closed->get_future().wait_for(5s);
  // Requests in flight keep the server's internals alive (http/server.hpp), so it may go now.
  retired.reset();
}

core::Status FakeRunPod::AcceptConnections() {
  std::lock_guard lock(mutex_);
  if (!refusing_ || stopping_) return core::Status::Ok();
  core::Status started = StartServerLocked(port_);
  if (started.ok()) refusing_ = false;
  return started;
}

void FakeRunPod::WakeLocked() {
  if (waiters_.empty()) return;
  // Timers are not thread-safe: they are cancelled on the I/O thread. A handler registers its
  // timer and starts waiting on it without giving the thread up, so the cancel cannot come between.
  asio::post(io_, [waiters = waiters_] {
    for (const auto& timer : waiters) timer->cancel();
  });
}

std::shared_ptr<asio::steady_timer> FakeRunPod::RegisterWaiterLocked(FakeClock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(io_, deadline);
  waiters_.push_back(timer);
  return timer;
}

Task<void> FakeRunPod::Sleep(std::shared_ptr<asio::steady_timer> timer) {
  // Cancelled (woken) or expired: the caller looks again either way.
  co_await timer->async_wait(kNoThrow);
  std::lock_guard lock(mutex_);
  std::erase(waiters_, timer);
}

// ----- serving -------------------------------------------------------------------------------

Task<void> FakeRunPod::Serve(http::Request& request, http::ResponseWriter& writer) {
  Classified classified = Classify(request, options_);
  RecordedRequest record;
  record.received = FakeClock::now();
  record.route = classified.route;
  record.method = request.method;
  record.target = request.target;
  record.path = std::move(classified.path);
  record.query = std::move(classified.query);
  record.headers = request.headers;
  record.body = request.body;
  record.pod_id = std::move(classified.pod_id);
  record.job_id = std::move(classified.job_id);

  std::optional<Fault> fault;
  std::size_t index = 0;
  {
    std::lock_guard lock(mutex_);
    if (classified.reject_status == 0) {
      auto found = faults_.find(classified.route);
      if (found != faults_.end() && !found->second.empty()) {
        fault = found->second.front();
        found->second.pop_front();
        // A delay changes when the answer comes, not what it is: the request may still be accepted.
        (fault->kind == Fault::Kind::kDelay ? record.delayed : record.faulted) = true;
      }
    }
    index = requests_.size();
    record.sequence = index;
    requests_.push_back(std::move(record));
  }
  changed_.notify_all();

  if (classified.reject_status != 0) {
    http::Response rejection = JsonResponse(classified.reject_status, ErrorBody(classified.reject_reason));
    co_await Answer(index, std::move(rejection), writer);
    co_return;
  }
  if (fault && fault->kind != Fault::Kind::kDelay) {
    co_await ServeFault(index, *fault, writer);
    co_return;
  }
  if (fault) {
    // Late, then served as usual (a take's long-poll starts after the delay).
    const auto until = FakeClock::now() + fault->delay;
    while (FakeClock::now() < until) {
      std::shared_ptr<asio::steady_timer> timer;
      {
        std::lock_guard lock(mutex_);
        if (stopping_) break;
        timer = RegisterWaiterLocked(until);
      }
      co_await Sleep(timer);
    }
  }

  switch (classified.route) {
    case Route::kJobTake:
    case Route::kJobTakeBatch:
      co_await ServeTake(index, classified.batch_size, classified.route == Route::kJobTakeBatch, writer);
      break;
    case Route::kJobStop:
      co_await ServeStopPoll(index, writer);
      break;
    case Route::kJobDone:
    case Route::kJobStream:
    case Route::kPing: {
      // §4.5, §4.6: the worker ignores the body of these answers.
      http::Response ok = JsonResponse(runpod_wire::kOk, "");
      co_await Answer(index, std::move(ok), writer);
      break;
    }
    case Route::kUnknown: {
      http::Response not_found = JsonResponse(404, ErrorBody("unknown path"));
      co_await Answer(index, std::move(not_found), writer);
      break;
    }
  }
}

// §4.3: a take answers one job as a JSON object; a batch take answers a JSON array of up to
// batch_size jobs (see the header comment); nothing during the hold means 204.
Task<void> FakeRunPod::ServeTake(std::size_t index, std::size_t batch_size, bool batch,
                                 http::ResponseWriter& writer) {
  const auto deadline = FakeClock::now() + options_.long_poll_timeout;
  std::vector<json::object> jobs;
  for (;;) {
    std::shared_ptr<asio::steady_timer> timer;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || refusing_) break;
      if (!queued_jobs_.empty()) {
        RecordedRequest& record = requests_[index];
        while (!queued_jobs_.empty() && jobs.size() < batch_size) {
          std::string id(queued_jobs_.front().at(runpod_wire::kJobId).as_string());
          record.jobs_served.push_back(id);
          taken_jobs_.push_back(std::move(id));
          jobs.push_back(std::move(queued_jobs_.front()));
          queued_jobs_.pop_front();
        }
        break;
      }
      if (FakeClock::now() >= deadline) break;
      timer = RegisterWaiterLocked(deadline);
    }
    co_await Sleep(timer);
  }
  if (jobs.empty()) {
    http::Response no_job = JsonResponse(runpod_wire::kNoContent, "");
    co_await Answer(index, std::move(no_job), writer);
    co_return;
  }
  std::string body;
  if (batch) {
    json::array array;
    for (auto& job : jobs) array.emplace_back(std::move(job));
    body = to_json(array);
  } else {
    body = to_json(jobs.front());
  }
  http::Response answer = JsonResponse(runpod_wire::kOk, std::move(body));
  co_await Answer(index, std::move(answer), writer);
}

// §4.7: 200 {"jobsToStop": [...]} with every id asked for so far; 204 when the hold ends first.
Task<void> FakeRunPod::ServeStopPoll(std::size_t index, http::ResponseWriter& writer) {
  const auto deadline = FakeClock::now() + options_.long_poll_timeout;
  std::vector<std::string> ids;
  for (;;) {
    std::shared_ptr<asio::steady_timer> timer;
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || refusing_) break;
      if (!stop_requests_.empty()) {
        ids = std::move(stop_requests_);
        stop_requests_.clear();
        requests_[index].jobs_to_stop = ids;
        break;
      }
      if (FakeClock::now() >= deadline) break;
      timer = RegisterWaiterLocked(deadline);
    }
    co_await Sleep(timer);
  }
  if (ids.empty()) {
    http::Response nothing = JsonResponse(runpod_wire::kNoContent, "");
    co_await Answer(index, std::move(nothing), writer);
    co_return;
  }
  json::array listed;
  for (const auto& id : ids) listed.emplace_back(id);
  json::object body;
  body[runpod_wire::kJobsToStop] = std::move(listed);
  http::Response answer = JsonResponse(runpod_wire::kOk, to_json(body));
  co_await Answer(index, std::move(answer), writer);
}

Task<void> FakeRunPod::ServeFault(std::size_t index, const Fault& fault, http::ResponseWriter& writer) {
  switch (fault.kind) {
    case Fault::Kind::kStatus: {
      http::Response failure =
          JsonResponse(fault.status, ErrorBody(fmt::format("injected fault: status {}", fault.status)));
      co_await Answer(index, std::move(failure), writer);
      co_return;
    }
    case Fault::Kind::kHang:
      // No answer: the client's timeout ends it. The handler returns once the client has gone (or
      // the fake stops), so the connection does not outlive the test.
      while (!writer.client_gone()) {
        std::shared_ptr<asio::steady_timer> timer;
        {
          std::lock_guard lock(mutex_);
          if (stopping_) break;
          timer = RegisterWaiterLocked(FakeClock::now() + kHangPollInterval);
        }
        co_await Sleep(timer);
      }
      co_return;
    case Fault::Kind::kDropMidBody: {
      http::StreamHead head;
      head.status = runpod_wire::kOk;
      head.content_type = "application/json";
      {
        std::lock_guard lock(mutex_);
        requests_[index].status = head.status;
        requests_[index].answered = FakeClock::now();
      }
      changed_.notify_all();
      if (co_await writer.StartStream(std::move(head))) co_await writer.SendChunk(kTruncatedBody);
      // The server closes a connection whose handler throws after the head, without the last
      // chunk: the client reads a partial body. (The server logs the exception.)
      throw std::runtime_error("fake RunPod: injected fault: connection dropped mid-body");
    }
    case Fault::Kind::kDelay:
      break;  // served by Serve
  }
}

Task<void> FakeRunPod::Answer(std::size_t index, http::Response response, http::ResponseWriter& writer) {
  {
    // Recorded before the write, so a test that has its answer also finds it recorded.
    std::lock_guard lock(mutex_);
    requests_[index].status = response.status;
    requests_[index].answered = FakeClock::now();
  }
  changed_.notify_all();
  co_await writer.Send(std::move(response));
}

// ----- what the worker sent ------------------------------------------------------------------

std::vector<RecordedRequest> FakeRunPod::Requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<RecordedRequest> FakeRunPod::Requests(Route route) const {
  std::lock_guard lock(mutex_);
  std::vector<RecordedRequest> selected;
  for (const auto& request : requests_) {
    if (request.route == route) selected.push_back(request);
  }
  return selected;
}

bool FakeRunPod::WaitUntil(const std::function<bool(const std::vector<RecordedRequest>&)>& done,
                           FakeClock::duration timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return done(requests_); });
}

namespace {

// Waits until `count` recorded requests pass `select`, and returns those that do.
std::vector<RecordedRequest> Collect(const FakeRunPod& fake, std::size_t count, FakeClock::duration timeout,
                                     const std::function<bool(const RecordedRequest&)>& select) {
  std::vector<RecordedRequest> selected;
  fake.WaitUntil(
      [&](const std::vector<RecordedRequest>& requests) {
        selected.clear();
        for (const auto& request : requests) {
          if (select(request)) selected.push_back(request);
        }
        return selected.size() >= count;
      },
      timeout);
  return selected;
}

}  // namespace

std::vector<RecordedRequest> FakeRunPod::WaitForRequests(Route route, std::size_t count,
                                                         FakeClock::duration timeout) const {
  return Collect(*this, count, timeout, [route](const RecordedRequest& request) { return request.route == route; });
}

std::vector<RecordedRequest> FakeRunPod::WaitForTakes(std::size_t count, FakeClock::duration timeout) const {
  return Collect(*this, count, timeout, [](const RecordedRequest& request) {
    return request.route == Route::kJobTake || request.route == Route::kJobTakeBatch;
  });
}

std::optional<RecordedRequest> FakeRunPod::WaitForDone(std::string_view job_id, FakeClock::duration timeout) const {
  std::vector<RecordedRequest> results = Collect(*this, 1, timeout, [job_id](const RecordedRequest& request) {
    return request.route == Route::kJobDone && request.job_id == job_id && request.Accepted() &&
           !request.IsProgress();
  });
  if (results.empty()) return std::nullopt;
  return results.front();
}

std::vector<RecordedRequest> FakeRunPod::WaitForStreams(std::string_view job_id, std::size_t count,
                                                        FakeClock::duration timeout) const {
  return Collect(*this, count, timeout, [job_id](const RecordedRequest& request) {
    return request.route == Route::kJobStream && request.job_id == job_id && request.Accepted();
  });
}

std::vector<RecordedRequest> FakeRunPod::WaitForProgress(std::string_view job_id, std::size_t count,
                                                         FakeClock::duration timeout) const {
  return Collect(*this, count, timeout, [job_id](const RecordedRequest& request) {
    return request.job_id == job_id && request.Accepted() && request.IsProgress();
  });
}

std::vector<RecordedRequest> FakeRunPod::WaitForPings(std::size_t count, FakeClock::duration timeout) const {
  return Collect(*this, count, timeout, [](const RecordedRequest& request) { return request.route == Route::kPing; });
}

std::vector<RecordedRequest> FakeRunPod::DonePosts(std::string_view job_id) const {
  std::lock_guard lock(mutex_);
  std::vector<RecordedRequest> posts;
  for (const auto& request : requests_) {
    if (request.route == Route::kJobDone && request.job_id == job_id) posts.push_back(request);
  }
  return posts;
}

}  // namespace sluice::testing
