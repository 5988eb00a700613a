// core/adjustable_semaphore.hpp — an asynchronous counting semaphore whose capacity may change
// while slots are held. It is how the scheduler enforces the concurrency limit.
//
// Lowering the capacity never preempts: slots already held stay held, so `in_use()` may exceed
// `capacity()` for a while, and new acquirers wait until enough slots are released to fit under
// the new capacity (userver's Semaphore::SetCapacity has the same rule). Raising it wakes waiters
// at once. Waiters are served first come, first served.
//
// `SlotCounter` is the arithmetic alone, without waiting or locking, so the rules can be tested as
// pure functions. `AdjustableSemaphore` adds FIFO waiters: every member is thread-safe, and a
// waiter's completion runs on the executor associated with its handler (for a coroutine: its own).
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include "core/posted_handler.hpp"

namespace sluice::core {

class SlotCounter {
 public:
  explicit SlotCounter(std::size_t capacity) noexcept : capacity_(capacity) {}

  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t in_use() const noexcept { return in_use_; }
  std::size_t available() const noexcept { return in_use_ < capacity_ ? capacity_ - in_use_ : 0; }

  /// Takes `count` slots if they all fit under the capacity; otherwise takes none.
  [[nodiscard]] bool try_acquire(std::size_t count = 1) noexcept {
    if (count > available()) return false;
    in_use_ += count;
    return true;
  }

  /// Takes as many as fit, at most `count`; returns how many were taken.
  std::size_t acquire_up_to(std::size_t count) noexcept {
    const std::size_t taken = count < available() ? count : available();
    in_use_ += taken;
    return taken;
  }

  /// Gives back `count` held slots. Releasing more than are held is a programming error.
  void release(std::size_t count = 1) noexcept { in_use_ -= count; }

  void set_capacity(std::size_t capacity) noexcept { capacity_ = capacity; }

 private:
  std::size_t capacity_;
  std::size_t in_use_ = 0;
};

class AdjustableSemaphore {
 public:
  explicit AdjustableSemaphore(std::size_t capacity) : counter_(capacity) {}
  AdjustableSemaphore(const AdjustableSemaphore&) = delete;
  AdjustableSemaphore& operator=(const AdjustableSemaphore&) = delete;

  /// Waits for one slot. Completes with success holding the slot, or with operation_aborted (and
  /// no slot) if the operation's cancellation slot is emitted first. Signature void(error_code).
  template <class CompletionToken>
  auto async_acquire(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [this](auto handler) {
          auto slot = boost::asio::get_associated_cancellation_slot(handler);
          InitiateAcquire(Handler(std::move(handler)), slot);
        },
        token);
  }

  /// Waits until no slot is held (used to drain). Signature void(error_code).
  template <class CompletionToken>
  auto async_wait_idle(CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
        [this](auto handler) { InitiateWaitIdle(Handler(std::move(handler))); }, token);
  }

  [[nodiscard]] bool try_acquire(std::size_t count = 1);
  std::size_t acquire_up_to(std::size_t count);
  void release(std::size_t count = 1);
  void set_capacity(std::size_t capacity);

  std::size_t capacity() const;
  std::size_t in_use() const;
  /// Slots free right now for a newcomer: 0 while anyone waits.
  std::size_t available() const;
  std::size_t waiting() const;

 private:
  using Handler = PostedHandler<boost::system::error_code>;
  struct Waiter {
    Handler handler;
  };

  void InitiateAcquire(Handler handler, boost::asio::cancellation_slot slot);
  void InitiateWaitIdle(Handler handler);
  // Completes the handlers of waiters that can proceed; called with mutex_ held, and returns
  // them so they are completed after unlocking.
  std::vector<std::shared_ptr<Waiter>> TakeRunnableLocked();
  static void Complete(std::vector<std::shared_ptr<Waiter>> waiters);

  mutable std::mutex mutex_;
  SlotCounter counter_;                               // guarded by mutex_
  std::deque<std::shared_ptr<Waiter>> acquirers_;     // guarded by mutex_
  std::deque<std::shared_ptr<Waiter>> idle_waiters_;  // guarded by mutex_
};

}  // namespace sluice::core
