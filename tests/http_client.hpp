// tests/http_client.hpp — a small blocking HTTP/1.1 client over plain sockets for the end-to-end
// tests that speak to a job API (a worker's `--rp_serve_api`, or `sluice gateway`) the way a client
// on another machine would: one request per connection (`Http`), or a kept-alive `Connection` for
// pipelined requests; chunked bodies; Server-Sent Events (`SseReader`); and readers for the fields
// of RunPod's status objects. Every call takes a deadline, so nothing here can hang a test.
//
// Shared by tests/job_api_test.cpp and tests/scale_out_test.cpp.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace sluice::testing::http {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Any one request (`Http`): connect, send, and read the whole response.
inline constexpr auto kHttpTimeout = 15s;

inline std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

inline std::string Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return std::string(text);
}

inline json::value ParseOrNull(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  return ec ? json::value(nullptr) : value;
}

inline double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

// ---------------------------------------------------------------------------------------------
// HTTP over plain sockets

using Headers = std::vector<std::pair<std::string, std::string>>;

// A request or a response as read off the wire.
struct HttpMessage {
  int status = 0;      // responses; 0 when nothing (or nothing valid) came back, see `error`
  std::string method;  // requests
  std::string target;  // requests
  Headers headers;     // names in lower case, in order
  std::string body;    // decoded (chunked bodies joined)
  std::string error;   // why the exchange failed, for messages
  Clock::time_point received;

  std::string header(std::string_view name) const {
    const std::string lower = Lower(name);
    for (const auto& [key, value] : headers) {
      if (key == lower) return value;
    }
    return "";
  }
  json::value json() const { return ParseOrNull(body); }
  std::string Describe() const {
    std::string text = status != 0 ? "HTTP " + std::to_string(status) : method + " " + target;
    if (!error.empty()) text += " [" + error + "]";
    for (const auto& [key, value] : headers) text += "\n" + key + ": " + value;
    return text + "\n\n" + body.substr(0, 2000);
  }
};

