// tests/fake_clock.hpp — a steady clock that a test moves by hand, for the job store's TTLs and
// durations without sleeping (core::JobStoreOptions::now). Not thread-safe: the test owns it and
// must outlive the store it is given to.
#pragma once

#include <chrono>

#include "core/job_store.hpp"

namespace sluice::testing {

struct FakeClock {
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::time_point() + std::chrono::hours(1);
  void Advance(std::chrono::steady_clock::duration by) { now += by; }
};

/// `options` reading the time from `clock`.
inline core::JobStoreOptions WithClock(FakeClock& clock, core::JobStoreOptions options = {}) {
  options.now = [&clock] { return clock.now; };
  return options;
}

}  // namespace sluice::testing
