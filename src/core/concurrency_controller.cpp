#include "core/concurrency_controller.hpp"

#include <algorithm>
#include <exception>

#include <fmt/format.h>

#include "core/result_mapping.hpp"

namespace sluice::core {

ConcurrencyController::ConcurrencyController(int initial_limit, int max_limit, Modifier modifier,
                                             Clock::duration interval, Warn warn)
    : limit_(std::clamp(initial_limit, 1, std::max(1, max_limit))),
      max_limit_(std::max(1, max_limit)),
      modifier_(std::move(modifier)),
      interval_(interval),
      warn_(std::move(warn)) {}

std::optional<int> ConcurrencyController::Validate(long long proposed, int max_limit,
                                                   std::string* reason) {
  if (proposed < 1) {
    if (reason != nullptr) *reason = fmt::format("{} is below 1", proposed);
    return std::nullopt;
  }
  if (proposed > max_limit) {
    if (reason != nullptr) *reason = fmt::format("{} is above --max-concurrency {}", proposed, max_limit);
    return std::nullopt;
  }
  return static_cast<int>(proposed);
}

int ConcurrencyController::Update(Clock::time_point now) {
  if (!modifier_) return limit_;
  if (last_call_ && now - *last_call_ < interval_) return limit_;
  last_call_ = now;

  std::string reason;
  try {
    const int proposed = modifier_(limit_);
    if (auto accepted = Validate(proposed, max_limit_, &reason)) {
      limit_ = *accepted;
      return limit_;
    }
  } catch (...) {
    const ExceptionDescription thrown = DescribeException(std::current_exception());
    reason = fmt::format("it threw {}: {}", thrown.type_name, thrown.message);
  }
  if (warn_) {
    warn_(fmt::format("concurrency_modifier result ignored ({}); the limit stays {}", reason, limit_));
  }
  return limit_;
}

}  // namespace sluice::core
