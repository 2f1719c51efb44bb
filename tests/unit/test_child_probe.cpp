// ProbeInChild (core/io/child_probe.h): a read that crashes, hangs, runs out of memory or throws
// in the child is one prefmix::Error in the parent, which carries on; and the HDF5 readers
// guarded by it on the libhdf5 1.10.8 reproducers in tests/fuzz/hdf5-1.10.8/.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/io/child_probe.h"
#include "core/io/h5io.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

TEST(ChildProbe, AProbeThatReturnsIsSilentAndLeavesTheParentAlone) {
  int touched = 0;
  ProbeInChild(
      "f.h5", [&] { touched = 1; }, 10);
  EXPECT_EQ(touched, 0);  // the child's writes stay in the child
}

TEST(ChildProbe, AnErrorInTheChildIsTheSameErrorHere) {
  EXPECT_EQ(testing::ErrorOf([] {
              ProbeInChild(
                  "f.h5", [] { throw Error("f.h5: /items/emb has a NaN at [3, 1]"); }, 10);
            }),
            "f.h5: /items/emb has a NaN at [3, 1]");
}

TEST(ChildProbe, ACrashIsAnErrorNamingTheFile) {
  const std::string msg = testing::ErrorOf([] {
    ProbeInChild(
        "data/x.h5", [] { raise(SIGSEGV); }, 10);
  });
  EXPECT_EQ(msg.rfind("data/x.h5: the HDF5 library ", 0), 0u) << msg;
  EXPECT_NE(msg.find("the file is corrupt"), std::string::npos) << msg;
  // Under AddressSanitizer the child reports the signal and exits 1; otherwise it dies of it.
  EXPECT_TRUE(msg.find("SIGSEGV") != std::string::npos ||
              msg.find("exit code") != std::string::npos)
      << msg;
}

TEST(ChildProbe, AReadThatDoesNotEndIsStoppedAtTheLimit) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = testing::ErrorOf([] {
    ProbeInChild(
        "slow.h5", [] { std::this_thread::sleep_for(std::chrono::seconds(60)); }, 0.5);
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(msg.rfind("slow.h5: reading it took longer than 0.5 s and was stopped", 0), 0u) << msg;
  EXPECT_LT(s, 30.0);
}

TEST(ChildProbe, OutOfMemoryAndOtherExceptionsNameTheFile) {
  EXPECT_EQ(testing::ErrorOf([] {
              ProbeInChild(
                  "m.h5", [] { throw std::bad_alloc(); }, 10);
            }),
            "m.h5: out of memory while reading it (a corrupt size field?)");
  EXPECT_EQ(testing::ErrorOf([] {
              ProbeInChild(
                  "m.h5", [] { throw std::runtime_error("boom"); }, 10);
            }),
            "m.h5: cannot be read: boom");
}

TEST(ChildProbe, TheMemoryCapMakesAnAbsurdAllocationFail) {
  if (!MemoryCapApplies()) GTEST_SKIP() << "no address-space cap under AddressSanitizer";
  // 64 GiB asked for, 256 MiB allowed: the allocation fails in the child (std::bad_alloc).
  const std::string msg = testing::ErrorOf([] {
    ProbeInChild(
        "big.h5",
        [] {
          std::vector<char> v(size_t{64} << 30);
          v[0] = 1;
        },
        10, 256.0 * (1 << 20));
  });
  EXPECT_EQ(msg, "big.h5: out of memory while reading it (a corrupt size field?)");
}

TEST(ChildProbe, ReadTimeoutForScalesWithSizeAndHonoursTheVariable) {
  unsetenv("PREFMIX_READ_TIMEOUT");
  EXPECT_DOUBLE_EQ(ReadTimeoutFor(0), 10.0);
  EXPECT_DOUBLE_EQ(ReadTimeoutFor(50e6), 20.0);
  setenv("PREFMIX_READ_TIMEOUT", "2.5", 1);
  EXPECT_DOUBLE_EQ(ReadTimeoutFor(50e6), 2.5);
  setenv("PREFMIX_READ_TIMEOUT", "soon", 1);
  EXPECT_EQ(testing::ErrorOf([] { ReadTimeoutFor(1); }),
            "PREFMIX_READ_TIMEOUT='soon' is not a number of seconds >= 0");
  unsetenv("PREFMIX_READ_TIMEOUT");
}

// Each kind of libhdf5 1.10.8 failure that fuzz_h5 found (segfaults, heap overflows, a loop, a
// 4 GiB allocation, a leak) now ends in one prefmix::Error naming the file; before the guard,
// four of them killed the process or ran for minutes.
TEST(ChildProbe, LibHdf5ReproducersAreCleanErrors) {
  setenv("PREFMIX_READ_TIMEOUT", "3", 1);
  const std::string dir = std::string(PREFMIX_SOURCE_DIR) + "/tests/fuzz/hdf5-1.10.8";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string path = e.path().string();
    const std::string msg = testing::ErrorOf([&] { ReadDataset(path); });
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << path << ": " << msg;
    ++n;
  }
  unsetenv("PREFMIX_READ_TIMEOUT");
  EXPECT_EQ(n, 8);
}

}  // namespace
}  // namespace prefmix
