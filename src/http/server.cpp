#include "http/server.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>
#include <iterator>
#include <tuple>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <sluice/version.hpp>

#include "log/logging.hpp"
#include "os/close_on_exec.hpp"

namespace sluice::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// What one idle read may take in: the start of the next request, or several pipelined ones.
constexpr std::size_t kReadChunk = 16 * 1024;
// A lingering close discards at most this much of what the client still sends.
constexpr std::size_t kMaxLingerBytes = 4 * 1024 * 1024;

const std::string& ServerName() {
  static const std::string name = std::string("sluice/") + kVersion;
  return name;
}

std::string ErrorJson(std::string_view message) {
  boost::json::object object;
  object["error"] = message;
  return boost::json::serialize(object);
}

// The head of a complete response, written by hand: this is every request's path, and Beast's
// fields container would allocate once per header. Header fields with a CR or LF are dropped (no
// header injection, whatever a handler passes).
std::string ResponseHead(const Response& response, unsigned version, bool keep_alive) {
  std::string head;
  head.reserve(160);
  head += version >= 11 ? "HTTP/1.1 " : "HTTP/1.0 ";
  fmt::format_to(std::back_inserter(head), "{} ", response.status);
  head += bhttp::obsolete_reason(static_cast<bhttp::status>(response.status));
  head += "\r\nServer: ";
  head += ServerName();
  head += "\r\nContent-Type: ";
  head += response.content_type;
  head += "\r\n";
  for (const HeaderField& field : response.headers) {
    if (field.name.find_first_of("\r\n:") != std::string::npos || field.value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    head += field.name;
    head += ": ";
    head += field.value;
    head += "\r\n";
  }
  fmt::format_to(std::back_inserter(head), "Content-Length: {}\r\n", response.body.size());
  if (version >= 11 && !keep_alive) head += "Connection: close\r\n";
  if (version < 11 && keep_alive) head += "Connection: keep-alive\r\n";
  head += "\r\n";
  return head;
}

// HTTP/1.1 only (RFC 9110 §10.1.1: a 1.0 client must not be sent a 100).
bool ExpectsContinue(const RequestHead& head) {
  return head.version >= 11 && beast::iequals(head.header("Expect"), "100-continue");
}

bool IsProtocolError(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

RequestHead MakeHead(const bhttp::request_parser<bhttp::string_body>& parser) {
  const auto& message = parser.get();
  RequestHead head;
  head.method = std::string(message.method_string());
  head.target = std::string(message.target());
  head.version = message.version();
  for (const auto& field : message) {
    head.headers.push_back(HeaderField{std::string(field.name_string()), std::string(field.value())});
  }
  if (auto length = parser.content_length()) head.content_length = *length;
  head.keep_alive = message.keep_alive();
  return head;
}

}  // namespace

std::string_view RequestHead::header(std::string_view name) const { return FindHeader(headers, name); }

// ---------------------------------------------------------------------------------------------

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  Impl(asio::io_context& io, RequestHandler handler, ServerOptions options)
      : io_(io),
        handler_(std::move(handler)),
        options_(std::move(options)),
        strand_(asio::make_strand(io)),
        acceptor_(strand_) {}

  core::Status Start();
  void Stop();
  Task<bool> DrainOnStrand(Clock::time_point deadline);
  Task<void> Accept();
  void Forget(const std::shared_ptr<detail::Connection>& connection);
  bool DrainedLocked() const { return connections_.empty() && !accepting_; }

  asio::io_context& io_;
  const RequestHandler handler_;
  const ServerOptions options_;
  // The acceptor and the drain waiters' timers are used on this strand only.
  const asio::strand<asio::io_context::executor_type> strand_;
  tcp::acceptor acceptor_;
  std::atomic<std::uint16_t> port_{0};
  // Read by connections without the mutex; written under it, so that Start and Stop serialise.
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  // State below is protected by mutex_.
  bool started_ = false;
  bool accepting_ = false;
  std::set<std::shared_ptr<detail::Connection>> connections_;
  std::vector<std::shared_ptr<asio::steady_timer>> drain_waiters_;
};

// ---------------------------------------------------------------------------------------------

namespace detail {

// One client connection. Everything here runs on the connection's strand (or on the one thread
// that runs the io_context, see ServerOptions::io_threads): the serving coroutine, the handler it
// awaits, and the closes that Stop and Drain post to it.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Server::Impl> server, tcp::socket socket)
      : server_(std::move(server)), options_(server_->options_), stream_(std::move(socket)) {}

  asio::any_io_executor executor() { return stream_.get_executor(); }

