// em-bt (MaxMin-RLHF EM mixture of BT heads) and MaxMin selection: E-step by hand, EM hygiene
// (monotone objective, fixed point, label switching, save/load), planted recovery, --k auto,
// the MaxMin win-rate experiment and the `select` CLI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/json.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/userstep/math.h"
#include "data/generate.h"
#include "mixture/em_bt.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using mixture::EmOptions;
using mixture::EmState;

/// Best matching of fitted heads to planted groups (label switching): for every permutation of
/// the heads, the sum of Pearson correlations between head rewards and planted rewards over the
/// items; returns the per-group correlation of the best permutation.
std::vector<double> MatchedCorrelations(const RowMatrixF& heads, const RowMatrixF& truth) {
  const int K = static_cast<int>(heads.rows());
  auto corr = [](Eigen::VectorXd a, Eigen::VectorXd b) {
    a.array() -= a.mean();
    b.array() -= b.mean();
    return a.dot(b) / (a.norm() * b.norm());
  };
  std::vector<int> perm(K);
  std::iota(perm.begin(), perm.end(), 0);
  std::vector<double> best;
  double best_sum = -1e9;
  do {
    std::vector<double> c(K);
    double s = 0;
    for (int g = 0; g < K; ++g) {
      c[g] = corr(heads.row(perm[g]).transpose().cast<double>(),
                  truth.row(g).transpose().cast<double>());
      s += c[g];
    }
    if (s > best_sum) {
      best_sum = s;
      best = c;
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

TEST(EmBtTest, EStepMatchesHandValues) {
  // 3 items, K = 2 heads; rewards R[item, k].
  RowMatrixF R(3, 2);
  R << 1.0f, 0.0f,  //
      0.0f, 2.0f,   //
      0.0f, 0.0f;
  PairSet pairs;
  pairs.Push(0, 0, 1, -1, 1.0f, 1.0f, NAN);  // user 0: item 0 over item 1
  pairs.Push(0, 0, 2, -1, 2.0f, 1.0f, NAN);  // user 0: item 0 over item 2, weight 2
  pairs.Push(1, 0, 1, -1, 1.0f, 0.0f, NAN);  // user 1: item 1 over item 0 (label 0)
  // user 2 has no pairs.
  Eigen::VectorXd pi(2);
  pi << 0.25, 0.75;
  const auto ix = mixture::GroupByUser(pairs, 3);
  EXPECT_EQ(ix.n_active, 2);
  using math::LogSigmoid;
  const double l00 = LogSigmoid(1) + 2 * LogSigmoid(1) + std::log(0.25);
  const double l01 = LogSigmoid(-2) + 2 * LogSigmoid(0) + std::log(0.75);
  const double l10 = LogSigmoid(-1) + std::log(0.25);
  const double l11 = LogSigmoid(2) + std::log(0.75);
  auto soft = mixture::EStep(R, pairs, ix, pi, /*hard=*/false, /*use_prior=*/true);
  EXPECT_NEAR(soft.loglik(0, 0), l00, 1e-5);
  EXPECT_NEAR(soft.loglik(0, 1), l01, 1e-5);
  EXPECT_NEAR(soft.loglik(1, 0), l10, 1e-5);
  EXPECT_NEAR(soft.loglik(1, 1), l11, 1e-5);
  const double g00 = 1.0 / (1.0 + std::exp(l01 - l00));
  EXPECT_NEAR(soft.gamma(0, 0), g00, 1e-6);
  EXPECT_NEAR(soft.gamma(0, 1), 1 - g00, 1e-6);
  const double g10 = 1.0 / (1.0 + std::exp(l11 - l10));
  EXPECT_NEAR(soft.gamma(1, 0), g10, 1e-6);
  // A user without pairs gets the population weights.
  EXPECT_FLOAT_EQ(soft.gamma(2, 0), 0.25f);
  EXPECT_FLOAT_EQ(soft.gamma(2, 1), 0.75f);
  const double ev0 = std::log(std::exp(l00) + std::exp(l01));
  const double ev1 = std::log(std::exp(l10) + std::exp(l11));
  EXPECT_NEAR(soft.data_term, ev0 + ev1, 1e-5);

  auto hard = mixture::EStep(R, pairs, ix, pi, /*hard=*/true, /*use_prior=*/true);
  EXPECT_EQ(hard.gamma(0, 0), 1.0f);  // l00 > l01
  EXPECT_EQ(hard.gamma(1, 1), 1.0f);  // l11 > l10
  EXPECT_NEAR(hard.data_term, std::max(l00, l01) + std::max(l10, l11), 1e-5);

  // --em-prior off: no log pi term.
  auto flat = mixture::EStep(R, pairs, ix, pi, true, /*use_prior=*/false);
  EXPECT_NEAR(flat.loglik(0, 1), l01 - std::log(0.75), 1e-5);
  EXPECT_NEAR(flat.loglik(1, 0), l10 - std::log(0.25), 1e-5);
}

/// A smaller groups dataset for the EM hygiene tests.
Dataset SmallGroups(uint64_t seed) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.seed = seed;
  g.n_users = 150;
  return data::Generate(g);
}

void ExpectMonotone(bool hard) {
  Dataset ds = SmallGroups(4);
  const PairSet all = ds.AllPairs();
  const auto ix = mixture::GroupByUser(all, ds.n_users());
  EmOptions o;
  o.hard = hard;
  o.l2 = 1e-3;
  o.newton_iters = 50;  // full-batch M-steps run to convergence
  o.max_rounds = 40;
  o.tol = 0;  // run every round
  // A random partition start: many rounds of real change before convergence.
  std::vector<int> labels(ds.n_users());
  for (int64_t u = 0; u < ds.n_users(); ++u) labels[u] = static_cast<int>((u * 7) % 3);
  EmState st = mixture::StateFromLabels(ds.items, all, ix, labels, 3, o);
  auto run = mixture::RunEm(ds.items, all, ix, o, &st);
  ASSERT_GE(run.objective.size(), 3u);
  double worst = 0;
  for (size_t t = 1; t < run.objective.size(); ++t) {
    const double drop = run.objective[t - 1] - run.objective[t];
    worst = std::max(worst, drop / std::fabs(run.objective[t - 1]));
    // Float32 rewards: allow a relative 1e-6 of rounding, never a real decrease.
    EXPECT_LE(drop, 1e-6 * std::fabs(run.objective[t - 1]))
        << (hard ? "hard" : "soft") << " round " << t;
  }
  EXPECT_GT(run.objective.back(), run.objective.front() + 1.0);  // EM did something
  std::printf("%s EM: objective %.4f -> %.4f over %d rounds, largest relative drop %.2e\n",
              hard ? "hard" : "soft", run.objective.front(), run.objective.back(), run.rounds,
              worst);
  // Re-running from the converged model changes nothing.
  EmState again = st;
  auto rerun = mixture::RunEm(ds.items, all, ix, o, &again);
  const double dtheta = (again.theta - st.theta).norm() / st.theta.norm();
  EXPECT_LT(dtheta, 1e-4);
  EXPECT_LT((again.pi - st.pi).cwiseAbs().maxCoeff(), 1e-6);
  EXPECT_NEAR(rerun.objective.back(), run.objective.back(), 1e-6 * std::fabs(run.objective.back()));
  if (hard) {
    EXPECT_EQ(Argmax(rerun.last.gamma), Argmax(run.last.gamma));
  } else {
    EXPECT_LT((rerun.last.gamma - run.last.gamma).cwiseAbs().maxCoeff(), 1e-4);
  }
}

TEST(EmBtTest, HardEmObjectiveNeverDecreasesAndConvergedIsAFixedPoint) { ExpectMonotone(true); }

TEST(EmBtTest, SoftEmMarginalLikelihoodNeverDecreasesAndConvergedIsAFixedPoint) {
  ExpectMonotone(false);
}

TEST(EmBtTest, RecoversPlantedHeadsUpToLabelSwitching) {
  Dataset ds = SmallGroups(5);
  const PairSet all = ds.AllPairs();
  const auto ix = mixture::GroupByUser(all, ds.n_users());
  EmOptions o;
  // Two starts with different seeds generally come out in different label orders; after
  // matching, both must agree with the planted rewards and with each other.
  std::vector<RowMatrixF> heads;
  std::vector<std::vector<int>> z;
  for (uint64_t seed : {11, 12}) {
    auto labels = mixture::KMeansStart(ds.items, all, ix, 3, seed);
    EmState st = mixture::StateFromLabels(ds.items, all, ix, labels, 3, o);
    auto run = mixture::RunEm(ds.items, all, ix, o, &st);
    heads.push_back(mixture::ItemHeadRewards(ds.items, st.theta).transpose());
    z.push_back(Argmax(run.last.gamma));
    auto c = MatchedCorrelations(heads.back(), ds.truth_group_item_reward);
    for (double x : c) EXPECT_GT(x, 0.95) << "seed " << seed;
  }
  EXPECT_GT(mixture::AdjustedRandIndex(z[0], z[1]), 0.95);
  for (double x : MatchedCorrelations(heads[0], heads[1])) EXPECT_GT(x, 0.99);
}

TEST(EmBtTest, AdjustedRandIndexKnownValues) {
  EXPECT_DOUBLE_EQ(mixture::AdjustedRandIndex({0, 0, 1, 1}, {1, 1, 0, 0}), 1.0);
  // Classic example: ARI of {0,0,0,1,1,1} vs {0,0,1,1,2,2} = 0.24242...
  EXPECT_NEAR(mixture::AdjustedRandIndex({0, 0, 0, 1, 1, 1}, {0, 0, 1, 1, 2, 2}), 0.2424242424,
              1e-9);
  // Negative labels are skipped.
  EXPECT_DOUBLE_EQ(mixture::AdjustedRandIndex({0, 0, -1, 1, 1}, {2, 2, 0, 3, 3}), 1.0);
}

TEST(EmBtTest, SaveLoadGivesIdenticalScoresAndAdaptation) {
  Dataset ds = SmallGroups(6);
  ModelOptions mo;
  mo.family = "em-bt";
  mo.Set("k", 3);
  mo.Set("restarts", 2);
  mo.Set("l2", 1e-3);
  mo.Set("em", "soft");
  auto model = MakeModel(mo);
  ProtocolOptions po;
  Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
  model->Fit(ds, s.train, s.valid);
  const std::string dir = testing::TestDir();
  SaveModel(*model, dir + "/m.pfmx");
  auto loaded = LoadModel(dir + "/m.pfmx");
  EXPECT_EQ(loaded->Family(), "em-bt");
  EXPECT_EQ(loaded->LatentDim(), 3);
  EXPECT_EQ(loaded->options().Text("em"), "soft");
  RowMatrixF a = model->Score(ds, model->LatentsFor(ds));
  RowMatrixF b = loaded->Score(ds, loaded->LatentsFor(ds));
  EXPECT_TRUE(a == b);
  EXPECT_EQ(model->PredictProb(ds, s.test, model->TrainLatents()),
            loaded->PredictProb(ds, s.test, loaded->TrainLatents()));
  EXPECT_TRUE(model->Adapt(ds, s.test, ds.n_users(), "cpu") ==
              loaded->Adapt(ds, s.test, ds.n_users(), "cpu"));
  // Adaptation from no pairs is the population (pi); scores are calibrated win rates.
  RowMatrixF cold = model->Adapt(ds, PairSet(), 4, "cpu");
  for (int u = 0; u < 4; ++u) EXPECT_TRUE(cold.row(u) == model->PopulationLatent().transpose());
  EXPECT_GE(a.minCoeff(), 0.0f);
  EXPECT_LE(a.maxCoeff(), 1.0f);
}

TEST(EmBtTest, AdaptUsesOnlyTheSupportPairs) {
  Dataset ds = SmallGroups(7);
  ModelOptions mo;
  mo.family = "em-bt";
  mo.Set("k", 3);
  mo.Set("restarts", 1);
  mo.Set("l2", 1e-3);
  auto model = MakeModel(mo);
  PairSet all = ds.AllPairs();
  model->Fit(ds, all, PairSet());
  // Support: the 40 pairs of user 0 only; the other users get pi, user 0 a sharp posterior on
  // the head it was assigned to in training.
  PairSet support;
  for (size_t j = 0; j < all.size(); ++j)
    if (all.user[j] == 0) support.PushFrom(all, j);
  RowMatrixF lat = model->Adapt(ds, support, ds.n_users(), "cpu");
  EXPECT_TRUE(lat.row(1) == model->PopulationLatent().transpose());
  EXPECT_GT(lat.row(0).maxCoeff(), 0.9f);
  Eigen::Index k0 = 0;
  lat.row(0).maxCoeff(&k0);
  Eigen::Index kt = 0;
  model->TrainLatents().row(0).maxCoeff(&kt);
  EXPECT_EQ(k0, kt);
}

TEST(MaxMinTest, CalibratedScoresAndPicks) {
  // Head 0 prefers item 0, head 1 item 2; item 1 is everybody's second choice.
  RowMatrixF r(2, 3);
  r << 3.0f, 2.0f, -3.0f,  //
      -3.0f, 2.0f, 3.0f;
  RowMatrixD q = CalibratedScores(r);
  using math::Sigmoid;
  EXPECT_NEAR(q(0, 0), 0.5 * (Sigmoid(1) + Sigmoid(6)), 1e-12);
  EXPECT_NEAR(q(0, 1), 0.5 * (Sigmoid(-1) + Sigmoid(5)), 1e-12);
  EXPECT_EQ(EgalitarianPick(q), 1);
  Eigen::VectorXd w(2);
  w << 0.9, 0.1;
  EXPECT_EQ(UtilitarianPick(q, w), 0);
  // Shifting one head by a constant changes nothing (calibration).
  RowMatrixF r2 = r;
  r2.row(1).array() += 100.0f;
  EXPECT_TRUE(CalibratedScores(r2).isApprox(q, 1e-12));
  EXPECT_DOUBLE_EQ(WinRate({1.0f, 3.0f, 2.0f, 3.0f}, 1), 2.0 / 3.0);
}

/// Mean win rate of each planted group under the picks of `rewards` over 20-item candidate sets.
std::vector<double> GroupWinRates(const Dataset& ds, const RowMatrixF& rewards,
                                  const Eigen::VectorXd& w, const std::string& agg, uint64_t seed) {
  SelectOptions so;
  so.aggregate = agg;
  so.candidates = 20;
  so.repeats = 50;
  so.seed = seed;
  Json j = RunSelection(ds, rewards, w, so);
  std::vector<double> out;
  for (const auto& kv : j.at("win_rates").at("planted_group").members())
    out.push_back(kv.second.number());
  return out;
}

TEST(MaxMinTest, EgalitarianPickRaisesTheMinorityWinRateOverSingleBt) {
  double em_min = 0, em_maj = 0, bt_min = 0, bt_maj = 0, ut_min = 0, ut_maj = 0;
  int raised_by_10 = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    g.k = 2;
    g.group_sizes = {100.0 * 10 / 11, 100.0 / 11};
    g.group_similarity = 0.3;
    Dataset ds = data::Generate(g);
    PairSet train = ds.AllPairs(), valid;
    CarveValidation(&train, &valid, ds.n_users(), 0.2, seed);
    ModelOptions em;
    em.family = "em-bt";
    em.Set("k", 2);
    em.seed = seed;
    auto mem = MakeModel(em);
    mem->Fit(ds, train, valid);
    const auto* heads = dynamic_cast<const MultiHeadModel*>(mem.get());
    ASSERT_NE(heads, nullptr);
    ModelOptions bt;
    bt.family = "bt";
    bt.seed = seed;
    auto mbt = MakeModel(bt);
    mbt->Fit(ds, train, valid);
    RowMatrixF bt_r = mbt->Score(ds, RowMatrixF(1, 0));
    const auto n1 = std::count(ds.truth_user_group.begin(), ds.truth_user_group.end(), 1);
    const int minority = 2 * n1 < static_cast<int64_t>(ds.truth_user_group.size()) ? 1 : 0;
    const int majority = 1 - minority;
    auto e = GroupWinRates(ds, heads->HeadRewards(ds), heads->HeadWeights(), "min", seed);
    auto u = GroupWinRates(ds, heads->HeadRewards(ds), heads->HeadWeights(), "mean", seed);
    auto b = GroupWinRates(ds, bt_r, Eigen::VectorXd::Ones(1), "min", seed);
    std::printf(
        "seed %2d: minority win rate  bt %.3f  em-bt min %.3f  em-bt mean %.3f | majority  bt "
        "%.3f  min %.3f  mean %.3f\n",
        static_cast<int>(seed), b[minority], e[minority], u[minority], b[majority], e[majority],
        u[majority]);
    em_min += e[minority] / 10;
    em_maj += e[majority] / 10;
    bt_min += b[minority] / 10;
    bt_maj += b[majority] / 10;
    ut_min += u[minority] / 10;
    ut_maj += u[majority] / 10;
    raised_by_10 += e[minority] >= b[minority] + 0.10;
  }
  std::printf(
      "10 seeds: minority win rate bt %.3f -> egalitarian %.3f (%+.1f points; utilitarian %.3f); "
      "majority bt %.3f -> egalitarian %.3f (%+.1f points; utilitarian %.3f); seeds raised by "
      ">= 10 points: %d/10\n",
      bt_min, em_min, 100 * (em_min - bt_min), ut_min, bt_maj, em_maj, 100 * (em_maj - bt_maj),
      ut_maj, raised_by_10);
  EXPECT_GE(em_min - bt_min, 0.10);
}

TEST(SelectCliTest, WritesPicksAndWinRatesForEmBtAndBt) {
  using testing::RunCli;
  const std::string dir = testing::TestDir();
  auto r = RunCli("generate --kind groups --users 120 --seed 3 --out " + dir + "/d.h5", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("train --data " + dir +
                 "/d.h5 --model em-bt --k 3 --restarts 1 --em-prior off --out " + dir + "/em.pfmx",
             dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("train --data " + dir + "/d.h5 --model bt --l2 0.001 --out " + dir + "/bt.pfmx", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* agg : {"min", "mean"}) {
    r = RunCli("select --model-file " + dir + "/em.pfmx --data " + dir + "/d.h5 --aggregate " +
                   agg + " --candidates 20 --repeats 5 --json " + dir + "/sel.json",
               dir);
    ASSERT_EQ(r.rc, 0) << r.err;
    Json j = Json::Parse(testing::ReadFile(dir + "/sel.json"));
    EXPECT_EQ(j.at("model").str(), "em-bt");
    EXPECT_EQ(j.at("aggregate").str(), agg);
    EXPECT_EQ(j.at("n_heads").number(), 3);
    EXPECT_EQ(j.at("picks").size(), 5u);
    EXPECT_EQ(j.at("win_rates").at("planted_group").size(), 3u);
    EXPECT_TRUE(j.at("win_rates").at("attributes").contains("segment"));
    EXPECT_TRUE(j.at("win_rates_by_aggregate").contains("min"));
    EXPECT_TRUE(j.at("provenance").contains("dataset_sha256"));
  }
  // All items (no contexts): one set, the pick of a one-head model is its argmax reward.
  r = RunCli("select --model-file " + dir + "/bt.pfmx --data " + dir +
                 "/d.h5 --aggregate min --json " + dir + "/bt.json",
             dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = Json::Parse(testing::ReadFile(dir + "/bt.json"));
  EXPECT_EQ(j.at("n_sets").number(), 1);
  EXPECT_EQ(j.at("picks").items()[0].at("n_candidates").number(), 1000);
  EXPECT_EQ(j.at("picks").items()[0].at("pick").number(),
            j.at("picks").items()[0].at("utilitarian_pick").number());
  // Bad input: exit 1 with the flag named.
  r = RunCli("select --model-file " + dir + "/em.pfmx --data " + dir +
                 "/d.h5 --aggregate median --json " + dir + "/x.json",
             dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--aggregate"), std::string::npos) << r.err;
  r = RunCli(
      "train --data " + dir + "/d.h5 --model em-bt --em-prior maybe --out " + dir + "/x.pfmx", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--em-prior"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace prefmix
