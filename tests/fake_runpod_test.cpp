// Checks of the fake RunPod control plane (tests/fake_runpod.hpp) with a plain HTTP client: the
// protocol it serves (runpod.md §4), what it records, and each injectable fault.
//
// Nothing here can hang: every request has its own timeout, every wait for the client has a
// watchdog (kWatchdog), and every wait on the fake takes a timeout.
#include "fake_runpod.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sluice/json.hpp>

#include "http/client.hpp"

// GCC 12 false positive in coroutine frames under the sanitizers (see src/api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace sluice::testing {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Answer = core::Result<http::ClientResponse>;

// The longest any one client request may take before the test gives up on it.
constexpr auto kWatchdog = 15s;
// A wait on the fake for something that should already be (nearly) there.
constexpr auto kWaitTimeout = 5s;

// An http::Client on its own I/O thread, used synchronously: each request either ends or is
// abandoned at the watchdog (a test failure).
class TestClient {
 public:
  TestClient() : work_(io_.get_executor()), client_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~TestClient() {
    work_.reset();
    io_.stop();
    thread_.join();
  }

  std::future<Answer> Start(http::ClientRequest request) {
    auto promise = std::make_shared<std::promise<Answer>>();
    std::future<Answer> future = promise->get_future();
    asio::co_spawn(io_, SendInto(client_, std::move(request), promise), [promise](std::exception_ptr error) {
      if (error) promise->set_value(core::Status::Internal("the client threw"));
    });
    return future;
  }

  static Answer Finish(std::future<Answer>& future) {
    if (future.wait_for(kWatchdog) != std::future_status::ready) {
      ADD_FAILURE() << "watchdog: the request did not end within the watchdog";
      return core::Status::Internal("watchdog");
    }
    return future.get();
  }

  Answer Send(http::ClientRequest request) {
    std::future<Answer> future = Start(std::move(request));
    return Finish(future);
  }

