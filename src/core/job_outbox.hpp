// core/job_outbox.hpp — per-job ordered delivery, for the result sinks that write to something
// remote (the RunPod control plane, Redis): one outbox per job, whose items go out one after
// another in the order they were queued, while the outboxes of different jobs go out
// concurrently. So a job's stream chunks arrive in order and a progress update never lands after
// its final result (runpod-python #250), without one slow job holding up the others.
//
// `Enqueue` queues an item and, if the job's outbox is idle, starts a coroutine on the executor
// that delivers its items with `deliver` until it is empty. An item queued as final closes the
// outbox: later items of that job are refused. `Discard` drops what a job has queued (not the item
// being delivered) and closes it. An outbox is forgotten once closed and empty.
//
// Threads: Enqueue and Discard may be called from any thread (a ResultSink's On* calls); `deliver`
// runs on the executor, never concurrently for one job. The outbox must outlive its deliveries:
// destroy it after the io_context has stopped running, or once Drain returned true.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sluice/task.hpp>

#include "log/logging.hpp"

namespace sluice::core {

template <class Item>
class JobOutbox {
 public:
  using Deliver = std::function<Task<void>(const std::string& job_id, Item item)>;

  /// `what` names the sink in the log line of a delivery that throws (it should not).
  JobOutbox(boost::asio::any_io_executor executor, std::string what, Deliver deliver)
      : executor_(std::move(executor)), what_(std::move(what)), deliver_(std::move(deliver)) {}
  JobOutbox(const JobOutbox&) = delete;
  JobOutbox& operator=(const JobOutbox&) = delete;

  /// Queues `item` after the job's earlier items; false (nothing queued) when the job's final
  /// item was queued already or the job was discarded.
  bool Enqueue(const std::string& job_id, Item item, bool final) {
    std::shared_ptr<Box> box;
    {
      std::lock_guard lock(mutex_);
      std::shared_ptr<Box>& slot = boxes_[job_id];
      if (!slot) slot = std::make_shared<Box>();
      if (slot->closed) return false;
      slot->closed = final;
      slot->items.push_back(std::move(item));
      pending_.fetch_add(1);
      if (slot->sending) return true;
      slot->sending = true;
      box = slot;
    }
    boost::asio::co_spawn(executor_, SendAll(job_id, std::move(box)), [this, job_id](std::exception_ptr failure) {
      if (failure) log::LogFailure(what_, "a delivery for job " + job_id, failure);
    });
    return true;
  }

  /// Drops the items the job has queued and closes its outbox (one with nothing queued is simply
  /// not there: a sink reports nothing after a job's end); how many were dropped.
  std::size_t Discard(const std::string& job_id) {
    std::lock_guard lock(mutex_);
    auto it = boxes_.find(job_id);
    if (it == boxes_.end()) return 0;
    const std::size_t dropped = it->second->items.size();
    pending_.fetch_sub(dropped);
    it->second->items.clear();
    it->second->closed = true;
    if (!it->second->sending) boxes_.erase(it);
    return dropped;
  }

  /// Items queued or being delivered.
  std::size_t pending() const noexcept { return pending_.load(); }

  /// Waits until nothing is pending or `timeout` passes; true when nothing is pending. Used once,
  /// at shutdown, so it looks every 10 ms rather than keep a wake-up path for it.
  Task<bool> Drain(std::chrono::steady_clock::duration timeout) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pending_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(10));
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
    co_return pending_.load() == 0;
  }

 private:
  struct Box {
    std::deque<Item> items;
    bool sending = false;
    bool closed = false;  // the final item is queued, or the job was discarded
  };

  Task<void> SendAll(std::string job_id, std::shared_ptr<Box> box) {
    for (;;) {
      Item item;
      {
        std::lock_guard lock(mutex_);
        if (box->items.empty()) {
          box->sending = false;
          if (box->closed) {
            auto it = boxes_.find(job_id);
            if (it != boxes_.end() && it->second == box) boxes_.erase(it);
          }
          co_return;
        }
        item = std::move(box->items.front());
        box->items.pop_front();
      }
      co_await deliver_(job_id, std::move(item));
      pending_.fetch_sub(1);
    }
  }

  boost::asio::any_io_executor executor_;
  const std::string what_;
  const Deliver deliver_;
  std::atomic<std::size_t> pending_{0};
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Box>> boxes_;  // guarded by mutex_
};

}  // namespace sluice::core
