// GCC 12 reports -Wmismatched-new-delete inside Asio's coroutine frames in the sanitizer builds
// (a false positive, see src/api/job_api.cpp); this file is coroutine-heavy too.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <sluice/flow_client.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
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
constexpr std::size_t kReadChunk = 64 * 1024;

void EndAll(std::span<FlowTask> tasks, FlowTaskStatus status, const std::string& message) {
  for (FlowTask& task : tasks) task.set_outcome(status, message);
}

// The timeout a request carries: 0 (the server's default) without a deadline, at least 1 ms.
std::uint32_t TimeoutMs(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return 0;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(left, 1, std::numeric_limits<std::uint32_t>::max()));
}

}  // namespace

// One pooled connection. All its state lives on its strand; `Exchange` runs there too.
class FlowClientConnection : public std::enable_shared_from_this<FlowClientConnection> {
 public:
  FlowClientConnection(const asio::any_io_executor& executor, std::string where, const FlowClientOptions& options)
      : strand_(asio::make_strand(executor)),
        where_(std::move(where)),
        path_(where_.substr(5)),
        options_(options),
        socket_(strand_),
        decoder_(Limits()) {}

  const asio::strand<asio::any_io_executor>& strand() const { return strand_; }

  // Sends one request frame and waits for its answer, which is written into `tasks`.
  // Without an answer by `give_up`, the tasks end kTimedOut.
  Task<void> Exchange(std::uint64_t id, std::string frame, std::span<FlowTask> tasks, Clock::time_point give_up);

  // The client is going away: what is in flight ends now, and nothing connects again.
  void Shutdown() {
    shut_down_ = true;
    Break("the flow client was destroyed");
  }

 private:
  enum class State { kDisconnected, kConnecting, kConnected };
  struct Pending {
    std::span<FlowTask> tasks;
    asio::steady_timer* answered;
  };

  flow::FrameLimits Limits() const { return {.max_body_bytes = options_.max_frame_bytes}; }
  Task<bool> EnsureConnected();
  Task<void> Connect();
  Task<void> ReadAnswers(std::uint64_t generation);
  Task<void> WriteQueued();
  bool HandleFrame();
  void Break(const std::string& reason);

  const asio::strand<asio::any_io_executor> strand_;
  const std::string where_;  // "unix:PATH"
  const std::string path_;
  const FlowClientOptions options_;

  // Strand state.
  local::socket socket_;
  flow::FrameDecoder decoder_;
  State state_ = State::kDisconnected;
  bool shut_down_ = false;
  std::uint64_t generation_ = 0;  // counts connections made, so a dead one's reader knows it is dead
  std::string connect_error_;
  std::vector<std::shared_ptr<asio::steady_timer>> connect_waiters_;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::deque<std::string> outbox_;
  bool writing_ = false;
};

Task<void> FlowClientConnection::Exchange(std::uint64_t id, std::string frame, std::span<FlowTask> tasks,
                                          Clock::time_point give_up) {
  auto self = shared_from_this();
  if (!co_await EnsureConnected()) {
    EndAll(tasks, FlowTaskStatus::kUnavailable, connect_error_);
    co_return;
  }
  asio::steady_timer answered(strand_, give_up);
  pending_.emplace(id, Pending{tasks, &answered});
  outbox_.push_back(std::move(frame));
  if (!writing_) {
    writing_ = true;
    asio::co_spawn(strand_, WriteQueued(),
                   [self](std::exception_ptr failure) {
                     log::LogFailure("flow client", "a connection's writer", failure);
                   });
  }
  // Cancelled when the answer is in or the connection broke; expires at `give_up`.
  auto [waited] = co_await answered.async_wait(kNoThrow);
  if (pending_.erase(id) != 0) {
    // Still pending: no answer in time, or the caller's own cancellation. Either way its tasks must
    // not be written once the caller has moved on; a late answer finds no request and is dropped.
    if (!waited) {
      EndAll(tasks, FlowTaskStatus::kTimedOut,
             fmt::format("no answer from the flow server at {} by the request's deadline", where_));
    } else {
      EndAll(tasks, FlowTaskStatus::kUnavailable,
             fmt::format("the request to the flow server at {} was cancelled", where_));
    }
  }
}

