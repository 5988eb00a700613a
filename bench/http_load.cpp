// bench/http_load.cpp — a small HTTP/1.1 load generator for the job API benchmark
// (bench/job_api_bench.sh), for the two loads wrk does not make:
//
//   --concurrent N            N clients at once. Opens N keep-alive connections first; once every
//                             one is open (or has failed), each sends one POST and waits for the
//                             whole response. `seconds` runs from the first send to the last
//                             answer, so opening the connections is not part of it (it is reported
//                             apart, as `connect_seconds`).
//   --total N --connections C  Throughput over a long run. C keep-alive connections send POSTs back
//                             to back (the next as soon as the previous response is read) until N
//                             responses with status 200 have arrived. `rate` is N / `seconds`.
//
// Both take --url http://HOST:PORT/PATH and --body JSON (default {"input":{}}), and print one JSON
// line on stdout, e.g.
//
//   {"mode":"concurrent","requests":5000,"ok":5000,"errors":0,"non_200":0,"unexpected":0,
//    "timed_out":false,"connect_seconds":0.21,"seconds":1.08,"rate":4629.6,"p50_ms":1003.1,
//    "p99_ms":1071.9,"max_ms":1079.0}
//
// ok: status 200 and, with --expect TEXT, a body that contains TEXT (otherwise the response counts
// as `unexpected`); non_200: any other status; errors: connections that could not be opened or
// broke mid-request. Latencies are those of every answered request, from its send to the end of its
// response. --timeout SECONDS (default 60 for --concurrent, 600 for --total) ends the run early:
// every open connection is closed and the requests still waiting count as errors. In --total mode
// a failed request is retried (on a fresh connection after an error) and the run stops once
// --max-errors (default 100) requests have failed. Exit status: 0 when the run reached its count
// with every request ok, 1 otherwise, 2 for a bad command line.
//
// One thread runs everything (an io_context and C++20 coroutines; Beast parses the responses), so
// the generator takes at most one core from the server it measures. RLIMIT_NOFILE is raised to its
// hard limit at start: --concurrent 5000 needs 5000 sockets.
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// ---------------------------------------------------------------------------------------------
// The command line

struct Options {
  std::string host;
  std::string port = "80";
  std::string target = "/";
  std::string body = R"({"input":{}})";
  std::string expect;            // with it, a 200 whose body lacks this text is "unexpected"
  std::size_t concurrent = 0;    // --concurrent N
  std::size_t total = 0;         // --total N
  std::size_t connections = 0;   // --connections C (with --total)
  std::size_t max_errors = 100;  // --total: failed requests before the run gives up
  double timeout_seconds = 0;    // 0: the mode's default
};

constexpr const char* kUsage =
    "usage: http_load --url http://HOST:PORT/PATH [--body JSON] [--expect TEXT] [--timeout S]\n"
    "                 (--concurrent N | --total N --connections C [--max-errors M])\n";

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "http_load: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

std::size_t ParseCount(std::string_view flag, std::string_view text) {
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0) {
    Fail(std::string(flag) + " needs a whole number above 0, got '" + std::string(text) + "'");
  }
  return value;
}

// Only what the benchmark needs: http://HOST[:PORT][/PATH], no IPv6 literals, no userinfo.
void ParseUrl(std::string_view url, Options& options) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) Fail("--url must start with http://, got '" + std::string(url) + "'");
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  options.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  const std::size_t colon = authority.find(':');
  options.host = std::string(authority.substr(0, colon));
  if (colon != std::string_view::npos) {
    options.port = std::string(authority.substr(colon + 1));
    ParseCount("the URL's port", options.port);
  }
  if (options.host.empty()) Fail("--url has no host: '" + std::string(url) + "'");
}

Options ParseArguments(int argc, char** argv) {
  Options options;
  bool have_url = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) Fail("unknown flag or missing value: " + std::string(flag));
    const std::string_view value = argv[++i];
    if (flag == "--url") {
      ParseUrl(value, options);
      have_url = true;
    } else if (flag == "--body") {
      options.body = value;
    } else if (flag == "--expect") {
      options.expect = value;
    } else if (flag == "--concurrent") {
      options.concurrent = ParseCount(flag, value);
    } else if (flag == "--total") {
      options.total = ParseCount(flag, value);
    } else if (flag == "--connections") {
      options.connections = ParseCount(flag, value);
    } else if (flag == "--max-errors") {
      options.max_errors = ParseCount(flag, value);
    } else if (flag == "--timeout") {
      char* end = nullptr;
      options.timeout_seconds = std::strtod(argv[i], &end);
      if (*end != '\0' || !(options.timeout_seconds > 0)) Fail("--timeout needs seconds above 0");
    } else {
      Fail("unknown flag: " + std::string(flag));
    }
  }
  if (!have_url) Fail("--url is required");
  if ((options.concurrent != 0) == (options.total != 0)) Fail("give either --concurrent or --total");
  if (options.total != 0 && options.connections == 0) Fail("--total needs --connections");
  if (options.concurrent != 0 && options.connections != 0) Fail("--connections goes with --total");
  if (options.timeout_seconds == 0) options.timeout_seconds = options.concurrent != 0 ? 60 : 600;
  return options;
}

