// sluice/task.hpp — the coroutine type handlers return, and the sleeps they await.
//
// `sluice::Task<T>` is `boost::asio::awaitable<T>`: a handler may `co_await` any Asio operation
// (pass `boost::asio::use_awaitable` as the completion token; in Boost 1.81 it is not the default)
// and any other `Task`. A coroutine handler runs on one of the worker's I/O threads, never on two at
// once, so its own locals need no locking; state shared between jobs still does.
//
// Cancellation: when a job is cancelled or times out, the coroutine is interrupted at its next
// `co_await`, which throws `boost::system::system_error` carrying
// `boost::asio::error::operation_aborted`. Let it propagate: the job has already been reported
// CANCELLED or TIMED_OUT. This is Asio's own per-operation cancellation, so the job's cancellation
// slot is the one `co_await boost::asio::this_coro::cancellation_state` gives. After it, every
// further `co_await` throws at once too; cleanup that must itself await first calls
// `co_await boost::asio::this_coro::reset_cancellation_state();`.
#pragma once

#include <chrono>

#include <boost/asio/awaitable.hpp>

namespace sluice {

template <class T = void>
using Task = boost::asio::awaitable<T>;

/// Suspends the calling coroutine for `duration` without holding a thread.
/// Throws `boost::system::system_error` (operation_aborted) if the job is cancelled meanwhile.
Task<void> sleep_for(std::chrono::steady_clock::duration duration);

/// Suspends the calling coroutine until `deadline`; see `sleep_for`.
Task<void> sleep_until(std::chrono::steady_clock::time_point deadline);

}  // namespace sluice
