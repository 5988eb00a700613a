// sluice/stream.hpp — the output channel of a streaming handler.
//
// A streaming handler receives a `Stream&` beside its `Job&` and sends results in pieces ("chunks").
// Each chunk reaches clients as `{"output": chunk}` as soon as it is emitted (`/stream/{id}`, the
// RunPod job-stream call, or a line on stdout in local test mode). When the handler returns, the
// job completes; its final output is the list of all chunks when aggregation is on (always in local
// test mode, and with `Config::return_aggregate_stream`), otherwise an empty list.
//
// A chunk that is an object with a truthy `error` member ends the job as FAILED with that error and
// is not sent as a chunk, as runpod-python does; the handler is then cancelled.
//
// g++ 12 cannot compile a braced initializer list inside a `co_await` expression ("array used as
// initializer"), so `co_await out.emit({{"token", i}})` fails there. Name the chunk first, or use
// `write`, which needs no co_await:
//
//   boost::json::value chunk = {{"token", i}};
//   co_await out.emit(std::move(chunk));      // or: out.write({{"token", i}});
//
// sluice owns the Stream; it is valid as long as the `Job` it came with. `write()` is thread-safe;
// `emit()` is meant for the handler's own coroutine.
#pragma once

#include <boost/json/value.hpp>

#include <sluice/task.hpp>

namespace sluice {

namespace detail {
class JobRun;
}

class Stream {
 public:
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  /// Sends one chunk from a coroutine handler. Throws `boost::system::system_error`
  /// (operation_aborted) if the job was cancelled, so a loop of emits stops by itself.
  Task<void> emit(boost::json::value chunk);

  /// Sends one chunk without suspending: from a blocking handler, from any thread, or from a
  /// coroutine. Returns false, and sends nothing, once the job has been cancelled or has failed.
  bool write(boost::json::value chunk);

 private:
  friend class detail::JobRun;
  explicit Stream(detail::JobRun& run) noexcept : run_(run) {}

  detail::JobRun& run_;
};

}  // namespace sluice
