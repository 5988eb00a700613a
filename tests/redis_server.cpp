#include "redis_server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include <hiredis/hiredis.h>

namespace sluice::testing {

std::map<std::string, CommandStat> ParseCommandStats(std::string_view info) {
  std::map<std::string, CommandStat> stats;
  std::size_t at = 0;
  while ((at = info.find("cmdstat_", at)) != std::string_view::npos) {
    const std::size_t colon = info.find(':', at);
    const std::size_t calls = info.find("calls=", colon);
    if (colon == std::string_view::npos || calls == std::string_view::npos) break;
    const std::size_t usec = info.find("usec=", calls);
    CommandStat& stat = stats[std::string(info.substr(at + 8, colon - at - 8))];
    stat.calls = std::stol(std::string(info.substr(calls + 6, 20)));
    if (usec != std::string_view::npos) stat.usec = std::stol(std::string(info.substr(usec + 5, 20)));
    at = colon;
  }
  return stats;
}
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::filesystem::path FindRedisServer() {
  const char* path = std::getenv("PATH");
  std::string directories = path != nullptr ? path : "/usr/bin:/usr/local/bin";
  std::size_t start = 0;
  while (start <= directories.size()) {
    std::size_t end = directories.find(':', start);
    if (end == std::string::npos) end = directories.size();
    const std::filesystem::path candidate = std::filesystem::path(directories.substr(start, end - start)) / "redis-server";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

}  // namespace

// The kernel's pick for port 0. Someone may take it before the server binds it; the constructor
// retries then.
std::uint16_t PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

namespace {

// One blocking PING with short timeouts: true on +PONG.
bool Ping(std::uint16_t port) {
  const timeval timeout{0, 200'000};
  redisContext* context = redisConnectWithTimeout("127.0.0.1", port, timeout);
  if (context == nullptr) return false;
  bool pong = false;
  if (context->err == 0 && redisSetTimeout(context, timeout) == REDIS_OK) {
    auto* reply = static_cast<redisReply*>(redisCommand(context, "PING"));
    pong = reply != nullptr && reply->type == REDIS_REPLY_STATUS && std::string(reply->str, reply->len) == "PONG";
    if (reply != nullptr) freeReplyObject(reply);
  }
  redisFree(context);
  return pong;
}

}  // namespace

RedisServer::RedisServer() {
  std::string pattern = (std::filesystem::temp_directory_path() / "sluice-redis-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    error_ = "cannot create a temporary directory";
    return;
  }
  directory_ = pattern;
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = PickFreePort();
    if (port_ != 0 && Launch()) return;
  }
}

RedisServer::~RedisServer() {
  // SIGTERM first: a SIGKILLed server leaves its AOF rewrite child writing into the directory.
  if (process_ && !process_->exited()) Stop();
  process_.reset();  // SIGKILL if it is still running, and reap
  if (directory_.empty()) return;
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::error_code error;
    std::filesystem::remove_all(directory_, error);
    if (!error && !std::filesystem::exists(directory_, error)) return;
    std::this_thread::sleep_for(50ms);
  }
}

std::string RedisServer::Url(int db) const { return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db); }

bool RedisServer::Launch() {
  const std::filesystem::path program = FindRedisServer();
  if (program.empty()) {
    error_ = "redis-server is not on PATH: run scripts/install-deps";
    return false;
  }
  process_.reset();
  ChildOptions options;
  options.cwd = directory_;
  process_ = std::make_unique<ChildProcess>(
      program, std::vector<std::string>{"--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "yes", "--dir", directory_.string(), "--daemonize", "no",
                                        "--enable-debug-command", "yes", "--loglevel", "warning"},
      options);
  if (!process_->started()) {
    error_ = "cannot start redis-server: " + process_->error();
    return false;
  }
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    if (Ping(port_)) {
      error_.clear();
      return true;
    }
    if (process_->exited()) break;  // e.g. the port was taken: the caller may try another
    std::this_thread::sleep_for(20ms);
  }
  error_ = "redis-server on port " + std::to_string(port_) + " did not answer PING: " + process_->Describe();
  process_->Kill();
  return false;
}

bool RedisServer::Stop() {
  if (!process_) return true;
  process_->Signal(SIGTERM);
  return process_->WaitForExit(10s).has_value();
}

void RedisServer::Kill() {
  if (process_) process_->Kill();
}

bool RedisServer::Restart() {
  if (process_ && !process_->exited()) Stop();
  return Launch();
}

}  // namespace sluice::testing
