// Atomic outputs and the output-path guard at the library level: a temporary file beside the
// output, renamed on Commit and removed otherwise; the guard's refusals; and the signal cleanup
// (SIGINT / SIGTERM remove every open temporary file and exit 130 / 143).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

int CountTemps(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    n += e.path().filename().string().find(".tmp.") != std::string::npos;
  return n;
}

TEST(AtomicOutputTest, CommitRenamesAndAbandonRemoves) {
  const std::string dir = testing::TestDir();
  {
    AtomicOutput out(dir + "/a.txt");
    std::ofstream(out.temp_path()) << "whole";
    EXPECT_EQ(CountTemps(dir), 1);
    out.Commit();
  }
  EXPECT_EQ(testing::ReadFile(dir + "/a.txt"), "whole");
  {
    AtomicOutput out(dir + "/b.txt");
    std::ofstream(out.temp_path()) << "half";
  }  // no Commit: an exception unwound past it
  EXPECT_FALSE(testing::Exists(dir + "/b.txt"));
  EXPECT_EQ(CountTemps(dir), 0);
}

TEST(AtomicOutputTest, AGroupRenamesAllOutputsOrNone) {
  const std::string dir = testing::TestDir() + "/group";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/old.txt") << "old";
  auto write = [&](const std::string& name, const std::string& text) {
    AtomicOutput out(dir + "/" + name);
    std::ofstream(out.temp_path()) << text;
    out.Commit();
  };
  {
    OutputGroup group;
    write("old.txt", "new");
    write("c.txt", "c");
    // Held, not renamed: the old file is as it was and the new one is not there yet.
    EXPECT_EQ(testing::ReadFile(dir + "/old.txt"), "old");
    EXPECT_FALSE(testing::Exists(dir + "/c.txt"));
    EXPECT_EQ(CountTemps(dir), 2);
  }  // no Commit: the second output could not be written, say
  EXPECT_EQ(testing::ReadFile(dir + "/old.txt"), "old");
  EXPECT_FALSE(testing::Exists(dir + "/c.txt"));
  EXPECT_EQ(CountTemps(dir), 0);
  {
    OutputGroup group;
    write("old.txt", "new");
    write("c.txt", "c");
    group.Commit();
    // After the group's Commit, outputs are renamed at once again.
    write("d.txt", "d");
    EXPECT_EQ(testing::ReadFile(dir + "/d.txt"), "d");
  }
  EXPECT_EQ(testing::ReadFile(dir + "/old.txt"), "new");
  EXPECT_EQ(testing::ReadFile(dir + "/c.txt"), "c");
  EXPECT_EQ(CountTemps(dir), 0);
}

TEST(AtomicOutputTest, GuardRefusesInputsLinksFifosAndMissingDirectories) {
  const std::string dir = testing::TestDir(), in = dir + "/in.txt";
  std::ofstream(in) << "input";
  EXPECT_NO_THROW(CheckOutputPath(in));  // not noted as an input yet
  NoteInput(in);
  EXPECT_THROW(CheckOutputPath(in), Error);
  EXPECT_THROW(AtomicOutput{in}, Error);
  ASSERT_EQ(::link(in.c_str(), (dir + "/hard.txt").c_str()), 0);
  EXPECT_THROW(CheckOutputPath(dir + "/hard.txt"), Error);  // the same inode
  ASSERT_EQ(::symlink((dir + "/new.txt").c_str(), (dir + "/link.txt").c_str()), 0);
  EXPECT_THROW(CheckOutputPath(dir + "/link.txt"), Error);
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0600), 0);
  EXPECT_THROW(CheckOutputPath(dir + "/fifo"), Error);
  EXPECT_THROW(CheckOutputPath(dir), Error);
  EXPECT_THROW(CheckOutputPath(dir + "/missing/x"), Error);
  EXPECT_NO_THROW(CheckOutputPath(dir + "/fresh.txt"));
  EXPECT_EQ(testing::ReadFile(in), "input");
}

/// In a child process: opens an AtomicOutput, writes its temporary file, raises `sig`.
int ChildKilledWhileWriting(const std::string& dir, int sig) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    InstallSignalCleanup();
    AtomicOutput out(dir + "/big.h5");
    std::ofstream(out.temp_path()) << "partial";
    std::ofstream(dir + "/ready");
    ::raise(sig);
    ::_exit(0);  // not reached
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(AtomicOutputTest, SignalsRemoveTemporaryFilesAndExitWithTheirCode) {
  for (int sig : {SIGINT, SIGTERM}) {
    const std::string dir = testing::TestDir() + "/sig" + std::to_string(sig);
    std::filesystem::create_directories(dir);
    EXPECT_EQ(ChildKilledWhileWriting(dir, sig), 128 + sig);
    EXPECT_TRUE(testing::Exists(dir + "/ready")) << "the child did not reach the write";
    EXPECT_EQ(CountTemps(dir), 0) << "signal " << sig << " left a temporary file";
    EXPECT_FALSE(testing::Exists(dir + "/big.h5"));
  }
}

}  // namespace
}  // namespace prefmix