  static Task<void> Run(std::shared_ptr<Connection> self);

  void CloseIfIdle() {
    if (idle_) Close();
  }
  void ForceClose() { Close(); }

  Task<bool> Send(Response response);
  Task<bool> StartStream(StreamHead head);
  Task<bool> SendChunk(std::string_view text);
  Task<bool> EndStream();
  bool started() const noexcept { return answer_ != Answer::kNone; }
  // Feeds the buffered bytes to the parser; an error other than "need more".
  error_code ParseBuffered(bhttp::request_parser<bhttp::string_body>& parser);
  // Peeks at the socket (never reading from it) to learn whether the client has closed its side.
  bool ClientGone() noexcept;

 private:
  enum class Answer { kNone, kComplete, kStreaming, kStreamEnded };

  Task<void> Serve();
  Task<void> RejectAndClose(unsigned status, std::string_view message);
  Task<void> LingeringClose();
  template <class Buffers>
  Task<bool> WriteBuffers(const Buffers& buffers);
  void Close();

  const std::shared_ptr<Server::Impl> server_;
  const ServerOptions& options_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  // True only while waiting for the first byte of a request: the moment Stop may close at once.
  bool idle_ = false;
  // The socket is closed (or a write failed): nothing more is written or read.
  bool closed_ = false;
  bool client_gone_ = false;
  // Of the response being written: the request's wish, unless the server is stopping.
  bool keep_alive_ = true;
  unsigned request_version_ = 11;
  bool head_request_ = false;  // a HEAD: responses carry their headers but no body
  bool chunked_ = false;
  Answer answer_ = Answer::kNone;
};

Task<void> Connection::Run(std::shared_ptr<Connection> self) {
  // The frame may also be destroyed unrun (the io_context goes away), so the server forgets the
  // connection in a destructor.
  struct ForgetOnExit {
    std::shared_ptr<Connection> connection;
    ~ForgetOnExit() { connection->server_->Forget(connection); }
  } forget{self};
  co_await self->Serve();
  self->Close();
}

