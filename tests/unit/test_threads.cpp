// core/threads.h: AdaptiveThreads keeps the thread count whose iterations run faster;
// ThreadsForStepFlops sizes threads to a step's work; ScopedThreads restores the count.
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
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

TEST(ThreadsForStepFlopsTest, OneThreadPerStepFlopsQuotaWithinTheCountSet) {
  SetThreads(4);
  EXPECT_EQ(ThreadsForStepFlops(0), 1);
  EXPECT_EQ(ThreadsForStepFlops(9e6), 1);  // pal-b's SUSHI-B steps
  EXPECT_EQ(ThreadsForStepFlops(1.99 * kStepFlopsPerThread), 1);
  EXPECT_EQ(ThreadsForStepFlops(2 * kStepFlopsPerThread), 2);
  EXPECT_EQ(ThreadsForStepFlops(3.5 * kStepFlopsPerThread), 3);
  EXPECT_EQ(ThreadsForStepFlops(1e12), 4);
  EXPECT_EQ(ThreadsForStepFlops(std::nan("")), 1);
  EXPECT_EQ(ThreadsForStepFlops(-1), 1);
  SetThreads(1);
  EXPECT_EQ(ThreadsForStepFlops(1e12), 1);
}

TEST(ScopedThreadsTest, SetsForTheScopeAndRestores) {
  SetThreads(2);
  {
    ScopedThreads one(1);
    EXPECT_EQ(GetThreads(), 1);
    EXPECT_EQ(omp_get_max_threads(), 1);
    {
      ScopedThreads zero(0);  // at least one
      EXPECT_EQ(GetThreads(), 1);
    }
  }
  EXPECT_EQ(GetThreads(), 2);
  EXPECT_EQ(omp_get_max_threads(), 2);
}

}  // namespace
}  // namespace prefmix