Task<bool> FlowClientConnection::EnsureConnected() {
  if (shut_down_) {
    connect_error_ = "the flow client was destroyed";
    co_return false;
  }
  if (state_ == State::kConnected) co_return true;
  if (state_ == State::kConnecting) {
    auto waiter = std::make_shared<asio::steady_timer>(strand_, Clock::time_point::max());
    connect_waiters_.push_back(waiter);
    co_await waiter->async_wait(kNoThrow);
    co_return state_ == State::kConnected;
  }
  state_ = State::kConnecting;
  co_await Connect();
  for (auto& waiter : connect_waiters_) waiter->cancel();
  connect_waiters_.clear();
  co_return state_ == State::kConnected;
}

Task<void> FlowClientConnection::Connect() {
  auto self = shared_from_this();
  socket_ = local::socket(strand_);
  decoder_ = flow::FrameDecoder(Limits());
  struct Attempt {
    bool done = false;
    bool timed_out = false;
  };
  auto attempt = std::make_shared<Attempt>();
  asio::steady_timer timer(strand_, options_.connect_timeout);
  timer.async_wait([self, attempt](const error_code& ec) {
    if (ec || attempt->done) return;
    attempt->timed_out = true;
    error_code ignored;
    self->socket_.close(ignored);
  });
  const local::endpoint endpoint(path_);
  auto [ec] = co_await socket_.async_connect(endpoint, kNoThrow);
  attempt->done = true;
  timer.cancel();
  if (socket_.is_open()) os::SetCloseOnExec(socket_.native_handle());
  if (ec || shut_down_) {
    error_code ignored;
    socket_.close(ignored);
    state_ = State::kDisconnected;
    const std::string reason = attempt->timed_out ? fmt::format("no connection within {} ms",
                                                        std::chrono::duration_cast<std::chrono::milliseconds>(
                                                            options_.connect_timeout)
                                                            .count())
                                          : ec ? ec.message() : "the flow client was destroyed";
    connect_error_ = fmt::format("cannot reach the flow server at {}: connect: {}", where_, reason);
    co_return;
  }
  state_ = State::kConnected;
  const std::uint64_t generation = ++generation_;
  asio::co_spawn(strand_, ReadAnswers(generation),
                 [self](std::exception_ptr failure) {
                   log::LogFailure("flow client", "a connection's reader", failure);
                 });
}

Task<void> FlowClientConnection::ReadAnswers(std::uint64_t generation) {
  auto self = shared_from_this();
  for (;;) {
    const std::span<char> space = decoder_.PrepareWrite(kReadChunk);
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(space.data(), space.size()), kNoThrow);
    if (generation != generation_) co_return;  // broken meanwhile; a new connection has its own reader
    if (ec) {
      Break(fmt::format("the connection to the flow server at {} broke: {}", where_, ec.message()));
      co_return;
    }
    decoder_.CommitWrite(n);
    for (;;) {
      const flow::DecodeState state = decoder_.Next();
      if (state == flow::DecodeState::kNeedMore) break;
      if (state == flow::DecodeState::kBadFrame) {
        Break(fmt::format("the flow server at {} sent a bad frame: {}", where_, decoder_.error().message()));
        co_return;
      }
      if (!HandleFrame()) co_return;
      decoder_.ConsumeFrame();
    }
  }
}

// One frame from the server; false when the connection had to be broken.
bool FlowClientConnection::HandleFrame() {
  const flow::FrameHeader& header = decoder_.header();
  const std::string_view body = decoder_.body();
  switch (header.kind) {
    case flow::FrameKind::kResponse: {
      auto found = pending_.find(header.request_id);
      if (found == pending_.end()) return true;  // its caller was cancelled
      if (core::Status decoded = flow::DecodeResponseBody(body, header.count, found->second.tasks); !decoded.ok()) {
        Break(fmt::format("the flow server at {} sent a malformed response: {}", where_, decoded.message()));
        return false;
      }
      found->second.answered->cancel();
      pending_.erase(found);
      return true;
    }
    case flow::FrameKind::kError:
      if (header.request_id == 0) {
        Break(fmt::format("the flow server at {} closed the connection: {}", where_, body));
        return false;
      } else {
        auto found = pending_.find(header.request_id);
        if (found == pending_.end()) return true;
        EndAll(found->second.tasks, FlowTaskStatus::kFailed,
               fmt::format("the flow server refused the request: {}", body));
        found->second.answered->cancel();
        pending_.erase(found);
        return true;
      }
    case flow::FrameKind::kRequest:
      break;
  }
  Break(fmt::format("the flow server at {} sent a request frame", where_));
  return false;
}

