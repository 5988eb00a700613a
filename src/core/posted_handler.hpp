// core/posted_handler.hpp — stores a completion handler of any type so that a thread-safe
// primitive (the semaphore, the job queue) can complete it later, from any thread, through the
// handler's own executor and never inline.
//
// Boost 1.81's any_completion_handler cannot be used for this: posting it fails to compile,
// because its type-erased executor does not offer blocking.never.
//
// A PostedHandler is completed at most once; copies share the one handler. Until it is completed or
// destroyed it counts as outstanding work on the handler's executor (so destroy pending ones before
// their io_context). Not thread-safe by itself: the owning primitive serialises access under its
// own mutex.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/post.hpp>

namespace sluice::core {

template <class... Args>
class PostedHandler {
 public:
  PostedHandler() = default;

  template <class Handler>
  explicit PostedHandler(Handler handler) {
    // Outstanding work on the handler's executor, as every Asio operation keeps while it is
    // pending: its io_context does not run out of work (and so is not torn down by its owner)
    // while another thread may still post this completion to it.
    auto executor = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                        boost::asio::execution::outstanding_work.tracked);
    auto shared = std::make_shared<Handler>(std::move(handler));
    complete_ = [shared = std::move(shared), executor](Args... args) {
      boost::asio::post(executor, [shared, args...]() mutable { std::move(*shared)(std::move(args)...); });
    };
  }

  explicit operator bool() const noexcept { return static_cast<bool>(complete_); }

  /// Posts the completion with `args`; the handler runs later on its executor.
  void Post(Args... args) {
    auto complete = std::exchange(complete_, nullptr);
    complete(std::move(args)...);
  }

 private:
  std::function<void(Args...)> complete_;
};

}  // namespace sluice::core
