#include "core/job_ports.hpp"

namespace sluice::core {

std::string_view ToString(JobStatus status) noexcept {
  switch (status) {
    case JobStatus::kInQueue: return "IN_QUEUE";
    case JobStatus::kInProgress: return "IN_PROGRESS";
    case JobStatus::kCompleted: return "COMPLETED";
    case JobStatus::kFailed: return "FAILED";
    case JobStatus::kCancelled: return "CANCELLED";
    case JobStatus::kTimedOut: return "TIMED_OUT";
  }
  return "UNKNOWN";
}

std::optional<JobStatus> JobStatusNamed(std::string_view name) noexcept {
  for (JobStatus status : {JobStatus::kInQueue, JobStatus::kInProgress, JobStatus::kCompleted, JobStatus::kFailed,
                           JobStatus::kCancelled, JobStatus::kTimedOut}) {
    if (ToString(status) == name) return status;
  }
  return std::nullopt;
}

}  // namespace sluice::core
