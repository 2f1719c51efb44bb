// Stage-2 online routing (routing/online.h): the quasi-Bayes step against the exact one-label
// posterior mean, the MAP estimator against the batch solver after every label, predictions
// that never look at their own or later labels, the end-state likelihood against the batch fit
// on a trained micro model, the experiment's online curve, and `adapt --online` from the CLI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/eval/protocol.h"
#include "core/io/h5io.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "data/generate.h"
#include "routing/online.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using routing::OnlineEstimator;
using routing::RunOnlineMixture;
using testing::Exists;
using testing::ExpectValidMetrics;
using testing::ReadFile;
using testing::RunCli;
using testing::TestDir;

/// One user's stream of n labels with K components: q [n, K] (signed log-odds).
UserStepProblem RandomStream(int64_t users, int n, int K, uint64_t seed, double scale = 2.0) {
  Rng rng(seed);
  UserStepProblem p;
  p.K = K;
  p.n_users = users;
  p.offsets.push_back(0);
  for (int64_t u = 0; u < users; ++u) {
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < K; ++k) p.q.push_back(static_cast<float>(scale * rng.Normal()));
    p.offsets.push_back(p.offsets.back() + n);
  }
  return p;
}

RowMatrixF RandomPrior(int64_t users, int K, uint64_t seed) {
  Rng rng(seed);
  RowMatrixF w(users, K);
  for (int64_t u = 0; u < users; ++u) {
    double z = 0;
    for (int k = 0; k < K; ++k) z += (w(u, k) = static_cast<float>(0.2 + rng.Uniform()));
    w.row(u) /= static_cast<float>(z);
  }
  return w;
}

TEST(OnlineTest, QuasiBayesStepKeepsTheExactPosteriorMean) {
  // Dirichlet(alpha) prior, one label with likelihood sum_k pi_k x_k. Exact posterior mean:
  // E[pi_i | y] = sum_k x_k E[pi_i pi_k] / sum_k x_k E[pi_k], with
  // E[pi_i pi_k] = alpha_i (alpha_k + [i = k]) / (a0 (a0 + 1)).
  const double alpha0[3] = {0.7, 1.3, 2.0};
  const float q[3] = {0.5f, -1.0f, 2.0f};
  const double a0 = alpha0[0] + alpha0[1] + alpha0[2];
  double x[3], den = 0;
  for (int k = 0; k < 3; ++k) den += (x[k] = math::Sigmoid(q[k])) * alpha0[k] / a0;
  double alpha[3] = {alpha0[0], alpha0[1], alpha0[2]};
  const double p = routing::QuasiBayesUpdate(q, 3, 1.0, alpha);
  EXPECT_NEAR(p, den, 1e-12);
  const double a1 = alpha[0] + alpha[1] + alpha[2];
  EXPECT_NEAR(a1, a0 + 1, 1e-12);
  for (int i = 0; i < 3; ++i) {
    double num = 0;
    for (int k = 0; k < 3; ++k) num += x[k] * alpha0[i] * (alpha0[k] + (i == k)) / (a0 * (a0 + 1));
    EXPECT_NEAR(alpha[i] / a1, num / den, 1e-12) << i;
  }
  // Extreme margins: no NaN, probabilities in [0, 1], weights stay a distribution.
  const float wild[3] = {-200.f, -150.f, -300.f};
  const double pw = routing::QuasiBayesUpdate(wild, 3, 1.0, alpha);
  EXPECT_TRUE(std::isfinite(pw));
  EXPECT_GE(pw, 0.0);
  for (double a : alpha) EXPECT_TRUE(std::isfinite(a) && a > 0);
}

TEST(OnlineTest, MapStateIsTheBatchMapAfterEveryLabel) {
  const int K = 4, n = 30;
  UserStepProblem s = RandomStream(1, n, K, 7);
  RowMatrixF prior = RandomPrior(1, K, 8);
  const double strength = 1.5;
  auto pass = RunOnlineMixture(s, prior, strength, OnlineEstimator::kMap, 5000, 1e-12);
  for (int t = 0; t <= n; ++t) {
    // The batch MAP from the first t labels, from the prior centre.
    double w[math::kMaxK];
    for (int k = 0; k < K; ++k) w[k] = prior(0, k);
    math::SolveMixtureSimplex(s.q.data(), nullptr, t, K, prior.data(), strength, 5000, 1e-12, w);
    if (t < n) {
      double p = 0;
      for (int k = 0; k < K; ++k) p += w[k] * math::Sigmoid(s.q[t * K + k]);
      EXPECT_NEAR(pass.prob[t], p, 1e-6) << "label " << t;
    } else {
      for (int k = 0; k < K; ++k) EXPECT_NEAR(pass.latent(0, k), w[k], 1e-5) << k;
    }
  }
}

