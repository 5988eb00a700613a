// redis/connection.hpp — one connection to a Redis server, driven by the worker's Asio I/O threads:
// pipelined commands, a deadline per command, reconnects with backoff. The foundation of the Redis
// Streams job source and sink (decisions.md §6; redis-streams.md).
//
// How it works: hiredis 0.14's async context does the protocol; this class is its event loop
// adapter. The context's socket sits in an Asio `posix::stream_descriptor` (released, never
// closed, when hiredis frees the context: hiredis owns the fd), and hiredis's addRead/delRead/
// addWrite/delWrite/cleanup hooks start and stop one-shot `async_wait`s on it. Everything that
// touches the context runs on one strand, since a hiredis context is not thread-safe.
// `Command` may be called from any thread: it hops to the strand, appends the command to the
// context's output buffer and suspends the caller until the reply; any number of commands may be
// in flight at once (pipelining; replies come back in order).
//
// Deadlines: hiredis 0.14 has no timer hook and cannot cancel one command, so one steady_timer
// watches the earliest deadline of the commands in flight. When one passes, the connection is
// dropped and every command in flight completes with an error naming the command that timed out;
// a new connection is made for the next command. A command still waiting for a connection fails
// alone when its deadline passes.
//
// Connecting: on the first command, and on the first command after a drop. The host is resolved
// with Asio's resolver; then TCP connect, `AUTH` and `SELECT` (redis/url.hpp) must complete within
// `connect_timeout`. Commands issued meanwhile wait and are sent once the connection is ready.
// A failed connect fails every waiting command with the reason (refused, unreachable, unknown
// host, timed out, AUTH rejected) and starts a backoff with full jitter: the next attempt is made
// no sooner than `reconnect.Delay(failures - 1, random)` after the failure, so a dead server sees
// one attempt per delay however many commands are issued. A command whose deadline ends before
// the next attempt may start fails at once with the last error. The first reconnect after the
// drop of a working connection is immediate.
//
// Errors: a Redis error reply (`-ERR ...`) is a Reply, not a failure (redis/reply.hpp). The Result
// fails with kUnavailable when there is no reply (connect failed, connection lost, timed out) or
// the server answered that it did not run the command because it cannot serve yet (`LOADING`
// after a restart, `BUSY`, `MASTERDOWN`: `IsServerNotReady`), and with kFailedPrecondition after
// Close(). Messages start with `redis HOST:PORT:`.
//
// Ownership and threads: a Connection is bound to one executor of an io_context and may be shared
// by coroutines on any threads. Its internals live while anything is pending (a command, a wait
// on the socket, a timer); the destructor calls Close(). A connected Connection keeps a wait on its
// socket, and so its io_context busy, until Close() or destruction. No hiredis callback and no
// completion runs after the internals are gone; completions run on the caller's executor, never
// inline in `Command`. The io_context must outlive the Connection and keep running until its
// pending commands have completed.
//
// Not done: RESP3 (hiredis 0.14 has none), pub/sub (SUBSCRIBE replies would break the one-reply-
// per-command rule), TLS, Unix sockets. A BLOCKing command holds up every later command of its
// connection: give blocking reads a connection of their own, with a timeout above their BLOCK.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include <sluice/task.hpp>

#include "core/status.hpp"
#include "http/backoff.hpp"
#include "redis/reply.hpp"
#include "redis/url.hpp"

namespace sluice::redis {

struct ConnectionOptions {
  /// Resolve, TCP connect, AUTH and SELECT together.
  std::chrono::steady_clock::duration connect_timeout = std::chrono::seconds(5);
  /// The deadline of a `Command` without one of its own, from the call to the reply.
  std::chrono::steady_clock::duration command_timeout = std::chrono::seconds(10);
  /// The delay before connect attempt N+1 after N failed in a row (full jitter).
  http::BackoffPolicy reconnect{std::chrono::milliseconds(100), std::chrono::seconds(5), 2.0};
  /// Uniform in [0, 1) for the jitter; empty means http::UniformRandom. Tests pass a constant.
  std::function<double()> random;
};

/// Counters, for tests and metrics.
struct ConnectionStats {
  std::uint64_t connects = 0;         // connections made ready (handshake done)
  std::uint64_t connect_failures = 0;  // attempts that failed
  std::uint64_t drops = 0;             // ready connections lost (timeout, server gone, Close)
};

class Connection {
 public:
  Connection(boost::asio::any_io_executor executor, Endpoint endpoint, ConnectionOptions options = {});
  /// Close()s: pending commands complete with errors.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Sends one command (argv[0] is its name; every argument is binary-safe) and waits for its
  /// reply, at most `options.command_timeout`. Never throws for a failed command (see the file
  /// comment); the caller's cancellation does not interrupt it (it ends by its reply, its
  /// deadline or Close).
  Task<core::Result<Reply>> Command(std::vector<std::string> argv);
  /// The same with a deadline of its own (a `BLOCK` read needs one above its block time). It must
  /// be positive: a command already past its deadline when it is sent drops the connection.
  Task<core::Result<Reply>> Command(std::vector<std::string> argv,
                                    std::chrono::steady_clock::duration timeout);

  /// Drops the connection and fails every pending and later command (kFailedPrecondition).
  /// Idempotent, from any thread; returns at once (the work is posted to the strand).
  void Close();

  const Endpoint& endpoint() const noexcept;
  ConnectionStats stats() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::redis
