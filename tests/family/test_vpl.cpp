// vpl (variational user latents, amortized encoder) and active query selection: the KL term
// against Monte Carlo, the loss with z fixed against the decoder's BT loss, permutation
// invariance and tightening of the posterior, save/load, support-only adaptation, the VPL-SPO
// score normalisation, the CLI, and the recovery bars on the groups preset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/eval/active.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/h5io.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "data/generate.h"
#include "mixture/em_bt.h"
#include "personalization/vpl.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

/// A small groups dataset for the unit tests (fast to fit).
Dataset SmallGroups(uint64_t seed) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.seed = seed;
  g.n_users = 60;
  g.pairs_per_user = 16;
  g.n_items = 120;
  g.dim = 6;
  return data::Generate(g);
}

/// The unit tests' small configuration: latent 3, hidden 16, a few epochs.
ModelOptions SmallOptions(uint64_t seed, int epochs = 4) {
  ModelOptions o = VplOptions(seed);
  o.Set("dim", 3);
  o.Set("hidden", 16);
  o.Set("epochs", epochs);
  return o;
}

/// A briefly trained small model (parameters away from their init).
std::unique_ptr<Model> SmallModel(const Dataset& ds, uint64_t seed) {
  auto m = MakeModel(SmallOptions(seed));
  PairSet all = ds.AllPairs(), valid;
  m->Fit(ds, all, valid);
  return m;
}

TEST(VplTest, CosineAnnealIsCyclicalFromFloorToOne) {
  EXPECT_DOUBLE_EQ(personalization::CosineAnneal(0, 100, 0.1), 0.1);
  EXPECT_NEAR(personalization::CosineAnneal(50, 100, 0.1), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(personalization::CosineAnneal(99, 100, 0.1), 1.0, 1e-3);
  EXPECT_DOUBLE_EQ(personalization::CosineAnneal(100, 100, 0.1), 0.1);  // restarts
  EXPECT_NEAR(personalization::CosineAnneal(125, 100, 0.0),
              personalization::CosineAnneal(25, 100, 0.0), 1e-15);
  for (int s = 1; s < 100; ++s)
    EXPECT_GE(personalization::CosineAnneal(s, 100, 0.2),
              personalization::CosineAnneal(s - 1, 100, 0.2));
}

TEST(VplTest, KlMatchesMonteCarlo) {
  Posterior q;
  q.mu.resize(2, 3);
  q.logvar.resize(2, 3);
  q.mu << 0.5f, -1.2f, 0.0f, 2.0f, 0.3f, -0.7f;
  q.logvar << -0.5f, -2.0f, 0.3f, -1.0f, 0.0f, -3.0f;
  const std::vector<double> kl = personalization::GaussianKl(q);
  Rng rng(7);
  const int n = 400000;
  for (int r = 0; r < 2; ++r) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      double v = 0;  // log q(z) - log p(z)
      for (int d = 0; d < 3; ++d) {
        const double sd = std::exp(0.5 * q.logvar(r, d)), e = rng.Normal();
        const double z = q.mu(r, d) + sd * e;
        v += -0.5 * e * e - std::log(sd) + 0.5 * z * z;
      }
      s += v;
      s2 += v * v;
    }
    const double mean = s / n, se = std::sqrt((s2 / n - mean * mean) / n);
    std::printf("row %d: KL %.5f  Monte Carlo %.5f +- %.5f\n", r, kl[r], mean, se);
    EXPECT_NEAR(kl[r], mean, 4 * se);
  }
  // The closed form itself on a hand value: mu = 1, sigma^2 = 1 -> 1/2.
  Posterior one;
  one.mu = RowMatrixF::Constant(1, 1, 1.0f);
  one.logvar = RowMatrixF::Zero(1, 1);
  EXPECT_NEAR(personalization::GaussianKl(one)[0], 0.5, 1e-12);
}

TEST(VplTest, LossWithFixedZEqualsDecoderBtLoss) {
  Dataset ds = SmallGroups(3);
  auto m = SmallModel(ds, 3);
  const auto& am = Amortized(*m);
  PairSet pairs = ds.AllPairs().Subset({0, 1, 2, 5, 9, 20, 33});
  pairs.label[2] = 0.0f;  // a pair whose second item won
  pairs.weight[4] = 2.5f;
  std::vector<ContextSet> ctx(pairs.size());
  for (size_t j = 0; j < pairs.size(); ++j)
    for (int i = 0; i < (int)j % 4 + 1; ++i)
      ctx[j].push_back({(int32_t)(i + 3), (int32_t)(j + 40)});
  RowMatrixF z(pairs.size(), m->LatentDim());
  Rng rng(5);
  for (Eigen::Index i = 0; i < z.size(); ++i) z.data()[i] = (float)rng.Normal();
  const auto p = am.PairProbWithLatent(ds, pairs.first, pairs.second, z);
  double bt = 0, w = 0;
  for (size_t j = 0; j < pairs.size(); ++j) {
    const double pj = pairs.label[j] > 0.5f ? p[j] : 1 - p[j];
    bt -= pairs.weight[j] * std::log(pj);
    w += pairs.weight[j];
  }
  bt /= w;
  const double loss0 = am.TrainingLoss(ds, pairs, ctx, 0.0, &z, 1);
  EXPECT_NEAR(loss0, bt, 1e-5 * std::max(1.0, bt));
  // With a KL weight the loss adds exactly weight * mean KL of q(z | C_j).
  const auto kl = personalization::GaussianKl(am.Encode(ds, ctx));
  const double mean_kl = std::accumulate(kl.begin(), kl.end(), 0.0) / kl.size();
  EXPECT_GT(mean_kl, 0);
  EXPECT_NEAR(am.TrainingLoss(ds, pairs, ctx, 0.3, &z, 1), bt + 0.3 * mean_kl, 1e-5);
  // Sampled z differs from the fixed one (the reparameterised path is really used).
  EXPECT_NE(am.TrainingLoss(ds, pairs, ctx, 0.0, nullptr, 1), loss0);
}

TEST(VplTest, EncoderIsPermutationInvariantAndTightens) {
  Dataset ds = SmallGroups(4);
  auto m = SmallModel(ds, 4);
  const auto& am = Amortized(*m);
  ContextSet set;
  for (int i = 0; i < 8; ++i) set.push_back({(int32_t)(7 * i % 120), (int32_t)(11 * i + 1)});
  std::vector<ContextSet> sets = {set};
  ContextSet perm = set;
  std::reverse(perm.begin(), perm.end());
  sets.push_back(perm);
  std::swap(perm[1], perm[5]);
  std::swap(perm[0], perm[3]);
  sets.push_back(perm);
  // Growing prefixes of the set, and the empty set.
  for (int k = 0; k <= 8; ++k) sets.push_back(ContextSet(set.begin(), set.begin() + k));
  const Posterior q = am.Encode(ds, sets);
  for (int s = 1; s < 3; ++s)
    for (Eigen::Index d = 0; d < q.mu.cols(); ++d) {
      EXPECT_NEAR(q.mu(s, d), q.mu(0, d), 1e-5);
      EXPECT_NEAR(q.logvar(s, d), q.logvar(0, d), 1e-5);
    }
  for (Eigen::Index d = 0; d < q.mu.cols(); ++d) {
    EXPECT_EQ(q.mu(3, d), 0.0f);  // the empty set is the prior N(0, I)
    EXPECT_EQ(q.logvar(3, d), 0.0f);
    for (int k = 1; k <= 8; ++k) EXPECT_LE(q.logvar(3 + k, d), q.logvar(3 + k - 1, d) + 1e-6);
    EXPECT_LT(q.logvar(11, d), 0.0f);
  }
  // Padding inside a batch does not change a set's posterior.
  const Posterior alone = am.Encode(ds, {ContextSet(set.begin(), set.begin() + 2)});
  for (Eigen::Index d = 0; d < q.mu.cols(); ++d) EXPECT_NEAR(alone.mu(0, d), q.mu(5, d), 1e-5);
}

TEST(VplTest, SaveLoadGivesIdenticalScores) {
  Dataset ds = SmallGroups(5);
  auto m = SmallModel(ds, 5);
  const std::string path = testing::TestDir() + "/vpl.pfmx";
  SaveModel(*m, path);
  auto back = LoadModel(path);
  EXPECT_EQ(back->Family(), "vpl");
  EXPECT_EQ(back->LatentDim(), m->LatentDim());
  const RowMatrixF lat = m->TrainLatents();
  EXPECT_EQ(back->TrainLatents(), lat);
  EXPECT_EQ(back->Score(ds, lat.topRows(5)), m->Score(ds, lat.topRows(5)));
  PairSet all = ds.AllPairs();
  EXPECT_EQ(back->PredictProb(ds, all, lat), m->PredictProb(ds, all, lat));
  EXPECT_EQ(back->Adapt(ds, all, ds.n_users(), "cpu"), m->Adapt(ds, all, ds.n_users(), "cpu"));
  // A truncated file fails with a clear error.
  std::string bytes = testing::ReadFile(path);
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  EXPECT_THROW(LoadModel(path), Error);
}

TEST(VplTest, ScoreIsVplSpoNormalisationAndKeepsTheOrder) {
  Dataset ds = SmallGroups(6);
  auto m = SmallModel(ds, 6);
  const auto& am = Amortized(*m);
  const RowMatrixF lat = m->TrainLatents().topRows(3);
  const RowMatrixF s = m->Score(ds, lat), r = am.RawRewards(ds, lat);
  for (int u = 0; u < 3; ++u) {
    for (int64_t i = 0; i < ds.n_items(); ++i) {
      EXPECT_GE(s(u, i), 0.0f);
      EXPECT_LE(s(u, i), 1.0f);
      for (int64_t k = 0; k < ds.n_items(); k += 7)
        if (r(u, i) > r(u, k) + 1e-4f) EXPECT_GT(s(u, i), s(u, k));
    }
    // Hand value for item 0: mean over the other items of sigmoid(r_0 - r_e).
    double ref = 0;
    for (int64_t e = 1; e < ds.n_items(); ++e) ref += math::Sigmoid((double)r(u, 0) - r(u, e));
    EXPECT_NEAR(s(u, 0), ref / (ds.n_items() - 1), 1e-5);
  }
}

TEST(VplTest, AdaptationReadsOnlyTheSupport) {
  Dataset ds = SmallGroups(7);
  auto m = SmallModel(ds, 7);
  ProtocolOptions po;
  po.name = "unseen";
  po.shots = {4};
  Split s = MakeUnseenSplit(ds, ds.AllPairs(), po);
  const PairSet all = ds.AllPairs();
  const PairSet support = UnseenSupport(all, s, 4);
  const RowMatrixF a = m->Adapt(ds, support, ds.n_users(), "cpu");
  // Flip every query pair in a copy of the data: the support's latents do not move.
  Dataset flipped = ds;
  for (const auto& idx : s.heldout_pairs)
    for (size_t i = 4; i < idx.size(); ++i)
      std::swap(flipped.cmp_chosen[idx[i]], flipped.cmp_rejected[idx[i]]);
  const RowMatrixF b =
      m->Adapt(flipped, UnseenSupport(flipped.AllPairs(), s, 4), ds.n_users(), "cpu");
  EXPECT_EQ(a, b);
  // Users without support pairs get the population latent (cold start): the prior's z = 0 with
  // the encoder (what auto resolves to without validation pairs, as here).
  ASSERT_EQ(m->options().Text("vpl_adapt"), "encoder");
  const RowMatrixF cold = m->Adapt(ds, PairSet(), 3, "cpu");
  ASSERT_EQ(cold.rows(), 3);
  EXPECT_TRUE(cold.isZero());
  EXPECT_THROW(m->Adapt(ds, support, ds.n_users(), "cuda"), Error);
}

TEST(VplTest, PopulationAdaptationIsThePosteriorMeanOverTrainingLatents) {
  // --vpl-adapt population: z = sum_i w_i mu_i over the training users' encoded mu_i, w_i
  // proportional to the decoder's likelihood of the user's pairs under mu_i. Checked against that
  // formula computed here through the public encoder and decoder (Encode, PairProbWithLatent),
  // for new users (Adapt) and for the seen users' latents, and after save -> load.
  Dataset ds = SmallGroups(11);
  ModelOptions o = SmallOptions(11);
  o.Set("vpl_adapt", "population");
  auto m = MakeModel(o);
  PairSet all = ds.AllPairs(), valid;
  m->Fit(ds, all, valid);
  const auto& am = Amortized(*m);
  const RowMatrixF mu = am.Encode(ds, UserContextSets(all, ds.n_users(), kMaxContext)).mu;
  std::vector<Eigen::Index> rows;  // the training users (those with pairs)
  for (Eigen::Index i = 0; i < mu.rows(); ++i)
    if (mu.row(i).squaredNorm() > 0) rows.push_back(i);
  ASSERT_GT(rows.size(), 10u);
  // The formula for a set of pairs.
  auto posterior_mean = [&](const ContextSet& set) {
    std::vector<double> ll(rows.size(), 0.0);
    std::vector<int32_t> a, b;
    for (const auto& c : set) {
      a.push_back(c.chosen);
      b.push_back(c.rejected);
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      RowMatrixF zi(static_cast<Eigen::Index>(a.size()), mu.cols());
      for (Eigen::Index r = 0; r < zi.rows(); ++r) zi.row(r) = mu.row(rows[i]);
      for (double p : am.PairProbWithLatent(ds, a, b, zi)) ll[i] += std::log(p);
    }
    const double mx = *std::max_element(ll.begin(), ll.end());
    Eigen::VectorXd want = Eigen::VectorXd::Zero(mu.cols());
    double total = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      total += std::exp(ll[i] - mx);
      want += std::exp(ll[i] - mx) * mu.row(rows[i]).transpose().cast<double>();
    }
    return Eigen::VectorXd(want / total);
  };
  // Support: the first 5 pairs of users 0-2; user 3 has none.
  PairSet support;
  std::vector<int> taken(ds.n_users(), 0);
  for (size_t j = 0; j < all.size(); ++j)
    if (all.user[j] < 3 && taken[all.user[j]]++ < 5) support.PushFrom(all, j);
  const RowMatrixF z = m->Adapt(ds, support, 4, "cpu");
  ASSERT_EQ(z.rows(), 4);
  const auto sets = UserContextSets(support, 4, kMaxContext);
  for (int u = 0; u < 4; ++u) {
    const Eigen::VectorXd want = posterior_mean(sets[u]);
    for (Eigen::Index d = 0; d < mu.cols(); ++d)
      EXPECT_NEAR(z(u, d), want[d], 1e-4 * (1 + std::fabs(want[d]))) << "user " << u;
  }
  // Seen users get the same posterior mean given their own training pairs (their mu among the
  // candidates).
  const RowMatrixF& seen = m->TrainLatents();
  const auto own = UserContextSets(all, ds.n_users(), kMaxContext);
  for (Eigen::Index u : {rows[0], rows[1], rows.back()}) {
    const Eigen::VectorXd want = posterior_mean(own[u]);
    for (Eigen::Index d = 0; d < mu.cols(); ++d)
      EXPECT_NEAR(seen(u, d), want[d], 1e-4 * (1 + std::fabs(want[d]))) << "seen user " << u;
  }
  // The candidates travel in the model file: the loaded model adapts identically.
  const std::string path = testing::TestDir() + "/vpl_population.pfmx";
  SaveModel(*m, path);
  auto back = LoadModel(path);
  EXPECT_EQ(back->Adapt(ds, support, 4, "cpu"), z);
  EXPECT_EQ(back->TrainLatents(), seen);
  // It is not the encoder's answer: the same model adapting with its encoder differs.
  ModelOptions oe = o;
  oe.Set("vpl_adapt", "encoder");
  auto me = MakeModel(oe);
  me->Fit(ds, all, valid);
  const RowMatrixF ze = me->Adapt(ds, support, 4, "cpu");
  EXPECT_GT((ze - z).cwiseAbs().maxCoeff(), 1e-3);
  EXPECT_TRUE(ze.row(3).isZero());  // the encoder's cold start is the prior; population's is not
  EXPECT_FALSE(z.row(3).isZero());
  // A bad value is refused, naming the flag.
  ModelOptions bad = o;
  bad.Set("vpl_adapt", "nearest");
  try {
    MakeModel(bad);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--vpl-adapt"), std::string::npos) << e.what();
  }
}

TEST(VplTest, AutoAdaptationChoosesOnUsersHeldOutOfAnExtraFit) {
  // --vpl-adapt auto (the default): every 5th training user with more than 8 pairs is held out
  // of one extra fit; from 8 of its pairs (a seeded random draw) each adaptation predicts its
  // other pairs, and the lower log loss wins. The final model is then exactly the model of the
  // chosen mode: the extra fit leaves no trace.
  Dataset ds = SmallGroups(13);
  ModelOptions o = SmallOptions(13, 6);
  o.Set("refit", false);
  ASSERT_EQ(o.Text("vpl_adapt"), "auto");
  Split s = MakeSeenSplit(ds, ds.AllPairs(), ProtocolOptions{});
  auto m = MakeModel(o);
  const FitReport rep = m->Fit(ds, s.train, s.valid);
  const Json& sel = rep.details.at("adapt_selection");
  std::vector<int64_t> count(ds.n_users(), 0);
  for (int32_t u : s.train.user) ++count[u];
  for (int32_t u : s.valid.user) ++count[u];
  int64_t eligible = 0;
  for (int64_t c : count) eligible += c > personalization::kSelectContext;
  ASSERT_GT(eligible, 10);
  EXPECT_EQ(sel.at("users").number(), (eligible + 4) / 5);
  const double enc = sel.at("encoder_log_loss").number(),
               pop = sel.at("population_log_loss").number();
  EXPECT_TRUE(std::isfinite(enc) && enc > 0 && std::isfinite(pop) && pop > 0) << enc << " " << pop;
  const std::string chosen = pop < enc ? "population" : "encoder";
  EXPECT_EQ(sel.at("chosen").str(), chosen);
  EXPECT_EQ(m->options().Text("vpl_adapt"),
            chosen);  // the model is now that one (and its file says so)
  ModelOptions fixed = o;
  fixed.Set("vpl_adapt", chosen);
  auto mf = MakeModel(fixed);
  mf->Fit(ds, s.train, s.valid);
  EXPECT_EQ(m->PredictProb(ds, s.test, m->TrainLatents()),
            mf->PredictProb(ds, s.test, mf->TrainLatents()));
  EXPECT_EQ(m->Adapt(ds, s.test, ds.n_users(), "cpu"), mf->Adapt(ds, s.test, ds.n_users(), "cpu"));
  // Without validation pairs there is nothing to choose on: VPL's encoder.
  auto m2 = MakeModel(o);
  m2->Fit(ds, s.train, PairSet());
  EXPECT_EQ(m2->options().Text("vpl_adapt"), "encoder");
}

TEST(VplTest, ActiveSelectionAsksOnlyWhatItPicks) {
  Dataset ds = SmallGroups(8);
  auto m = SmallModel(ds, 8);
  const auto& am = Amortized(*m);
  for (const std::string crit : {"entropy", "bald", "random"}) {
    std::vector<ActiveUser> users(4);
    for (int u = 0; u < 4; ++u)
      for (int i = 0; i < 6; ++i) {
        users[u].pool_a.push_back((int32_t)(10 * u + i));
        users[u].pool_b.push_back((int32_t)(60 + 10 * u + i));
      }
    auto flipped = users;
    int calls = 0;
    std::vector<std::vector<int>> revealed(4);
    ActiveOptions o;
    o.queries = 3;
    o.criterion = crit;
    auto order = SelectQueries(am, ds, &users, o, [&](size_t u, size_t i) {
      ++calls;
      revealed[u].push_back((int)i);
      return i % 2 == 0;
    });
    EXPECT_EQ(calls, 12) << crit;
    for (int u = 0; u < 4; ++u) {
      EXPECT_EQ(order[u], revealed[u]) << crit;  // only the picked pair is revealed
      EXPECT_EQ(users[u].context.size(), 3u);
      std::vector<int> sorted = order[u];
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "asked twice";
    }
    // The first pick cannot depend on labels not yet revealed.
    auto order2 = SelectQueries(am, ds, &flipped, o, [](size_t, size_t i) { return i % 2 == 1; });
    for (int u = 0; u < 4; ++u) EXPECT_EQ(order2[u][0], order[u][0]) << crit;
  }
}

