// End-to-end: the prefmix binary from generate to train / eval / adapt / score / experiment /
// demo, every metrics file validated against data/schema/metrics.schema.json.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

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

// Users the model never saw: an error naming them unless the population model is asked for
// (it used to give them the population model with only a count in the JSON).
TEST_F(CliTest, UnknownUsersAreAnErrorUnlessAskedFor) {
  const std::string m = dir_ + "/m.pfmx", d61 = dir_ + "/d61.h5";
  auto r = RunCli(
      "train --data " + dir_ + "/d.h5 --model lowrank --k 3 --epochs 20 --quiet --out " + m, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  // The same generator with one more user: u0..u59 are known, u60 is not.
  r = RunCli("generate --kind groups --users 61 --seed 3 --out " + d61, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const std::string& cmd :
       {"eval --model-file " + m + " --data " + d61 + " --json " + dir_ + "/e.json",
        "score --model-file " + m + " --data " + d61 + " --out " + dir_ + "/s.h5"}) {
    SCOPED_TRACE(cmd);
    r = RunCli(cmd, dir_);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(d61 + ": 1 of 61 users are not among the model's training users "
                               "(first: '"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--unknown-users population"), std::string::npos) << r.err;
    r = RunCli(cmd + " --unknown-users population", dir_);
    EXPECT_EQ(r.rc, 0) << r.err;
  }
  Json e = Json::Parse(ReadFile(dir_ + "/e.json"));
  EXPECT_EQ(e.at("n_users_unknown").number(), 1);
  r = RunCli("eval --model-file " + m + " --data " + d61 + " --unknown-users maybe --json " + dir_ +
                 "/e2.json",
             dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--unknown-users: 'maybe'"), std::string::npos) << r.err;
  // A model without per-user latents has nothing to look up: bt scores anyone.
  r = RunCli(
      "train --data " + dir_ + "/d.h5 --model bt --epochs 5 --quiet --out " + dir_ + "/bt.pfmx",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli(
      "eval --model-file " + dir_ + "/bt.pfmx --data " + d61 + " --json " + dir_ + "/bt.json",
      dir_);
  EXPECT_EQ(r.rc, 0) << r.err;
}

// adapt's and score's outputs say which model made them; score refuses latents of another
// family or another model file (they used to be accepted whenever the width matched).
TEST_F(CliTest, LatentsAreScoredOnlyWithTheirModel) {
  const std::string d = dir_ + "/d.h5";
  for (const char* m : {"a", "b"}) {
    auto r = RunCli("train --data " + d + " --model lowrank --k 3 --epochs 10 --seed " +
                        (std::string(m) == "a" ? "1" : "2") + " --quiet --out " + dir_ + "/" + m +
                        ".pfmx",
                    dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  auto r =
      RunCli("train --data " + d + " --model em-bt --k 3 --quiet --out " + dir_ + "/e.pfmx", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli(
      "adapt --model-file " + dir_ + "/a.pfmx --data " + d + " --quiet --out " + dir_ + "/ua.h5",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string score = "score --data " + d + " --users-file " + dir_ + "/ua.h5 --out " + dir_ +
                            "/s.h5 --model-file ";
  r = RunCli(score + dir_ + "/a.pfmx", dir_);
  EXPECT_EQ(r.rc, 0) << r.err;
  r = RunCli(score + dir_ + "/b.pfmx", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("ua.h5: latents adapted with another model file"), std::string::npos)
      << r.err;
  r = RunCli(score + dir_ + "/e.pfmx", dir_);  // em-bt, K = 3: the same latent width
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("latents of family 'lowrank', the model file is family 'em-bt'"),
            std::string::npos)
      << r.err;
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

// The strict parser: every mistake below used to be accepted and change the run without a word.
TEST_F(CliTest, StrictParsingRefusesWhatWasSilentlyChanged) {
  const std::string d = dir_ + "/d.h5", m = dir_ + "/m.pfmx";
  const std::string train = "train --data " + d + " --model bt --out " + m + " ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      // a prefix was taken for the full flag
      {train + "--epoch 3", "unrecognised option '--epoch'"},
      // a stray word was dropped
      {train + "--epochs 3 stray", "unexpected argument 'stray'"},
      // `--models bt, lowrank`: lowrank was dropped
      {"experiment --data " + d + " --models bt, lowrank --json " + dir_ + "/x.json",
       "unexpected argument 'lowrank'"},
      {"experiment --data " + d + " --models bt, --json " + dir_ + "/x.json",
       "--models: 'bt,' has an empty or blank element"},
      // a list for a single value kept its first element
      {"train --data " + d + " --model lowrank --k 2,3 --out " + m, "--k: '2,3' is a list"},
      // -1 became 2^64 - 1
      {train + "--seed -1", "--seed: -1 is negative"},
      // above 2^53 the metrics JSON recorded another seed
      {train + "--seed 9007199254740993", "--seed: 9007199254740993 is above 2^53 - 1"},
      // NaN reached an internal assertion after a full training run
      {train + "--l2 nan", "--l2: nan is not a number"},
      {"train --data " + d + " --model lowrank --user-prior nan --out " + m,
       "--user-prior: nan is not a number"},
  };
  for (const auto& [args, expect] : cases) {
    SCOPED_TRACE(args);
    auto r = RunCli(args, dir_);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_EQ(Lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << r.err;
    EXPECT_FALSE(Exists(m));
  }
  // The largest exact seed is accepted.
  auto r = RunCli(train + "--epochs 2 --seed 9007199254740991 --quiet", dir_);
  EXPECT_EQ(r.rc, 0) << r.err;
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
