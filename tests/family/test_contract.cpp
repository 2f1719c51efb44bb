// The model contract, checked for every registered family (one suite, parameterised by the
// registry, so a new family is covered the day it registers): probabilities in [0, 1] and finite,
// save -> load gives identical predictions and scores, 0 support pairs give the cold-start model,
// the user step reads only the support pairs it is given, the metrics file validates against
// data/schema/metrics.schema.json, the same inputs give the same model and metrics bytes (timings
// aside), and a bad option is refused naming the flag.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/io/h5io.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "data/generate.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::Exists;
using testing::RunCli;
using testing::TestDir;

/// A small planted dataset (3 taste groups) every family fits in seconds.
Dataset SmallData() {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.seed = 5;
  g.n_users = 40;
  g.pairs_per_user = 16;
  g.n_items = 80;
  g.dim = 6;
  return data::Generate(g);
}

/// A small budget for every family (each option where the family declares it).
ModelOptions SmallBudget(const std::string& family) {
  ModelOptions o;
  o.family = family;
  o.seed = 3;
  o.threads = 1;
  auto set = [&](const char* key, auto v) { SetIfDeclared(o, key, v); };
  set("k", 3);
  set("epochs", 8);
  set("hidden", 16);
  set("dim", 3);
  set("router", "attributes");
  set("components", 3);
  set("inducing", 20);
  set("refit", false);
  return o;
}

/// The first `n` pairs of user `u` in `p`.
PairSet FirstPairsOf(const PairSet& p, int32_t u, size_t n) {
  PairSet s;
  for (size_t j = 0; j < p.size() && s.size() < n; ++j)
    if (p.user[j] == u) s.PushFrom(p, j);
  return s;
}

/// max |a - b| over the row (0 for a family without a latent).
float MaxAbsDiff(const Eigen::RowVectorXf& a, const Eigen::RowVectorXf& b) {
  return a.size() == 0 ? 0.0f : (a - b).cwiseAbs().maxCoeff();
}

class ContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    data_ = new Dataset(SmallData());
    all_ = new PairSet(data_->AllPairs());
  }
  static void TearDownTestSuite() {
    delete data_;
    delete all_;
  }
  static Dataset* data_;
  static PairSet* all_;
};
Dataset* ContractTest::data_ = nullptr;
PairSet* ContractTest::all_ = nullptr;