 private:
  static Task<void> SendInto(http::Client& client, http::ClientRequest request,
                             std::shared_ptr<std::promise<Answer>> promise) {
    Answer answer = co_await client.Send(std::move(request));
    promise->set_value(std::move(answer));
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  http::Client client_;
  std::thread thread_;
};

std::string ReplaceAll(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// The worker's URLs, templated as runpod.md §4.1 says.
std::string TakeUrl(const FakeRunPod& fake) {
  return ReplaceAll(fake.TakeUrlTemplate(), "$ID", fake.options().pod_id);
}
std::string PostUrl(const std::string& url_template, const FakeRunPod& fake, std::string_view job_id) {
  return ReplaceAll(ReplaceAll(url_template, "$RUNPOD_POD_ID", fake.options().pod_id), "$ID", job_id);
}
std::string PingUrl(const FakeRunPod& fake) {
  return ReplaceAll(fake.PingUrlTemplate(), "$RUNPOD_POD_ID", fake.options().pod_id);
}
std::string StopUrl(const FakeRunPod& fake) {  // §4.7: the take URL with /job-stop/
  return ReplaceAll(TakeUrl(fake), "/job-take/", "/job-stop/");
}

http::ClientRequest Request(std::string method, std::string url, std::string body = "",
                            std::chrono::steady_clock::duration timeout = 10s) {
  http::ClientRequest request;
  request.method = std::move(method);
  request.url = std::move(url);
  request.body = std::move(body);
  request.timeout = timeout;
  request.headers = {{"Authorization", "fake-runpod-key"},
                     {"User-Agent", "sluice-test/1"},
                     {"Content-Type", "application/json"}};
  return request;
}

http::ClientRequest Get(std::string url, std::chrono::steady_clock::duration timeout = 10s) {
  return Request("GET", std::move(url), "", timeout);
}

json::value ParseBody(const http::ClientResponse& response) {
  boost::system::error_code ec;
  json::value value = json::parse(response.body, ec);
  return ec ? json::value(nullptr) : value;
}

double Seconds(std::chrono::steady_clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

FakeRunPodOptions ShortPolls(std::chrono::steady_clock::duration hold = 300ms) {
  FakeRunPodOptions options;
  options.long_poll_timeout = hold;
  return options;
}

// ---------------------------------------------------------------------------------------------

TEST(FakeRunPodTest, WorkerEnvironmentHasTheTemplatesRunPodSets) {
  FakeRunPod fake;
  const std::string base = fmt::format("http://127.0.0.1:{}/v2/ep1", fake.port());
  EXPECT_THAT(fake.WorkerEnvironment(),
              ::testing::IsSupersetOf({
                  "RUNPOD_WEBHOOK_GET_JOB=" + base + "/job-take/$ID?gpu=SIM",
                  "RUNPOD_WEBHOOK_POST_OUTPUT=" + base + "/job-done/$RUNPOD_POD_ID/$ID?gpu=SIM",
                  "RUNPOD_WEBHOOK_POST_STREAM=" + base + "/job-stream/$RUNPOD_POD_ID/$ID?gpu=SIM",
                  "RUNPOD_WEBHOOK_PING=" + base + "/ping/$RUNPOD_POD_ID?gpu=SIM",
                  std::string("RUNPOD_PING_INTERVAL=1000"),
                  std::string("RUNPOD_POD_ID=pod-abc"),
                  std::string("RUNPOD_AI_API_KEY=fake-runpod-key"),
              }));
}

TEST(FakeRunPodTest, TakeAnswersAQueuedJobAsAnObjectAndRecordsTheRequest) {
  FakeRunPod fake;
  fake.AddJob("job-1", json::parse(R"({"x": 1})"));
  TestClient client;
  http::ClientRequest take = Get(TakeUrl(fake) + "&job_in_progress=0");
  take.headers.push_back({"X-Request-ID", "previous-job"});
  Answer answer = client.Send(std::move(take));
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->header("Content-Type"), "application/json");
  EXPECT_EQ(ParseBody(*answer), json::parse(R"({"id": "job-1", "input": {"x": 1}})"));
  EXPECT_THAT(fake.TakenJobs(), ElementsAre("job-1"));
  EXPECT_EQ(fake.QueuedJobs(), 0u);

  const std::vector<RecordedRequest> takes = fake.WaitForTakes(1, kWaitTimeout);
  ASSERT_EQ(takes.size(), 1u);
  const RecordedRequest& recorded = takes.front();
  EXPECT_EQ(recorded.route, Route::kJobTake);
  EXPECT_EQ(recorded.method, "GET");
  EXPECT_EQ(recorded.path, "/v2/ep1/job-take/pod-abc");
  EXPECT_EQ(recorded.pod_id, "pod-abc");
  EXPECT_EQ(recorded.Query("gpu"), "SIM");
  EXPECT_EQ(recorded.Query("job_in_progress"), "0");
  EXPECT_EQ(recorded.Header("authorization"), "fake-runpod-key");
  EXPECT_EQ(recorded.Header("User-Agent"), "sluice-test/1");
  EXPECT_EQ(recorded.Header("X-Request-ID"), "previous-job");
  EXPECT_EQ(recorded.status, 200u);
  EXPECT_THAT(recorded.jobs_served, ElementsAre("job-1"));
}

TEST(FakeRunPodTest, TakeOnAnEmptyQueueIsHeldThenAnswered204) {
  FakeRunPod fake(ShortPolls(400ms));
  TestClient client;
  const auto start = std::chrono::steady_clock::now();
  Answer answer = client.Send(Get(TakeUrl(fake) + "&job_in_progress=1"));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 204);
  EXPECT_TRUE(answer->body.empty());
  EXPECT_GE(Seconds(took), 0.38);
  EXPECT_LT(Seconds(took), 3.0);
  EXPECT_TRUE(fake.TakenJobs().empty());
}

TEST(FakeRunPodTest, HeldTakeGetsAJobAddedDuringTheHold) {
  FakeRunPod fake(ShortPolls(10s));
  TestClient client;
  std::future<Answer> pending = client.Start(Get(TakeUrl(fake) + "&job_in_progress=0"));
  ASSERT_EQ(fake.WaitForTakes(1, kWaitTimeout).size(), 1u);
  const auto added = std::chrono::steady_clock::now();
  fake.AddJob("late-job", json::value("hello"));
  Answer answer = TestClient::Finish(pending);
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 200);
  EXPECT_LT(Seconds(std::chrono::steady_clock::now() - added), 2.0);
  EXPECT_EQ(ParseBody(*answer), json::parse(R"({"id": "late-job", "input": "hello"})"));
}

