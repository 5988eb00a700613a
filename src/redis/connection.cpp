#include "redis/connection.hpp"

#include <atomic>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/posted_handler.hpp"
#include "log/logging.hpp"
#include "os/close_on_exec.hpp"

namespace sluice::redis {
namespace {

namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

long long Millis(Clock::duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// The command's name for messages, upper-cased and cut: never its arguments, which may be large
// or secret.
std::string CommandName(const std::vector<std::string>& argv) {
  if (argv.empty()) return "(empty command)";
  std::string name;
  for (char c : argv[0].substr(0, 32)) {
    const auto byte = static_cast<unsigned char>(c);
    name += std::isprint(byte) != 0 ? static_cast<char>(std::toupper(byte)) : '?';
  }
  return name;
}

using Completion = core::PostedHandler<core::Result<Reply>>;

// One command of a caller, from `Command` until its completion is posted. Owned by the waiting
// list until it is sent, then by hiredis (as the callback's privdata) until its callback runs:
// hiredis calls every callback exactly once, with a NULL reply when the context is freed.
struct PendingCommand {
  std::vector<std::string> argv;
  Clock::duration timeout{};
  Clock::time_point deadline;
  Completion completion;
  std::multimap<Clock::time_point, PendingCommand*>::iterator deadline_entry;
  bool in_flight = false;  // handed to hiredis
  bool done = false;       // completion posted
};

// One command of the connect handshake (AUTH, SELECT): the callback's privdata.
struct HandshakeStep {
  std::uint64_t attempt = 0;
  std::string what;
  bool last = false;
};

// The context's socket as Asio sees it. hiredis owns the fd: it is released, never closed.
struct Watcher {
  Watcher(const asio::any_io_executor& executor, int fd) : descriptor(executor, fd) {}
  asio::posix::stream_descriptor descriptor;
  bool reading = false;  // hiredis wants read events (addRead/delRead)
  bool writing = false;  // hiredis wants write events (addWrite/delWrite)
  bool read_waiting = false;  // an async_wait(wait_read) is pending
  bool write_waiting = false;
};

std::vector<const char*> ArgvPointers(const std::vector<std::string>& argv, std::vector<std::size_t>& lengths) {
  std::vector<const char*> pointers;
  pointers.reserve(argv.size());
  lengths.clear();
  lengths.reserve(argv.size());
  for (const std::string& arg : argv) {
    pointers.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  return pointers;
}

}  // namespace

class Connection::Impl : public std::enable_shared_from_this<Connection::Impl> {
 public:
  Impl(asio::any_io_executor executor, Endpoint endpoint, ConnectionOptions options)
      : strand_(asio::make_strand(executor)),
        endpoint_(std::move(endpoint)),
        options_(std::move(options)),
        prefix_(fmt::format("redis {}", endpoint_.Address())),
        resolver_(strand_),
        connect_timer_(strand_),
        backoff_timer_(strand_),
        deadline_timer_(strand_) {}

  // Every handler that can reach the context holds a reference, so nothing is pending here; a
  // context left over means the io_context was destroyed with our handlers in it.
  ~Impl() {
    if (ac_ != nullptr) {
      drop_reason_ = prefix_ + ": connection closed";
      closed_ = true;
      state_ = State::kClosed;  // ours to close: not a "connection lost" warning at every exit
      redisAsyncFree(ac_);
    }
  }

  const asio::any_io_executor& strand() const { return strand_; }
  const Endpoint& endpoint() const { return endpoint_; }
  Clock::duration command_timeout() const { return options_.command_timeout; }
  ConnectionStats stats() const {
    return {connects_.load(), connect_failures_.load(), drops_.load()};
  }

  // The caller's side: runs on the caller's thread, hands the command to the strand.
  template <class Handler>
  void Start(Handler handler, std::vector<std::string> argv, Clock::duration timeout) {
    auto pending = std::make_unique<PendingCommand>();
    pending->argv = std::move(argv);
    pending->timeout = timeout;
    pending->deadline = Clock::now() + timeout;
    pending->completion = Completion(std::move(handler));
    asio::post(strand_, [self = shared_from_this(), pending = std::move(pending)]() mutable {
      self->Submit(std::move(pending));
    });
  }

  void Close() {
    asio::post(strand_, [self = shared_from_this()] { self->DoClose(); });
  }

 private:
  enum class State {
    kIdle,        // no context; the next command connects (maybe after the backoff)
    kBackoff,     // waiting for next_attempt_ before connecting
    kConnecting,  // resolving, connecting, AUTH/SELECT
    kReady,       // commands go straight to the context
    kClosed,
  };

  // --- Commands (strand) ---

  void Submit(std::unique_ptr<PendingCommand> pending) {
    pending->deadline_entry = deadlines_.emplace(pending->deadline, pending.get());
    if (pending->argv.empty()) {
      Finish(*pending, core::Status::InvalidArgument(prefix_ + ": an empty command"));
      return;
    }
    if (state_ == State::kClosed) {
      Finish(*pending, core::Status::FailedPrecondition(prefix_ + ": the connection is closed"));
      return;
    }
    if (state_ == State::kReady) {
      Send(std::move(pending));
      ArmDeadlineTimer();
      return;
    }
    if (state_ == State::kIdle || state_ == State::kBackoff) {
      const Clock::time_point now = Clock::now();
      if (next_attempt_ > now && pending->deadline < next_attempt_) {
        // Waiting could only end in a timeout: say now what is wrong.
        Finish(*pending, core::Status::Unavailable(fmt::format(
                             "{}; next connect attempt in {} ms", last_error_, Millis(next_attempt_ - now))));
        return;
      }
      if (state_ == State::kIdle) {
        if (next_attempt_ > now) {
          state_ = State::kBackoff;
          backoff_timer_.expires_at(next_attempt_);
          backoff_timer_.async_wait([self = shared_from_this()](error_code error) {
            if (!error && self->state_ == State::kBackoff) self->StartConnect();
          });
        } else {
          StartConnect();
        }
      }
    }
    waiting_.push_back(std::move(pending));
    ArmDeadlineTimer();
  }

  // Hands one command to hiredis (state kReady). Its deadline entry exists already.
  void Send(std::unique_ptr<PendingCommand> pending) {
    std::vector<std::size_t> lengths;
    std::vector<const char*> args = ArgvPointers(pending->argv, lengths);
    pending->in_flight = true;
    PendingCommand* raw = pending.get();
    if (redisAsyncCommandArgv(ac_, &Impl::OnReply, raw, static_cast<int>(args.size()), args.data(),
                              lengths.data()) != REDIS_OK) {
      Finish(*raw, core::Status::Unavailable(
                       fmt::format("{}: cannot send {}: {}", prefix_, CommandName(raw->argv),
                                   ac_->err != 0 ? ac_->errstr : "the connection is closing")));
      return;
    }
    pending.release();  // hiredis calls OnReply exactly once, which takes it back
  }

  void Finish(PendingCommand& pending, core::Result<Reply> result) {
    if (pending.done) return;
    pending.done = true;
    deadlines_.erase(pending.deadline_entry);
    pending.completion.Post(std::move(result));
  }

  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata) {
    std::unique_ptr<PendingCommand> pending(static_cast<PendingCommand*>(privdata));
    auto* self = static_cast<Impl*>(ac->data);
    if (reply != nullptr) {
      Reply answer = Reply::FromHiredis(*static_cast<const redisReply*>(reply));
      if (answer.is_error() && IsServerNotReady(answer.str())) {
        // Not run: the callers' retries (kUnavailable) apply, as for a lost connection.
        self->Finish(*pending, core::Status::Unavailable(fmt::format("{}: {}", self->prefix_, answer.str())));
      } else {
        self->Finish(*pending, std::move(answer));
      }
    } else {
      self->Finish(*pending, self->LostStatus(ac));
    }
  }

  // Why a command got no reply: the reason we dropped the context for, or hiredis's error.
  core::Status LostStatus(const redisAsyncContext* ac) const {
    std::string message =
        !drop_reason_.empty()
            ? drop_reason_
            : fmt::format("{}: connection lost: {}", prefix_,
                          ac->err != 0 && ac->errstr != nullptr ? ac->errstr : "closed");
    if (closed_) return core::Status::FailedPrecondition(std::move(message));
    return core::Status::Unavailable(std::move(message));
  }

  // --- Deadlines (strand) ---

  // One timer for the earliest deadline of all pending commands; re-armed only when an earlier
  // one arrives, so a stream of commands with one timeout costs no timer operations.
  void ArmDeadlineTimer() {
    if (deadlines_.empty()) return;
    const Clock::time_point earliest = deadlines_.begin()->first;
    if (deadline_armed_ && deadline_expiry_ <= earliest) return;
    deadline_armed_ = true;
    deadline_expiry_ = earliest;
    const std::uint64_t sequence = ++deadline_sequence_;
    deadline_timer_.expires_at(earliest);
    deadline_timer_.async_wait([self = shared_from_this(), sequence](error_code error) {
      if (error || sequence != self->deadline_sequence_) return;
      self->deadline_armed_ = false;
      self->OnDeadline();
    });
  }

  void OnDeadline() {
    const Clock::time_point now = Clock::now();
    PendingCommand* expired_in_flight = nullptr;
    std::vector<PendingCommand*> expired_waiting;
    for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now; ++it) {
      if (!it->second->in_flight) {
        expired_waiting.push_back(it->second);
      } else if (expired_in_flight == nullptr) {
        expired_in_flight = it->second;
      }
    }
    for (PendingCommand* pending : expired_waiting) {
      Finish(*pending, core::Status::Unavailable(fmt::format(
                           "{}: {} timed out after {} ms waiting for a connection{}", prefix_,
                           CommandName(pending->argv), Millis(pending->timeout),
                           last_error_.empty() ? "" : " (last error: " + last_error_ + ")")));
    }
    if (expired_in_flight != nullptr) {
      // hiredis cannot cancel one command: the connection goes, with every command in flight.
      const std::string reason =
          fmt::format("{}: {} timed out after {} ms; connection dropped", prefix_,
                      CommandName(expired_in_flight->argv), Millis(expired_in_flight->timeout));
      log::Warn("", "{}", reason);
      Drop(reason);
    }
    ArmDeadlineTimer();
  }

