// tests/redis_server.hpp — a redis-server of a test's own: started on a free port in a temporary
// directory, stopped and restarted on the same port and data, stopped and removed when the test ends.
//
// Nothing relies on a system service: the binary is found on PATH (scripts/install-deps installs
// redis-server). The server runs with `--save '' --appendonly yes` (every write is in the AOF, so
// a restart keeps the data, as the job queue's tests need), `--enable-debug-command yes` (tests
// use DEBUG SLEEP) and binds 127.0.0.1 only. Redis has no `--port 0`: a free port is found by
// binding port 0 and closing it, and the start is retried on another port if someone took it
// meanwhile. Start and Restart wait until the server answers PING. The destructor stops the
// server and removes the directory.
//
// Use from the test's own thread (ChildProcess kills the server when the thread that started it
// exits). Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "child_process.hpp"

namespace sluice::testing {

/// One command's line of `INFO commandstats`.
struct CommandStat {
  long calls = 0;
  long usec = 0;  // time inside the command (a script's includes the commands it runs)
};
/// `INFO commandstats` as command name (lower case; `xgroup|create` for a subcommand) → its stat.
std::map<std::string, CommandStat> ParseCommandStats(std::string_view info);

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago (0 if none could be found).
std::uint16_t PickFreePort();

class RedisServer {
 public:
  /// Starts the server; check `ok()` (and `error()`) before using it.
  RedisServer();
  /// Stops the server (SIGTERM, then SIGKILL if it lingers) and removes its directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  bool ok() const { return error_.empty(); }
  /// Why the server is not running, with its output.
  const std::string& error() const { return error_; }
  std::uint16_t port() const { return port_; }
  /// redis://127.0.0.1:PORT/DB
  std::string Url(int db = 0) const;

  /// SIGTERM, and waits for the exit (the AOF is flushed). True when it exited within 10 s.
  bool Stop();
  /// SIGKILL.
  void Kill();
  /// Starts it again on the same port and directory; true once it answers PING.
  bool Restart();

 private:
  bool Launch();

  std::filesystem::path directory_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
  std::string error_;
};

}  // namespace sluice::testing