void Connection::Close() {
  closed_ = true;
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

Task<void> Connection::Serve() {
  bool first_request = true;
  for (;;) {
    if (buffer_.size() == 0) {
      if (server_->stopping_.load()) co_return;
      idle_ = true;
      stream_.expires_after(first_request ? options_.header_timeout : options_.idle_timeout);
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kReadChunk), kNoThrow);
      idle_ = false;
      // The client left, the deadline passed, or Stop closed us: there is no request to answer.
      if (ec) co_return;
      buffer_.commit(n);
    }
    first_request = false;

    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    // The limit is known only after the head; the parser would otherwise apply its 1 MB default
    // to the Content-Length while reading the head.
    parser.body_limit(boost::none);
    // Parse what is buffered first: a request that arrived whole (the common case) is then read
    // with no further trip through the I/O loop. Only a head that is still incomplete waits.
    error_code head_ec = ParseBuffered(parser);
    if (!head_ec && !parser.is_header_done()) {
      stream_.expires_after(options_.header_timeout);
      std::size_t head_bytes = 0;
      std::tie(head_ec, head_bytes) = co_await bhttp::async_read_header(stream_, buffer_, parser, kNoThrow);
    }
    if (head_ec == bhttp::error::header_limit) {
      co_await RejectAndClose(431, fmt::format("request header is over the limit of {} bytes",
                                               options_.max_header_bytes));
      co_return;
    }
    if (head_ec && IsProtocolError(head_ec) && head_ec != bhttp::error::end_of_stream) {
      co_await RejectAndClose(400, "malformed HTTP request: " + head_ec.message());
      co_return;
    }
    if (head_ec) co_return;  // a timeout, a reset or a close: nobody to answer

    Request request;
    static_cast<RequestHead&>(request) = MakeHead(parser);
    request_version_ = request.version;
    head_request_ = request.method == "HEAD";
    keep_alive_ = request.keep_alive;

    if (server_->stopping_.load()) {
      co_await RejectAndClose(503, "server is shutting down");
      co_return;
    }
    std::size_t limit = options_.max_body_bytes;
    std::optional<std::string> limit_failure;
    if (options_.body_limit) {
      try {
        limit = options_.body_limit(request);
      } catch (const std::exception& e) {
        limit_failure = e.what();
      }
    }
    if (limit_failure) {
      co_await RejectAndClose(500, "internal error: " + *limit_failure);
      co_return;
    }
    const std::string over_limit = fmt::format("request body is over the limit of {} bytes", limit);
    if (request.content_length && *request.content_length > limit) {
      co_await RejectAndClose(413, over_limit);
      co_return;
    }
    if (!parser.is_done()) {
      parser.body_limit(limit);  // chunked bodies are checked as they arrive
      parser.eager(true);
      error_code body_ec = ParseBuffered(parser);
      if (!body_ec && !parser.is_done() && buffer_.size() == 0 && ExpectsContinue(request)) {
        // curl and others wait (a second, for curl) for this before sending a body; the body is
        // welcome, since its size passed the limit above.
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        stream_.expires_after(options_.write_timeout);
        auto [continue_ec, continue_bytes] =
            co_await asio::async_write(stream_, asio::const_buffer(kContinue.data(), kContinue.size()), kNoThrow);
        if (continue_ec) co_return;
      }
      if (!body_ec && !parser.is_done()) {
        stream_.expires_after(options_.body_timeout);
        std::size_t body_bytes = 0;
        std::tie(body_ec, body_bytes) = co_await bhttp::async_read(stream_, buffer_, parser, kNoThrow);
      }
      if (body_ec == bhttp::error::body_limit) {
        co_await RejectAndClose(413, over_limit);
        co_return;
      }
      if (body_ec && IsProtocolError(body_ec) && body_ec != bhttp::error::end_of_stream &&
          body_ec != bhttp::error::partial_message) {
        co_await RejectAndClose(400, "malformed HTTP request: " + body_ec.message());
        co_return;
      }
      if (body_ec) co_return;
    }
    request.body = std::move(parser.get().body());

    answer_ = Answer::kNone;
    ResponseWriter writer(*this);
    std::optional<std::string> failure;
    try {
      co_await server_->handler_(request, writer);
    } catch (const std::exception& e) {
      failure = e.what();
    } catch (...) {
      failure = "unknown exception";
    }
    if (failure) {
      log::Error("", "http server: the handler of {} {} threw: {}", request.method, request.target,
                 *failure);
      if (answer_ == Answer::kNone) {
        Response response;
        response.status = 500;
        response.body = ErrorJson("internal error: " + *failure);
        co_await Send(std::move(response));
      } else {
        // A stream without its last chunk shows the client it was cut; a response that threw
        // while being written may be half sent. Either way only closing tells the client.
        co_return;
      }
    } else if (answer_ == Answer::kNone) {
      Response response;
      response.status = 500;
      response.body = ErrorJson("internal error: the handler sent no response");
      co_await Send(std::move(response));
    } else if (answer_ == Answer::kStreaming) {
      co_await EndStream();
    }
    if (closed_ || client_gone_ || !keep_alive_) co_return;
  }
}

Task<void> Connection::RejectAndClose(unsigned status, std::string_view message) {
  keep_alive_ = false;
  answer_ = Answer::kNone;
  Response response;
  response.status = status;
  response.body = ErrorJson(message);
  if (co_await Send(std::move(response))) co_await LingeringClose();
}

// Closing a socket with unread input makes the kernel send a reset, which may destroy the error
// response before the client reads it. So: send our FIN, and read what the client still sends.
Task<void> Connection::LingeringClose() {
  if (closed_) co_return;
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(options_.linger_timeout);  // one deadline for all the reads below
  std::array<char, 4096> discard;
  std::size_t discarded = 0;
  while (discarded < kMaxLingerBytes) {
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(discard), kNoThrow);
    if (ec) break;
    discarded += n;
  }
}

// A write to a client that has closed its side usually succeeds (the reset comes later), so the
// client watch's verdict counts too. The write is still made: a client that only half-closed
// after its request gets its response.
template <class Buffers>
Task<bool> Connection::WriteBuffers(const Buffers& buffers) {
  stream_.expires_after(options_.write_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, buffers, kNoThrow);
  if (ec) {
    client_gone_ = true;
    Close();
  }
  co_return !client_gone_;
}

Task<bool> Connection::Send(Response response) {
  if (answer_ != Answer::kNone) throw std::logic_error("ResponseWriter: a response was already sent");
  answer_ = Answer::kComplete;
  if (closed_) co_return false;
  if (server_->stopping_.load()) keep_alive_ = false;
  const std::string head = ResponseHead(response, request_version_, keep_alive_);
  // A response to HEAD says what a GET would get (Content-Length included); the body stays home.
  const std::array<asio::const_buffer, 2> buffers{
      asio::buffer(head), head_request_ ? asio::const_buffer() : asio::buffer(response.body)};
  co_return co_await WriteBuffers(buffers);
}