// Lets one process hold thousands of sockets. Best effort: a failure shows up as connect errors.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) std::perror("http_load: setrlimit(RLIMIT_NOFILE)");
}

// ---------------------------------------------------------------------------------------------
// One request and what came of it

enum class Outcome { kOk, kNon200, kUnexpected, kError };

// What every connection shares. Everything runs on one thread, so none of it needs a lock.
struct Load {
  tcp::resolver::results_type endpoints;
  std::string request;  // the whole POST, head and body, sent as it is for every request
  std::string expect;

  bool stopping = false;  // set at the deadline, and in --total mode after --max-errors failures

  std::size_t ok = 0, errors = 0, non_200 = 0, unexpected = 0;
  std::vector<double> latencies_ms;  // of every answered request
  Clock::time_point first_send = Clock::time_point::max();
  Clock::time_point last_answer = Clock::time_point::min();

  void Record(Outcome outcome, Clock::time_point sent, Clock::time_point answered) {
    switch (outcome) {
      case Outcome::kOk: ++ok; break;
      case Outcome::kNon200: ++non_200; break;
      case Outcome::kUnexpected: ++unexpected; break;
      case Outcome::kError: ++errors; return;  // no answer: no latency, no last answer
    }
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(answered - sent).count());
    first_send = std::min(first_send, sent);
    last_answer = std::max(last_answer, answered);
  }
  std::size_t failed() const { return errors + non_200 + unexpected; }
};

std::string BuildRequest(const Options& options) {
  return "POST " + options.target + " HTTP/1.1\r\nHost: " + options.host + ":" + options.port +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(options.body.size()) +
         "\r\n\r\n" + options.body;
}

asio::awaitable<bool> Connect(tcp::socket& socket, const Load& load) {
  const auto [error, endpoint] = co_await asio::async_connect(socket, load.endpoints, kTuple);
  if (error) co_return false;
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  co_return true;
}

// Sends the request on an open connection and reads the whole response. `buffer` belongs to the
// connection: bytes read past one response belong to the next. `keep_alive` says whether the
// connection may carry another request.
asio::awaitable<Outcome> Exchange(tcp::socket& socket, beast::flat_buffer& buffer, const Load& load,
                                  bool& keep_alive) {
  keep_alive = false;
  const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(load.request), kTuple);
  if (write_error) co_return Outcome::kError;
  http::response<http::string_body> response;
  const auto [read_error, read] = co_await http::async_read(socket, buffer, response, kTuple);
  if (read_error) co_return Outcome::kError;
  keep_alive = response.keep_alive();
  if (response.result_int() != 200) co_return Outcome::kNon200;
  if (!load.expect.empty() && response.body().find(load.expect) == std::string::npos) {
    co_return Outcome::kUnexpected;
  }
  co_return Outcome::kOk;
}

// Runs `io` until it runs out of work or `deadline` passes; at the deadline stops the load and
// closes every socket, so that whatever waits on one ends with an error, and lets that finish.
// False on a timeout.
bool RunUntil(asio::io_context& io, Clock::time_point deadline, Load& load, std::vector<tcp::socket>& sockets) {
  io.restart();
  io.run_until(deadline);
  if (io.stopped()) return true;
  load.stopping = true;
  for (tcp::socket& socket : sockets) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  io.run();
  return false;
}

// ---------------------------------------------------------------------------------------------
// The two modes

struct Report {
  const char* mode;
  std::size_t requests;
  bool timed_out = false;
  std::optional<double> connect_seconds;
};

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

