// sluice/job.hpp — what a handler learns about the job it runs, and how it reports back.
//
// A `Job` is created by sluice for each accepted request and handed to the handler by reference.
// sluice owns it; it stays valid until the handler returns (for a coroutine: until its `Task`
// completes). Handlers must not keep the reference beyond that.
//
// Thread-safety: the accessors are const and safe from any thread. `progress()` and `cancelled()`
// may be called from any thread, including threads the handler starts itself, for as long as the
// job is valid.
#pragma once

#include <stop_token>
#include <string>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

namespace sluice {

namespace detail {
class JobRun;
}

class Job {
 public:
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  /// The job's id: assigned by the job API or the queue, `local_test` (or the input file's own
  /// `id`) in local test mode.
  const std::string& id() const noexcept;

  /// The request's `input` member. Never null: requests without one are rejected before they
  /// become jobs.
  const boost::json::value& input() const noexcept;

  /// The whole request as sluice received it (`id`, `input`, `webhook`, `policy`, and any other
  /// member a client sent), for handlers that need more than `input`.
  const boost::json::object& request() const noexcept;

  /// The id of this worker process: `$RUNPOD_POD_ID` when set, otherwise a random UUID chosen at
  /// start. The same for every job of the process.
  const std::string& worker_id() const noexcept;

  /// Publishes an intermediate result. It is shown as the job's `output` while its status is
  /// IN_PROGRESS; once the job has finished, further updates are ignored, so a late update can never
  /// hide the final result.
  void progress(boost::json::value update);

  /// True once the job is over before its handler returned: cancelled, past its execution timeout,
  /// or failed by an error chunk of its stream. Blocking handlers poll it (or register a
  /// `std::stop_callback` on `stop_token()`) and return early; whatever they return afterwards is
  /// discarded. Coroutine handlers are interrupted at their next `co_await` without having to ask
  /// (see sluice/task.hpp).
  bool cancelled() const noexcept;

  /// A token that is stopped when `cancelled()` becomes true. Stop callbacks run on the thread that
  /// cancels, often an I/O thread: keep them short (set a flag, signal a condition).
  std::stop_token stop_token() const noexcept;

 private:
  friend class detail::JobRun;
  explicit Job(detail::JobRun& run) noexcept : run_(run) {}

  detail::JobRun& run_;
};

}  // namespace sluice