Task<bool> Connection::StartStream(StreamHead head) {
  if (answer_ != Answer::kNone) throw std::logic_error("ResponseWriter: a response was already sent");
  answer_ = Answer::kStreaming;
  if (closed_) co_return false;
  if (server_->stopping_.load()) keep_alive_ = false;
  // HTTP/1.0 has no chunked encoding: the body then ends when the connection closes.
  chunked_ = request_version_ >= 11;
  if (!chunked_) keep_alive_ = false;
  bhttp::response<bhttp::empty_body> message(static_cast<bhttp::status>(head.status),
                                             request_version_);
  message.set(bhttp::field::server, ServerName());
  message.set(bhttp::field::content_type, head.content_type);
  for (const auto& field : head.headers) message.insert(field.name, field.value);
  message.keep_alive(keep_alive_);
  if (chunked_) message.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> serializer(message);
  stream_.expires_after(options_.write_timeout);
  auto [ec, n] = co_await bhttp::async_write_header(stream_, serializer, kNoThrow);
  if (ec) {
    client_gone_ = true;
    Close();
  }
  co_return !client_gone_;
}

Task<bool> Connection::SendChunk(std::string_view text) {
  if (answer_ != Answer::kStreaming) {
    throw std::logic_error("ResponseWriter: SendChunk outside a stream");
  }
  if (closed_) co_return false;
  if (text.empty()) co_return true;  // an empty chunk would end the stream
  if (chunked_) {
    auto chunk = bhttp::make_chunk(asio::const_buffer(text.data(), text.size()));
    co_return co_await WriteBuffers(chunk);
  }
  auto raw = asio::const_buffer(text.data(), text.size());
  co_return co_await WriteBuffers(raw);
}

Task<bool> Connection::EndStream() {
  if (answer_ != Answer::kStreaming) {
    throw std::logic_error("ResponseWriter: EndStream outside a stream");
  }
  answer_ = Answer::kStreamEnded;
  if (closed_) co_return false;
  if (!chunked_) co_return true;  // the close that follows ends the body
  auto last = bhttp::make_chunk_last();
  co_return co_await WriteBuffers(last);
}

// While the handler runs nothing reads the socket (a read would have to consume pipelined
// requests, and its deadline would cut long handlers). Waiting for readability and peeking tells
// a closed client (end of stream, reset) from one that sent more, without consuming anything.
error_code Connection::ParseBuffered(bhttp::request_parser<bhttp::string_body>& parser) {
  error_code ec;
  while (buffer_.size() > 0 && !parser.is_done()) {
    const std::size_t used = parser.put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == bhttp::error::need_more) return {};
    if (ec || used == 0) return ec;
    if (!parser.eager() && parser.is_header_done()) break;  // the caller decides the body limit first
  }
  return ec;
}

bool Connection::ClientGone() noexcept {
  if (client_gone_ || closed_) return client_gone_;
  char byte;
  const ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // n > 0: the client sent more (a pipelined request): it is there, and the bytes wait for the
  // next read. EAGAIN: nothing to read, the connection is open.
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    client_gone_ = true;
    Close();
  }
  return client_gone_;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------

Task<bool> ResponseWriter::Send(Response response) {
  return connection_->Send(std::move(response));
}
Task<bool> ResponseWriter::StartStream(StreamHead head) {
  return connection_->StartStream(std::move(head));
}
Task<bool> ResponseWriter::StartStream() { return connection_->StartStream(StreamHead()); }
Task<bool> ResponseWriter::SendChunk(std::string_view text) { return connection_->SendChunk(text); }
Task<bool> ResponseWriter::EndStream() { return connection_->EndStream(); }
bool ResponseWriter::started() const noexcept { return connection_->started(); }
bool ResponseWriter::client_gone() const noexcept { return connection_->ClientGone(); }

// ---------------------------------------------------------------------------------------------