TEST(OnlineTest, PredictionsNeverUseTheirOwnOrLaterLabels) {
  const int K = 3, n = 12;
  for (auto e : {OnlineEstimator::kMap, OnlineEstimator::kQuasiBayes}) {
    UserStepProblem s = RandomStream(5, n, K, 11);
    RowMatrixF prior = RandomPrior(5, K, 12);
    auto a = RunOnlineMixture(s, prior, 2.0, e);
    // Poison user 2's labels from position 6 on (flip: q -> -q) and user 4's everywhere.
    UserStepProblem t = s;
    for (int64_t j = s.offsets[2] + 6; j < s.offsets[3]; ++j)
      for (int k = 0; k < K; ++k) t.q[j * K + k] = -t.q[j * K + k];
    for (int64_t j = s.offsets[4]; j < s.offsets[5]; ++j)
      for (int k = 0; k < K; ++k) t.q[j * K + k] = 40.f;
    auto b = RunOnlineMixture(t, prior, 2.0, e);
    for (int64_t u = 0; u < 5; ++u)
      for (int64_t j = s.offsets[u]; j < s.offsets[u + 1]; ++j) {
        const int64_t pos = j - s.offsets[u];
        // Same state before the pair: the same P(first preferred); a flipped label turns
        // P(observed) into 1 - P(observed).
        if (u == 0 || u == 1 || u == 3 || (u == 2 && pos < 6))
          EXPECT_EQ(a.prob[j], b.prob[j]) << "user " << u << " pair " << pos;
        if (u == 2 && pos == 6) EXPECT_NEAR(b.prob[j], 1 - a.prob[j], 1e-12);
        if (u == 4 && pos == 0) {
          double p = 0;
          for (int k = 0; k < K; ++k) p += prior(u, k) * math::Sigmoid(40.f);
          EXPECT_NEAR(b.prob[j], p, 1e-6);
        }
      }
    // ... while later predictions of user 2 did change, and so did its final state.
    EXPECT_NE(a.prob[s.offsets[2] + 8], b.prob[s.offsets[2] + 8]);
    EXPECT_GT((a.latent.row(2) - b.latent.row(2)).cwiseAbs().maxCoeff(), 1e-4f);
    // Predicting the first label uses the prior alone.
    for (int64_t u = 0; u < 5; ++u) {
      double p = 0;
      for (int k = 0; k < K; ++k) p += prior(u, k) * math::Sigmoid(s.q[s.offsets[u] * K + k]);
      EXPECT_NEAR(a.prob[s.offsets[u]], p, 1e-6);
    }
  }
  EXPECT_THROW(routing::ParseOnlineEstimator("ons"), Error);
}

Dataset Groups(uint64_t seed) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.seed = seed;
  g.n_users = 150;
  g.n_items = 300;
  return data::Generate(g);
}

/// Log-likelihood of the observed labels of `pairs` under the model with `latents`.
double LogLik(const Model& m, const Dataset& ds, const PairSet& pairs, const RowMatrixF& lat) {
  const auto p = m.PredictProb(ds, pairs, lat);
  double ll = 0;
  for (size_t j = 0; j < pairs.size(); ++j)
    ll += std::log(std::max(pairs.label[j] ? p[j] : 1 - p[j], 1e-300));
  return ll;
}

TEST(OnlineTest, MicroEndStateReachesTheBatchFitsLikelihood) {
  Dataset ds = Groups(3);
  ProtocolOptions po;
  po.name = "unseen";
  po.shots = {1};
  Split s = MakeUnseenSplit(ds, ds.AllPairs(), po);
  ModelOptions mo;
  mo.family = "micro";
  mo.Set("k", 3);
  mo.Set("router", "context");  // no contexts in the preset: every user starts at the mean routing
  mo.Set("epochs", 150);
  auto model = MakeModel(mo);
  model->Fit(ds, s.train, s.valid);
  const PairSet stream = UnseenSupport(ds.AllPairs(), s, 1000);  // all their pairs, in order
  ASSERT_GT(stream.size(), 400u);
  const RowMatrixF batch = model->Adapt(ds, stream, ds.n_users(), "cpu");
  const double ll_batch = LogLik(*model, ds, stream, batch);
  for (const std::string est : {"map", "quasi-bayes"}) {
    OnlineResult on = model->AdaptOnline(ds, stream, ds.n_users(), est);
    ASSERT_EQ(on.prob.size(), stream.size());
    const double ll_online = LogLik(*model, ds, stream, on.latent);
    std::printf("%-12s end-state log-likelihood %.3f, batch fit %.3f (ratio %.4f)\n", est.c_str(),
                ll_online, ll_batch, ll_batch / ll_online);
    // "At least 99% of the batch fit's log-likelihood" (both negative: within 1% of it), for
    // the default estimator; quasi-Bayes never revisits a label's responsibilities and ends
    // lower (printed above, stated in the README).
    if (est == "map") EXPECT_GE(ll_online, 1.01 * ll_batch);
  }
  auto bt = ModelOptions();
  bt.family = "bt";
  auto b = MakeModel(bt);
  EXPECT_THROW(b->AdaptOnline(ds, stream, ds.n_users(), "map"), Error);
}