// One TCP connection with a read buffer: requests and responses, chunked bodies, and the moment the
// peer closes. Every call takes a deadline.
class Connection {
 public:
  Connection() = default;
  explicit Connection(int fd) : fd_(fd) {}
  ~Connection() { Close(); }
  Connection(Connection&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)),
        connect_errno_(other.connect_errno_),
        buffer_(std::move(other.buffer_)),
        eof_(other.eof_) {}
  Connection& operator=(Connection&& other) noexcept {
    if (this != &other) {
      Close();
      fd_ = std::exchange(other.fd_, -1);
      connect_errno_ = other.connect_errno_;
      buffer_ = std::move(other.buffer_);
      eof_ = other.eof_;
    }
    return *this;
  }

  /// Connects to 127.0.0.1:port; on failure ok() is false and connect_errno() says why.
  static Connection To(std::uint16_t port) {
    Connection connection;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      connection.connect_errno_ = errno;
      return connection;
    }
    // Bounds connect() too (Linux applies the send timeout to it).
    timeval timeout{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      connection.connect_errno_ = errno;
      ::close(fd);
      return connection;
    }
    connection.fd_ = fd;
    return connection;
  }

  bool ok() const { return fd_ >= 0; }
  int connect_errno() const { return connect_errno_; }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// Sends every byte, or fails (peer gone, or the deadline passed).
  bool Send(std::string_view bytes, Clock::time_point deadline) {
    while (!bytes.empty()) {
      pollfd fd{.fd = fd_, .events = POLLOUT, .revents = 0};
      const int ready = ::poll(&fd, 1, MillisecondsUntil(deadline));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      const ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (sent <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
    return true;
  }

  /// Reads the start line and the headers. `response`: a status line, else a request line.
  std::optional<HttpMessage> ReadHead(Clock::time_point deadline, bool response = true) {
    HttpMessage message;
    std::optional<std::string> start = ReadLine(deadline);
    if (!start) return std::nullopt;
    if (response) {
      // HTTP/1.1 200 OK
      if (start->size() < 12 || !start->starts_with("HTTP/1.")) return std::nullopt;
      message.status = std::atoi(start->substr(9, 3).c_str());
    } else {
      const std::size_t first = start->find(' ');
      const std::size_t second = start->find(' ', first + 1);
      if (first == std::string::npos || second == std::string::npos) return std::nullopt;
      message.method = start->substr(0, first);
      message.target = start->substr(first + 1, second - first - 1);
    }
    while (true) {
      std::optional<std::string> line = ReadLine(deadline);
      if (!line) return std::nullopt;
      if (line->empty()) break;
      const std::size_t colon = line->find(':');
      if (colon == std::string::npos) return std::nullopt;
      message.headers.emplace_back(Lower(line->substr(0, colon)), Trim(line->substr(colon + 1)));
    }
    message.received = Clock::now();
    return message;
  }

  /// The payload of the next chunk of a chunked body; "" for the last one; nothing when the
  /// connection broke or the deadline passed.
  std::optional<std::string> ReadChunk(Clock::time_point deadline) {
    std::optional<std::string> size_line = ReadLine(deadline);
    if (!size_line) return std::nullopt;
    std::size_t size = 0;
    try {
      size = std::stoul(*size_line, nullptr, 16);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (size == 0) {  // trailers, then the empty line
      while (true) {
        std::optional<std::string> trailer = ReadLine(deadline);
        if (!trailer) return std::nullopt;
        if (trailer->empty()) return std::string();
      }
    }
    if (!FillTo(size + 2, deadline)) return std::nullopt;
    std::string payload = buffer_.substr(0, size);
    buffer_.erase(0, size + 2);
    return payload;
  }

  /// A whole message: the head, then the body by Content-Length, chunks, or (a response without
  /// either) up to the end of the connection.
  HttpMessage ReadMessage(Clock::time_point deadline, bool response = true) {
    std::optional<HttpMessage> head = ReadHead(deadline, response);
    if (!head) {
      HttpMessage failed;
      failed.error = Clock::now() >= deadline ? "no response head before the deadline"
                                              : "connection closed before a complete head";
      failed.body = buffer_;
      return failed;
    }
    HttpMessage message = std::move(*head);
    if (Lower(message.header("transfer-encoding")).find("chunked") != std::string::npos) {
      while (true) {
        std::optional<std::string> chunk = ReadChunk(deadline);
        if (!chunk) {
          message.error = "chunked body broken off";
          message.status = 0;
          return message;
        }
        if (chunk->empty()) break;
        message.body += *chunk;
      }
    } else if (const std::string length = message.header("content-length"); !length.empty()) {
      const std::size_t size = std::stoul(length);
      if (!FillTo(size, deadline)) {
        message.error = "body shorter than Content-Length";
        message.status = 0;
        message.body = buffer_;
        return message;
      }
      message.body = buffer_.substr(0, size);
      buffer_.erase(0, size);
    } else if (response && message.status >= 200 && message.status != 204 && message.status != 304) {
      while (Fill(deadline)) {
      }
      message.body = std::move(buffer_);
      buffer_.clear();
    }
    message.received = Clock::now();
    return message;
  }

  /// True when the peer closed the connection (end of stream or reset) before the deadline; any
  /// bytes it still sent are kept in the buffer.
  bool WaitClosed(Clock::time_point deadline) {
    while (Fill(deadline)) {
    }
    return eof_;
  }

  const std::string& buffered() const { return buffer_; }

 private:
  static int MillisecondsUntil(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
  }

  // One read into the buffer; false at end of stream, on an error (both set eof_) or the deadline.
  bool Fill(Clock::time_point deadline) {
    if (fd_ < 0 || eof_) return false;
    while (true) {
      pollfd fd{.fd = fd_, .events = POLLIN, .revents = 0};
      const int ready = ::poll(&fd, 1, MillisecondsUntil(deadline));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0 && Clock::now() < deadline) continue;  // poll waits at most 60 s at a time
      if (ready <= 0) return false;
      char data[16384];
      const ssize_t got = ::recv(fd_, data, sizeof data, MSG_DONTWAIT);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        eof_ = true;
        return false;
      }
      buffer_.append(data, static_cast<std::size_t>(got));
      return true;
    }
  }

  bool FillTo(std::size_t size, Clock::time_point deadline) {
    while (buffer_.size() < size) {
      if (!Fill(deadline)) return false;
    }
    return true;
  }

  std::optional<std::string> ReadLine(Clock::time_point deadline) {
    while (true) {
      const std::size_t end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return line;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  int fd_ = -1;
  int connect_errno_ = 0;
  std::string buffer_;
  bool eof_ = false;
};

// The text of one request. A POST always carries Content-Length (0 without a body), as the clients
// of the cloud API send it; a body defaults to Content-Type: application/json.
inline std::string RequestText(std::string_view method, std::string_view target, std::string_view body,
                        const Headers& headers, bool keep_alive = false) {
  std::string text = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  bool has_content_type = false;
  for (const auto& [name, value] : headers) {
    text += name + ": " + value + "\r\n";
    has_content_type = has_content_type || Lower(name) == "content-type";
  }
  if (!keep_alive) text += "Connection: close\r\n";
  if (!body.empty() && !has_content_type) text += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  text += "\r\n";
  text += body;
  return text;
}

// One request on a fresh connection. Failures come back as status 0 with `error` set, so the
// caller's assertion on the status shows what happened.
inline HttpMessage Http(std::uint16_t port, std::string_view method, std::string_view target, std::string_view body = {},
                 const Headers& headers = {}, Clock::duration timeout = kHttpTimeout) {
  const auto deadline = Clock::now() + timeout;
  Connection connection = Connection::To(port);
  if (!connection.ok()) {
    HttpMessage failed;
    failed.error = std::string("connect: ") + std::strerror(connection.connect_errno());
    return failed;
  }
  // A server may answer (413) and close before it has read the whole body: the send then fails,
  // and the answer is still there to read.
  const bool sent = connection.Send(RequestText(method, target, body, headers), deadline);
  HttpMessage response = connection.ReadMessage(deadline);
  if (!sent && response.status == 0) response.error += " (the request could not be sent completely)";
  return response;
}

// Server-Sent Events read one at a time from a chunked text/event-stream response.
struct SseEvent {
  std::string event;  // "" for the default ("message")
  std::string data;
  Clock::time_point received;
};

class SseReader {
 public:
  SseReader(Connection connection, HttpMessage head) : connection_(std::move(connection)), head_(std::move(head)) {}

  const HttpMessage& head() const { return head_; }
  /// True once the response has ended (its last chunk, or the connection closed).
  bool ended() const { return ended_; }

  /// The next event; nothing when the response ended or the deadline passed first. Comment lines
  /// (": keep-alive") are skipped.
  std::optional<SseEvent> Next(Clock::time_point deadline) {
    while (true) {
      // An event ends with an empty line.
      const std::size_t end = text_.find("\n\n");
      if (end != std::string::npos) {
        const std::string block = text_.substr(0, end);
        text_.erase(0, end + 2);
        SseEvent event;
        event.received = received_;
        bool has_field = false;
        std::size_t start = 0;
        while (start <= block.size()) {
          std::size_t line_end = block.find('\n', start);
          if (line_end == std::string::npos) line_end = block.size();
          const std::string line = block.substr(start, line_end - start);
          start = line_end + 1;
          if (line.empty() || line.front() == ':') continue;
          const std::size_t colon = line.find(':');
          const std::string field = line.substr(0, colon);
          std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
          if (!value.empty() && value.front() == ' ') value.erase(0, 1);
          if (field == "event") {
            event.event = value;
            has_field = true;
          } else if (field == "data") {
            if (!event.data.empty()) event.data += "\n";
            event.data += value;
            has_field = true;
          }
        }
        if (has_field) return event;
        continue;
      }
      if (ended_) return std::nullopt;
      std::optional<std::string> chunk = connection_.ReadChunk(deadline);
      if (!chunk) {
        if (Clock::now() < deadline) ended_ = true;  // broken off rather than slow
        return std::nullopt;
      }
      if (chunk->empty()) {
        ended_ = true;
        continue;
      }
      received_ = Clock::now();
      for (char c : *chunk) {
        if (c != '\r') text_ += c;  // CRLF and LF both end lines
      }
    }
  }

 private:
  Connection connection_;
  HttpMessage head_;
  std::string text_;
  bool ended_ = false;
  Clock::time_point received_;
};

// Opens `GET target` on 127.0.0.1:port with `Accept: text/event-stream` and reads the response
// head; nothing (and `*failure` says why) when that failed.
inline std::optional<SseReader> OpenEventStream(std::uint16_t port, std::string_view target, std::string* failure,
                                                Clock::duration timeout = 5s) {
  Connection connection = Connection::To(port);
  if (!connection.ok()) {
    *failure = std::string("cannot connect: ") + std::strerror(connection.connect_errno());
    return std::nullopt;
  }
  const auto deadline = Clock::now() + timeout;
  if (!connection.Send(RequestText("GET", target, {}, {{"Accept", "text/event-stream"}}), deadline)) {
    *failure = "cannot send";
    return std::nullopt;
  }
  std::optional<HttpMessage> head = connection.ReadHead(deadline);
  if (!head) {
    *failure = "no response head";
    return std::nullopt;
  }
  return SseReader(std::move(connection), std::move(*head));
}

// ---------------------------------------------------------------------------------------------
// Reading status objects

inline std::string Describe(const json::value& value) { return json::serialize(value); }

inline std::string_view StatusOf(const json::value& value) {
  if (!value.is_object()) return "";
  const json::value* status = value.get_object().if_contains("status");
  return status != nullptr && status->is_string() ? std::string_view(status->get_string()) : std::string_view();
}

inline std::string IdOf(const json::value& value) {
  if (!value.is_object()) return "";
  const json::value* id = value.get_object().if_contains("id");
  return id != nullptr && id->is_string() ? std::string(id->get_string()) : std::string();
}

inline bool IsTerminal(std::string_view status) {
  return status == "COMPLETED" || status == "FAILED" || status == "CANCELLED" || status == "TIMED_OUT";
}

inline std::set<std::string> Keys(const json::value& value) {
  std::set<std::string> keys;
  if (value.is_object()) {
    for (const auto& member : value.get_object()) keys.emplace(member.key());
  }
  return keys;
}

// A whole number (as JSON may spell it: 3 or 3.0), or nothing.
inline std::optional<std::int64_t> Integer(const json::value* value) {
  if (value == nullptr) return std::nullopt;
  if (value->is_int64()) return value->get_int64();
  if (value->is_uint64()) return static_cast<std::int64_t>(value->get_uint64());
  if (value->is_double() && value->get_double() == static_cast<double>(static_cast<std::int64_t>(value->get_double()))) {
    return static_cast<std::int64_t>(value->get_double());
  }
  return std::nullopt;
}

inline std::optional<std::int64_t> Member(const json::value& value, std::string_view key) {
  if (!value.is_object()) return std::nullopt;
  return Integer(value.get_object().if_contains(key));
}

}  // namespace sluice::testing::http
