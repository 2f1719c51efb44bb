// The output-path guard every command shares (core/io/atomic_file.h): an output that is one of the
// command's inputs (by any spelling: the same path, a hard link, a symbolic link), a symbolic
// link, a FIFO or a directory is refused with exit 1 and one line naming it, before anything is
// written and with every input untouched; a command with several outputs writes all or none.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::Exists;
using testing::Lines;
using testing::ReadFile;
using testing::RunCli;
using testing::TestDir;

class OutputGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    data_ = dir_ + "/d.h5";
    model_ = dir_ + "/m.pfmx";
    auto r = RunCli("generate --kind groups --users 30 --seed 2 --out " + data_, dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    r = RunCli("train --data " + data_ + " --model bt --epochs 5 --quiet --out " + model_, dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    data_bytes_ = ReadFile(data_);
    model_bytes_ = ReadFile(model_);
  }
  /// Runs `args`, expects exit 1 with one line containing `path` and `what`, and the inputs as
  /// they were.
  void ExpectRefused(const std::string& args, const std::string& path, const std::string& what) {
    SCOPED_TRACE(args);
    auto r = RunCli(args, dir_);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
    EXPECT_EQ(ReadFile(data_), data_bytes_) << "the dataset changed";
    EXPECT_EQ(ReadFile(model_), model_bytes_) << "the model file changed";
  }
  std::string dir_, data_, model_, data_bytes_, model_bytes_;
};

TEST_F(OutputGuardTest, AnOutputThatIsAnInputIsRefused) {
  const std::string input = "also an input";
  ExpectRefused("train --data " + data_ + " --model bt --out " + data_, data_, input);
  ExpectRefused("eval --model-file " + model_ + " --data " + data_ + " --json " + model_, model_,
                input);
  ExpectRefused("score --model-file " + model_ + " --data " + data_ + " --out " + data_, data_,
                input);
  ExpectRefused("adapt --model-file " + model_ + " --data " + data_ + " --out " + data_, data_,
                input);
  ExpectRefused("experiment --data " + data_ + " --model bt --json " + data_, data_, input);
  // Another spelling of the same file: ./ prefix, a hard link, a symbolic link's target.
  const std::string dotted = dir_ + "/./d.h5";
  ExpectRefused("train --data " + data_ + " --model bt --out " + dotted, dotted, input);
  const std::string hard = dir_ + "/hard.h5";
  ASSERT_EQ(::link(data_.c_str(), hard.c_str()), 0);
  ExpectRefused("train --data " + hard + " --model bt --out " + data_, data_, input);
  // An input given through a link, written to its target.
  const std::string soft = dir_ + "/soft.h5";
  ASSERT_EQ(::symlink(data_.c_str(), soft.c_str()), 0);
  ExpectRefused("train --data " + soft + " --model bt --out " + data_, data_, input);
}

TEST_F(OutputGuardTest, ImportOverItsOwnInputsIsRefused) {
  const std::string items = dir_ + "/items.npy", pairs = dir_ + "/pairs.csv";
  // A 3 x 2 float32 .npy and two comparisons.
  std::string npy("\x93NUMPY\x01\x00", 8);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
  header.resize(118, ' ');
  header += '\n';
  npy += std::string(1, static_cast<char>(header.size() & 0xff)) + std::string(1, '\0') + header;
  npy += std::string(3 * 2 * 4, '\0');
  { std::ofstream(items, std::ios::binary) << npy; }
  { std::ofstream(pairs) << "user,chosen,rejected\nu1,0,1\nu2,2,1\n"; }
  const std::string items_bytes = ReadFile(items), pairs_bytes = ReadFile(pairs);
  auto r = RunCli(
      "import pairs --items " + items + " --pairs " + pairs + " --out " + dir_ + "/ok.h5", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const std::string& out : {items, pairs}) {
    r = RunCli("import pairs --items " + items + " --pairs " + pairs + " --out " + out, dir_);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_NE(r.err.find(out + ": output path is also an input"), std::string::npos) << r.err;
  }
  EXPECT_EQ(ReadFile(items), items_bytes);
  EXPECT_EQ(ReadFile(pairs), pairs_bytes);
}

TEST_F(OutputGuardTest, LinksFifosAndDirectoriesAreNotOutputs) {
  const std::string target = dir_ + "/target.pfmx", link = dir_ + "/link.pfmx";
  { std::ofstream(target) << "keep me"; }
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  ExpectRefused("train --data " + data_ + " --model bt --out " + link, link, "symbolic link");
  EXPECT_EQ(ReadFile(target), "keep me");
  struct stat st;
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link was replaced";
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  ExpectRefused("eval --model-file " + model_ + " --data " + data_ + " --json " + fifo, fifo,
                "not a regular file");
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ExpectRefused("train --data " + data_ + " --model bt --out " + dir_, dir_, "directory");
}