/// The experiment's online curve on planted data: at max k labels the online state scores the
/// batch curve's queries within 1 point of the batch user step (map: the same optimum).
TEST(OnlineTest, ExperimentOnlineCurveMatchesBatchAtTwentyLabels) {
  for (uint64_t seed : {1, 2}) {
    Dataset ds = Groups(seed);
    ProtocolOptions po;
    po.name = "unseen";
    po.online = true;
    po.seed = seed;
    ModelOptions mo;
    mo.family = "micro";
    mo.Set("k", 3);
    mo.Set("router", "context");
    mo.Set("epochs", 150);
    mo.seed = seed;
    for (const std::string est : {"map", "quasi-bayes"}) {
      po.online_estimator = est;
      Json m = RunExperiment(ds, mo, po);
      const Json& q = m.at("online_queries");
      const double on = q.at("accuracy").number(), batch = q.at("batch_accuracy").number();
      std::printf("seed %d %-12s online@20 %.4f batch@20 %.4f (gap %+.4f)\n", (int)seed,
                  est.c_str(), on, batch, on - batch);
      ASSERT_EQ(m.at("online").size(), 21u);
      EXPECT_EQ(m.at("online").items().front().at("labels").number(), 0);
      // map: the batch objective's optimum, so the bar (within 1 point) holds; the
      // quasi-Bayes figure is printed, not asserted (it misses the bar on some seeds).
      // (Not exactly equal: the batch step stops its EM at a looser tolerance.)
      if (est == "map") EXPECT_GE(on, batch - 0.01);
    }
  }
}

TEST(OnlineCliTest, AdaptOnlineWritesLatentsAndValidMetrics) {
  const std::string dir = TestDir();
  ASSERT_EQ(RunCli("generate --kind groups --seed 4 --users 120 --items 200 --out " + dir +
                       "/g.h5 --quiet",
                   dir)
                .rc,
            0);
  auto r = RunCli("train --data " + dir +
                      "/g.h5 --model micro --k 3 --router attributes "
                      "--epochs 80 --out " +
                      dir + "/m.pfmx --quiet",
                  dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  r = RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/g.h5 --out " + dir +
                 "/u.h5 --online --json " + dir + "/on.json --quiet",
             dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidMetrics(dir + "/on.json");
  const std::string js = ReadFile(dir + "/on.json");
  EXPECT_NE(js.find("\"protocol\": \"online\""), std::string::npos);
  EXPECT_NE(js.find("\"online\""), std::string::npos);
  // The latent written is the online state after all of each user's pairs, in the seeded order.
  Dataset ds = ReadDataset(dir + "/g.h5");
  auto model = LoadModel(dir + "/m.pfmx");
  OnlineResult on =
      model->AdaptOnline(ds, OnlineStream(ds.AllPairs(), ds.n_users(), 1), ds.n_users(), "map");
  std::vector<std::string> ids;
  RowMatrixF lat;
  ReadUserMatrix(dir + "/u.h5", "/users/latent", &ids, &lat);
  ASSERT_EQ(lat.rows(), ds.n_users());
  EXPECT_TRUE(lat.isApprox(on.latent, 1e-6f));
  // Clear errors, no output left behind.
  r = RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/g.h5 --out " + dir +
                 "/v.h5 --online --online-estimator ons",
             dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--online-estimator: 'ons'"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir + "/v.h5"));
  r = RunCli("adapt --model-file " + dir + "/m.pfmx --data " + dir + "/g.h5 --out " + dir +
                 "/v.h5 --json " + dir + "/x.json",
             dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--json: needs --online"), std::string::npos) << r.err;
  r = RunCli("experiment --data " + dir + "/g.h5 --model micro --protocol seen --online --json " +
                 dir + "/x.json",
             dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--online: applies to --protocol unseen"), std::string::npos) << r.err;
  r = RunCli("experiment --data " + dir + "/g.h5 --model bt --protocol unseen --online --json " +
                 dir + "/x.json",
             dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("no online user step"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir + "/x.json"));
}

}  // namespace
}  // namespace prefmix
