// api/job_api.hpp — RunPod's cloud job API over HTTP (docs/job-api.md): the routes, the checks of
// every request, and the shapes of every answer. It turns HTTP requests into awaited calls on a
// core::JobBackend (job_backend.hpp: the in-memory store, or Redis) and the backend's answers into
// RunPod's JSON; it runs no jobs itself, knows nothing of how jobs are kept, and nothing of
// sockets (http::Server calls `Handle`). A backend that cannot answer (kUnavailable) makes a 503
// with a JSON error naming the problem.
//
// Threads: `Handle` runs concurrently on any number of connection strands; `OnJobFinished` is
// called from the store on I/O or handler threads. Everything here is thread-safe. The JobApi
// borrows the backend and the webhook sender, which must outlive it and every request it serves.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <sluice/task.hpp>

#include "api/metrics.hpp"
#include "api/webhook.hpp"
#include "core/job_backend.hpp"
#include "http/server.hpp"

namespace sluice::api {

struct Route;  // a matched route (job_api.cpp)

struct JobApiOptions {
  /// When set, every request needs `Authorization: Bearer <auth_token>`.
  std::string auth_token;
  /// Overrides every per-route body limit (10 MiB /run, 20 MiB /runsync, 1 MiB elsewhere).
  std::optional<std::size_t> max_body_bytes;
  /// Longest /runsync wait when the request names none.
  std::chrono::milliseconds default_wait{90000};
  /// How often an idle Server-Sent Events stream gets a comment line.
  std::chrono::steady_clock::duration keep_alive_interval = std::chrono::seconds(15);
  /// How long /health and /metrics wait for the backend's counts before answering 503.
  std::chrono::steady_clock::duration counts_deadline = std::chrono::seconds(2);
};

/// What /health and /metrics read from the scheduler; each may be empty.
struct WorkerGauges {
  std::function<int()> concurrency_limit;
  std::function<std::size_t()> jobs_running;
};

class JobApi {
 public:
  JobApi(core::JobBackend& backend, WebhookSender& webhooks, JobApiOptions options, WorkerGauges gauges);
  JobApi(const JobApi&) = delete;
  JobApi& operator=(const JobApi&) = delete;

  /// Answers one request (http::RequestHandler).
  Task<void> Handle(http::Request& request, http::ResponseWriter& writer);

  /// The body limit of a request, by its route (ServerOptions::body_limit).
  std::size_t BodyLimit(const http::RequestHead& head) const;

  /// Records the job's times and calls its webhook; wire it to JobStore::SetFinishListener (for
  /// the in-memory backend: where jobs end in this process).
  void OnJobFinished(const core::JobView& job);

 private:
  std::optional<http::Response> Refuse(const http::Request& request) const;
  bool Reject(const http::Request& request, const std::optional<Route>& route, std::string_view path,
              http::Response& response) const;
  Task<void> Answer(http::ResponseWriter& writer, Route route);
  Task<void> RunSync(http::Request& request, http::ResponseWriter& writer, std::optional<std::string_view> wait);
  Task<void> Stream(const http::Request& request, http::ResponseWriter& writer, std::string_view job_id);
  Task<void> StreamEvents(http::ResponseWriter& writer, std::string job_id);
  std::string RenderMetrics(const core::JobCounts& counts) const;
  std::string HealthBody(const core::JobCounts& counts) const;

  core::JobBackend& backend_;
  WebhookSender& webhooks_;
  const JobApiOptions options_;
  const WorkerGauges gauges_;
  Histogram delay_seconds_;
  Histogram execution_seconds_;
};

}  // namespace sluice::api