// The one writer: whatever is queued when a write starts goes out in that write.
Task<void> FlowClientConnection::WriteQueued() {
  auto self = shared_from_this();
  std::vector<std::string> writing;
  std::vector<asio::const_buffer> buffers;
  while (!outbox_.empty() && state_ == State::kConnected) {
    writing.clear();
    buffers.clear();
    while (!outbox_.empty()) {
      writing.push_back(std::move(outbox_.front()));
      outbox_.pop_front();
    }
    for (const std::string& frame : writing) buffers.push_back(asio::buffer(frame));
    const std::uint64_t generation = generation_;
    auto [ec, n] = co_await asio::async_write(socket_, buffers, kNoThrow);
    if (ec && generation == generation_) {
      Break(fmt::format("the connection to the flow server at {} broke: write: {}", where_, ec.message()));
    }
  }
  writing_ = false;
}

void FlowClientConnection::Break(const std::string& reason) {
  if (state_ == State::kConnected) {
    state_ = State::kDisconnected;
    ++generation_;
    error_code ignored;
    socket_.close(ignored);
  }
  outbox_.clear();
  for (auto& [id, pending] : pending_) {
    EndAll(pending.tasks, FlowTaskStatus::kUnavailable, reason);
    pending.answered->cancel();
  }
  pending_.clear();
}

// ---------------------------------------------------------------------------------------------

class FlowClient::Impl {
 public:
  Impl(asio::any_io_executor executor, std::string socket_path, FlowClientOptions options)
      : executor_(std::move(executor)), socket_path_(std::move(socket_path)), options_(std::move(options)) {
    options_.pool_size = std::max<std::size_t>(options_.pool_size, 1);
    connections_.resize(options_.pool_size);
  }

  std::shared_ptr<FlowClientConnection> Pick() {
    const std::size_t slot = next_slot_.fetch_add(1, std::memory_order_relaxed) % connections_.size();
    std::lock_guard lock(mutex_);
    auto& connection = connections_[slot];
    if (!connection) connection = std::make_shared<FlowClientConnection>(executor_, "unix:" + socket_path_, options_);
    return connection;
  }

  void Shutdown() {
    std::lock_guard lock(mutex_);
    for (auto& connection : connections_) {
      if (connection) asio::post(connection->strand(), [connection] { connection->Shutdown(); });
    }
  }

  const asio::any_io_executor executor_;
  const std::string socket_path_;
  FlowClientOptions options_;
  std::atomic<std::uint64_t> next_id_{1};  // 0 is the connection's own id in error frames
  std::atomic<std::size_t> next_slot_{0};

  std::mutex mutex_;
  std::vector<std::shared_ptr<FlowClientConnection>> connections_;  // guarded by mutex_
};

FlowClient::FlowClient(asio::any_io_executor executor, std::string socket_path, FlowClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(socket_path), std::move(options))) {}

FlowClient::~FlowClient() { impl_->Shutdown(); }

Task<void> FlowClient::process(std::span<FlowTask> tasks, Clock::time_point deadline) {
  if (tasks.empty()) co_return;
  const std::shared_ptr<Impl> impl = impl_;
  const std::uint64_t id = impl->next_id_.fetch_add(1, std::memory_order_relaxed);
  std::string frame;
  const core::Status encoded =
      flow::AppendRequestFrame(frame, id, tasks, TimeoutMs(deadline), impl->options_.max_frame_bytes);
  if (!encoded.ok()) {
    EndAll(tasks, FlowTaskStatus::kFailed, "the request cannot be sent: " + encoded.message());
    co_return;
  }
  EndAll(tasks, FlowTaskStatus::kPending, std::string());
  std::shared_ptr<FlowClientConnection> connection = impl->Pick();
  const asio::strand<asio::any_io_executor> strand = connection->strand();
  const Clock::time_point give_up = deadline >= Clock::time_point::max() - impl->options_.answer_grace
                                        ? Clock::time_point::max()
                                        : deadline + impl->options_.answer_grace;
  co_await asio::co_spawn(strand, connection->Exchange(id, std::move(frame), tasks, give_up), asio::use_awaitable);
}

Task<void> FlowClient::process(std::span<FlowTask> tasks, Clock::duration timeout) {
  // Without overflow for huge timeouts: anything past a day is "no deadline" on the wire anyway.
  const Clock::time_point deadline =
      timeout > std::chrono::hours(24 * 365) ? Clock::time_point::max() : Clock::now() + timeout;
  return process(tasks, deadline);
}

void FlowClient::process_blocking(std::span<FlowTask> tasks, Clock::time_point deadline) {
  asio::co_spawn(impl_->executor_, process(tasks, deadline), asio::use_future).get();
}

const std::string& FlowClient::socket_path() const noexcept { return impl_->socket_path_; }

}  // namespace sluice
