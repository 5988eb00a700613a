// sluice/handler.hpp — the four shapes a handler may take, behind one type.
//
// `Handler` is built implicitly from any callable with one of these signatures; the shape decides
// where the handler runs:
//
//   R        f(Job&)              blocking: runs on the worker's thread pool (one thread per
//                                 running job; the pool grows with the concurrency limit)
//   Task<R>  f(Job&)              coroutine: runs on the I/O threads; thousands may wait at once
//   Task<>   f(Job&, Stream&)     streaming coroutine
//   void     f(Job&, Stream&)     streaming, blocking (Stream::write from the pool thread)
//
// `R` is `void` (the output is null) or anything `boost::json::value` can be constructed from. The
// returned value becomes the job's result as runpod-python maps it (docs/handlers.md): an object
// with a truthy `error` member fails the job, `refresh_worker: true` asks for a fresh worker, and a
// thrown exception fails the job with its type and message.
//
// A Handler is copyable and immutable once built. The callable itself is called from many threads
// at once when the concurrency limit is above 1: any state it shares between jobs needs its own
// synchronisation.
#pragma once

#include <concepts>
#include <functional>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/json/value.hpp>

#include <sluice/job.hpp>
#include <sluice/stream.hpp>
#include <sluice/task.hpp>

namespace sluice {

namespace detail {
template <class T>
struct is_task : std::false_type {};
template <class T, class E>
struct is_task<boost::asio::awaitable<T, E>> : std::true_type {
  using value_type = T;
};

template <class T>
struct is_std_function : std::false_type {};
template <class Signature>
struct is_std_function<std::function<Signature>> : std::true_type {};

template <class R>
concept JsonResult = std::is_void_v<R> || std::constructible_from<boost::json::value, R>;
}  // namespace detail

class Handler {
 public:
  using Blocking = std::function<boost::json::value(Job&)>;
  using Coroutine = std::function<Task<boost::json::value>(Job&)>;
  using Streaming = std::function<Task<void>(Job&, Stream&)>;
  using BlockingStreaming = std::function<void(Job&, Stream&)>;

  enum class Kind { kNone, kBlocking, kCoroutine, kStreaming, kBlockingStreaming };

  Handler() = default;

  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, Handler>)
  Handler(F&& function) : function_(Wrap(std::forward<F>(function))) {}  // NOLINT: implicit by design

  Kind kind() const noexcept { return static_cast<Kind>(function_.index()); }
  bool is_streaming() const noexcept {
    return kind() == Kind::kStreaming || kind() == Kind::kBlockingStreaming;
  }
  explicit operator bool() const noexcept { return kind() != Kind::kNone; }

  // Access for the runtime; the shape must match kind().
  const Blocking& blocking() const { return std::get<Blocking>(function_); }
  const Coroutine& coroutine() const { return std::get<Coroutine>(function_); }
  const Streaming& streaming() const { return std::get<Streaming>(function_); }
  const BlockingStreaming& blocking_streaming() const { return std::get<BlockingStreaming>(function_); }

 private:
  using Variant = std::variant<std::monostate, Blocking, Coroutine, Streaming, BlockingStreaming>;

  template <class F>
  static Variant Wrap(F&& function) {
    using Fn = std::decay_t<F>;
    // A null function pointer or an empty std::function is no handler at all.
    if constexpr (std::is_pointer_v<std::remove_reference_t<F>> || detail::is_std_function<Fn>::value) {
      if (!function) return std::monostate{};
    }
    if constexpr (std::is_invocable_v<Fn&, Job&, Stream&>) {
      using R = std::invoke_result_t<Fn&, Job&, Stream&>;
      if constexpr (std::is_void_v<R>) {
        return BlockingStreaming(std::forward<F>(function));
      } else {
        static_assert(std::is_same_v<R, Task<void>>,
                      "a streaming handler returns sluice::Task<void> or void");
        return Streaming(std::forward<F>(function));
      }
    } else if constexpr (std::is_invocable_v<Fn&, Job&>) {
      using R = std::invoke_result_t<Fn&, Job&>;
      if constexpr (detail::is_task<R>::value) {
        using T = typename detail::is_task<R>::value_type;
        static_assert(detail::JsonResult<T>,
                      "a coroutine handler returns sluice::Task<T> where boost::json::value is "
                      "constructible from T, or sluice::Task<void>");
        if constexpr (std::is_same_v<T, boost::json::value>) {
          return Coroutine(std::forward<F>(function));
        } else {
          return Coroutine([fn = Fn(std::forward<F>(function))](Job& job) mutable
                               -> Task<boost::json::value> {
            if constexpr (std::is_void_v<T>) {
              co_await fn(job);
              co_return nullptr;
            } else {
              co_return boost::json::value(co_await fn(job));
            }
          });
        }
      } else {
        static_assert(detail::JsonResult<R>,
                      "a blocking handler returns void or a value boost::json::value is "
                      "constructible from");
        if constexpr (std::is_same_v<R, boost::json::value>) {
          return Blocking(std::forward<F>(function));
        } else {
          return Blocking([fn = Fn(std::forward<F>(function))](Job& job) mutable -> boost::json::value {
            if constexpr (std::is_void_v<R>) {
              fn(job);
              return nullptr;
            } else {
              return boost::json::value(fn(job));
            }
          });
        }
      }
    } else {
      static_assert(sizeof(Fn) == 0,
                    "a handler is callable as f(sluice::Job&) or f(sluice::Job&, sluice::Stream&)");
    }
  }

  Variant function_;
};

}  // namespace sluice
