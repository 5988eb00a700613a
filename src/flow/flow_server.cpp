// GCC 12 reports -Wmismatched-new-delete inside Asio's coroutine frames in the sanitizer builds
// (a false positive, see src/api/job_api.cpp); this file is coroutine-heavy too.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <sluice/flow_server.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "flow/wire.hpp"
#include "log/logging.hpp"
#include "os/close_on_exec.hpp"

namespace sluice {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// What one read asks the socket for when no large frame is being read.
constexpr std::size_t kReadChunk = 64 * 1024;
// After the drain, how long `stop` waits for the connections it closed to be gone.
constexpr auto kCloseGrace = std::chrono::seconds(2);

}  // namespace

class FlowServerConnection;

// ---------------------------------------------------------------------------------------------

class FlowServer::Impl : public std::enable_shared_from_this<FlowServer::Impl> {
 public:
  Impl(asio::io_context& io, Flow& flow, FlowServerOptions options)
      : io_(io), flow_(flow), options_(std::move(options)), strand_(asio::make_strand(io)), acceptor_(strand_) {}

  void Start();
  bool Stop(Clock::duration drain);
  Task<void> Accept();
  void Forget(const std::shared_ptr<FlowServerConnection>& connection);
  bool DoneLocked() const { return connections_.empty() && !accepting_; }

  asio::io_context& io_;
  Flow& flow_;
  const FlowServerOptions options_;
  const asio::strand<asio::io_context::executor_type> strand_;  // the acceptor's
  local::acceptor acceptor_;
  // Read by connections without the mutex; written under it.
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  // State below is protected by mutex_.
  bool started_ = false;
  bool accepting_ = false;
  bool unlinked_ = false;
  // The socket file this server made, to remove only that one at stop.
  dev_t socket_device_ = 0;
  ino_t socket_inode_ = 0;
  std::set<std::shared_ptr<FlowServerConnection>> connections_;
};

// ---------------------------------------------------------------------------------------------

// One request frame on its way through the flow: owns its tasks until the answer is encoded. The
// flow's completions (on its worker threads) count `remaining` down; the last one posts the answer.
struct FlowServerRequest {
  std::shared_ptr<FlowServerConnection> connection;
  std::uint64_t id = 0;
  std::vector<FlowTask> tasks;
  std::atomic<std::size_t> remaining{0};
};

// One client connection. Everything but the flow's completion callback runs on the connection's
// strand: the reader coroutine, the writer, the watchdog, and what `stop` posts.
class FlowServerConnection : public std::enable_shared_from_this<FlowServerConnection> {
 public:
  FlowServerConnection(std::shared_ptr<FlowServer::Impl> server, local::socket socket)
      : server_(std::move(server)),
        options_(server_->options_),
        socket_(std::move(socket)),
        decoder_(flow::FrameLimits{.max_body_bytes = options_.max_frame_bytes}),
        resume_reading_(socket_.get_executor()),
        watchdog_(socket_.get_executor()) {}

  asio::any_io_executor executor() { return socket_.get_executor(); }

  static Task<void> Run(std::shared_ptr<FlowServerConnection> self);

  // Posted by `stop`: no more reads; answers still go out, then the connection closes.
  void StopReading() {
    read_cancel_.emit(asio::cancellation_type::terminal);
    resume_reading_.cancel();
  }
  void ForceClose() { Close(); }

  // The flow's completion: any thread, no lock held; keep it short.
  static void OnTaskDone(FlowTask& task, void* context);

 private:
  Task<void> ReadFrames();
  Task<void> Watch();
  Task<void> WriteQueued();
  void HandleFrame();
  void SubmitRequest(std::unique_ptr<FlowServerRequest> request, const std::vector<std::uint32_t>& timeouts_ms);
  void Answer(std::unique_ptr<FlowServerRequest> request);
  void Enqueue(std::string frame);
  void FailConnection(std::string_view reason);
  void CloseWhenDone();
  void Close();
  void WakeWatchdogBy(Clock::time_point deadline) {
    if (watchdog_.expiry() > deadline) watchdog_.cancel();
  }

  const std::shared_ptr<FlowServer::Impl> server_;
  const FlowServerOptions& options_;
  local::socket socket_;
  flow::FrameDecoder decoder_;
  asio::steady_timer resume_reading_;  // waited on while too many tasks are in flight
  asio::steady_timer watchdog_;        // the idle and write deadlines
  asio::cancellation_signal read_cancel_;

  // Strand state.
  std::size_t inflight_tasks_ = 0;
  std::size_t inflight_requests_ = 0;
  bool reading_done_ = false;
  bool failed_ = false;  // a bad frame: the error frame goes out, answers no longer do
  bool closed_ = false;
  std::deque<std::string> outbox_;
  bool writing_ = false;
  Clock::time_point last_activity_ = Clock::now();
  Clock::time_point write_started_ = Clock::time_point::max();
  // Scratch for decoding requests, kept to reuse its memory.
  std::vector<std::uint32_t> timeouts_ms_;
};

Task<void> FlowServerConnection::Run(std::shared_ptr<FlowServerConnection> self) {
  asio::co_spawn(self->executor(), self->Watch(),
                 [self](std::exception_ptr failure) {
                   log::LogFailure("flow server", "a connection's watchdog", failure);
                 });
  co_await self->ReadFrames();
  self->reading_done_ = true;
  self->CloseWhenDone();
}

Task<void> FlowServerConnection::ReadFrames() {
  auto self = shared_from_this();
  for (;;) {
    while (inflight_tasks_ >= options_.max_inflight_tasks && !closed_ && !server_->stopping_.load()) {
      // Backpressure: the client's bytes wait in the socket until answers have gone out.
      resume_reading_.expires_at(Clock::time_point::max());
      co_await resume_reading_.async_wait(kNoThrow);
    }
    if (closed_ || failed_ || server_->stopping_.load()) co_return;
    const std::span<char> space = decoder_.PrepareWrite(kReadChunk);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()),
                                                    asio::bind_cancellation_slot(read_cancel_.slot(), kNoThrow));
    if (ec) co_return;  // the client is gone (or closed its side), or stop cancelled the read
    last_activity_ = Clock::now();
    decoder_.CommitWrite(n);
    for (;;) {
      const flow::DecodeState state = decoder_.Next();
      if (state == flow::DecodeState::kNeedMore) break;
      if (state == flow::DecodeState::kBadFrame) {
        FailConnection(decoder_.error().message());
        co_return;
      }
      HandleFrame();
      decoder_.ConsumeFrame();
      if (failed_) co_return;
    }
  }
}

void FlowServerConnection::HandleFrame() {
  const flow::FrameHeader& header = decoder_.header();
  if (header.kind != flow::FrameKind::kRequest) {
    FailConnection(fmt::format("a client sends request frames (kind 1), not kind {}",
                               static_cast<std::uint32_t>(header.kind)));
    return;
  }
  auto request = std::make_unique<FlowServerRequest>();
  request->id = header.request_id;
  if (core::Status decoded = flow::DecodeRequestBody(decoder_.body(), header.count, request->tasks, timeouts_ms_);
      !decoded.ok()) {
    // The frame itself was sound: only this request is refused; the connection goes on.
    std::string frame;
    flow::AppendErrorFrame(frame, header.request_id, decoded.message(), options_.max_frame_bytes);
    Enqueue(std::move(frame));
    return;
  }
  request->connection = shared_from_this();
  SubmitRequest(std::move(request), timeouts_ms_);
}

void FlowServerConnection::SubmitRequest(std::unique_ptr<FlowServerRequest> request,
                                         const std::vector<std::uint32_t>& timeouts_ms) {
  const std::size_t count = request->tasks.size();
  inflight_tasks_ += count;
  ++inflight_requests_;
  if (count == 0) {
    Answer(std::move(request));
    return;
  }
  request->remaining.store(count, std::memory_order_relaxed);
  // From here the request belongs to its tasks: the one that counts it down to zero answers it. Once
  // the last task is submitted, another thread may already have answered it: touch nothing after.
  FlowServerRequest* owned = request.release();
  for (std::size_t i = 0; i < count; ++i) {
    const Clock::duration timeout = timeouts_ms[i] == 0 ? options_.default_task_timeout
                                                        : Clock::duration(std::chrono::milliseconds(timeouts_ms[i]));
    const FlowTaskStatus refused =
        server_->flow_.submit(owned->tasks[i], Flow::DeadlineAfter(timeout), &OnTaskDone, owned);
    if (refused != FlowTaskStatus::kPending) {
      // Not taken (a full queue, a stopped flow): its status is set, and no completion will come.
      if (owned->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) Answer(std::unique_ptr<FlowServerRequest>(owned));
    }
  }
}

void FlowServerConnection::OnTaskDone(FlowTask&, void* context) {
  auto* request = static_cast<FlowServerRequest*>(context);
  if (request->remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  auto executor = request->connection->executor();
  asio::post(executor, [request = std::unique_ptr<FlowServerRequest>(request)]() mutable {
    auto connection = request->connection;
    connection->Answer(std::move(request));
  });
}

void FlowServerConnection::Answer(std::unique_ptr<FlowServerRequest> request) {
  inflight_tasks_ -= request->tasks.size();
  --inflight_requests_;
  if (!closed_ && !failed_) {
    std::string frame;
    if (core::Status encoded = flow::AppendResponseFrame(frame, request->id, request->tasks, options_.max_frame_bytes);
        !encoded.ok()) {
      flow::AppendErrorFrame(frame, request->id, "the response cannot be sent: " + encoded.message(),
                             options_.max_frame_bytes);
    }
    Enqueue(std::move(frame));
  }
  request.reset();  // the tasks' memory goes now, not when the write is done
  if (inflight_tasks_ < options_.max_inflight_tasks) resume_reading_.cancel();
  if (inflight_requests_ == 0) WakeWatchdogBy(last_activity_ + options_.idle_timeout);
  CloseWhenDone();
}

void FlowServerConnection::Enqueue(std::string frame) {
  if (closed_) return;
  outbox_.push_back(std::move(frame));
  if (writing_) return;
  writing_ = true;
  asio::co_spawn(executor(), WriteQueued(), [self = shared_from_this()](std::exception_ptr failure) {
    log::LogFailure("flow server", "a connection's writer", failure);
  });
}

// The one writer: whatever is queued when a write starts goes out in that write.
Task<void> FlowServerConnection::WriteQueued() {
  auto self = shared_from_this();
  std::vector<std::string> writing;
  std::vector<asio::const_buffer> buffers;
  while (!outbox_.empty() && !closed_) {
    writing.clear();
    buffers.clear();
    while (!outbox_.empty()) {
      writing.push_back(std::move(outbox_.front()));
      outbox_.pop_front();
    }
    for (const std::string& frame : writing) buffers.push_back(asio::buffer(frame));
    write_started_ = Clock::now();
    WakeWatchdogBy(write_started_ + options_.write_timeout);
    auto [ec, n] = co_await asio::async_write(socket_, buffers, kNoThrow);
    write_started_ = Clock::time_point::max();
    if (ec) {
      Close();
      break;
    }
    last_activity_ = Clock::now();
  }
  writing_ = false;
  CloseWhenDone();
}

Task<void> FlowServerConnection::Watch() {
  auto self = shared_from_this();
  while (!closed_) {
    Clock::time_point deadline = Clock::time_point::max();
    if (write_started_ != Clock::time_point::max()) deadline = write_started_ + options_.write_timeout;
    if (inflight_requests_ == 0 && !writing_) deadline = std::min(deadline, last_activity_ + options_.idle_timeout);
    watchdog_.expires_at(deadline);
    co_await watchdog_.async_wait(kNoThrow);
    if (closed_) break;
    const Clock::time_point now = Clock::now();
    if (write_started_ != Clock::time_point::max() && now >= write_started_ + options_.write_timeout) {
      log::Warn("", "flow server: closing a connection that has not taken its answers for {} ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(options_.write_timeout).count());
      Close();
    } else if (inflight_requests_ == 0 && !writing_ && now >= last_activity_ + options_.idle_timeout) {
      log::Debug("", "flow server: closing an idle connection");
      Close();
    }
  }
}

void FlowServerConnection::FailConnection(std::string_view reason) {
  log::Warn("", "flow server: closing a connection after a bad frame: {}", reason);
  std::string frame;
  flow::AppendErrorFrame(frame, 0, reason, options_.max_frame_bytes);
  Enqueue(std::move(frame));
  failed_ = true;
  reading_done_ = true;
  CloseWhenDone();
}

void FlowServerConnection::CloseWhenDone() {
  if (closed_ || writing_ || !outbox_.empty()) return;
  if (failed_ || (reading_done_ && inflight_requests_ == 0)) Close();
}

void FlowServerConnection::Close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  socket_.shutdown(local::socket::shutdown_both, ignored);
  socket_.close(ignored);
  resume_reading_.cancel();
  watchdog_.cancel();
  outbox_.clear();
  server_->Forget(shared_from_this());
}

// ---------------------------------------------------------------------------------------------

void FlowServer::Impl::Start() {
  std::lock_guard lock(mutex_);
  if (started_) throw std::logic_error("FlowServer::start: already started");
  const std::string& path = options_.socket_path;
  const std::string where = "unix:" + path;
  if (path.empty()) throw std::runtime_error("flow server: no socket path");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    throw std::runtime_error(fmt::format("flow server: cannot listen on {}: the path is {} bytes, the limit is {}",
                                         where, path.size(), sizeof(sockaddr_un::sun_path) - 1));
  }
  if (stopping_.load()) throw std::runtime_error("flow server: cannot listen on " + where + ": stopped");

  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      throw std::runtime_error(fmt::format("flow server: cannot listen on {}: the path exists and is not a socket",
                                           where));
    }
    // A live server answers; a stale file (its server is gone) refuses the connection.
    local::socket probe(io_);
    error_code probe_ec;
    probe.connect(local::endpoint(path), probe_ec);
    if (!probe_ec) {
      throw std::runtime_error(fmt::format("flow server: cannot listen on {}: another server is listening there",
                                           where));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      throw std::runtime_error(fmt::format("flow server: cannot remove the stale socket {}: {}", where,
                                           std::strerror(errno)));
    }
  }

  error_code ec;
  auto fail = [&](std::string_view step) {
    error_code ignored;
    acceptor_.close(ignored);
    return std::runtime_error(fmt::format("flow server: cannot listen on {}: {}: {}", where, step, ec.message()));
  };
  const local::endpoint endpoint(path);
  acceptor_.open(endpoint.protocol(), ec);
  if (ec) throw fail("open");
  os::SetCloseOnExec(acceptor_.native_handle());
  acceptor_.bind(endpoint, ec);
  if (ec) throw fail("bind");
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw fail("listen");
  struct stat bound {};
  if (::stat(path.c_str(), &bound) == 0) {
    socket_device_ = bound.st_dev;
    socket_inode_ = bound.st_ino;
  }
  started_ = true;
  accepting_ = true;
  log::Info("", "Flow server listening on {}", where);
  asio::co_spawn(strand_, Accept(), [self = shared_from_this()](std::exception_ptr failure) {
    log::LogFailure("flow server", "the accept loop", failure);
    std::lock_guard lock(self->mutex_);
    self->accepting_ = false;
    self->changed_.notify_all();
  });
}

Task<void> FlowServer::Impl::Accept() {
  auto self = shared_from_this();
  for (;;) {
    local::socket socket(asio::make_strand(io_));
    auto [ec] = co_await acceptor_.async_accept(socket, kNoThrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      // Out of descriptors, most likely: pause rather than spin; connections will end.
      log::Warn("", "flow server: accept failed: {}", ec.message());
      asio::steady_timer pause(strand_, std::chrono::milliseconds(50));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    os::SetCloseOnExec(socket.native_handle());
    auto connection = std::make_shared<FlowServerConnection>(self, std::move(socket));
    {
      std::lock_guard lock(mutex_);
      if (stopping_.load()) continue;  // closes the socket: accepted just as the server stopped
      connections_.insert(connection);
    }
    asio::co_spawn(connection->executor(), FlowServerConnection::Run(connection),
                   [](std::exception_ptr failure) { log::LogFailure("flow server", "a connection", failure); });
  }
}

void FlowServer::Impl::Forget(const std::shared_ptr<FlowServerConnection>& connection) {
  std::lock_guard lock(mutex_);
  connections_.erase(connection);
  changed_.notify_all();
}

bool FlowServer::Impl::Stop(Clock::duration drain) {
  std::vector<std::shared_ptr<FlowServerConnection>> open;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_.exchange(true) && started_) {
      open.assign(connections_.begin(), connections_.end());
      log::Info("", "Flow server on unix:{} stopping: answering what {} connection(s) sent", options_.socket_path,
                open.size());
      asio::post(strand_, [self = shared_from_this()] {
        error_code ignored;
        self->acceptor_.close(ignored);
      });
    }
  }
  for (auto& connection : open) {
    asio::post(connection->executor(), [connection] { connection->StopReading(); });
  }

  std::unique_lock lock(mutex_);
  const Clock::time_point deadline = Clock::now() + std::max(drain, Clock::duration::zero());
  bool drained = changed_.wait_until(lock, deadline, [this] { return DoneLocked(); });
  if (!drained) {
    open.assign(connections_.begin(), connections_.end());
    if (!open.empty()) {
      log::Warn("", "flow server: closing {} connection(s) still answering at the drain deadline", open.size());
    }
    lock.unlock();
    for (auto& connection : open) {
      asio::post(connection->executor(), [connection] { connection->ForceClose(); });
    }
    lock.lock();
    changed_.wait_until(lock, Clock::now() + kCloseGrace, [this] { return DoneLocked(); });
  }
  if (started_ && !unlinked_) {
    unlinked_ = true;
    // Only our own file: a server started meanwhile on the same path keeps its socket.
    struct stat current {};
    if (::stat(options_.socket_path.c_str(), &current) == 0 && current.st_dev == socket_device_ &&
        current.st_ino == socket_inode_) {
      ::unlink(options_.socket_path.c_str());
    }
  }
  return drained;
}

// ---------------------------------------------------------------------------------------------

FlowServer::FlowServer(asio::io_context& io, Flow& flow, FlowServerOptions options)
    : impl_(std::make_shared<Impl>(io, flow, std::move(options))) {}

FlowServer::~FlowServer() { impl_->Stop(Clock::duration::zero()); }

void FlowServer::start() { impl_->Start(); }

bool FlowServer::stop(std::chrono::steady_clock::duration drain) { return impl_->Stop(drain); }

const std::string& FlowServer::socket_path() const noexcept { return impl_->options_.socket_path; }

std::size_t FlowServer::connections() const {
  std::lock_guard lock(impl_->mutex_);
  return impl_->connections_.size();
}

}  // namespace sluice