TEST_F(OutputGuardTest, SeveralOutputsAreAllOrNothing) {
  const std::string out = dir_ + "/a.h5";
  ExpectRefused("adapt --model-file " + model_ + " --data " + data_ + " --online --json " + dir_ +
                    "/missing/x.json --out " + out,
                dir_ + "/missing/x.json", "does not exist");
  EXPECT_FALSE(Exists(out)) << "the first output was written although the second cannot be";
  ExpectRefused("train --data " + data_ + " --model bt --epochs 2 --out " + dir_ +
                    "/t.pfmx --json " + dir_ + "/missing/t.json",
                dir_ + "/missing/t.json", "does not exist");
  EXPECT_FALSE(Exists(dir_ + "/t.pfmx")) << "train wrote its model although the report cannot be";
  // No temporary file is left behind either.
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

/// A full disk: a 64 KiB tmpfs (needs root and mount; skipped with a hint elsewhere). Every kind
/// of output (HDF5 dataset, model file, HDF5 user matrix, metrics JSON) that does not fit gives
/// exit 1 and one line naming it, no crash (HDF5's shutdown used to segfault, exit 139) and no
/// file or temporary left on the full disk.
TEST_F(OutputGuardTest, AFullDiskIsACleanErrorWithNothingLeft) {
  const std::string full = dir_ + "/full";
  std::filesystem::create_directory(full);
  if (std::system(("mount -t tmpfs -o size=64k tmpfs " + full + " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "needs root and `mount -t tmpfs` (a 64 KiB disk to fill)";
  struct Unmount {
    std::string dir;
    ~Unmount() { std::system(("umount -l " + dir).c_str()); }
  } unmount{full};
  auto expect_full = [&](const std::string& args, const std::string& out) {
    SCOPED_TRACE(args);
    auto r = RunCli(args, dir_);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(out), std::string::npos) << r.err;
    EXPECT_FALSE(Exists(out));
    for (const auto& e : std::filesystem::directory_iterator(full))
      EXPECT_EQ(e.path().filename().string().rfind("fill", 0), 0u) << "left: " << e.path();
  };
  // An empty disk too small for the default groups dataset (about 200 KB).
  expect_full("generate --kind groups --quiet --out " + full + "/g.h5", full + "/g.h5");
  // Then a disk with 4 KiB left: a model file and a user matrix of more.
  ASSERT_EQ(
      std::system(("dd if=/dev/zero of=" + full + "/fill bs=4k count=15 2>/dev/null").c_str()), 0);
  const std::string mlp = dir_ + "/mlp.pfmx";
  auto r = RunCli(
      "train --data " + data_ + " --model bt --arch mlp --epochs 2 --quiet --out " + mlp, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  expect_full("train --data " + data_ + " --model bt --arch mlp --epochs 2 --quiet --out " + full +
                  "/m.pfmx",
              full + "/m.pfmx");
  expect_full("score --model-file " + model_ + " --data " + data_ + " --out " + full + "/s.h5",
              full + "/s.h5");
  // And a disk with no room left at all: a metrics JSON of a few KB.
  ASSERT_EQ(
      std::system(("dd if=/dev/zero of=" + full + "/fill2 bs=4k count=1 2>/dev/null").c_str()), 0);
  expect_full("experiment --data " + data_ + " --model bt --epochs 2 --protocol unseen --json " +
                  full + "/x.json",
              full + "/x.json");
  // train --out elsewhere with --json on the full disk: neither output is left.
  expect_full("train --data " + data_ + " --model bt --epochs 2 --quiet --out " + dir_ +
                  "/both.pfmx --json " + full + "/both.json",
              full + "/both.json");
  EXPECT_FALSE(Exists(dir_ + "/both.pfmx"));
  // An older file at --out is kept when the other output does not fit (train used to delete it).
  { std::ofstream(dir_ + "/old.pfmx") << "old model"; }
  expect_full("train --data " + data_ + " --model bt --epochs 2 --quiet --out " + dir_ +
                  "/old.pfmx --json " + full + "/old.json",
              full + "/old.json");
  EXPECT_EQ(ReadFile(dir_ + "/old.pfmx"), "old model");
  // adapt (online, a family with an online user step): --out elsewhere, --json on the full disk.
  const std::string micro = dir_ + "/micro.pfmx";
  r = RunCli("train --data " + data_ + " --model micro --epochs 2 --quiet --out " + micro, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  expect_full("adapt --model-file " + micro + " --data " + data_ + " --online --quiet --out " +
                  dir_ + "/ad.h5 --json " + full + "/ad.json",
              full + "/ad.json");
  EXPECT_FALSE(Exists(dir_ + "/ad.h5"));
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace prefmix

namespace prefmix {
namespace {

/// A dataset on which libhdf5 1.10.8 itself segfaults (tests/fuzz/hdf5-1.10.8/): `train` and
/// `inspect` exit 1 with one line naming it (the read runs in a child first), no model file.
/// ("crashed ... (SIGSEGV)"; under AddressSanitizer "failed ... (exit code 1)").
TEST(CorruptHdf5Test, ALibraryCrashIsOneLineAndNoOutput) {
  const std::string dir = TestDir();
  const std::string bad =
      std::string(PREFMIX_SOURCE_DIR) + "/tests/fuzz/hdf5-1.10.8/H5HG_read-segv";
  for (const std::string args :
       {"train --model bt --data " + bad + " --out " + dir + "/m.pfmx", "inspect " + bad}) {
    SCOPED_TRACE(args);
    auto r = RunCli(args, dir);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(bad + ": the HDF5 library "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("the file is corrupt"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(Exists(dir + "/m.pfmx"));
}

}  // namespace
}  // namespace prefmix