  // --- Connecting (strand) ---

  void StartConnect() {
    state_ = State::kConnecting;
    const std::uint64_t attempt = ++attempt_;
    connect_timer_.expires_after(options_.connect_timeout);
    connect_timer_.async_wait([self = shared_from_this(), attempt](error_code error) {
      if (error || attempt != self->attempt_ || self->state_ != State::kConnecting) return;
      self->ConnectFailed(
          fmt::format("connect timed out after {} ms", Millis(self->options_.connect_timeout)), true);
    });
    resolver_.async_resolve(
        endpoint_.host, std::to_string(endpoint_.port),
        [self = shared_from_this(), attempt](error_code error, tcp::resolver::results_type results) {
          if (attempt != self->attempt_ || self->state_ != State::kConnecting) return;
          self->OnResolved(error, results);
        });
  }

  void OnResolved(error_code error, const tcp::resolver::results_type& results) {
    if (error || results.empty()) {
      ConnectFailed(fmt::format("cannot resolve host '{}': {}", endpoint_.host,
                                error ? error.message() : "no address"),
                    true);
      return;
    }
    // The first IPv4 address if there is one: a server bound to 127.0.0.1 is not on ::1.
    tcp::endpoint address = results.begin()->endpoint();
    for (const auto& entry : results) {
      if (entry.endpoint().address().is_v4()) {
        address = entry.endpoint();
        break;
      }
    }
    const std::string ip = address.address().to_string();
    redisAsyncContext* ac = redisAsyncConnect(ip.c_str(), address.port());
    if (ac == nullptr) {
      ConnectFailed("cannot allocate a hiredis context", true);
      return;
    }
    if (ac->err != 0) {
      const std::string reason = fmt::format("cannot connect to {}: {}", ip, ac->errstr);
      redisAsyncFree(ac);
      ConnectFailed(reason, true);
      return;
    }
    Attach(ac);
  }

  // Makes this strand the context's event loop, and queues the handshake (sent once connected).
  void Attach(redisAsyncContext* ac) {
    ac_ = ac;
    ++generation_;
    drop_reason_.clear();
    ac->data = this;
    os::SetCloseOnExec(ac->c.fd);  // hiredis opens it without SOCK_CLOEXEC, as Asio does
    watcher_ = std::make_unique<Watcher>(strand_, ac->c.fd);
    ac->ev.data = this;
    ac->ev.addRead = [](void* data) { static_cast<Impl*>(data)->AddRead(); };
    ac->ev.delRead = [](void* data) { static_cast<Impl*>(data)->DelRead(); };
    ac->ev.addWrite = [](void* data) { static_cast<Impl*>(data)->AddWrite(); };
    ac->ev.delWrite = [](void* data) { static_cast<Impl*>(data)->DelWrite(); };
    ac->ev.cleanup = [](void* data) { static_cast<Impl*>(data)->Cleanup(); };
    redisAsyncSetConnectCallback(ac, &Impl::OnConnected);
    AddWrite();  // the first write event is how hiredis learns that connect(2) finished

    std::vector<std::vector<std::string>> steps;
    std::vector<std::string> names;
    if (!endpoint_.password.empty()) {
      if (endpoint_.user.empty()) {
        steps.push_back({"AUTH", endpoint_.password});
      } else {
        steps.push_back({"AUTH", endpoint_.user, endpoint_.password});
      }
      names.emplace_back("AUTH");
    }
    if (endpoint_.db != 0) {
      steps.push_back({"SELECT", std::to_string(endpoint_.db)});
      names.push_back(fmt::format("SELECT {}", endpoint_.db));
    }
    handshake_ = !steps.empty();
    for (std::size_t i = 0; i < steps.size(); ++i) {
      auto step = std::make_unique<HandshakeStep>();
      step->attempt = attempt_;
      step->what = names[i];
      step->last = i + 1 == steps.size();
      std::vector<std::size_t> lengths;
      std::vector<const char*> args = ArgvPointers(steps[i], lengths);
      if (redisAsyncCommandArgv(ac, &Impl::OnHandshakeReply, step.get(), static_cast<int>(args.size()),
                                args.data(), lengths.data()) != REDIS_OK) {
        ConnectFailed(fmt::format("cannot send {}", names[i]), true);
        return;
      }
      step.release();
    }
  }

  static void OnConnected(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<Impl*>(ac->data);
    if (self->state_ != State::kConnecting) return;
    if (status != REDIS_OK) {
      // hiredis frees the context right after this returns: it must not be freed here.
      self->ConnectFailed(fmt::format("cannot connect: {}", ac->errstr != nullptr ? ac->errstr : "error"),
                          false);
      return;
    }
    if (!self->handshake_) self->MarkReady();
  }

  static void OnHandshakeReply(redisAsyncContext* ac, void* reply, void* privdata) {
    std::unique_ptr<HandshakeStep> step(static_cast<HandshakeStep*>(privdata));
    auto* self = static_cast<Impl*>(ac->data);
    if (self->state_ != State::kConnecting || step->attempt != self->attempt_) return;
    if (reply == nullptr) {
      // The context is being freed already (connection lost during the handshake).
      self->ConnectFailed(fmt::format("{} got no reply: {}", step->what,
                                      ac->err != 0 && ac->errstr != nullptr ? ac->errstr : "connection lost"),
                          false);
      return;
    }
    const auto* answer = static_cast<const redisReply*>(reply);
    if (answer->type == REDIS_REPLY_ERROR) {
      // Inside a reply callback hiredis defers the free until the callback returns.
      self->ConnectFailed(
          fmt::format("{} rejected: {}", step->what, std::string(answer->str, answer->len)), true);
      return;
    }
    if (step->last) self->MarkReady();
  }

  void MarkReady() {
    state_ = State::kReady;
    connect_timer_.cancel();
    if (failures_ > 0) {
      log::Info("", "{}: connected after {} failed attempt(s)", prefix_, failures_);
    } else if (connects_.load() > 0) {
      log::Info("", "{}: reconnected", prefix_);
    }
    failures_ = 0;
    next_attempt_ = {};
    last_error_.clear();
    connects_.fetch_add(1);
    std::deque<std::unique_ptr<PendingCommand>> waiting;
    waiting.swap(waiting_);
    for (auto& pending : waiting) {
      if (!pending->done) Send(std::move(pending));
    }
  }

  // A connect attempt failed: back off, fail the commands that waited for it. `free_context`
  // is false where hiredis is freeing the context itself.
  void ConnectFailed(const std::string& reason, bool free_context) {
    if (state_ != State::kConnecting) return;
    state_ = State::kIdle;
    connect_timer_.cancel();
    resolver_.cancel();
    ++failures_;
    connect_failures_.fetch_add(1);
    const double uniform = options_.random ? options_.random() : http::UniformRandom();
    const Clock::duration delay = options_.reconnect.Delay(failures_ - 1, uniform);
    next_attempt_ = Clock::now() + delay;
    last_error_ = fmt::format("{}: {}", prefix_, reason);
    log::Warn("", "{} (attempt {}; next no sooner than {} ms from now)", last_error_, failures_,
              Millis(delay));
    if (ac_ != nullptr) {
      drop_reason_ = last_error_;
      if (free_context) redisAsyncFree(ac_);
    }
    std::deque<std::unique_ptr<PendingCommand>> waiting;
    waiting.swap(waiting_);
    for (auto& pending : waiting) Finish(*pending, core::Status::Unavailable(last_error_));
  }

  // Drops the context (never called from inside hiredis): every command in flight completes
  // with `reason`.
  void Drop(const std::string& reason) {
    if (ac_ == nullptr) return;
    if (state_ == State::kReady) {
      state_ = State::kIdle;
      drops_.fetch_add(1);
    }
    drop_reason_ = reason;
    redisAsyncFree(ac_);  // runs every callback with a NULL reply, then Cleanup
  }

  void DoClose() {
    if (state_ == State::kClosed) return;
    const bool was_ready = state_ == State::kReady;
    state_ = State::kClosed;
    closed_ = true;
    resolver_.cancel();
    connect_timer_.cancel();
    backoff_timer_.cancel();
    deadline_timer_.cancel();
    ++deadline_sequence_;
    const std::string reason = prefix_ + ": the connection is closed";
    std::deque<std::unique_ptr<PendingCommand>> waiting;
    waiting.swap(waiting_);
    for (auto& pending : waiting) Finish(*pending, core::Status::FailedPrecondition(reason));
    if (ac_ != nullptr) {
      if (was_ready) drops_.fetch_add(1);
      drop_reason_ = reason;
      redisAsyncFree(ac_);
    }
  }

  // --- hiredis's event hooks (strand, called from inside hiredis) ---

  void AddRead() {
    if (!watcher_) return;
    watcher_->reading = true;
    if (!watcher_->read_waiting) WaitReadable();
  }
  void DelRead() {
    if (watcher_) watcher_->reading = false;
  }
  void AddWrite() {
    if (!watcher_) return;
    watcher_->writing = true;
    if (!watcher_->write_waiting) WaitWritable();
  }
  void DelWrite() {
    if (watcher_) watcher_->writing = false;
  }

  // hiredis frees the context after this returns (and closes the fd): let go of both.
  void Cleanup() {
    if (watcher_) {
      watcher_->descriptor.release();  // cancels the waits; their handlers see another generation
      watcher_.reset();
    }
    const std::string hiredis_error = ac_ != nullptr && ac_->err != 0 && ac_->errstr != nullptr ? ac_->errstr : "";
    ac_ = nullptr;
    if (state_ == State::kReady) {
      // Lost by hiredis itself: the server closed it, or a read or write failed.
      state_ = State::kIdle;
      drops_.fetch_add(1);
      log::Warn("", "{}: connection lost: {}", prefix_, hiredis_error.empty() ? "closed" : hiredis_error);
    } else if (state_ == State::kConnecting) {
      ConnectFailed("connection lost while connecting", false);
    }
  }

  void WaitReadable() {
    watcher_->read_waiting = true;
    watcher_->descriptor.async_wait(
        asio::posix::stream_descriptor::wait_read,
        [self = shared_from_this(), generation = generation_](error_code error) {
          self->OnReadable(generation, error);
        });
  }

  void WaitWritable() {
    watcher_->write_waiting = true;
    watcher_->descriptor.async_wait(
        asio::posix::stream_descriptor::wait_write,
        [self = shared_from_this(), generation = generation_](error_code error) {
          self->OnWritable(generation, error);
        });
  }

  void OnReadable(std::uint64_t generation, error_code error) {
    if (generation != generation_ || !watcher_) return;  // a context that is gone
    watcher_->read_waiting = false;
    if (error) {
      if (error != asio::error::operation_aborted) Drop(fmt::format("{}: wait failed: {}", prefix_, error.message()));
      return;
    }
    if (!watcher_->reading) return;
    redisAsyncHandleRead(ac_);  // may free the context (Cleanup resets watcher_)
    if (generation == generation_ && watcher_ && watcher_->reading && !watcher_->read_waiting) {
      WaitReadable();
    }
  }

  void OnWritable(std::uint64_t generation, error_code error) {
    if (generation != generation_ || !watcher_) return;
    watcher_->write_waiting = false;
    if (error) {
      if (error != asio::error::operation_aborted) Drop(fmt::format("{}: wait failed: {}", prefix_, error.message()));
      return;
    }
    if (!watcher_->writing) return;
    redisAsyncHandleWrite(ac_);  // connects, writes what it can, and delWrite()s when done
    if (generation == generation_ && watcher_ && watcher_->writing && !watcher_->write_waiting) {
      WaitWritable();
    }
  }

  // Constant after construction.
  const asio::any_io_executor strand_;
  const Endpoint endpoint_;
  const ConnectionOptions options_;
  const std::string prefix_;  // "redis host:port", the start of every message

  // Counters, read from any thread.
  std::atomic<std::uint64_t> connects_{0};
  std::atomic<std::uint64_t> connect_failures_{0};
  std::atomic<std::uint64_t> drops_{0};

  // Everything below is touched on the strand only.
  State state_ = State::kIdle;
  bool closed_ = false;
  redisAsyncContext* ac_ = nullptr;  // owned: freed by redisAsyncFree or by hiredis on an error
  std::unique_ptr<Watcher> watcher_;  // exists exactly while ac_ does
  std::uint64_t generation_ = 0;      // of ac_: stale socket waits compare it
  std::string drop_reason_;           // why ac_ is being freed; the message of its NULL replies
  bool handshake_ = false;            // ac_ waits for AUTH/SELECT replies before kReady

  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  std::uint64_t attempt_ = 0;  // connect attempts; stale resolver and timer completions compare it
  int failures_ = 0;           // failed connect attempts in a row
  Clock::time_point next_attempt_{};  // no connect attempt before it
  std::string last_error_;            // of the last failed attempt, prefixed
  asio::steady_timer backoff_timer_;

  std::deque<std::unique_ptr<PendingCommand>> waiting_;  // until the connection is ready
  std::multimap<Clock::time_point, PendingCommand*> deadlines_;  // every pending command
  asio::steady_timer deadline_timer_;
  bool deadline_armed_ = false;
  Clock::time_point deadline_expiry_{};
  std::uint64_t deadline_sequence_ = 0;  // stale deadline completions compare it
};

Connection::Connection(asio::any_io_executor executor, Endpoint endpoint, ConnectionOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(endpoint), std::move(options))) {}

Connection::~Connection() { impl_->Close(); }

Task<core::Result<Reply>> Connection::Command(std::vector<std::string> argv) {
  return Command(std::move(argv), impl_->command_timeout());
}

Task<core::Result<Reply>> Connection::Command(std::vector<std::string> argv, Clock::duration timeout) {
  // No coroutine frame of our own: the command completes the caller's co_await directly, posted
  // to the caller's executor (core::PostedHandler).
  return asio::async_initiate<decltype(asio::use_awaitable), void(core::Result<Reply>)>(
      [impl = impl_](auto handler, std::vector<std::string> owned, Clock::duration limit) {
        impl->Start(std::move(handler), std::move(owned), limit);
      },
      asio::use_awaitable, std::move(argv), timeout);
}

void Connection::Close() { impl_->Close(); }

const Endpoint& Connection::endpoint() const noexcept { return impl_->endpoint(); }

ConnectionStats Connection::stats() const { return impl_->stats(); }

}  // namespace sluice::redis
