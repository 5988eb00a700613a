// sluice/flow_server.hpp — serves a sluice::Flow to other processes on a Unix domain socket, with
// the protocol of docs/flow-protocol.md (aqueduct's SocketFlow server, with pipelining, binary
// bytes, backpressure and a clean stop). Web workers, Python processes or other C++ programs send
// request frames of tasks; each task goes through the flow on its own, batched with the tasks of
// every other request and connection; each request is answered once all its tasks are done.
//
//   boost::asio::io_context io;
//   sluice::Flow flow;  (add steps, start)
//   sluice::FlowServer server(io, flow, {.socket_path = "/run/model.sock"});
//   server.start();             // throws when the socket cannot be served
//   ... run io on some threads ...
//   server.stop(std::chrono::seconds(30));   // answers what was read, then closes
//   flow.stop();
//
// How it works: one coroutine per connection, on a strand of its own, reads frames; a request's
// tasks are handed to the flow (`Flow::submit`); the flow's completions count down per request on
// whichever thread finishes a task, and the last one posts the answer to the connection's strand,
// where one writer sends the answers in the order they complete (match them by request id). A
// connection keeps at most `max_inflight_tasks` tasks in the flow; beyond that it stops reading
// until answers have gone out. A frame that is not a frame (bad magic, unknown kind, over a limit)
// gets an error frame with request id 0, and the connection is closed; a request whose content is
// bad (data that is not JSON) gets an error frame with its own id, and the connection goes on.
//
// Ownership and threads: the FlowServer borrows the io_context and the Flow. The io_context may be
// run by any number of threads; it and the Flow must outlive the server, and the Flow must be
// stopped (so that every task has completed) before the io_context is destroyed, because each
// task's completion posts to the io_context. `start`, `stop` and the accessors are thread-safe;
// `stop` blocks and must not be called from a thread running the io_context.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <sluice/flow.hpp>

namespace boost::asio {
class io_context;
}

namespace sluice {

struct FlowServerOptions {
  /// Where to listen; a stale socket file is replaced, a live server's is not (see `start`).
  std::string socket_path;
  /// The longest frame body read or written; a longer request is a bad frame.
  std::size_t max_frame_bytes = std::size_t{64} << 20;
  /// Tasks of one connection in the flow at once; beyond it the connection is not read.
  std::size_t max_inflight_tasks = 4096;
  /// A connection with nothing in flight that sends nothing for this long is closed.
  std::chrono::steady_clock::duration idle_timeout = std::chrono::minutes(15);
  /// A connection that does not take an answer within this long is closed.
  std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(30);
  /// The deadline of a task that comes with timeout 0.
  std::chrono::steady_clock::duration default_task_timeout = std::chrono::seconds(60);
};

class FlowServer {
 public:
  FlowServer(boost::asio::io_context& io, Flow& flow, FlowServerOptions options);
  /// Stops at once (`stop` with no drain time) if still serving.
  ~FlowServer();
  FlowServer(const FlowServer&) = delete;
  FlowServer& operator=(const FlowServer&) = delete;

  /// Binds the socket and starts accepting. A socket file left by a server that is gone is removed
  /// first. Throws std::runtime_error naming the path when it cannot listen: another server answers
  /// on it, the path exists and is not a socket, the path is too long (107 bytes), or bind fails;
  /// std::logic_error when called twice.
  void start();

  /// Stops accepting and reading; every request already read is answered (as the flow completes
  /// its tasks), then each connection is closed. Waits up to `drain` for that; then closes what is
  /// still open. Removes the socket file (if it is still the one this server made). True when every
  /// connection had ended by itself. Idempotent; blocks: not from an io_context thread.
  bool stop(std::chrono::steady_clock::duration drain = std::chrono::seconds(30));

  const std::string& socket_path() const noexcept;
  /// Connections open now.
  std::size_t connections() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice
