// The LibTorch module (core/torch/module.h, docs/development.md#the-libtorch-module): the CLI is
// not linked against LibTorch; --help, inspect, the families without LibTorch code and prediction
// with pal models run without the module; the families that need it load it on demand, and a
// missing module is one clear line (exit 1) naming its path, with no output written.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/error.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::CliResult;
using testing::Exists;
using testing::Lines;
using testing::RunCli;
using testing::TestDir;

/// Sets PREFMIX_TORCH_MODULE for the children the test starts, and restores it.
class ModulePath {
 public:
  explicit ModulePath(const std::string& path) {
    if (const char* old = std::getenv("PREFMIX_TORCH_MODULE"))
      old_ = std::make_unique<std::string>(old);
    setenv("PREFMIX_TORCH_MODULE", path.c_str(), 1);
  }
  ~ModulePath() {
    if (old_)
      setenv("PREFMIX_TORCH_MODULE", old_->c_str(), 1);
    else
      unsetenv("PREFMIX_TORCH_MODULE");
  }

 private:
  std::unique_ptr<std::string> old_;
};

std::string Ldd(const std::string& file) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(("ldd " + file + " 2>&1").c_str(), "r"), pclose);
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  return out;
}

/// A small planted dataset in dir (40 people, 10 pairs each, 60 items); "" when generate failed.
std::string SmallDataset(const std::string& dir) {
  const std::string data = dir + "/d.h5";
  const auto r = RunCli(
      "generate --kind groups --users 40 --pairs-per-user 10 --items 60 --dim 8 --quiet --out " +
          data,
      dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  return r.rc == 0 ? data : "";
}

TEST(TorchModuleTest, TheCliIsNotLinkedAgainstLibTorch) {
  const std::string needed = Ldd(PREFMIX_CLI);
  ASSERT_NE(needed.find("libc.so"), std::string::npos) << needed;  // ldd worked
  EXPECT_EQ(needed.find("libtorch"), std::string::npos) << needed;
  EXPECT_EQ(needed.find("libc10"), std::string::npos) << needed;
}

TEST(TorchModuleTest, FamiliesWithoutLibTorchCodeRunWithoutTheModule) {
  const std::string dir = TestDir();
  const std::string data = SmallDataset(dir);
  ASSERT_FALSE(data.empty());
  CliResult r;
  // pal-b is trained with the module (its training is LibTorch code) ...
  r = RunCli(
      "train --data " + data + " --model pal-b --epochs 2 --quiet --out " + dir + "/pal.pfmx", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  ModulePath missing(dir + "/no-such-module.so");
  r = RunCli("--help", dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  r = RunCli("options", dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("vpl"), std::string::npos) << "families are listed without the module";
  r = RunCli("train --help", dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("--vpl-adapt"), std::string::npos) << "vpl's options without the module";
  r = RunCli("inspect " + data, dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  for (const char* family : {"bt", "lowrank", "em-bt", "micro"}) {
    r = RunCli(Cat("train --data ", data, " --model ", family, " --epochs 5 --quiet --out ", dir,
                   "/", family, ".pfmx"),
               dir);
    EXPECT_EQ(r.rc, 0) << family << ": " << r.err;
  }
  // ... and predicts, adapts and scores without it.
  r = RunCli(
      "eval --model-file " + dir + "/pal.pfmx --data " + data + " --json " + dir + "/pal.json",
      dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(Exists(dir + "/pal.json"));
}

TEST(TorchModuleTest, AMissingModuleIsOneLineNamingItsPath) {
  const std::string dir = TestDir();
  const std::string data = SmallDataset(dir);
  ASSERT_FALSE(data.empty());
  CliResult r;
  const std::string path = dir + "/no-such-module.so";
  ModulePath missing(path);
  for (const std::string args : {"--model vpl", "--model pal-a", "--model bt --arch mlp"}) {
    SCOPED_TRACE(args);
    r = RunCli("train --data " + data + " " + args + " --epochs 1 --quiet --out " + dir + "/m.pfmx",
               dir);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("LibTorch module"), std::string::npos) << r.err;
    EXPECT_FALSE(Exists(dir + "/m.pfmx"));
  }
}

TEST(TorchModuleTest, TorchFamiliesLoadTheModuleOnDemand) {
  const std::string dir = TestDir();
  const std::string data = SmallDataset(dir);
  ASSERT_FALSE(data.empty());
  CliResult r;
  for (const std::string args : {"--model vpl", "--model bt --arch mlp"}) {
    SCOPED_TRACE(args);
    r = RunCli("train --data " + data + " " + args + " --epochs 2 --quiet --out " + dir + "/m.pfmx",
               dir);
    ASSERT_EQ(r.rc, 0) << r.err;
    r = RunCli("eval --model-file " + dir + "/m.pfmx --data " + data + " --json " + dir + "/m.json",
               dir);
    EXPECT_EQ(r.rc, 0) << r.err;
  }
}

}  // namespace
}  // namespace prefmix
