// http/client.hpp — an asynchronous HTTP/1.1 client for webhooks and RunPod's control plane (job
// take, result POST, heartbeat: runpod.md §4).
//
// How it works: `Send` parses the absolute URL (Boost.URL), takes an idle keep-alive connection to
// the same scheme://host:port from a small pool or opens one (resolve, connect, and for https a TLS
// handshake), writes the request, reads the response, and puts the connection back when both sides
// allow keep-alive. Requests run on one strand of the client, so it may be used from any number
// of I/O threads (the strand serialises only the short handlers, never the waits); nothing blocks
// a thread.
//
// https: the system CA store (`set_default_verify_paths`), peer verification, SNI and host name
// verification (RFC 6125 via `ssl::host_name_verification`). A certificate that does not verify is
// a failed request, never a warning.
//
// Errors are values: every failure (a malformed URL, DNS, refused connection, the timeout, TLS, a
// connection dropped mid-response, a response over `max_response_bytes`) comes back as a failed
// core::Status whose message names host:port and what happened. Codes: kInvalidArgument for a bad
// request (URL, method), kResourceExhausted for a response over the limit, kUnavailable for every
// network failure (including the timeout), which is what `SendWithRetry` retries by default.
// An HTTP error status (404, 500) is not a failure: it is a response. The one exception that can
// leave `Send` is the caller's own cancellation (operation_aborted at the `co_await`, as for any
// co_await in a cancelled job); the request itself is not interrupted by it: it ends by its
// timeout.
//
// Stale connections: a pooled connection the server has closed meanwhile fails on reuse before any
// response byte arrives; `Send` then retries once on a fresh connection. The retry also applies to
// a POST (the server saw at most a dropped connection, never a complete exchange it answered),
// which suits webhooks and result POSTs: they are at-least-once anyway.
//
// Not done: redirects are not followed (a 3xx is returned as is), no proxy, no request or response
// compression, no chunked request bodies (the body is one string), no HTTP/2. DNS resolution runs
// getaddrinfo on Asio's resolver thread, which cannot be interrupted: a hanging resolver is
// abandoned at the timeout only once getaddrinfo returns.
//
// Ownership and threads: a Client is bound to one executor (of an io_context) and may be shared by
// coroutines on all its threads. Send may be called concurrently. In-flight requests keep the
// client's internals alive, so destroying the Client while requests run is safe; the io_context
// must outlive all of them.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include <sluice/task.hpp>

#include "core/status.hpp"
#include "http/header_field.hpp"

namespace sluice::http {

struct ClientRequest {
  std::string method = "GET";
  /// Absolute: http://host[:port]/path?query or https://…; anything else is kInvalidArgument.
  std::string url;
  /// Sent in order, as given. Host and User-Agent are added unless present; Content-Length is
  /// always set from the body.
  std::vector<HeaderField> headers;
  std::string body;
  /// For the whole exchange: resolve, connect, TLS handshake, write and read.
  std::chrono::steady_clock::duration timeout = std::chrono::seconds(30);
};

struct ClientResponse {
  int status = 0;
  std::vector<HeaderField> headers;  // as received, in order
  std::string body;

  /// The first value of a header (case-insensitive name), or "" when absent.
  std::string_view header(std::string_view name) const;
};

struct ClientOptions {
  /// A response whose head and body together exceed this is a kResourceExhausted failure.
  std::size_t max_response_bytes = 64 * 1024 * 1024;
  /// Idle keep-alive connections kept per scheme://host:port; 0 disables reuse.
  std::size_t max_idle_per_host = 4;
  /// An idle connection older than this is closed instead of reused (servers drop idle ones).
  std::chrono::steady_clock::duration max_idle_age = std::chrono::seconds(30);
  std::string user_agent = "sluice/" SLUICE_VERSION;
};

class Client {
 public:
  explicit Client(boost::asio::any_io_executor executor, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Sends one request and reads its whole response. Never throws for a failed request (see the
  /// file comment); the Status says what failed.
  Task<core::Result<ClientResponse>> Send(ClientRequest request);

  /// Connections opened since the client was made (tests and metrics: reuse keeps it low).
  std::size_t connections_opened() const noexcept;
  /// Idle connections in the pool now.
  std::size_t idle_connections() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::http