core::Status Server::Impl::Start() {
  std::lock_guard lock(mutex_);
  if (started_) return core::Status::Internal("the HTTP server was already started");
  const std::string where = fmt::format("{}:{}", options_.host, options_.port);
  if (stopping_.load()) return core::Status::Unavailable("cannot listen on " + where + ": stopped");

  error_code ec;
  tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(options_.host, std::to_string(options_.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return core::Status::Unavailable(fmt::format("cannot listen on {}: cannot resolve the host: {}",
                                                 where, ec ? ec.message() : "no address"));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  auto fail = [&](std::string_view step) {
    error_code ignored;
    acceptor_.close(ignored);
    return core::Status::Unavailable(fmt::format("cannot listen on {}: {}: {}", where, step,
                                                 ec.message()));
  };
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  os::SetCloseOnExec(acceptor_.native_handle());
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail("SO_REUSEADDR");
  acceptor_.bind(endpoint, ec);
  if (ec) return fail("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  const auto local = acceptor_.local_endpoint(ec);
  if (ec) return fail("local_endpoint");
  port_.store(local.port());
  started_ = true;
  accepting_ = true;
  asio::co_spawn(strand_, Accept(),
                 [self = shared_from_this()](std::exception_ptr failure) {
                   log::LogFailure("http server", "the accept loop", failure);
                 });
  return core::Status::Ok();
}

Task<void> Server::Impl::Accept() {
  auto self = shared_from_this();
  for (;;) {
    // With one thread running the io_context, nothing runs concurrently anyway: the strand would
    // only add a dispatch to every step of every request.
    tcp::socket socket = options_.io_threads == 1 ? tcp::socket(io_.get_executor()) : tcp::socket(asio::make_strand(io_));
    auto [ec] = co_await acceptor_.async_accept(socket, kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      // Out of descriptors, most likely: pause rather than spin, connections will end.
      log::Warn("", "http server: accept failed: {}", ec.message());
      asio::steady_timer pause(strand_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    os::SetCloseOnExec(socket.native_handle());
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // small responses and SSE chunks go out now
    auto connection = std::make_shared<detail::Connection>(self, std::move(socket));
    {
      std::lock_guard lock(mutex_);
      connections_.insert(connection);
    }
    asio::co_spawn(connection->executor(), detail::Connection::Run(connection),
                   [](std::exception_ptr failure) { log::LogFailure("http server", "a connection", failure); });
  }
  std::lock_guard lock(mutex_);
  accepting_ = false;
  if (DrainedLocked()) {
    for (auto& waiter : drain_waiters_) asio::post(strand_, [waiter] { waiter->cancel(); });
  }
}

void Server::Impl::Forget(const std::shared_ptr<detail::Connection>& connection) {
  std::lock_guard lock(mutex_);
  connections_.erase(connection);
  if (DrainedLocked()) {
    for (auto& waiter : drain_waiters_) asio::post(strand_, [waiter] { waiter->cancel(); });
  }
}

void Server::Impl::Stop() {
  std::vector<std::shared_ptr<detail::Connection>> open;
  {
    std::lock_guard lock(mutex_);
    if (stopping_.exchange(true)) return;
    open.assign(connections_.begin(), connections_.end());
  }
  asio::post(strand_, [self = shared_from_this()] {
    error_code ignored;
    self->acceptor_.close(ignored);
  });
  for (auto& connection : open) {
    asio::post(connection->executor(), [connection] { connection->CloseIfIdle(); });
  }
}

Task<bool> Server::Impl::DrainOnStrand(Clock::time_point deadline) {
  auto timer = std::make_shared<asio::steady_timer>(strand_, deadline);
  {
    std::lock_guard lock(mutex_);
    if (DrainedLocked()) co_return true;
    drain_waiters_.push_back(timer);
  }
  bool drained = false;
  std::vector<std::shared_ptr<detail::Connection>> remaining;
  for (;;) {
    co_await timer->async_wait(kNoThrow);
    std::lock_guard lock(mutex_);
    drained = DrainedLocked();
    if (drained || Clock::now() >= deadline) {
      std::erase(drain_waiters_, timer);
      remaining.assign(connections_.begin(), connections_.end());
      break;
    }
  }
  if (drained) co_return true;
  log::Warn("", "http server: closing {} connection(s) still open at the drain deadline",
            remaining.size());
  for (auto& connection : remaining) {
    asio::post(connection->executor(), [connection] { connection->ForceClose(); });
  }
  co_return false;
}

// ---------------------------------------------------------------------------------------------

Server::Server(asio::io_context& io, RequestHandler handler, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(handler), std::move(options))) {}

Server::~Server() { impl_->Stop(); }

core::Status Server::Start() { return impl_->Start(); }

void Server::Stop() { impl_->Stop(); }

Task<bool> Server::Drain(std::chrono::steady_clock::duration timeout) {
  Stop();
  auto impl = impl_;
  const auto deadline = Clock::now() + timeout;
  co_return co_await asio::co_spawn(impl->strand_, impl->DrainOnStrand(deadline),
                                    asio::use_awaitable);
}

std::uint16_t Server::port() const noexcept { return impl_->port_.load(); }

std::size_t Server::connections() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->connections_.size();
}

}  // namespace sluice::http
