// core/memory_job_backend.hpp — the in-memory JobBackend: the job API's port (job_backend.hpp)
// answered by a JobStore in this process, for `--rp_serve_api`.
//
// Each call is the store's synchronous one, returned by a coroutine that never suspends (but the
// waits); the store's "unknown job" answers become kNotFound. The one thing the store does not
// do is idempotency keys: they are kept here, a key → job id map, each key for the store's
// `result_ttl` from its first submission (measured on the store's clock, so tests can move it),
// and at most the store's `max_results` keys (the oldest forgotten first). A repeated key returns
// the first job's id even if that job was forgotten meanwhile.
//
// Threads: thread-safe, like the store. Submissions with a key are serialised by a mutex of their
// own (held across the store's Submit, so two requests with one key make one job); those without
// a key do not touch it. The backend borrows the store, which must outlive it.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/job_backend.hpp"
#include "core/job_store.hpp"

namespace sluice::core {

class MemoryJobBackend final : public JobBackend {
 public:
  explicit MemoryJobBackend(JobStore& store);
  MemoryJobBackend(const MemoryJobBackend&) = delete;
  MemoryJobBackend& operator=(const MemoryJobBackend&) = delete;

  Task<Result<std::string>> Submit(NewJob job, std::optional<std::string> idempotency_key) override;
  Task<Result<JobView>> Find(std::string_view job_id) override;
  Task<Result<JobStatus>> Cancel(std::string_view job_id) override;
  Task<Status> Retry(std::string_view job_id) override;
  Task<Result<std::size_t>> Purge() override;
  Task<Result<StreamRead>> ReadChunks(std::string_view job_id, std::optional<std::size_t> from_index) override;
  Task<Result<std::uint64_t>> WaitForChange(std::string_view job_id, std::uint64_t seen,
                                            Clock::time_point deadline) override;
  Task<Result<JobView>> WaitForEnd(std::string_view job_id, Clock::time_point deadline) override;
  Task<Result<JobCounts>> Counts(Clock::time_point deadline) override;

  /// The store's ForgetExpired, and the idempotency keys past their time. Called every second by
  /// the job API's sweep, so an idle worker gives memory back.
  void ForgetExpired();

  /// Idempotency keys remembered now (tests).
  std::size_t idempotency_keys() const;

 private:
  // Forgets keys past their time, and the oldest beyond max_results. Needs keys_mutex_.
  void ForgetKeysLocked(Clock::time_point now);

  JobStore& store_;
  mutable std::mutex keys_mutex_;
  std::unordered_map<std::string, std::string> job_by_key_;                 // guarded by keys_mutex_
  std::deque<std::pair<Clock::time_point, std::string>> key_expiry_;        // guarded; expiry order
};

}  // namespace sluice::core
