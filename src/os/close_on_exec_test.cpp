#include "os/close_on_exec.hpp"

#include <unistd.h>

#include <gtest/gtest.h>

namespace sluice::os {
namespace {

TEST(CloseOnExec, MarksADescriptorAndLeavesAClosedOneAlone) {
  int ends[2];
  ASSERT_EQ(::pipe(ends), 0);
  EXPECT_FALSE(IsCloseOnExec(ends[0]));
  SetCloseOnExec(ends[0]);
  EXPECT_TRUE(IsCloseOnExec(ends[0]));
  EXPECT_FALSE(IsCloseOnExec(ends[1])) << "only the descriptor given";
  SetCloseOnExec(ends[0]);  // idempotent
  EXPECT_TRUE(IsCloseOnExec(ends[0]));
  ::close(ends[0]);
  ::close(ends[1]);
  SetCloseOnExec(ends[0]);  // closed now: no effect, no crash
  EXPECT_FALSE(IsCloseOnExec(ends[0]));
}

}  // namespace
}  // namespace sluice::os
