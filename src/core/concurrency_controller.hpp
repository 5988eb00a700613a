// core/concurrency_controller.hpp — decides the concurrency limit from the user's
// `concurrency_modifier`, and guards the worker against a modifier that misbehaves.
//
// Rules (spec/decisions.md §2): the modifier is called with the limit in force, at most once per
// `interval`; a result below 1 or above `max_limit`, or an exception, keeps the old limit and
// produces a warning. The controller holds no lock and is not thread-safe: its owner (the
// scheduler's dispatcher) calls it from one strand, which is what guarantees the modifier is never
// called concurrently with itself. Time is passed in, so the rules are tested without a clock.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace sluice::core {

class ConcurrencyController {
 public:
  using Clock = std::chrono::steady_clock;
  using Modifier = std::function<int(int)>;
  using Warn = std::function<void(const std::string&)>;

  /// `initial_limit` is clamped into [1, max_limit]. Without a modifier the limit never changes.
  ConcurrencyController(int initial_limit, int max_limit, Modifier modifier,
                        Clock::duration interval = std::chrono::milliseconds(100), Warn warn = {});

  /// Calls the modifier if at least `interval` has passed since its last call (or it was never
  /// called), and returns the limit in force afterwards.
  int Update(Clock::time_point now);

  /// The limit in force.
  int limit() const noexcept { return limit_; }
  int max_limit() const noexcept { return max_limit_; }
  bool has_modifier() const noexcept { return static_cast<bool>(modifier_); }

  /// Checks a modifier's result: the new limit, or nothing (with `reason` set) when it must be
  /// ignored.
  static std::optional<int> Validate(long long proposed, int max_limit, std::string* reason);

 private:
  int limit_;
  int max_limit_;
  Modifier modifier_;
  Clock::duration interval_;
  Warn warn_;
  std::optional<Clock::time_point> last_call_;
};

}  // namespace sluice::core
