// The output-path guard every command shares (core/io/atomic_file.h): an output that is one of the
// command's inputs (by any spelling: the same path, a hard link, a symbolic link), a symbolic
// link, a FIFO or a directory is refused with exit 1 and one line naming it, before anything is
// written and with every input untouched; a command with several outputs writes all or none.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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
  // No temporary file is left behind either.
  for (const auto& e : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

}  // namespace
}  // namespace prefmix
