#include "os/close_on_exec.hpp"

#include <fcntl.h>

namespace sluice::os {

void SetCloseOnExec(int descriptor) noexcept {
  const int flags = ::fcntl(descriptor, F_GETFD);
  if (flags >= 0 && (flags & FD_CLOEXEC) == 0) ::fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC);
}

bool IsCloseOnExec(int descriptor) noexcept {
  const int flags = ::fcntl(descriptor, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

}  // namespace sluice::os
