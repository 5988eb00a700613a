// http/server.hpp — a generic HTTP/1.1 server: the transport under the local job API. It knows
// nothing of jobs; it reads requests, hands each to one handler coroutine, and writes what the
// handler answers, either one complete response or a chunked stream (Server-Sent Events).
//
// How it works: an accept loop coroutine; one coroutine per connection on a strand of its own,
// reading, handling and writing sequentially, so keep-alive and pipelined requests are answered in
// order. Every read and write has a deadline (ServerOptions); while the handler runs no read is
// pending, so a handler may take minutes (a /runsync) without a read deadline cutting it. The
// request body limit is decided per request, after the head is read (`body_limit`), because /run
// and /runsync allow different sizes. Protocol failures are answered by the server itself with a
// JSON `{"error": ...}` and the connection is closed: 400 (malformed), 413 (body over the limit),
// 431 (head over the limit), 500 (the handler threw, or sent nothing), 503 (shutting down).
//
// Shutdown: `Stop()` closes the acceptor and idle keep-alive connections at once; requests in
// progress finish and their responses are written with `Connection: close`; a request that arrives
// on a still-open connection afterwards gets 503. `Drain(timeout)` waits for the connections to end
// and closes the rest at the deadline.
//
// `Expect: 100-continue` is answered with 100 Continue once the head has passed the body limit.
//
// A response to HEAD is written without its body (its Content-Length still says how long it is).
//
// Not done: no TLS, no HTTP/2.
//
// Ownership and threads: the Server borrows the io_context, which may be run by any number of
// threads and must outlive every connection (connections keep the server's internals alive, so
// destroying the Server while connections run is safe; it stops accepting). Start, Stop, Drain and
// port() are thread-safe. The handler runs on its connection's strand; the Request and the
// ResponseWriter it gets belong to that connection and may be used only from the handler's
// coroutine, until it returns.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include <sluice/task.hpp>

#include "core/status.hpp"
#include "http/header_field.hpp"

namespace sluice::http {

/// What is known of a request once its head is read: enough to route it and to pick its body limit.
struct RequestHead {
  std::string method;  // as sent, e.g. "POST"
  std::string target;  // path and query, as sent
  unsigned version = 11;  // 10 or 11
  std::vector<HeaderField> headers;  // as received, in order
  std::optional<std::uint64_t> content_length;  // absent for chunked bodies and bodiless requests
  bool keep_alive = true;  // by HTTP/1.0 and 1.1 rules and the Connection header

  /// The first value of a header (case-insensitive name), or "" when absent.
  std::string_view header(std::string_view name) const;
};

struct Request : RequestHead {
  std::string body;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  /// Added as given; Server, Content-Type, Content-Length and Connection are the server's.
  std::vector<HeaderField> headers;
  std::string body;
};

/// The head of a streamed response; the body follows in chunks.
struct StreamHead {
  unsigned status = 200;
  std::string content_type = "text/event-stream";
  std::vector<HeaderField> headers;
};

namespace detail {
class Connection;
}

/// The handler's way to answer: either `Send` one response, or `StartStream`, `SendChunk`s and
/// `EndStream`. Every call reports false once the client is gone (or the write failed or timed
/// out); the connection is then closed, and the handler's own work is not disturbed. A handler
/// that returns without answering gets a 500; a stream left open is ended for it.
class ResponseWriter {
 public:
  explicit ResponseWriter(detail::Connection& connection) : connection_(&connection) {}
  ResponseWriter(const ResponseWriter&) = delete;
  ResponseWriter& operator=(const ResponseWriter&) = delete;

  Task<bool> Send(Response response);

  /// Writes the head of a chunked response (HTTP/1.0 clients get a body ended by closing instead).
  /// No default argument: g++ 12 miscompiles a braced default inside a co_await expression.
  Task<bool> StartStream(StreamHead head);
  /// A 200 text/event-stream (Server-Sent Events).
  Task<bool> StartStream();
  /// Writes one chunk and waits until it is handed to the socket; empty text writes nothing.
  Task<bool> SendChunk(std::string_view text);
  /// Writes the last chunk. The response is then complete.
  Task<bool> EndStream();

  /// True once a response (or a stream's head) has been written or attempted.
  bool started() const noexcept;
  /// True once the client has closed its side or the connection failed. Each call peeks at the
  /// socket without reading from it (one non-blocking syscall), so a long handler can look now
  /// and then and give up early; a client that has sent a pipelined request is still there.
  bool client_gone() const noexcept;

 private:
  detail::Connection* connection_;
};

using RequestHandler = std::function<Task<void>(Request&, ResponseWriter&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: the system picks a free port; see Server::port()
  std::size_t max_header_bytes = 16 * 1024;
  /// The body limit of a request; when empty, `max_body_bytes` applies to every request.
  std::function<std::size_t(const RequestHead&)> body_limit;
  std::size_t max_body_bytes = 10 * 1024 * 1024;
  /// From the first byte of a request to the end of its head.
  std::chrono::steady_clock::duration header_timeout = std::chrono::seconds(10);
  std::chrono::steady_clock::duration body_timeout = std::chrono::seconds(60);
  /// For each write: a response, a stream's head, one chunk.
  std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(30);
  /// How long a keep-alive connection may wait for its next request.
  std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(60);
  /// After an error response the server reads (and discards) what the client still sends, for at
  /// most this long, so the client reads the response before the connection is reset.
  std::chrono::steady_clock::duration linger_timeout = std::chrono::seconds(1);
  /// How many threads run the io_context; 0 when unknown. With exactly 1, connections run on the
  /// io_context's executor directly, without a strand each.
  std::size_t io_threads = 0;
};

class Server {
 public:
  Server(boost::asio::io_context& io, RequestHandler handler, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds, listens and starts accepting. kUnavailable (naming host and port) when the address
  /// cannot be resolved or bound; kInternal when called twice.
  core::Status Start();

  /// Stops accepting and closes idle connections; in-flight requests finish (see the file comment).
  /// Idempotent.
  void Stop();

  /// Stops (if not yet stopped), then waits until every connection has ended, or `timeout` has
  /// passed; then closes the remaining ones. True when all had ended by themselves. A handler still
  /// running at the deadline goes on; its writes fail.
  Task<bool> Drain(std::chrono::steady_clock::duration timeout);

  /// The bound port (the chosen one when options.port was 0); 0 before a successful Start().
  std::uint16_t port() const noexcept;
  /// Connections open now.
  std::size_t connections() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::http