TEST(FakeRunPodTest, BatchTakeAnswersAnArrayOfUpToBatchSizeJobs) {
  FakeRunPod fake(ShortPolls());
  for (const char* id : {"b1", "b2", "b3"}) fake.AddJob(id, json::object());
  TestClient client;
  const std::string batch_url = ReplaceAll(TakeUrl(fake), "/job-take/", "/job-take-batch/");

  Answer first = client.Send(Get(batch_url + "&batch_size=2&job_in_progress=0"));
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(ParseBody(*first), json::parse(R"([{"id": "b1", "input": {}}, {"id": "b2", "input": {}}])"));

  Answer second = client.Send(Get(batch_url + "&batch_size=5&job_in_progress=1"));
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(ParseBody(*second), json::parse(R"([{"id": "b3", "input": {}}])"));

  Answer empty = client.Send(Get(batch_url + "&batch_size=5&job_in_progress=1"));
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_EQ(empty->status, 204);

  Answer no_size = client.Send(Get(batch_url + "&job_in_progress=0"));
  ASSERT_TRUE(no_size.ok()) << no_size.status().message();
  EXPECT_EQ(no_size->status, 400);

  const std::vector<RecordedRequest> takes = fake.Requests(Route::kJobTakeBatch);
  ASSERT_EQ(takes.size(), 4u);
  EXPECT_EQ(takes[0].Query("batch_size"), "2");
  EXPECT_EQ(takes[0].Query("job_in_progress"), "0");
  EXPECT_THAT(takes[0].jobs_served, ElementsAre("b1", "b2"));
  EXPECT_THAT(takes[1].jobs_served, ElementsAre("b3"));
  EXPECT_THAT(fake.TakenJobs(), ElementsAre("b1", "b2", "b3"));
}

