// sluice/flow_client.hpp — sends tasks to a flow served by sluice::FlowServer (or any server of
// docs/flow-protocol.md) on a Unix domain socket, and writes the results back into the tasks.
//
//   sluice::FlowClient client(io.get_executor(), "/run/model.sock");
//   std::vector<sluice::FlowTask> tasks = ...;
//   co_await client.process(tasks, std::chrono::seconds(5));
//   for (auto& task : tasks) if (task.status() == sluice::FlowTaskStatus::kCompleted) use(task.data);
//
// How it works: each `process` call is one request frame. The client keeps up to `pool_size`
// connections, made when first needed, and spreads requests over them round robin; many requests
// may be in flight on one connection, and answers are matched by request id. Each task gets its
// outcome: COMPLETED with its new data and bytes, or the status and error message the flow gave.
//
// Errors and recovery: when the server cannot be reached, every task of the request ends
// kUnavailable with a message naming the socket and the reason ("cannot reach the flow server at
// unix:/run/model.sock: connect: No such file or directory"). When a connection breaks, every
// request in flight on it ends kUnavailable the same way: the client never resends, since a task
// may already have run (at most once). The next request on that connection connects again, so the
// client recovers by itself once the server is back. A request the server refuses as a whole (data
// that is not JSON) ends kFailed with the server's message.
//
// Ownership and threads: the client's own I/O runs on the executor given to the constructor (on
// strands of it), which must outlive the client's requests. `process` may be called from any
// thread and any executor, by many coroutines at once. The tasks passed to `process` belong to the
// caller, who must not touch them until it completes. Destroying the client ends the requests in
// flight as kUnavailable.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include <sluice/flow.hpp>
#include <sluice/task.hpp>

namespace sluice {

struct FlowClientOptions {
  /// The most connections to the server; each carries any number of requests at once.
  std::size_t pool_size = 4;
  /// How long a connection attempt may take before the request ends kUnavailable.
  std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(5);
  /// How long past a request's deadline the client still waits for the answer. The server answers
  /// tasks that time out in its queues by itself; this bounds the wait for a task that was already
  /// in a handler, or for a server that hangs. Then the request's tasks end kTimedOut and a late
  /// answer is discarded. Requests without a deadline wait for their answer (or a broken connection).
  std::chrono::steady_clock::duration answer_grace = std::chrono::seconds(1);
  /// The longest frame body sent or accepted; a larger request ends kFailed without being sent.
  std::size_t max_frame_bytes = std::size_t{64} << 20;
};

class FlowClient {
 public:
  using Clock = std::chrono::steady_clock;

  FlowClient(boost::asio::any_io_executor executor, std::string socket_path, FlowClientOptions options = {});
  ~FlowClient();
  FlowClient(const FlowClient&) = delete;
  FlowClient& operator=(const FlowClient&) = delete;

  /// Sends `tasks` as one request and completes once each has its outcome (see the file comment).
  /// `deadline` bounds each task's wait in the server flow's queues (sent as a timeout; max: the
  /// server's default); a task already in a handler finishes. Without an answer by `deadline` plus
  /// `answer_grace`, the tasks end kTimedOut. Never throws for server or network failures: they
  /// are the tasks' outcomes.
  Task<void> process(std::span<FlowTask> tasks, Clock::time_point deadline = Clock::time_point::max());
  Task<void> process(std::span<FlowTask> tasks, Clock::duration timeout);

  /// `process` for callers that are not coroutines: blocks the calling thread until done. Never
  /// call it from a thread that runs the client's executor.
  void process_blocking(std::span<FlowTask> tasks, Clock::time_point deadline = Clock::time_point::max());

  const std::string& socket_path() const noexcept;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice
