#include "core/job_store.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <unordered_map>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "core/posted_handler.hpp"

namespace sluice::core {
namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t Milliseconds(Clock::duration duration) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
}

// A coroutine parked in WaitForChange. Woken by cancelling its timer on the timer's own executor
// (the waiting coroutine's strand), so the timer is only ever touched from there.
struct ChangeWaiter {
  ChangeWaiter(const asio::any_io_executor& executor, bool until_ended) : timer(executor), until_ended(until_ended) {}
  asio::steady_timer timer;
  const bool until_ended;  // woken only when the job ends (or is forgotten), not by every change
};

void Wake(const std::shared_ptr<ChangeWaiter>& waiter) {
  asio::post(waiter->timer.get_executor(), [waiter] { waiter->timer.cancel(); });
}

struct JobRecord {
  std::string id;
  JobStatus status = JobStatus::kInQueue;
  bool taken = false;          // handed to the scheduler and not yet ended
  // Cancelled while taken: the scheduler may have been handed the job but not yet know it (between
  // Take and its backlog), so the cancel is sent again when the job starts.
  bool cancel_requested = false;
  std::uint64_t ticket = 0;    // which queue entry is this job's current one
  std::uint64_t version = 1;
  Clock::time_point submitted_at;
  Clock::time_point started_at;   // valid when `started`
  Clock::time_point finished_at;  // valid when terminal
  bool started = false;
  std::optional<Clock::time_point> queue_deadline;  // from policy.ttl
  std::optional<Clock::duration> execution_timeout;
  json::object request;   // dropped once the job COMPLETED (it can no longer be retried)
  json::object result;    // terminal: the outcome; IN_PROGRESS: {"output": latest progress}
  std::string webhook;
  std::vector<json::value> chunks;
  std::size_t stream_cursor = 0;  // RunPod's "new since the last /stream call"
  std::vector<std::shared_ptr<ChangeWaiter>> waiters;
};

}  // namespace

class JobStore::Impl {
 public:
  explicit Impl(JobStoreOptions options) : options_(std::move(options)) {
    if (!options_.now) options_.now = [] { return Clock::now(); };
  }

  // What to do once the lock is released: wake waiters, report finished jobs.
  struct Deferred {
    std::vector<std::shared_ptr<ChangeWaiter>> waiters;
    std::vector<JobView> finished;
    std::vector<std::string> to_cancel;
  };

  // The finish listener goes first: a /runsync answered once its waiter wakes must find the job
  // in the listener's records already (its /metrics histograms), even when this thread is
  // preempted between the two.
  void Run(Deferred& deferred) {
    if (finish_listener_) {
      for (const JobView& view : deferred.finished) finish_listener_(view);
    }
    for (const auto& waiter : deferred.waiters) Wake(waiter);
    if (canceller_) {
      for (const std::string& id : deferred.to_cancel) canceller_(id);
    }
  }

  // An early return from inside the lock: releases it and runs what was deferred so far (the
  // sweep may have forgotten jobs whose waiters must be woken), then returns `status`.
  Status ReleaseAndRun(std::unique_lock<std::mutex>& lock, Deferred& deferred, Status status) {
    lock.unlock();
    Run(deferred);
    return status;
  }

  JobRecord* FindLocked(std::string_view id, Clock::time_point now, Deferred& deferred) {
    SweepLocked(now, deferred);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return nullptr;
    JobRecord& job = *it->second;
    // A terminal job past its TTL that the sweep has not reached (it runs in finish order, and a
    // retried job's older entry goes first) is already forgotten as far as callers can tell.
    if (IsTerminal(job.status) && job.finished_at + options_.result_ttl <= now) return nullptr;
    ExpireIfDueLocked(job, now, deferred);
    return &job;
  }

  void ChangedLocked(JobRecord& job, Deferred& deferred) {
    ++job.version;
    const bool ended = IsTerminal(job.status);
    std::erase_if(job.waiters, [&](std::shared_ptr<ChangeWaiter>& waiter) {
      if (!ended && waiter->until_ended) return false;
      deferred.waiters.push_back(std::move(waiter));
      return true;
    });
  }

  // A report from the scheduler about a job it holds: `apply(job, deferred)` changes the job under
  // the lock and says whether it did (a report that no longer fits the job's state is dropped).
  template <class Apply>
  void ApplyReport(std::string_view job_id, Apply&& apply) {
    Deferred deferred;
    {
      std::lock_guard lock(mutex_);
      auto it = jobs_.find(job_id);
      if (it == jobs_.end() || !apply(*it->second, deferred)) return;
      ChangedLocked(*it->second, deferred);
    }
    Run(deferred);
  }

  Task<std::optional<JobView>> Wait(std::string_view job_id, std::uint64_t seen, Clock::time_point deadline,
                                    bool until_ended);

  JobView ViewLocked(const JobRecord& job, bool with_result = true) const {
    JobView view;
    view.id = job.id;
    view.status = job.status;
    view.version = job.version;
    view.webhook = job.webhook;
    if (job.started) {
      view.delay_ms = Milliseconds(job.started_at - job.submitted_at);
      if (IsTerminal(job.status)) view.execution_ms = Milliseconds(job.finished_at - job.started_at);
    }
    if (with_result) view.result = job.result;
    return view;
  }

  // Every path to a terminal status goes through here.
  void FinishLocked(JobRecord& job, JobStatus status, json::object result, Clock::time_point now,
                    Deferred& deferred) {
    if (job.status == JobStatus::kInQueue && !job.taken) {
      --queued_;
      DropQueueEntryLocked(job);
    }
    if (job.taken) --in_progress_;
    job.taken = false;
    job.cancel_requested = false;
    job.status = status;
    job.result = std::move(result);
    job.finished_at = now;
    job.stream_cursor = std::min(job.stream_cursor, job.chunks.size());
    if (status == JobStatus::kCompleted) job.request = json::object();
    switch (status) {
      case JobStatus::kCompleted: ++counts_.completed; break;
      case JobStatus::kFailed: ++counts_.failed; break;
      case JobStatus::kCancelled: ++counts_.cancelled; break;
      case JobStatus::kTimedOut: ++counts_.timed_out; break;
      default: break;
    }
    ChangedLocked(job, deferred);
    finished_order_.push_back({now + options_.result_ttl, &job, job.version});
    ++retained_;
    // The listener needs the result only to send it to a webhook; copying it for every job would
    // cost a JSON copy per job for nothing.
    if (finish_listener_) deferred.finished.push_back(ViewLocked(job, !job.webhook.empty()));
  }

  void ExpireIfDueLocked(JobRecord& job, Clock::time_point now, Deferred& deferred) {
    if (job.status != JobStatus::kInQueue || job.taken || !job.queue_deadline) return;
    if (*job.queue_deadline > now) return;
    json::object result;
    result.emplace("error", "job expired: it waited in the queue longer than its policy.ttl");
    FinishLocked(job, JobStatus::kTimedOut, std::move(result), now, deferred);
  }

  // Forgets terminal jobs past their TTL, and the oldest beyond max_results.
  void SweepLocked(Clock::time_point now, Deferred& deferred) {
    while (!finished_order_.empty()) {
      const FinishedEntry& entry = finished_order_.front();
      // An entry is current only while its job still has the version it was written with; a job
      // retried since has a newer entry (or none yet) and is left alone here.
      const bool current = entry.job->version == entry.version && IsTerminal(entry.job->status);
      if (current && entry.expires_at > now && retained_ <= options_.max_results) break;
      if (current) {
        JobRecord* job = entry.job;
        for (auto& waiter : job->waiters) deferred.waiters.push_back(std::move(waiter));
        --retained_;
        jobs_.erase(jobs_.find(std::string_view(job->id)));
      }
      finished_order_.pop_front();
    }
  }

  // A version 4 UUID: 122 random bits. Submit retries in the (astronomically unlikely) case the
  // id is taken.
  std::string NewIdLocked() {
    const std::uint64_t high = random_(), low = random_();
    return fmt::format("{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", high >> 32, (high >> 16) & 0xffff, high & 0x0fff,
                       0x8000 | ((low >> 48) & 0x3fff), low & 0xffffffffffffULL);
  }

  void EnqueueLocked(JobRecord& job) {
    job.ticket = ++next_ticket_;
    queue_.push_back({&job, job.ticket});
    ++queued_;
  }

  // Removes the queue entry of a job that ends without being taken (cancelled, expired), if it is
  // still there: its record may be forgotten, and freed, long before a Take would reach the entry.
  // Tickets grow with every push_back, so the queue is sorted by ticket.
  void DropQueueEntryLocked(const JobRecord& job) {
    auto it = std::lower_bound(queue_.begin(), queue_.end(), job.ticket,
                               [](const QueueEntry& entry, std::uint64_t ticket) { return entry.ticket < ticket; });
    if (it != queue_.end() && it->ticket == job.ticket && it->job == &job) queue_.erase(it);
  }

  // The first current queue entry, with expired ones finished on the way; null when none.
  JobRecord* PopQueuedLocked(Clock::time_point now, Deferred& deferred) {
    while (!queue_.empty()) {
      QueueEntry entry = queue_.front();
      queue_.pop_front();
      JobRecord& job = *entry.job;
      if (job.ticket != entry.ticket || job.status != JobStatus::kInQueue || job.taken) continue;
      ExpireIfDueLocked(job, now, deferred);
      if (job.status != JobStatus::kInQueue) continue;
      return &job;
    }
    return nullptr;
  }

  struct QueueEntry {
    JobRecord* job;
    std::uint64_t ticket;
  };
  struct FinishedEntry {
    Clock::time_point expires_at;
    JobRecord* job;
    std::uint64_t version;
  };
  // The ids the map holds are random UUIDs, so a few of their bytes hash as well as all of them,
  // and this is every lookup's first step. Any string may be looked up; it only picks a bucket.
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      if (text.size() < 16) return std::hash<std::string_view>{}(text);
      std::uint64_t head, tail;
      std::memcpy(&head, text.data(), sizeof head);
      std::memcpy(&tail, text.data() + text.size() - sizeof tail, sizeof tail);
      return static_cast<std::size_t>((head ^ (tail * 0x9E3779B97F4A7C15ULL)) * 0xBF58476D1CE4E5B9ULL);
    }
  };

  JobStoreOptions options_;
  std::function<bool(std::string_view)> canceller_;
  std::function<void(const JobView&)> finish_listener_;

  mutable std::mutex mutex_;
  // Keyed by a view of the record's own id. Queue and finish-order entries point into the
  // records: a record is erased only through its current finish-order entry, after every older
  // entry of it has left the front of that (time-ordered) deque; and a queue entry leaves the
  // queue when its job is taken or ends there (DropQueueEntryLocked), so only queued, non-terminal
  // records are pointed to from the queue and no entry outlives its record.
  std::unordered_map<std::string_view, std::unique_ptr<JobRecord>, StringHash, std::equal_to<>> jobs_;
  std::deque<QueueEntry> queue_;
  std::deque<FinishedEntry> finished_order_;
  std::size_t queued_ = 0;       // current queue entries
  std::size_t in_progress_ = 0;  // taken, not ended
  std::size_t retained_ = 0;     // terminal records kept
  std::uint64_t next_ticket_ = 0;
  JobCounts counts_;
  bool closed_ = false;
  std::optional<PostedHandler<>> take_waiter_;
  std::mt19937_64 random_{std::random_device{}()};
};

JobStore::JobStore(JobStoreOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

JobStore::~JobStore() = default;

void JobStore::SetCanceller(std::function<bool(std::string_view)> canceller) {
  std::lock_guard lock(impl_->mutex_);
  impl_->canceller_ = std::move(canceller);
}

void JobStore::SetFinishListener(std::function<void(const JobView&)> listener) {
  std::lock_guard lock(impl_->mutex_);
  impl_->finish_listener_ = std::move(listener);
}

Result<std::string> JobStore::Submit(NewJob new_job) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  std::optional<PostedHandler<>> waiter;
  std::string id;
  {
    std::unique_lock lock(impl.mutex_);
    if (impl.closed_) {
      ++impl.counts_.rejected_closed;
      return Status::Unavailable("the worker is shutting down and takes no new jobs");
    }
    const Clock::time_point now = impl.options_.now();
    impl.SweepLocked(now, deferred);
    if (impl.queued_ >= impl.options_.max_queue) {
      ++impl.counts_.rejected_queue_full;
      return impl.ReleaseAndRun(
          lock, deferred,
          Status::ResourceExhausted(fmt::format("the queue is full: {} jobs are waiting (--max-queue)", impl.queued_)));
    }
    auto job = std::make_unique<JobRecord>();
    job->submitted_at = now;
    job->request = std::move(new_job.request);
    job->webhook = std::move(new_job.webhook);
    job->execution_timeout =
        new_job.execution_timeout ? new_job.execution_timeout : impl.options_.default_execution_timeout;
    if (new_job.ttl) job->queue_deadline = now + *new_job.ttl;
    JobRecord& record = *job;
    for (;;) {
      record.id = impl.NewIdLocked();
      auto [slot, inserted] = impl.jobs_.try_emplace(std::string_view(record.id), nullptr);
      if (!inserted) continue;
      slot->second = std::move(job);
      break;
    }
    id = record.id;
    impl.EnqueueLocked(record);
    ++impl.counts_.submitted;
    waiter.swap(impl.take_waiter_);
  }
  if (waiter) waiter->Post();
  impl.Run(deferred);
  return id;
}

std::optional<JobView> JobStore::Find(std::string_view job_id) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  std::optional<JobView> view;
  {
    std::lock_guard lock(impl.mutex_);
    if (JobRecord* job = impl.FindLocked(job_id, impl.options_.now(), deferred)) view = impl.ViewLocked(*job);
  }
  impl.Run(deferred);
  return view;
}

Result<JobStatus> JobStore::Cancel(std::string_view job_id) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  JobStatus status;
  {
    std::unique_lock lock(impl.mutex_);
    const Clock::time_point now = impl.options_.now();
    JobRecord* job = impl.FindLocked(job_id, now, deferred);
    if (job == nullptr) {
      return impl.ReleaseAndRun(lock, deferred, Status::NotFound(fmt::format("job {} not found", job_id)));
    }
    if (IsTerminal(job->status)) {
      status = job->status;
    } else if (!job->taken) {
      impl.FinishLocked(*job, JobStatus::kCancelled, json::object(), now, deferred);
      status = JobStatus::kCancelled;
    } else {
      job->cancel_requested = true;
      deferred.to_cancel.push_back(job->id);
      status = JobStatus::kCancelled;
    }
  }
  impl.Run(deferred);
  return status;
}

Status JobStore::Retry(std::string_view job_id) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  std::optional<PostedHandler<>> waiter;
  {
    std::unique_lock lock(impl.mutex_);
    if (impl.closed_) return Status::Unavailable("the worker is shutting down and takes no new jobs");
    const Clock::time_point now = impl.options_.now();
    JobRecord* job = impl.FindLocked(job_id, now, deferred);
    if (job == nullptr) {
      return impl.ReleaseAndRun(lock, deferred, Status::NotFound(fmt::format("job {} not found", job_id)));
    }
    if (job->status != JobStatus::kFailed && job->status != JobStatus::kTimedOut &&
        job->status != JobStatus::kCancelled) {
      return impl.ReleaseAndRun(lock, deferred,
                                Status::FailedPrecondition(fmt::format(
                                    "job {} is {}; only FAILED, TIMED_OUT or CANCELLED jobs can be retried",
                                    job->id, ToString(job->status))));
    }
    if (impl.queued_ >= impl.options_.max_queue) {
      ++impl.counts_.rejected_queue_full;
      return impl.ReleaseAndRun(
          lock, deferred,
          Status::ResourceExhausted(fmt::format("the queue is full: {} jobs are waiting (--max-queue)", impl.queued_)));
    }
    --impl.retained_;  // its finish-order entry is stale from now on (the version changes)
    job->status = JobStatus::kInQueue;
    job->started = false;
    job->result = json::object();
    job->chunks.clear();
    job->stream_cursor = 0;
    job->submitted_at = now;
    if (job->queue_deadline) job->queue_deadline.reset();  // the ttl counted from the first submission
    impl.ChangedLocked(*job, deferred);
    impl.EnqueueLocked(*job);
    ++impl.counts_.retried;
    waiter.swap(impl.take_waiter_);
  }
  if (waiter) waiter->Post();
  impl.Run(deferred);
  return Status::Ok();
}

std::size_t JobStore::Purge() {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  std::size_t removed = 0;
  {
    std::lock_guard lock(impl.mutex_);
    const Clock::time_point now = impl.options_.now();
    while (JobRecord* job = impl.PopQueuedLocked(now, deferred)) {
      impl.FinishLocked(*job, JobStatus::kCancelled, json::object(), now, deferred);
      ++removed;
    }
  }
  impl.Run(deferred);
  return removed;
}

std::optional<StreamRead> JobStore::ReadChunks(std::string_view job_id, std::optional<std::size_t> from_index) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  std::optional<StreamRead> read;
  {
    std::lock_guard lock(impl.mutex_);
    JobRecord* job = impl.FindLocked(job_id, impl.options_.now(), deferred);
    if (job != nullptr) {
      read.emplace();
      read->job = impl.ViewLocked(*job, IsTerminal(job->status));
      const std::size_t from = std::min(from_index.value_or(job->stream_cursor), job->chunks.size());
      read->chunks.assign(job->chunks.begin() + static_cast<std::ptrdiff_t>(from), job->chunks.end());
      read->next_index = job->chunks.size();
      if (!from_index) job->stream_cursor = job->chunks.size();
    }
  }
  impl.Run(deferred);
  return read;
}

Task<std::uint64_t> JobStore::WaitForChange(std::string_view job_id, std::uint64_t seen, Clock::time_point deadline) {
  const std::optional<JobView> job = co_await impl_->Wait(job_id, seen, deadline, false);
  co_return job ? job->version : 0;
}

// Not a coroutine itself: it hands back the wait's own (lazily started) coroutine, one frame
// fewer per /runsync.
Task<std::optional<JobView>> JobStore::WaitForEnd(std::string_view job_id, Clock::time_point deadline) {
  return impl_->Wait(job_id, 0, deadline, true);
}

// The store is kept alive by the caller (it outlives every request), so `this` is safe here.
// Returns the job as it is when the wait ends, with its result only when waiting for the end.
Task<std::optional<JobView>> JobStore::Impl::Wait(std::string_view job_id, std::uint64_t seen,
                                                  Clock::time_point deadline, bool until_ended) {
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  std::shared_ptr<ChangeWaiter> waiter;
  {
    Deferred deferred;
    std::optional<JobView> view;
    {
      std::lock_guard lock(mutex_);
      JobRecord* job = FindLocked(job_id, options_.now(), deferred);
      if (job != nullptr) {
        const bool wait = until_ended ? !IsTerminal(job->status) : job->version == seen;
        if (wait) {
          waiter = std::make_shared<ChangeWaiter>(executor, until_ended);
          job->waiters.push_back(waiter);
        } else {
          view = ViewLocked(*job, until_ended);
        }
      }
    }
    Run(deferred);
    if (!waiter) co_return view;
  }
  // The wake-up is posted to this coroutine's executor, so it runs only after this wait has
  // started, and cancels it; reaching the deadline ends it as well.
  waiter->timer.expires_at(deadline);
  co_await waiter->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  Deferred deferred;
  std::optional<JobView> view;
  {
    std::lock_guard lock(mutex_);
    JobRecord* job = FindLocked(job_id, options_.now(), deferred);
    if (job != nullptr) {
      std::erase(job->waiters, waiter);
      view = ViewLocked(*job, until_ended);
    }
  }
  Run(deferred);
  co_return view;
}

void JobStore::Close() {
  std::optional<PostedHandler<>> waiter;
  {
    std::lock_guard lock(impl_->mutex_);
    impl_->closed_ = true;
    waiter.swap(impl_->take_waiter_);
  }
  if (waiter) waiter->Post();
}

void JobStore::CancelAll() {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  {
    std::lock_guard lock(impl.mutex_);
    const Clock::time_point now = impl.options_.now();
    while (JobRecord* job = impl.PopQueuedLocked(now, deferred)) {
      impl.FinishLocked(*job, JobStatus::kCancelled, json::object(), now, deferred);
    }
    for (const auto& [id, job] : impl.jobs_) {
      if (!job->taken) continue;
      job->cancel_requested = true;
      deferred.to_cancel.push_back(job->id);
    }
  }
  impl.Run(deferred);
}

void JobStore::ForgetExpired() {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  {
    std::lock_guard lock(impl.mutex_);
    impl.SweepLocked(impl.options_.now(), deferred);
  }
  impl.Run(deferred);
}

JobCounts JobStore::counts() const {
  std::lock_guard lock(impl_->mutex_);
  JobCounts counts = impl_->counts_;
  counts.in_queue = impl_->queued_;
  counts.in_progress = impl_->in_progress_;
  counts.retained = impl_->retained_;
  return counts;
}

const JobStoreOptions& JobStore::options() const noexcept { return impl_->options_; }

Task<std::vector<JobRequest>> JobStore::Take(std::size_t max_jobs) {
  Impl& impl = *impl_;
  max_jobs = std::max<std::size_t>(max_jobs, 1);  // the contract says >= 1; 0 would spin
  for (;;) {
    std::vector<JobRequest> taken;
    Impl::Deferred deferred;
    bool exhausted = false;
    {
      std::lock_guard lock(impl.mutex_);
      const Clock::time_point now = impl.options_.now();
      while (taken.size() < max_jobs) {
        JobRecord* job = impl.PopQueuedLocked(now, deferred);
        if (job == nullptr) break;
        --impl.queued_;
        ++impl.in_progress_;
        job->taken = true;
        JobRequest request;
        request.id = job->id;
        request.request = job->request;  // the record keeps its copy for a retry
        request.execution_timeout = job->execution_timeout;
        taken.push_back(std::move(request));
      }
      exhausted = taken.empty() && impl.closed_;
    }
    impl.Run(deferred);
    if (!taken.empty() || exhausted) co_return taken;
    // Park until a Submit, a Retry or Close. Checking and parking are two critical sections, so
    // the initiation checks again and completes at once if something came in between.
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&impl](auto handler) {
          PostedHandler<> waiter(std::move(handler));
          std::unique_lock lock(impl.mutex_);
          if (impl.queued_ > 0 || impl.closed_) {
            lock.unlock();
            waiter.Post();
            return;
          }
          impl.take_waiter_.emplace(std::move(waiter));
        },
        asio::use_awaitable);
  }
}

void JobStore::OnStarted(const std::string& job_id) {
  impl_->ApplyReport(job_id, [this](JobRecord& job, Impl::Deferred& deferred) {
    if (job.status != JobStatus::kInQueue || !job.taken) return false;
    job.status = JobStatus::kInProgress;
    job.started = true;
    job.started_at = impl_->options_.now();
    if (job.cancel_requested) deferred.to_cancel.push_back(job.id);
    return true;
  });
}

void JobStore::OnProgress(const std::string& job_id, const json::value& update) {
  impl_->ApplyReport(job_id, [&update](JobRecord& job, Impl::Deferred&) {
    if (job.status != JobStatus::kInProgress) return false;
    job.result["output"] = update;
    return true;
  });
}

void JobStore::OnChunk(const std::string& job_id, const json::value& chunk) {
  impl_->ApplyReport(job_id, [&chunk](JobRecord& job, Impl::Deferred&) {
    if (IsTerminal(job.status)) return false;
    job.chunks.push_back(chunk);
    return true;
  });
}

void JobStore::OnFinished(const std::string& job_id, JobOutcome outcome) {
  Impl& impl = *impl_;
  Impl::Deferred deferred;
  {
    std::lock_guard lock(impl.mutex_);
    auto it = impl.jobs_.find(std::string_view(job_id));
    if (it == impl.jobs_.end()) return;
    JobRecord& job = *it->second;
    if (!job.taken) return;  // ended already (cancelled in the queue, or a stale report)
    const Clock::time_point now = impl.options_.now();
    impl.FinishLocked(job, outcome.status, std::move(outcome.result), now, deferred);
    impl.SweepLocked(now, deferred);  // keeps max_results true as jobs end, not only at requests
  }
  impl.Run(deferred);
}

}  // namespace sluice::core