TEST(FakeRunPodTest, DoneStreamProgressAndPingAreRecordedWithQueriesAndHeaders) {
  FakeRunPod fake;
  TestClient client;
  auto post = [&](const std::string& url_template, std::string_view job, std::string query, std::string body) {
    http::ClientRequest request = Request("POST", PostUrl(url_template, fake, job) + query, std::move(body));
    request.headers.push_back({"X-Request-ID", std::string(job)});
    Answer answer = client.Send(std::move(request));
    EXPECT_TRUE(answer.ok() && answer->status == 200) << (answer.ok() ? answer->body : answer.status().message());
  };
  post(fake.DoneUrlTemplate(), "job-7", "&isStream=false", R"({"status": "IN_PROGRESS", "output": "half"})");
  post(fake.StreamUrlTemplate(), "job-7", "&isStream=false", R"({"output": {"token": "a"}})");
  post(fake.StreamUrlTemplate(), "job-7", "&isStream=false", R"({"output": {"token": "b"}})");
  post(fake.DoneUrlTemplate(), "job-7", "&isStream=true", R"({"output": [{"token": "a"}, {"token": "b"}]})");

  std::optional<RecordedRequest> done = fake.WaitForDone("job-7", kWaitTimeout);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->path, "/v2/ep1/job-done/pod-abc/job-7");
  EXPECT_EQ(done->Query("isStream"), "true");
  EXPECT_EQ(done->Query("gpu"), "SIM");
  EXPECT_EQ(done->body, R"({"output": [{"token": "a"}, {"token": "b"}]})");
  EXPECT_EQ(done->Header("X-Request-ID"), "job-7");
  EXPECT_EQ(done->Header("Authorization"), "fake-runpod-key");

  const std::vector<RecordedRequest> progress = fake.WaitForProgress("job-7", 1, kWaitTimeout);
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].Query("isStream"), "false");
  const std::vector<RecordedRequest> streams = fake.WaitForStreams("job-7", 2, kWaitTimeout);
  ASSERT_EQ(streams.size(), 2u);
  EXPECT_EQ(streams[0].Json(), json::parse(R"({"output": {"token": "a"}})"));
  EXPECT_EQ(streams[1].Query("isStream"), "false");
  EXPECT_LT(streams[0].sequence, streams[1].sequence);
  EXPECT_LE(streams[0].received, streams[1].received);
  EXPECT_EQ(fake.DonePosts("job-7").size(), 2u);

  Answer with_jobs = client.Send(Get(PingUrl(fake) + "&job_id=j-s1%2Cj-long&runpod_version=1.12.0"));
  Answer idle = client.Send(Get(PingUrl(fake) + "&runpod_version=1.12.0"));
  ASSERT_TRUE(with_jobs.ok() && idle.ok());
  EXPECT_EQ(with_jobs->status, 200);
  const std::vector<RecordedRequest> pings = fake.WaitForPings(2, kWaitTimeout);
  ASSERT_EQ(pings.size(), 2u);
  EXPECT_THAT(pings[0].PingJobIds(), ElementsAre("j-s1", "j-long"));
  EXPECT_EQ(pings[0].Query("runpod_version"), "1.12.0");
  EXPECT_TRUE(pings[1].PingJobIds().empty());
  EXPECT_EQ(pings[1].Header("User-Agent"), "sluice-test/1");
}

TEST(FakeRunPodTest, StopJobIsAnsweredOnTheStopLongPoll) {
  FakeRunPod fake(ShortPolls(10s));
  TestClient client;
  std::future<Answer> pending = client.Start(Get(StopUrl(fake)));
  ASSERT_EQ(fake.WaitForRequests(Route::kJobStop, 1, kWaitTimeout).size(), 1u);
  fake.StopJob("job-a");
  Answer answer = TestClient::Finish(pending);
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(ParseBody(*answer), json::parse(R"({"jobsToStop": ["job-a"]})"));
  const std::vector<RecordedRequest> polls = fake.Requests(Route::kJobStop);
  ASSERT_EQ(polls.size(), 1u);
  EXPECT_EQ(polls[0].path, "/v2/ep1/job-stop/pod-abc");
  EXPECT_EQ(polls[0].Query("gpu"), "SIM");
  EXPECT_THAT(polls[0].jobs_to_stop, ElementsAre("job-a"));
}

TEST(FakeRunPodTest, StopPollWithNothingToStopIs204AfterTheHold) {
  FakeRunPod fake(ShortPolls());
  TestClient client;
  Answer answer = client.Send(Get(StopUrl(fake)));
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 204);
}

TEST(FakeRunPodTest, WrongPodEndpointOrMethodIsRefusedAndRecorded) {
  FakeRunPod fake(ShortPolls());
  fake.AddJob("kept", json::object());
  TestClient client;
  const std::string other_pod = ReplaceAll(TakeUrl(fake), "pod-abc", "pod-other");
  const std::string other_endpoint = ReplaceAll(TakeUrl(fake), "/ep1/", "/ep2/");
  Answer wrong_pod = client.Send(Get(other_pod + "&job_in_progress=0"));
  Answer wrong_endpoint = client.Send(Get(other_endpoint + "&job_in_progress=0"));
  Answer wrong_method = client.Send(Request("POST", TakeUrl(fake) + "&job_in_progress=0", "{}"));
  Answer unknown = client.Send(Get(fake.BaseUrl() + "/job-status/pod-abc"));
  ASSERT_TRUE(wrong_pod.ok() && wrong_endpoint.ok() && wrong_method.ok() && unknown.ok());
  EXPECT_EQ(wrong_pod->status, 404);
  EXPECT_THAT(wrong_pod->body, HasSubstr("pod-other"));
  EXPECT_EQ(wrong_endpoint->status, 404);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(fake.QueuedJobs(), 1u);
  EXPECT_EQ(fake.Requests().size(), 4u);
}

