#include "http/client.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include "os/close_on_exec.hpp"

namespace sluice::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr auto kTupleAwaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxHeaderBytes = 64 * 1024;

// Where a request goes, parsed from its URL.
struct Target {
  bool tls = false;
  std::string host;  // without brackets, for DNS and SNI
  std::string port;
  std::string host_header;  // host[:port] as the Host header wants it
  std::string path_and_query;
  std::string pool_key;  // scheme://host:port

  std::string where() const { return fmt::format("{}:{}", host, port); }
};

core::Result<Target> ParseTarget(const std::string& url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed) {
    return core::Status::InvalidArgument(
        fmt::format("invalid URL '{}': {}", url, parsed.error().message()));
  }
  const boost::urls::url_view& view = *parsed;
  Target target;
  if (view.scheme_id() == boost::urls::scheme::https) {
    target.tls = true;
  } else if (view.scheme_id() != boost::urls::scheme::http) {
    return core::Status::InvalidArgument(
        fmt::format("unsupported URL '{}': only http:// and https:// are supported", url));
  }
  if (!view.has_authority() || view.encoded_host().empty()) {
    return core::Status::InvalidArgument(fmt::format("invalid URL '{}': no host", url));
  }
  if (view.has_userinfo()) {
    // Credentials in a URL end up in logs; callers pass an Authorization header instead.
    return core::Status::InvalidArgument(
        fmt::format("invalid URL '{}': user information is not supported", url));
  }
  target.host = view.host_address();  // decoded, IPv6 without brackets
  target.port = view.has_port() ? std::string(view.port()) : (target.tls ? "443" : "80");
  target.host_header = view.has_port() ? std::string(view.encoded_host_and_port())
                                       : std::string(view.encoded_host());
  target.path_and_query = std::string(view.encoded_path());
  if (target.path_and_query.empty()) target.path_and_query = "/";
  if (view.has_query()) {
    target.path_and_query += '?';
    target.path_and_query += std::string(view.encoded_query());
  }
  target.pool_key = fmt::format("{}://{}:{}", target.tls ? "https" : "http", target.host,
                                target.port);
  return target;
}

bool ContainsHeader(const std::vector<HeaderField>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const HeaderField& header) {
    return beast::iequals(header.name, name);
  });
}

std::string Milliseconds(Clock::duration duration) {
  return fmt::format("{} ms",
                     std::chrono::duration_cast<std::chrono::milliseconds>(duration).count());
}

// One connection: plain TCP or TLS over TCP. Owned by one request at a time (moved in and out of
// the pool), so it needs no lock.
struct Connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;
  Clock::time_point idle_since{};

  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void Close() {
    error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }
};

// What one exchange on one connection produced: the Result<T> of the public interface is not
// default-constructible, which co_spawn's completion needs.
struct Outcome {
  core::Status status;
  ClientResponse response;
  bool reusable = false;  // the connection may go back to the pool
  bool stale = false;     // failed before any response byte: a fresh connection may retry it
};

}  // namespace

std::string_view ClientResponse::header(std::string_view name) const {
  return FindHeader(headers, name);
}

