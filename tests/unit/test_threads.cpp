// AdaptiveThreads (core/threads.h): keeps the thread count whose iterations run faster.
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <thread>

#include "core/threads.h"

namespace prefmix {
namespace {

/// 40 iterations that sleep `par_ms` when run with the threads and `ser_ms` with one.
AdaptiveThreads* Iterate(AdaptiveThreads* t, int par_ms, int ser_ms) {
  for (int i = 0; i < 40; ++i) {
    t->Begin();
    const int ms = omp_get_max_threads() > 1 ? par_ms : ser_ms;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    t->End();
  }
  return t;
}

TEST(AdaptiveThreadsTest, KeepsTheFasterSettingAndRestoresTheCount) {
  SetThreads(2);
  {
    AdaptiveThreads t(2, 20);
    Iterate(&t, 8, 1);  // one thread faster: after each probe (2 + 2 of every 20), one thread
    EXPECT_EQ(t.parallel_iterations(), 4);
    EXPECT_EQ(t.serial_iterations(), 36);
  }
  EXPECT_EQ(omp_get_max_threads(), 2);
  {
    AdaptiveThreads t(2, 20);
    Iterate(&t, 1, 8);  // the threads faster
    EXPECT_EQ(t.parallel_iterations(), 36);
    EXPECT_EQ(t.serial_iterations(), 4);
  }
  EXPECT_EQ(omp_get_max_threads(), 2);
  SetThreads(1);
  {
    AdaptiveThreads t;  // one thread set: nothing to choose
    Iterate(&t, 1, 1);
    EXPECT_EQ(t.parallel_iterations() + t.serial_iterations(), 0);
    EXPECT_EQ(omp_get_max_threads(), 1);
  }
}

}  // namespace
}  // namespace prefmix