TEST(FakeRunPodTest, StatusFaultsAnswerTheNextRequestsOfTheRouteOnly) {
  FakeRunPod fake(ShortPolls());
  fake.AddJob("job-1", json::object());
  fake.InjectFault(Route::kJobTake, Fault::Status(429), 2);
  fake.InjectFault(Route::kJobDone, Fault::Status(500));
  TestClient client;

  Answer ping = client.Send(Get(PingUrl(fake)));  // another route: untouched
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->status, 200);
  for (int i = 0; i < 2; ++i) {
    Answer limited = client.Send(Get(TakeUrl(fake) + "&job_in_progress=0"));
    ASSERT_TRUE(limited.ok()) << limited.status().message();
    EXPECT_EQ(limited->status, 429);
  }
  EXPECT_EQ(fake.QueuedJobs(), 1u) << "a faulted take hands out no job";
  Answer served = client.Send(Get(TakeUrl(fake) + "&job_in_progress=0"));
  ASSERT_TRUE(served.ok());
  EXPECT_EQ(served->status, 200);

  const std::string done_url = PostUrl(fake.DoneUrlTemplate(), fake, "job-1") + "&isStream=false";
  Answer failed = client.Send(Request("POST", done_url, R"({"output": 1})"));
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->status, 500);
  EXPECT_FALSE(fake.WaitForDone("job-1", 200ms).has_value()) << "a faulted POST is not a result";
  Answer retried = client.Send(Request("POST", done_url, R"({"output": 1})"));
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->status, 200);
  ASSERT_TRUE(fake.WaitForDone("job-1", kWaitTimeout).has_value());

  const std::vector<RecordedRequest> posts = fake.DonePosts("job-1");
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_TRUE(posts[0].faulted);
  EXPECT_EQ(posts[0].status, 500u);
  EXPECT_FALSE(posts[1].faulted);
  const std::vector<RecordedRequest> takes = fake.Requests(Route::kJobTake);
  ASSERT_EQ(takes.size(), 3u);
  EXPECT_TRUE(takes[0].faulted && takes[1].faulted && !takes[2].faulted);
}

TEST(FakeRunPodTest, DelayFaultAnswersLate) {
  FakeRunPod fake;
  fake.InjectFault(Route::kPing, Fault::Delay(500ms));
  TestClient client;
  const auto start = std::chrono::steady_clock::now();
  Answer late = client.Send(Get(PingUrl(fake)));
  const double took = Seconds(std::chrono::steady_clock::now() - start);
  ASSERT_TRUE(late.ok()) << late.status().message();
  EXPECT_EQ(late->status, 200);
  EXPECT_GE(took, 0.48);
  EXPECT_LT(took, 5.0);
  // Late, but served as usual: recorded as delayed, not as a fault, and accepted.
  const auto pings = fake.Requests(Route::kPing);
  ASSERT_EQ(pings.size(), 1u);
  EXPECT_TRUE(pings[0].delayed) << pings[0].Describe();
  EXPECT_FALSE(pings[0].faulted) << pings[0].Describe();
  EXPECT_TRUE(pings[0].Accepted()) << pings[0].Describe();
}