class Client::Impl : public std::enable_shared_from_this<Client::Impl> {
 public:
  Impl(asio::any_io_executor executor, ClientOptions options)
      : strand_(asio::make_strand(executor)),
        options_(std::move(options)),
        tls_context_(ssl::context::tls_client) {
    // The system CA store, and nothing older than TLS 1.2.
    tls_context_.set_default_verify_paths();
    tls_context_.set_verify_mode(ssl::verify_peer);
    tls_context_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                             ssl::context::no_tlsv1_1);
  }

  asio::any_io_executor strand() const { return strand_; }
  std::size_t connections_opened() const noexcept { return opened_.load(); }
  std::size_t idle_connections() const {
    std::lock_guard lock(mutex_);
    std::size_t count = 0;
    for (const auto& [key, connections] : idle_) count += connections.size();
    return count;
  }

  // Runs on the client's strand: Beast's tcp_stream timer and the socket operations it cancels
  // must not run on two threads at once.
  Task<Outcome> Run(ClientRequest request) {
    const Clock::time_point deadline = Clock::now() + request.timeout;
    Outcome outcome;
    try {
      auto target = ParseTarget(request.url);
      if (!target) {
        outcome.status = target.status();
        co_return outcome;
      }
      bhttp::request<bhttp::string_body> message;
      if (auto status = BuildMessage(request, *target, message); !status.ok()) {
        outcome.status = std::move(status);
        co_return outcome;
      }
      // A pooled connection may have been closed by the server meanwhile; one fresh retry.
      for (int attempt = 0;; ++attempt) {
        std::unique_ptr<Connection> connection = TakeIdle(target->pool_key);
        const bool reused = connection != nullptr;
        if (!connection) {
          auto opened = co_await Open(*target, request.timeout, deadline);
          if (!opened.status.ok()) {
            outcome.status = std::move(opened.status);
            co_return outcome;
          }
          connection = std::move(opened.connection);
        }
        // Not a conditional expression: g++ 12 miscompiles co_await inside `?:`.
        if (connection->tls) {
          outcome = co_await Exchange(*connection->tls, *connection, message, *target,
                                      request.timeout, deadline);
        } else {
          outcome = co_await Exchange(*connection->plain, *connection, message, *target,
                                      request.timeout, deadline);
        }
        if (outcome.status.ok()) {
          if (outcome.reusable) {
            PutIdle(target->pool_key, std::move(connection));
          } else {
            connection->Close();
          }
          co_return outcome;
        }
        connection->Close();
        if (!(reused && outcome.stale && attempt == 0 && Clock::now() < deadline)) {
          co_return outcome;
        }
      }
    } catch (const std::exception& error) {
      // Allocation failure or an unexpected Asio exception: still a value, never a throw.
      outcome.status = core::Status::Internal(fmt::format("{} {}: {}", request.method,
                                                          request.url, error.what()));
    }
    co_return outcome;
  }

 private:
  struct Opened {
    core::Status status;
    std::unique_ptr<Connection> connection;
  };

  core::Status BuildMessage(const ClientRequest& request, const Target& target,
                            bhttp::request<bhttp::string_body>& message) const {
    if (request.method.empty() ||
        request.method.find_first_of(" \t\r\n") != std::string::npos) {
      return core::Status::InvalidArgument(
          fmt::format("invalid HTTP method '{}' for {}", request.method, request.url));
    }
    message.version(11);
    const bhttp::verb verb = bhttp::string_to_verb(request.method);
    if (verb == bhttp::verb::unknown) {
      message.method_string(request.method);
    } else {
      message.method(verb);
    }
    message.target(target.path_and_query);
    if (!ContainsHeader(request.headers, "Host")) {
      message.set(bhttp::field::host, target.host_header);
    }
    if (!ContainsHeader(request.headers, "User-Agent") && !options_.user_agent.empty()) {
      message.set(bhttp::field::user_agent, options_.user_agent);
    }
    for (const HeaderField& header : request.headers) {
      if (beast::iequals(header.name, "Content-Length")) continue;  // set from the body below
      message.insert(header.name, header.value);
    }
    message.body() = request.body;
    message.prepare_payload();
    return core::Status::Ok();
  }

  std::unique_ptr<Connection> TakeIdle(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto found = idle_.find(key);
    if (found == idle_.end()) return nullptr;
    auto& connections = found->second;
    const Clock::time_point oldest_allowed = Clock::now() - options_.max_idle_age;
    while (!connections.empty()) {
      std::unique_ptr<Connection> connection = std::move(connections.back());
      connections.pop_back();
      if (connection->idle_since >= oldest_allowed) return connection;
      connection->Close();
    }
    return nullptr;
  }

  void PutIdle(const std::string& key, std::unique_ptr<Connection> connection) {
    if (options_.max_idle_per_host == 0) {
      connection->Close();
      return;
    }
    connection->tcp().expires_never();
    connection->idle_since = Clock::now();
    std::lock_guard lock(mutex_);
    auto& connections = idle_[key];
    if (connections.size() >= options_.max_idle_per_host) {
      connections.front()->Close();
      connections.erase(connections.begin());
    }
    connections.push_back(std::move(connection));
  }

  // A network failure as a Status: host:port, the step, and the timeout when that is the cause.
  static core::Status NetworkError(const Target& target, std::string_view step, error_code ec,
                                   Clock::duration timeout, Clock::time_point deadline) {
    if (ec == beast::error::timeout || (ec == asio::error::operation_aborted &&
                                        Clock::now() >= deadline)) {
      return core::Status::Unavailable(fmt::format("{}: timed out after {} while {}",
                                                   target.where(), Milliseconds(timeout), step));
    }
    return core::Status::Unavailable(
        fmt::format("{}: {} failed: {}", target.where(), step, ec.message()));
  }

  Task<Opened> Open(const Target& target, Clock::duration timeout, Clock::time_point deadline) {
    Opened opened;
    const auto executor = co_await asio::this_coro::executor;

    // The resolver has no deadline of its own; a timer cancels it. Both run on this strand.
    auto resolver = std::make_shared<tcp::resolver>(executor);
    asio::steady_timer resolve_timer(executor, deadline);
    resolve_timer.async_wait([resolver](error_code ec) {
      if (!ec) resolver->cancel();
    });
    auto [resolve_error, endpoints] =
        co_await resolver->async_resolve(target.host, target.port, kTupleAwaitable);
    resolve_timer.cancel();
    if (resolve_error) {
      opened.status = NetworkError(target, "resolving the host name", resolve_error, timeout,
                                   deadline);
      co_return opened;
    }

    auto connection = std::make_unique<Connection>();
    if (target.tls) {
      connection->tls =
          std::make_unique<beast::ssl_stream<beast::tcp_stream>>(executor, tls_context_);
    } else {
      connection->plain = std::make_unique<beast::tcp_stream>(executor);
    }
    beast::tcp_stream& tcp_stream = connection->tcp();
    tcp_stream.expires_at(deadline);
    auto [connect_error, endpoint] = co_await tcp_stream.async_connect(endpoints, kTupleAwaitable);
    if (connect_error) {
      opened.status = NetworkError(target, "connecting", connect_error, timeout, deadline);
      co_return opened;
    }
    ++opened_;
    os::SetCloseOnExec(tcp_stream.socket().native_handle());
    error_code ignored;
    tcp_stream.socket().set_option(tcp::no_delay(true), ignored);

    if (target.tls) {
      // SNI: servers behind a shared address pick the certificate by it.
      if (!SSL_set_tlsext_host_name(connection->tls->native_handle(), target.host.c_str())) {
        opened.status = core::Status::Unavailable(
            fmt::format("{}: setting the TLS server name failed", target.where()));
        co_return opened;
      }
      connection->tls->set_verify_callback(ssl::host_name_verification(target.host));
      auto [handshake_error] =
          co_await connection->tls->async_handshake(ssl::stream_base::client, kTupleAwaitable);
      if (handshake_error) {
        opened.status = NetworkError(target, "TLS handshake", handshake_error, timeout, deadline);
        co_return opened;
      }
    }
    opened.connection = std::move(connection);
    co_return opened;
  }

  template <class Stream>
  Task<Outcome> Exchange(Stream& stream, Connection& connection,
                         bhttp::request<bhttp::string_body>& message, const Target& target,
                         Clock::duration timeout, Clock::time_point deadline) {
    Outcome outcome;
    connection.tcp().expires_at(deadline);
    auto [write_error, written] = co_await bhttp::async_write(stream, message, kTupleAwaitable);
    if (write_error) {
      outcome.stale = true;  // nothing was answered
      outcome.status = NetworkError(target, "sending the request", write_error, timeout, deadline);
      co_return outcome;
    }

    // A fresh parser per response, with limits: a misbehaving server cannot exhaust memory.
    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(kMaxHeaderBytes, options_.max_response_bytes)));
    parser.body_limit(options_.max_response_bytes);
    if (message.method() == bhttp::verb::head) parser.skip(true);
    auto [read_error, read] = co_await bhttp::async_read(stream, connection.buffer, parser,
                                                         kTupleAwaitable);
    if (read_error) {
      if (read_error == bhttp::error::body_limit || read_error == bhttp::error::header_limit ||
          read_error == bhttp::error::buffer_overflow) {
        outcome.status = core::Status::ResourceExhausted(
            fmt::format("{}: the response is over the limit of {} bytes", target.where(),
                        options_.max_response_bytes));
      } else if (read_error == bhttp::error::end_of_stream ||
                 (!parser.got_some() && (read_error == asio::error::connection_reset ||
                                         read_error == asio::error::broken_pipe ||
                                         read_error == asio::error::eof))) {
        // "This means they closed the connection" before answering.
        outcome.stale = true;
        outcome.status = core::Status::Unavailable(fmt::format(
            "{}: the server closed the connection without answering", target.where()));
      } else if (read_error == bhttp::error::partial_message) {
        outcome.status = core::Status::Unavailable(
            fmt::format("{}: the connection was closed in the middle of the response",
                        target.where()));
      } else {
        outcome.status =
            NetworkError(target, "reading the response", read_error, timeout, deadline);
      }
      co_return outcome;
    }

    bhttp::response<bhttp::string_body> response = parser.release();
    outcome.response.status = static_cast<int>(response.result_int());
    for (const auto& field : response) {
      outcome.response.headers.push_back(
          {std::string(field.name_string()), std::string(field.value())});
    }
    outcome.response.body = std::move(response.body());
    outcome.reusable = response.keep_alive() && message.keep_alive();
    co_return outcome;
  }

  // Every request and connection of this client runs on this one strand: a pooled connection's
  // Beast timer must share the executor of whichever request uses it next. Only handlers are
  // serialised, never the waits, and the work per handler (parsing) is small.
  asio::any_io_executor strand_;
  ClientOptions options_;
  ssl::context tls_context_;
  std::atomic<std::size_t> opened_{0};
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;  // guarded by mutex_
};

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {}