TEST_P(ContractTest, FitPredictSaveLoadAndTheUserStep) {
  const Dataset& ds = *data_;
  // Users 0..29 train; 30..39 are new users for the user step.
  PairSet train, valid, rest;
  for (size_t j = 0; j < all_->size(); ++j) {
    if (all_->user[j] >= 30)
      rest.PushFrom(*all_, j);
    else if (j % 5 == 0)
      valid.PushFrom(*all_, j);
    else
      train.PushFrom(*all_, j);
  }
  auto model = MakeModel(SmallBudget(GetParam()));
  ASSERT_EQ(model->Family(), GetParam());
  model->Fit(ds, train, valid);
  ASSERT_EQ(model->TrainLatents().rows(), ds.n_users());
  ASSERT_EQ(model->TrainLatents().cols(), model->LatentDim());

  // Probabilities: one per pair, finite, in [0, 1].
  const std::vector<double> p = model->PredictProb(ds, valid, model->TrainLatents());
  ASSERT_EQ(p.size(), valid.size());
  for (double x : p) {
    ASSERT_TRUE(std::isfinite(x));
    ASSERT_GE(x, 0.0);
    ASSERT_LE(x, 1.0);
  }

  // The pairs' order is theirs: the same pairs reversed (users interleaved, as comparisons
  // logged in time order are) get the same probabilities, reversed. (gppl grouped the pairs by
  // user and returned them in that order, wrong for any unsorted set, until 2026-12-07.)
  {
    PairSet rev;
    for (size_t j = valid.size(); j-- > 0;) rev.PushFrom(valid, j);
    const std::vector<double> q = model->PredictProb(ds, rev, model->TrainLatents());
    ASSERT_EQ(q.size(), p.size());
    for (size_t j = 0; j < p.size(); ++j)
      EXPECT_NEAR(q[p.size() - 1 - j], p[j], 1e-12) << "pair " << j;
  }

  // Save -> load: identical predictions, scores and user step.
  const std::string path = TestDir() + "/m.pfmx";
  SaveModel(*model, path);
  auto back = LoadModel(path);
  EXPECT_EQ(back->Family(), GetParam());
  EXPECT_EQ(back->PredictProb(ds, valid, back->TrainLatents()), p);
  const RowMatrixF s1 = model->Score(ds, model->TrainLatents());
  const RowMatrixF s2 = back->Score(ds, back->TrainLatents());
  ASSERT_EQ(s1.rows(), ds.n_users());
  ASSERT_EQ(s1.cols(), ds.n_items());
  EXPECT_TRUE(s1 == s2);
  // A truncated model file is a clear error, never a half-loaded model.
  const std::string bytes = testing::ReadFile(path);
  std::ofstream(path + ".cut", std::ios::binary).write(bytes.data(), bytes.size() - 9);
  EXPECT_THROW(LoadModel(path + ".cut"), Error);

  // 0 support pairs: every user gets the population latent, or, for a family whose prior reads
  // the user's side information (a router option), the same latent for users whose attributes
  // are the same.
  const RowMatrixF cold = model->Adapt(ds, PairSet(), ds.n_users(), "cpu");
  ASSERT_EQ(cold.rows(), ds.n_users());
  const bool routed = model->options().Has("router");
  for (Eigen::Index u = 0; u < cold.rows(); ++u) {
    if (!routed) {
      ASSERT_EQ(MaxAbsDiff(cold.row(u), model->PopulationLatent().transpose()), 0.0f)
          << "user " << u;
      continue;
    }
    for (Eigen::Index v = 0; v < u; ++v) {
      bool same = true;
      for (const auto& a : ds.attributes) same = same && a.codes[u] == a.codes[v];
      if (same) ASSERT_EQ(MaxAbsDiff(cold.row(u), cold.row(v)), 0.0f) << u << " vs " << v;
    }
  }

  // The user step reads only its support: user 30's first 6 pairs and user 31's first 3.
  PairSet support = FirstPairsOf(rest, 30, 6);
  const PairSet s31 = FirstPairsOf(rest, 31, 3);
  for (size_t j = 0; j < s31.size(); ++j) support.PushFrom(s31, j);
  const RowMatrixF lat = model->Adapt(ds, support, ds.n_users(), "cpu");
  EXPECT_EQ(back->Adapt(ds, support, ds.n_users(), "cpu"), lat);
  // The same support over a dataset whose stored comparisons and rankings are all different
  // gives the same latents: nothing outside the support is read.
  Dataset other = ds;
  std::swap(other.cmp_chosen, other.cmp_rejected);
  other.rank_user.clear();
  other.rank_offsets.assign(1, 0);
  other.rank_items.clear();
  EXPECT_EQ(model->Adapt(other, support, ds.n_users(), "cpu"), lat);
  // Users without support pairs stay at the population latent; other users' pairs never move
  // them.
  EXPECT_EQ(MaxAbsDiff(lat.row(35), cold.row(35)), 0.0f);
  if (model->LatentDim() > 0) {
    // The support is informative: user 30 moved away from the population.
    EXPECT_GT(MaxAbsDiff(lat.row(30), cold.row(30)), 0.0f);
    const RowMatrixF alone = model->Adapt(ds, FirstPairsOf(rest, 30, 6), ds.n_users(), "cpu");
    EXPECT_LE(MaxAbsDiff(alone.row(30), lat.row(30)), 1e-5f)
        << "user 31's pairs changed user 30's latent";
  }
}

TEST_P(ContractTest, CliMetricsValidBytesReproducibleBadOptionsRefused) {
  const std::string dir = TestDir(), data = dir + "/d.h5";
  WriteDataset(*data_, data);
  const std::string f = GetParam();
  const std::string budget =
      " --k 3 --epochs 8 --hidden 16 --dim 3 --router attributes --components 3 --inducing 20"
      " --no-refit --threads 1 --quiet";
  auto r = RunCli("experiment --data " + data + " --model " + f + budget +
                      " --protocol unseen --shots 0,2 --json " + dir + "/m.json",
                  dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  testing::ExpectValidMetrics(dir + "/m.json");

  // Reproducible bytes at a fixed thread count: the same data, options and seed give the same
  // model file, and the same metrics file apart from its "timing" object.
  for (const char* n : {"a", "b"}) {
    r = RunCli(
        "train --data " + data + " --model " + f + budget + " --out " + dir + "/" + n + ".pfmx",
        dir);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  EXPECT_EQ(testing::ReadFile(dir + "/a.pfmx"), testing::ReadFile(dir + "/b.pfmx"));
  r = RunCli("experiment --data " + data + " --model " + f + budget +
                 " --protocol unseen --shots 0,2 --json " + dir + "/m2.json",
             dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  Json m1 = Json::Parse(testing::ReadFile(dir + "/m.json"));
  Json m2 = Json::Parse(testing::ReadFile(dir + "/m2.json"));
  m1["timing"] = Json();
  m2["timing"] = Json();
  EXPECT_EQ(m1.Dump(), m2.Dump());

  // A bad value of an option every family reads: exit 1, one line naming the flag and value,
  // nothing written.
  r = RunCli("train --data " + data + " --model " + f + " --epochs -3 --out " + dir + "/bad.pfmx",
             dir);
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_NE(r.err.find("--epochs"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-3"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir + "/bad.pfmx"));
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, ContractTest, ::testing::ValuesIn(FamilyNames()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace prefmix
