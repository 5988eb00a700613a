#include "redis/keys.hpp"

#include <utility>

namespace sluice::redis {

Keys::Keys(std::string queue) : queue_(std::move(queue)), prefix_("sluice:{" + queue_ + "}:") {}

bool ValidQueueName(std::string_view queue) noexcept {
  if (queue.empty() || queue.size() > 64) return false;
  for (char c : queue) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '{' || c == '}' || byte <= 0x20 || byte == 0x7f) return false;
  }
  return true;
}

}  // namespace sluice::redis