TEST(FakeRunPodTest, HangFaultNeverAnswersUntilTheClientGivesUp) {
  FakeRunPod fake;
  fake.InjectFault(Route::kJobDone, Fault::Hang());
  TestClient client;
  const std::string done_url = PostUrl(fake.DoneUrlTemplate(), fake, "job-h") + "&isStream=false";
  const auto start = std::chrono::steady_clock::now();
  Answer hung = client.Send(Request("POST", done_url, R"({"output": 1})", 500ms));
  EXPECT_FALSE(hung.ok());
  EXPECT_GE(Seconds(std::chrono::steady_clock::now() - start), 0.45);
  Answer next = client.Send(Request("POST", done_url, R"({"output": 2})"));
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(next->status, 200);
  const std::optional<RecordedRequest> done = fake.WaitForDone("job-h", kWaitTimeout);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->body, R"({"output": 2})");
  const std::vector<RecordedRequest> posts = fake.DonePosts("job-h");
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_EQ(posts[0].status, 0u);  // never answered
  EXPECT_TRUE(posts[0].faulted);
}

TEST(FakeRunPodTest, DropMidBodyCutsTheResponseAndKeepsTheJob) {
  FakeRunPod fake(ShortPolls());
  fake.AddJob("job-d", json::object());
  fake.InjectFault(Route::kJobTake, Fault::DropMidBody());
  TestClient client;
  Answer cut = client.Send(Get(TakeUrl(fake) + "&job_in_progress=0"));
  EXPECT_FALSE(cut.ok()) << "status " << (cut.ok() ? cut->status : 0) << " body " << (cut.ok() ? cut->body : "");
  EXPECT_EQ(fake.QueuedJobs(), 1u);
  Answer whole = client.Send(Get(TakeUrl(fake) + "&job_in_progress=0"));
  ASSERT_TRUE(whole.ok()) << whole.status().message();
  EXPECT_EQ(ParseBody(*whole), json::parse(R"({"id": "job-d", "input": {}})"));
  const std::vector<RecordedRequest> takes = fake.Requests(Route::kJobTake);
  ASSERT_EQ(takes.size(), 2u);
  EXPECT_TRUE(takes[0].faulted);
  EXPECT_FALSE(takes[0].Accepted());
}

TEST(FakeRunPodTest, RefusedConnectionsFailUntilAcceptedAgainOnTheSamePort) {
  FakeRunPod fake(ShortPolls(10s));
  TestClient client;
  const std::uint16_t port = fake.port();
  std::future<Answer> held = client.Start(Get(TakeUrl(fake) + "&job_in_progress=0"));
  ASSERT_EQ(fake.WaitForTakes(1, kWaitTimeout).size(), 1u);

  fake.RefuseConnections();
  Answer released = TestClient::Finish(held);
  ASSERT_TRUE(released.ok()) << released.status().message();
  EXPECT_EQ(released->status, 204) << "a held long-poll is let go when the fake refuses";
  const auto start = std::chrono::steady_clock::now();
  Answer refused = client.Send(Get(PingUrl(fake), 5s));
  EXPECT_FALSE(refused.ok());
  EXPECT_LT(Seconds(std::chrono::steady_clock::now() - start), 2.0) << "refused, not timed out";
  EXPECT_TRUE(fake.Requests(Route::kPing).empty());

  const core::Status listening = fake.AcceptConnections();
  ASSERT_TRUE(listening.ok()) << listening.message();
  EXPECT_EQ(fake.port(), port);
  Answer accepted = client.Send(Get(PingUrl(fake)));
  ASSERT_TRUE(accepted.ok()) << accepted.status().message();
  EXPECT_EQ(accepted->status, 200);
}

TEST(FakeRunPodTest, DestroyingTheFakeLetsHeldLongPollsGoAtOnce) {
  TestClient client;
  std::future<Answer> held;
  const auto start = std::chrono::steady_clock::now();
  {
    FakeRunPod fake(ShortPolls(60s));
    held = client.Start(Get(TakeUrl(fake) + "&job_in_progress=0"));
    ASSERT_EQ(fake.WaitForTakes(1, kWaitTimeout).size(), 1u);
  }
  EXPECT_LT(Seconds(std::chrono::steady_clock::now() - start), 5.0);
  Answer answer = TestClient::Finish(held);
  ASSERT_TRUE(answer.ok()) << answer.status().message();
  EXPECT_EQ(answer->status, 204);
}

}  // namespace
}  // namespace sluice::testing