Client::~Client() = default;

std::size_t Client::connections_opened() const noexcept { return impl_->connections_opened(); }

std::size_t Client::idle_connections() const { return impl_->idle_connections(); }

Task<core::Result<ClientResponse>> Client::Send(ClientRequest request) {
  // The request runs on the client's strand (see Impl::Run) and keeps the Impl alive. Its
  // completion is bound to an empty cancellation slot: emitting the caller's cancellation into a
  // co_spawned coroutine can terminate the process in Boost 1.81, and the timeout ends the
  // request anyway.
  std::shared_ptr<Impl> impl = impl_;
  auto work = [](std::shared_ptr<Impl> owner, ClientRequest owned) -> Task<Outcome> {
    co_return co_await owner->Run(std::move(owned));
  };
  auto token = asio::bind_cancellation_slot(asio::cancellation_slot(),
                                            asio::as_tuple(asio::use_awaitable));
  auto [error, outcome] =
      co_await asio::co_spawn(impl->strand(), work(impl, std::move(request)), token);
  if (error) {
    // Run catches everything it can; this is the last guard that keeps Send from throwing.
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& exception) {
      co_return core::Status::Internal(fmt::format("http client: {}", exception.what()));
    } catch (...) {
      co_return core::Status::Internal("http client: unknown exception");
    }
  }
  if (!outcome.status.ok()) co_return std::move(outcome.status);
  co_return std::move(outcome.response);
}

}  // namespace sluice::http