TEST(VplTest, ExperimentJsonReportsActiveUnitsAndValidates) {
  const std::string dir = testing::TestDir();
  WriteDataset(SmallGroups(9), dir + "/d.h5");
  auto r = testing::RunCli("experiment --data " + dir + "/d.h5 --model vpl --dim 3 --hidden 16 " +
                               "--epochs 3 --protocol unseen --shots 1,4 --active 3 --json " + dir +
                               "/m.json --quiet",
                           dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  Json j = Json::Parse(testing::ReadFile(dir + "/m.json"));
  ASSERT_TRUE(j.at("fit").contains("active_units"));
  // A count of latent dimensions (--dim 3): a whole number no larger than the latent size.
  const double units = j.at("fit").at("active_units").number();
  EXPECT_EQ(units, std::floor(units));
  EXPECT_LE(units, 3);
  EXPECT_EQ(j.at("active").at("curve").items().size(), 4u);
  EXPECT_EQ(j.at("active").at("criterion").str(), "bald");  // the default
  testing::ExpectValidMetrics(dir + "/m.json");
  // --active outside the unseen protocol is a usage error.
  r = testing::RunCli(
      "experiment --data " + dir + "/d.h5 --model vpl --active 3 --json " + dir + "/n.json", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--active needs --protocol unseen"), std::string::npos) << r.err;
}

TEST(VplTest, CliAdaptActiveWithPool) {
  const std::string dir = testing::TestDir();
  Dataset ds = SmallGroups(10);
  WriteDataset(ds, dir + "/d.h5");
  auto r = testing::RunCli("train --data " + dir + "/d.h5 --model vpl --dim 3 --hidden 16 " +
                               "--epochs 3 --out " + dir + "/m.pfmx --quiet",
                           dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ofstream pool(dir + "/pool.csv");
  pool << "user,chosen,rejected\n";
  for (int u = 0; u < 3; ++u)
    for (int i = 0; i < 5; ++i) pool << ds.user_ids[u] << "," << (i + u) << "," << (50 + i) << "\n";
  pool.close();
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/u.h5 --active 2 --pool " + dir + "/pool.csv --asked " + dir +
                          "/asked.csv --quiet",
                      dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(testing::Exists(dir + "/u.h5"));
  EXPECT_EQ(testing::Lines(testing::ReadFile(dir + "/asked.csv")), 1 + 3 * 2);
  // More questions than the pool holds: every pool pair is asked once, then the selection stops
  // (a million rounds over 5-pair pools used to run for minutes).
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/u2.h5 --active 1000000 --pool " + dir + "/pool.csv --asked " + dir +
                          "/asked2.csv --quiet",
                      dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(testing::Lines(testing::ReadFile(dir + "/asked2.csv")), 1 + 3 * 5);
  // Bad pool: unknown user, out-of-range item -> exit 1 naming file, line and value.
  std::ofstream(dir + "/bad.csv") << "user,chosen,rejected\nnobody,1,2\n";
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/v.h5 --active 2 --pool " + dir + "/bad.csv",
                      dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("bad.csv: line 2, field 'user': 'nobody'"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::Exists(dir + "/v.h5"));
  std::ofstream(dir + "/bad2.csv") << "user,chosen,rejected\n" << ds.user_ids[0] << ",1,999\n";
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/v.h5 --active 2 --pool " + dir + "/bad2.csv",
                      dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("field 'rejected': '999'"), std::string::npos) << r.err;
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/v.h5 --active 2",
                      dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--pool"), std::string::npos) << r.err;
  // The online user step and active selection are two ways to consume pairs: refused together.
  r = testing::RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/d.h5 --out " + dir +
                          "/v.h5 --online --active 2 --pool " + dir + "/pool.csv",
                      dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--online: cannot be combined with --active"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::Exists(dir + "/v.h5"));
}

}  // namespace
}  // namespace prefmix
