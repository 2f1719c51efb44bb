// End-to-end: the prefmix binary from generate to train / eval / adapt / score / experiment /
// demo, every metrics file validated against data/schema/metrics.schema.json.
#include <gtest/gtest.h>

#include <fstream>

#include "core/io/h5io.h"
#include "core/io/json.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::Exists;
using testing::ExpectValidMetrics;
using testing::Lines;
using testing::ReadFile;
using testing::RunCli;
using testing::TestDir;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    auto r = RunCli("generate --kind groups --users 60 --seed 3 --out " + dir_ + "/d.h5", dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  std::string dir_;
};

TEST_F(CliTest, TrainEvalAdaptScore) {
  auto r = RunCli("train --data " + dir_ + "/d.h5 --model lowrank --k 3 --epochs 60 --out " + dir_ +
                      "/m.pfmx --quiet",
                  dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("eval --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/d.h5 --json " + dir_ +
                 "/eval.json",
             dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidMetrics(dir_ + "/eval.json");
  Json m = Json::Parse(ReadFile(dir_ + "/eval.json"));
  EXPECT_EQ(m.at("model").str(), "lowrank");
  EXPECT_GT(m.at("accuracy").number(), 0.7);
  EXPECT_EQ(m.at("provenance").at("dataset_sha256").str().size(), 64u);

  // New users: same embedding model and dimension, different people.
  r = RunCli("generate --kind groups --users 15 --seed 9 --out " + dir_ + "/new.h5", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("adapt --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/new.h5 --out " + dir_ +
                 "/users.h5 --quiet",
             dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<std::string> ids;
  RowMatrixF lat;
  ReadUserMatrix(dir_ + "/users.h5", "/users/latent", &ids, &lat);
  EXPECT_EQ(ids.size(), 15u);
  EXPECT_EQ(lat.cols(), 3);
  for (int u = 0; u < lat.rows(); ++u) EXPECT_NEAR(lat.row(u).sum(), 1.0f, 1e-4);

  r = RunCli("score --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/new.h5 --users-file " +
                 dir_ + "/users.h5 --out " + dir_ + "/scores.h5",
             dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  RowMatrixF scores;
  ReadUserMatrix(dir_ + "/scores.h5", "/scores", &ids, &scores);
  EXPECT_EQ(scores.rows(), 15);
  EXPECT_EQ(scores.cols(), 1000);
  // Without --users-file: the dataset's users matched to the training users.
  r = RunCli(
      "score --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/d.h5 --out " + dir_ + "/s2.h5",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ReadUserMatrix(dir_ + "/s2.h5", "/scores", &ids, &scores);
  EXPECT_EQ(scores.rows(), 60);
}

TEST_F(CliTest, ModelRefusesDataOfAnotherDimensionOrEmbedding) {
  auto r = RunCli(
      "train --data " + dir_ + "/d.h5 --model bt --epochs 20 --out " + dir_ + "/m.pfmx --quiet",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("generate --kind groups --users 10 --dim 10 --out " + dir_ + "/d10.h5", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli(
      "eval --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/d10.h5 --json " + dir_ + "/e.json",
      dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("dimension 10"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(24)"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/e.json"));
  r = RunCli("generate --kind lowrank --users 10 --out " + dir_ + "/lr.h5", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli(
      "score --model-file " + dir_ + "/m.pfmx --data " + dir_ + "/lr.h5 --out " + dir_ + "/s.h5",
      dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("synthetic-lowrank"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("synthetic-groups"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/s.h5"));
}

TEST_F(CliTest, ExperimentSeenUnseenSubsampleValidate) {
  const std::string d = dir_ + "/d.h5";
  auto r = RunCli("experiment --data " + d + " --model lowrank --k 3 --protocol seen --json " +
                      dir_ + "/seen.json",
                  dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidMetrics(dir_ + "/seen.json");
  Json seen = Json::Parse(ReadFile(dir_ + "/seen.json"));
  EXPECT_TRUE(seen.contains("per_group"));
  EXPECT_TRUE(seen.at("per_group").contains("planted_group"));
  EXPECT_TRUE(seen.contains("worst_group"));
  EXPECT_TRUE(seen.contains("oracle_accuracy"));

  r = RunCli("experiment --data " + d +
                 " --model lowrank --k 3 --protocol unseen --shots 0,1,5,10 --json " + dir_ +
                 "/unseen.json",
             dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidMetrics(dir_ + "/unseen.json");
  Json un = Json::Parse(ReadFile(dir_ + "/unseen.json"));
  ASSERT_EQ(un.at("shots").size(), 4u);
  EXPECT_EQ(un.at("shots").items()[0].at("k").number(), 0);
  EXPECT_EQ(un.at("n_unseen_users").number(), 12);
  EXPECT_DOUBLE_EQ(un.at("accuracy").number(), un.at("shots").items()[3].at("accuracy").number());

  r = RunCli("experiment --data " + d +
                 " --models bt,lowrank --k 2 --protocol subsample --users 20 --train-pairs 10 "
                 "--test-pairs 5 --repeats 3 --json " +
                 dir_ + "/sub.json",
             dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidMetrics(dir_ + "/sub.json");
  Json sub = Json::Parse(ReadFile(dir_ + "/sub.json"));
  ASSERT_TRUE(sub.is_array());
  EXPECT_EQ(sub.items()[0].at("repeats").size(), 3u);
  EXPECT_TRUE(sub.items()[1].contains("paired"));
  EXPECT_TRUE(sub.items()[0].contains("accuracy_std"));
}

TEST_F(CliTest, UsageErrorsAreClear) {
  const std::string d = dir_ + "/d.h5";
  auto r = RunCli("experiment --data " + d + " --model nope --json " + dir_ + "/x.json", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("unknown family 'nope'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lowrank"), std::string::npos) << r.err;
  r = RunCli("experiment --data " + d + " --model bt --protocol loo --json " + dir_ + "/x.json",
             dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--protocol"), std::string::npos) << r.err;
  r = RunCli("experiment --data " + d + " --model bt --shots 1,x --json " + dir_ + "/x.json", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--shots: 'x'"), std::string::npos) << r.err;
  r = RunCli("train --data " + d + " --model bt --epochs 3 --out " + dir_ + "/m.pfmx --device cuda",
             dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/m.pfmx"));
  r = RunCli("train --data " + d + " --model lowrank --arch mlp --epochs 3 --k 2 --out " + dir_ +
                 "/m.pfmx",
             dir_);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("--arch does not apply to family 'lowrank'"), std::string::npos) << r.err;
  r = RunCli("frobnicate", dir_);
  EXPECT_EQ(r.rc, 1);
  r = RunCli(
      "eval --model-file " + dir_ + "/nothing.pfmx --data " + d + " --json " + dir_ + "/x.json",
      dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("nothing.pfmx"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/x.json"));
  r = RunCli("train --help", dir_);
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("--epochs"), std::string::npos);
}

TEST_F(CliTest, ConfigFileIsUnderTheCommandLine) {
  std::ofstream(dir_ + "/run.ini") << "model = bt\nepochs = 2\nprotocol = unseen\n";
  auto r = RunCli("experiment --config " + dir_ + "/run.ini --data " + dir_ +
                      "/d.h5 --protocol seen --json " + dir_ + "/c.json",
                  dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  Json m = Json::Parse(ReadFile(dir_ + "/c.json"));
  EXPECT_EQ(m.at("protocol").str(), "seen");                             // the command line wins
  EXPECT_EQ(m.at("provenance").at("options").at("epochs").number(), 2);  // from the file
}

}  // namespace
}  // namespace prefmix
