// runpod/control_plane.hpp — what the RunPod adapters share: the templated URLs, the credentials
// and User-Agent, the HTTP client, and the jobs in progress. Each adapter (job source, result sink,
// heartbeat, stop channel) borrows one ControlPlane.
//
// Ownership and threads: the production mode owns it and the http::Client it points to; both
// outlive every adapter. After construction it is read-only apart from `jobs`, which is
// thread-safe; so the whole is safe to share between threads.
#pragma once

#include <chrono>
#include <string>

#include "http/client.hpp"
#include "runpod/jobs_in_progress.hpp"
#include "runpod/protocol.hpp"

namespace sluice::runpod {

struct ControlPlane {
  ControlPlaneUrls urls;
  std::string api_key;
  std::string user_agent;
  http::Client* client = nullptr;
  JobsInProgress jobs;
  /// Until when a job's result POST is retried: from when it was taken, the job's own
  /// `policy.executionTimeout` if it has one, else this (RunPod's default execution timeout)...
  std::chrono::steady_clock::duration result_window = std::chrono::minutes(10);
  /// ...and never less than this after the job finished, so a job that ran long still gets tries.
  std::chrono::steady_clock::duration min_result_retry = std::chrono::minutes(1);

  /// A GET with the common headers and a fresh request id.
  http::ClientRequest Get(std::string url, std::chrono::steady_clock::duration timeout) const {
    http::ClientRequest request;
    request.method = "GET";
    request.url = std::move(url);
    request.headers = CommonHeaders(api_key, user_agent, NewRequestId());
    request.timeout = timeout;
    return request;
  }
  /// A result/stream/progress POST with its headers and a fresh request id (kept by its retries,
  /// so the control plane can tell a retry from a new request).
  http::ClientRequest Post(std::string url, std::string body, std::chrono::steady_clock::duration timeout) const {
    http::ClientRequest request;
    request.method = "POST";
    request.url = std::move(url);
    request.headers = PostHeaders(api_key, user_agent, NewRequestId());
    request.body = std::move(body);
    request.timeout = timeout;
    return request;
  }
};

}  // namespace sluice::runpod
