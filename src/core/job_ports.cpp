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

}  // namespace sluice::core
