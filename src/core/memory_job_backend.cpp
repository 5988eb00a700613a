#include "core/memory_job_backend.hpp"

// GCC 12 pairs Asio's coroutine frame allocation with the frame's sized delete and reports a
// mismatch that is not one (see api/job_api.cpp).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <fmt/format.h>

namespace sluice::core {
namespace {

Status JobNotFound(std::string_view job_id) { return Status::NotFound(fmt::format("job {} not found", job_id)); }

}  // namespace

MemoryJobBackend::MemoryJobBackend(JobStore& store) : store_(store) {}

Task<Result<std::string>> MemoryJobBackend::Submit(NewJob job, std::optional<std::string> idempotency_key) {
  if (!idempotency_key) co_return store_.Submit(std::move(job));
  const JobStoreOptions& options = store_.options();
  std::lock_guard lock(keys_mutex_);  // never held across a suspension: this coroutine has none
  const Clock::time_point now = options.now();
  ForgetKeysLocked(now);
  if (auto known = job_by_key_.find(*idempotency_key); known != job_by_key_.end()) co_return known->second;
  Result<std::string> id = store_.Submit(std::move(job));
  if (id.ok()) {
    job_by_key_.emplace(*idempotency_key, *id);
    key_expiry_.emplace_back(now + options.result_ttl, std::move(*idempotency_key));
    ForgetKeysLocked(now);  // keeps at most max_results keys
  }
  co_return id;
}

Task<Result<JobView>> MemoryJobBackend::Find(std::string_view job_id) {
  std::optional<JobView> view = store_.Find(job_id);
  if (!view) co_return JobNotFound(job_id);
  co_return std::move(*view);
}

Task<Result<JobStatus>> MemoryJobBackend::Cancel(std::string_view job_id) { co_return store_.Cancel(job_id); }

Task<Status> MemoryJobBackend::Retry(std::string_view job_id) { co_return store_.Retry(job_id); }

Task<Result<std::size_t>> MemoryJobBackend::Purge() { co_return store_.Purge(); }

Task<Result<StreamRead>> MemoryJobBackend::ReadChunks(std::string_view job_id,
                                                      std::optional<std::size_t> from_index) {
  std::optional<StreamRead> read = store_.ReadChunks(job_id, from_index);
  if (!read) co_return JobNotFound(job_id);
  co_return std::move(*read);
}

Task<Result<std::uint64_t>> MemoryJobBackend::WaitForChange(std::string_view job_id, std::uint64_t seen,
                                                            Clock::time_point deadline) {
  const std::uint64_t version = co_await store_.WaitForChange(job_id, seen, deadline);
  co_return version;
}

Task<Result<JobView>> MemoryJobBackend::WaitForEnd(std::string_view job_id, Clock::time_point deadline) {
  std::optional<JobView> view = co_await store_.WaitForEnd(job_id, deadline);
  if (!view) co_return JobNotFound(job_id);
  co_return std::move(*view);
}

// The store answers at once; the deadline is for backends that may not.
Task<Result<JobCounts>> MemoryJobBackend::Counts(Clock::time_point /*deadline*/) { co_return store_.counts(); }

void MemoryJobBackend::ForgetExpired() {
  store_.ForgetExpired();
  std::lock_guard lock(keys_mutex_);
  ForgetKeysLocked(store_.options().now());
}

std::size_t MemoryJobBackend::idempotency_keys() const {
  std::lock_guard lock(keys_mutex_);
  return job_by_key_.size();
}

void MemoryJobBackend::ForgetKeysLocked(Clock::time_point now) {
  const std::size_t most = store_.options().max_results;
  // Every key has one expiry entry, and the TTL is the same for all, so entries are in expiry order.
  while (!key_expiry_.empty() && (key_expiry_.front().first <= now || key_expiry_.size() > most)) {
    job_by_key_.erase(key_expiry_.front().second);
    key_expiry_.pop_front();
  }
}

}  // namespace sluice::core