// Nearest-rank percentile of sorted values; 0 for none.
double Percentile(const std::vector<double>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

int Print(Load& load, const Report& report) {
  std::sort(load.latencies_ms.begin(), load.latencies_ms.end());
  const double seconds = load.last_answer > load.first_send ? Seconds(load.last_answer - load.first_send) : 0;
  const double rate = seconds > 0 ? static_cast<double>(load.ok) / seconds : 0;
  std::string connect;
  if (report.connect_seconds) connect = ",\"connect_seconds\":" + std::to_string(*report.connect_seconds);
  std::printf(
      "{\"mode\":\"%s\",\"requests\":%zu,\"ok\":%zu,\"errors\":%zu,\"non_200\":%zu,\"unexpected\":%zu,"
      "\"timed_out\":%s%s,\"seconds\":%.6f,\"rate\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
      report.mode, report.requests, load.ok, load.errors, load.non_200, load.unexpected,
      report.timed_out ? "true" : "false", connect.c_str(), seconds, rate,
      Percentile(load.latencies_ms, 0.50), Percentile(load.latencies_ms, 0.99),
      load.latencies_ms.empty() ? 0.0 : load.latencies_ms.back());
  std::fflush(stdout);
  const bool all_ok = load.ok >= report.requests && load.failed() == 0 && !report.timed_out;
  return all_ok ? 0 : 1;
}

int RunConcurrent(asio::io_context& io, Load& load, const Options& options) {
  const std::size_t count = options.concurrent;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_seconds));
  std::vector<tcp::socket> sockets;
  sockets.reserve(count);
  for (std::size_t i = 0; i < count; ++i) sockets.emplace_back(io);
  load.latencies_ms.reserve(count);

  // Phase 1: open every connection.
  std::vector<bool> open(count, false);
  const Clock::time_point connect_start = Clock::now();
  for (std::size_t i = 0; i < count; ++i) {
    asio::co_spawn(io, [&, i]() -> asio::awaitable<void> { open[i] = co_await Connect(sockets[i], load); },
                   asio::detached);
  }
  Report report{.mode = "concurrent", .requests = count};
  report.timed_out = !RunUntil(io, deadline, load, sockets);
  report.connect_seconds = Seconds(Clock::now() - connect_start);

  // Phase 2: one request on each, all at once. The sockets stay open until the end, so no
  // connection closes while others still wait.
  for (std::size_t i = 0; i < count; ++i) {
    if (!open[i]) {
      ++load.errors;
      continue;
    }
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          beast::flat_buffer buffer;
          bool keep_alive = false;
          const Clock::time_point sent = Clock::now();
          const Outcome outcome = co_await Exchange(sockets[i], buffer, load, keep_alive);
          load.Record(outcome, sent, Clock::now());
        },
        asio::detached);
  }
  // After a timeout in phase 1 the sockets are closed: these requests fail at once, as errors.
  const bool answered_in_time = RunUntil(io, deadline, load, sockets);
  report.timed_out = report.timed_out || !answered_in_time;
  return Print(load, report);
}

int RunTotal(asio::io_context& io, Load& load, const Options& options) {
  const std::size_t target = options.total;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_seconds));
  std::vector<tcp::socket> sockets;
  sockets.reserve(options.connections);
  for (std::size_t i = 0; i < options.connections; ++i) sockets.emplace_back(io);
  load.latencies_ms.reserve(target);

  // A request is claimed before it is sent, so the run sends no more than `target` requests that
  // can succeed; a failed one gives its claim back for a retry.
  std::size_t claimed = 0;
  for (tcp::socket& socket : sockets) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          beast::flat_buffer buffer;
          while (!load.stopping && claimed < target) {
            ++claimed;
            Outcome outcome = Outcome::kError;
            bool keep_alive = false;
            const Clock::time_point sent = Clock::now();
            // No co_await inside || or ?: (g++ 12 miscompiles them; docs/architecture.md).
            bool connected = socket.is_open();
            if (!connected) connected = co_await Connect(socket, load);
            if (connected) outcome = co_await Exchange(socket, buffer, load, keep_alive);
            load.Record(outcome, sent, Clock::now());
            if (outcome != Outcome::kOk) {
              --claimed;
              if (load.failed() >= options.max_errors) load.stopping = true;
            }
            if (!keep_alive) {
              boost::system::error_code ignored;
              socket.close(ignored);
              buffer.clear();
            }
          }
        },
        asio::detached);
  }
  Report report{.mode = "total", .requests = target};
  report.timed_out = !RunUntil(io, deadline, load, sockets);
  return Print(load, report);
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseArguments(argc, argv);
  RaiseFileLimit();

  asio::io_context io(1);
  Load load;
  load.request = BuildRequest(options);
  load.expect = options.expect;
  boost::system::error_code error;
  load.endpoints = tcp::resolver(io).resolve(options.host, options.port, error);
  if (error) {
    std::fprintf(stderr, "http_load: cannot resolve %s:%s: %s\n", options.host.c_str(),
                 options.port.c_str(), error.message().c_str());
    return 1;
  }
  return options.concurrent != 0 ? RunConcurrent(io, load, options) : RunTotal(io, load, options);
}
