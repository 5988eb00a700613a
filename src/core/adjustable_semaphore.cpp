#include "core/adjustable_semaphore.hpp"

#include <algorithm>


namespace sluice::core {
namespace asio = boost::asio;

void AdjustableSemaphore::InitiateAcquire(Handler handler, asio::cancellation_slot slot) {
  std::unique_lock lock(mutex_);
  if (acquirers_.empty() && counter_.try_acquire()) {
    lock.unlock();
    // Complete through the handler's executor, never inline: the initiator may still be inside
    // its own call stack (asio's rule for asynchronous operations).
    handler.Post(boost::system::error_code());
    return;
  }
  auto waiter = std::make_shared<Waiter>(Waiter{std::move(handler)});
  if (slot.is_connected()) {
    std::weak_ptr<Waiter> weak = waiter;
    slot.assign([this, weak](asio::cancellation_type) {
      std::shared_ptr<Waiter> cancelled = weak.lock();
      if (!cancelled) return;
      std::unique_lock lock(mutex_);
      auto it = std::find(acquirers_.begin(), acquirers_.end(), cancelled);
      if (it == acquirers_.end()) return;  // already granted
      acquirers_.erase(it);
      lock.unlock();
      cancelled->handler.Post(asio::error::operation_aborted);
    });
  }
  acquirers_.push_back(std::move(waiter));
}

void AdjustableSemaphore::InitiateWaitIdle(Handler handler) {
  std::unique_lock lock(mutex_);
  if (counter_.in_use() == 0) {
    lock.unlock();
    handler.Post(boost::system::error_code());
    return;
  }
  idle_waiters_.push_back(std::make_shared<Waiter>(Waiter{std::move(handler)}));
}

bool AdjustableSemaphore::try_acquire(std::size_t count) {
  std::lock_guard lock(mutex_);
  // Waiters go first: a newcomer may not overtake them.
  return acquirers_.empty() && counter_.try_acquire(count);
}

std::size_t AdjustableSemaphore::acquire_up_to(std::size_t count) {
  std::lock_guard lock(mutex_);
  return acquirers_.empty() ? counter_.acquire_up_to(count) : 0;
}

void AdjustableSemaphore::release(std::size_t count) {
  std::vector<std::shared_ptr<Waiter>> runnable;
  {
    std::lock_guard lock(mutex_);
    counter_.release(count);
    if (acquirers_.empty() && idle_waiters_.empty()) return;  // the common case: nobody waits
    runnable = TakeRunnableLocked();
  }
  Complete(std::move(runnable));
}

void AdjustableSemaphore::set_capacity(std::size_t capacity) {
  std::vector<std::shared_ptr<Waiter>> runnable;
  {
    std::lock_guard lock(mutex_);
    counter_.set_capacity(capacity);
    runnable = TakeRunnableLocked();
  }
  Complete(std::move(runnable));
}

std::vector<std::shared_ptr<AdjustableSemaphore::Waiter>> AdjustableSemaphore::TakeRunnableLocked() {
  std::vector<std::shared_ptr<Waiter>> runnable;
  while (!acquirers_.empty() && counter_.try_acquire()) {
    runnable.push_back(std::move(acquirers_.front()));
    acquirers_.pop_front();
  }
  if (counter_.in_use() == 0) {
    for (auto& waiter : idle_waiters_) runnable.push_back(std::move(waiter));
    idle_waiters_.clear();
  }
  return runnable;
}

void AdjustableSemaphore::Complete(std::vector<std::shared_ptr<Waiter>> waiters) {
  for (auto& waiter : waiters) {
    waiter->handler.Post(boost::system::error_code());
  }
}

std::size_t AdjustableSemaphore::capacity() const {
  std::lock_guard lock(mutex_);
  return counter_.capacity();
}

std::size_t AdjustableSemaphore::in_use() const {
  std::lock_guard lock(mutex_);
  return counter_.in_use();
}

std::size_t AdjustableSemaphore::available() const {
  std::lock_guard lock(mutex_);
  return acquirers_.empty() ? counter_.available() : 0;
}

std::size_t AdjustableSemaphore::waiting() const {
  std::lock_guard lock(mutex_);
  return acquirers_.size();
}

}  // namespace sluice::core
