// micro (MiCRo mixture of BT heads with a router): hand-computed likelihood, K = 1 reduces to
// BT, finite-difference gradients, the mixture user step, save/load, support-only adaptation,
// and the acceptance on the groups preset (routing accuracy, seen accuracy vs oracle,
// cold start from attributes vs bt).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/device.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "data/generate.h"
#include "routing/micro.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using routing::MicroLossAndGrad;
using routing::MicroParams;
using routing::MicroPass;

/// A small random problem: items [12, 5], router inputs [4, 3] (+ a zero row), 40 pairs.
struct Toy {
  RowMatrixF items;
  RowMatrixD x;
  std::vector<int32_t> input;
  PairSet pairs;
  MicroParams p;
};

Toy MakeToy(int K, uint64_t seed) {
  Rng rng(seed);
  Toy t;
  t.items.resize(12, 5);
  for (Eigen::Index i = 0; i < t.items.size(); ++i) t.items.data()[i] = (float)rng.Normal();
  t.x = RowMatrixD::Zero(5, 3);
  for (int i = 0; i < 4; ++i)
    for (int d = 0; d < 3; ++d) t.x(i, d) = rng.Normal();
  for (int j = 0; j < 40; ++j) {
    const int32_t a = (int32_t)rng.Below(12);
    int32_t b = (int32_t)rng.Below(11);
    if (b >= a) ++b;
    t.pairs.Push(j % 4, a, b, -1, 0.5f + (float)rng.Below(3), (float)(j % 3 != 0), NAN);
    t.input.push_back(j % 5);  // row 4 is the zero input
  }
  t.p.theta.resize(5, K);
  t.p.w.resize(K, 3);
  t.p.b.resize(K);
  for (Eigen::Index i = 0; i < t.p.theta.size(); ++i) t.p.theta.data()[i] = 0.7 * rng.Normal();
  for (Eigen::Index i = 0; i < t.p.w.size(); ++i) t.p.w.data()[i] = 0.7 * rng.Normal();
  for (int k = 0; k < K; ++k) t.p.b[k] = 0.3 * rng.Normal();
  return t;
}

TEST(MicroTest, LikelihoodMatchesHandValue) {
  // 2 items with one-dim embeddings 1 and 0; heads theta = (2, -1); router input x = 1 with
  // W = (1, 0), b = 0: pi = softmax(1, 0).
  RowMatrixF items(2, 1);
  items << 1.0f, 0.0f;
  RowMatrixD x(1, 1);
  x << 1.0;
  PairSet pairs;
  pairs.Push(0, 0, 1, -1, 1.0f, 1.0f, NAN);
  MicroParams p;
  p.theta.resize(1, 2);
  p.theta << 2.0, -1.0;
  p.w.resize(2, 1);
  p.w << 1.0, 0.0;
  p.b = Eigen::VectorXd::Zero(2);
  const double pi0 = std::exp(1.0) / (std::exp(1.0) + 1.0);
  const double P = pi0 / (1 + std::exp(-2.0)) + (1 - pi0) / (1 + std::exp(1.0));
  MicroPass pass = MicroLossAndGrad(items, x, {0}, pairs, p, 0.0, false, 0.0);
  EXPECT_NEAR(pass.data_loss, -std::log(P), 1e-9);
  // Batch entropy term: with one input pi_bar = pi.
  const double H = -(pi0 * std::log(pi0) + (1 - pi0) * std::log(1 - pi0));
  pass = MicroLossAndGrad(items, x, {0}, pairs, p, 0.5, false, 0.0);
  EXPECT_NEAR(pass.loss, -std::log(P) - 0.5 * H, 1e-9);
}

TEST(MicroTest, OneHeadReducesToBradleyTerry) {
  Toy t = MakeToy(1, 3);
  MicroPass pass = MicroLossAndGrad(t.items, t.x, t.input, t.pairs, t.p, 0.5, false, 0.0);
  const RowMatrixD R = (t.items * t.p.theta.cast<float>()).cast<double>();
  double s = 0, c = 0;
  for (size_t j = 0; j < t.pairs.size(); ++j) {
    s += t.pairs.weight[j] *
         math::BtLoss(R(t.pairs.first[j], 0) - R(t.pairs.second[j], 0), t.pairs.label[j]);
    c += t.pairs.weight[j];
  }
  EXPECT_NEAR(pass.data_loss, s / c, 1e-9);
  EXPECT_NEAR(pass.loss, s / c, 1e-9);  // H(pi_bar) = 0 with one head
  EXPECT_NEAR(pass.grad.w.norm() + pass.grad.b.norm(), 0.0, 1e-12);
}

/// Central differences of every parameter against the analytic gradient (with per-input routing
/// offsets too when `offsets`).
void ExpectGradient(bool sample_entropy, bool offsets = false) {
  Toy t = MakeToy(3, 7);
  if (offsets) {
    Rng rng(11);
    t.p.offset.resize(t.x.rows(), 3);
    for (Eigen::Index i = 0; i < t.p.offset.size(); ++i) t.p.offset.data()[i] = rng.Normal();
  }
  const double l2 = 0.01, lambda = 0.5, eps = 1e-3;
  MicroPass pass =
      MicroLossAndGrad(t.items, t.x, t.input, t.pairs, t.p, lambda, sample_entropy, l2);
  auto f = [&](const MicroParams& q) {
    return MicroLossAndGrad(t.items, t.x, t.input, t.pairs, q, lambda, sample_entropy, l2).loss;
  };
  auto check = [&](Eigen::MatrixXd MicroParams::*m, const Eigen::MatrixXd& g, const char* name) {
    for (Eigen::Index i = 0; i < g.size(); ++i) {
      MicroParams a = t.p, b = t.p;
      (a.*m).data()[i] += eps;
      (b.*m).data()[i] -= eps;
      const double fd = (f(a) - f(b)) / (2 * eps);
      EXPECT_NEAR(g.data()[i], fd, 2e-4 + 1e-3 * std::fabs(fd))
          << name << "[" << i << "] sample_entropy=" << sample_entropy;
    }
  };
  check(&MicroParams::theta, pass.grad.theta, "theta");
  check(&MicroParams::w, pass.grad.w, "W");
  if (offsets) {
    ASSERT_EQ(pass.grad.offset.rows(), t.x.rows());
    check(&MicroParams::offset, pass.grad.offset, "offset");
  }
  for (int k = 0; k < 3; ++k) {
    MicroParams a = t.p, b = t.p;
    a.b[k] += eps;
    b.b[k] -= eps;
    const double fd = (f(a) - f(b)) / (2 * eps);
    EXPECT_NEAR(pass.grad.b[k], fd, 2e-4 + 1e-3 * std::fabs(fd)) << "b[" << k << "]";
  }
}

TEST(MicroTest, GradientMatchesFiniteDifferencesBatchEntropy) { ExpectGradient(false); }
TEST(MicroTest, GradientMatchesFiniteDifferencesSampleEntropy) { ExpectGradient(true); }
TEST(MicroTest, GradientMatchesFiniteDifferencesWithPerUserRouting) { ExpectGradient(false, true); }

TEST(MicroTest, MixtureUserStepIsMonotoneMapAndKeepsPriorWithoutPairs) {
  Rng rng(5);
  const int K = 3, n = 30;
  UserStepProblem prob;
  prob.K = K;
  prob.n_users = 2;
  prob.offsets = {0, n, n};  // user 1 has no pairs
  for (int i = 0; i < n * K; ++i) prob.q.push_back((float)(2 * rng.Normal() + (i % K == 1)));
  prob.lambda = 2.0;
  RowMatrixF prior(2, K);
  prior << 0.5f, 0.3f, 0.2f,  //
      0.1f, 0.6f, 0.3f;
  UserStepOptions opt;
  opt.max_iter = 2000;
  opt.tol = 1e-12;
  UserStepResult r = RunUserStep(UserStepLink::kMixture, prob, opt, "cpu", &prior);
  EXPECT_NEAR(r.latent.row(0).sum(), 1.0, 1e-5);
  for (int k = 0; k < K; ++k) EXPECT_NEAR(r.latent(1, k), prior(1, k), 1e-6);
  // The solution beats (or ties) every point of a grid on the simplex: it is the MAP.
  auto g = [&](const double* w) {
    double s = 0;
    for (int j = 0; j < n; ++j) {
      double p = 0;
      for (int k = 0; k < K; ++k) p += w[k] * math::Sigmoid(prob.q[j * K + k]);
      s += std::log(p);
    }
    for (int k = 0; k < K; ++k) s += prob.lambda * prior(0, k) * std::log(w[k]);
    return s;
  };
  const double sol[3] = {r.latent(0, 0), r.latent(0, 1), r.latent(0, 2)};
  EXPECT_NEAR(r.objective[0], g(sol), 1e-4);
  for (int a = 1; a < 40; ++a)
    for (int b = 1; a + b < 40; ++b) {
      const double w[3] = {a / 40.0, b / 40.0, (40 - a - b) / 40.0};
      EXPECT_LE(g(w), r.objective[0] + 1e-6);
    }
  // Iterations never decrease the objective.
  double last = -INFINITY;
  for (int it = 1; it <= 20; ++it) {
    double w[3] = {prior(0, 0), prior(0, 1), prior(0, 2)};
    auto info = math::SolveMixtureSimplex(prob.q.data(), nullptr, n, K, prior.row(0).data(),
                                          prob.lambda, it, 0.0, w);
    EXPECT_GE(info.objective, last - 1e-12) << "iteration " << it;
    last = info.objective;
  }
}

TEST(MicroTest, MixtureUserStepCudaMatchesCpu) {
  if (!BuiltWithCuda() || CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  Rng rng(11);
  const int K = 4;
  UserStepProblem prob;
  prob.K = K;
  prob.n_users = 300;
  prob.offsets.push_back(0);
  for (int64_t u = 0; u < prob.n_users; ++u) prob.offsets.push_back(prob.offsets.back() + u % 7);
  for (int64_t i = 0; i < prob.n_pairs() * K; ++i) prob.q.push_back((float)(2 * rng.Normal()));
  for (int64_t i = 0; i < prob.n_pairs(); ++i) prob.weight.push_back(0.5f + (float)rng.Below(2));
  prob.lambda = 1.5;
  RowMatrixF prior(prob.n_users, K);
  for (int64_t u = 0; u < prob.n_users; ++u)
    for (int k = 0; k < K; ++k) prior(u, k) = 0.1f + (float)rng.Below(5);
  for (int64_t u = 0; u < prob.n_users; ++u) prior.row(u) /= prior.row(u).sum();
  UserStepOptions opt;
  opt.max_iter = 50;
  UserStepResult c = RunUserStep(UserStepLink::kMixture, prob, opt, "cpu", &prior);
  UserStepResult g = RunUserStep(UserStepLink::kMixture, prob, opt, "cuda", &prior);
  constexpr float kF32Tol = 1e-5f;
  for (int64_t u = 0; u < prob.n_users; ++u) {
    EXPECT_LE((c.latent.row(u) - g.latent.row(u)).cwiseAbs().maxCoeff(), kF32Tol) << "user " << u;
    EXPECT_NEAR(c.objective[u], g.objective[u], 1e-6 * (1 + std::fabs(c.objective[u])));
  }
}

/// A small groups dataset for the model-level tests.
Dataset SmallGroups(uint64_t seed, int64_t users = 90) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.seed = seed;
  g.n_users = users;
  g.n_items = 300;
  return data::Generate(g);
}

TEST(MicroTest, SaveLoadGivesIdenticalPredictions) {
  Dataset ds = SmallGroups(2);
  ProtocolOptions po;
  Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
  ModelOptions mo = MicroOptions(2);
  mo.Set("epochs", 60);
  auto model = MakeModel(mo);
  model->Fit(ds, s.train, s.valid);
  const std::string dir = testing::TestDir();
  SaveModel(*model, dir + "/m.pfmx");
  auto loaded = LoadModel(dir + "/m.pfmx");
  EXPECT_EQ(loaded->Family(), "micro");
  EXPECT_EQ(loaded->options().Text("router"), "attributes");
  EXPECT_EQ(model->PredictProb(ds, s.test, model->TrainLatents()),
            loaded->PredictProb(ds, s.test, loaded->TrainLatents()));
  EXPECT_TRUE(model->Score(ds, model->TrainLatents()) == loaded->Score(ds, loaded->TrainLatents()));
  PairSet support;
  for (size_t j = 0; j < 30; ++j) support.PushFrom(s.train, j);
  EXPECT_TRUE(model->Adapt(ds, support, ds.n_users(), "cpu") ==
              loaded->Adapt(ds, support, ds.n_users(), "cpu"));
  EXPECT_EQ(model->Params().at("shared").number(), loaded->Params().at("shared").number());
}

TEST(MicroTest, AdaptUsesOnlySupportPairsAndRoutesColdUsersByAttributes) {
  Dataset ds = SmallGroups(3);
  ProtocolOptions po;
  Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
  ModelOptions mo = MicroOptions(3);
  mo.Set("epochs", 60);
  auto model = MakeModel(mo);
  model->Fit(ds, s.train, s.valid);
  // Support: user 0's first 5 training pairs; or those plus other users' pairs.
  auto by = s.train.ByUser(ds.n_users());
  PairSet mine, more;
  for (int i = 0; i < 5; ++i) mine.PushFrom(s.train, by[0][i]);
  more = mine;
  for (int64_t u = 1; u < ds.n_users(); ++u)
    for (size_t j : by[u]) more.PushFrom(s.train, j);
  RowMatrixF a = model->Adapt(ds, mine, ds.n_users(), "cpu");
  RowMatrixF b = model->Adapt(ds, more, ds.n_users(), "cpu");
  EXPECT_TRUE(a.row(0) == b.row(0));
  // Users without support get the router's prior on their attributes: users with the same
  // attribute codes share it; some users differ (the router is not constant).
  RowMatrixF cold = model->Adapt(ds, PairSet(), ds.n_users(), "cpu");
  EXPECT_TRUE(a.row(1) == cold.row(1));
  bool differ = false;
  for (int64_t u = 1; u < ds.n_users(); ++u) {
    bool same_codes = true;
    for (const auto& at : ds.attributes) same_codes &= at.codes[u] == at.codes[1];
    if (same_codes)
      EXPECT_TRUE(cold.row(u).isApprox(cold.row(1), 1e-6f)) << u;
    else
      differ |= (cold.row(u) - cold.row(1)).cwiseAbs().maxCoeff() > 1e-3f;
  }
  EXPECT_TRUE(differ);
  // The support moved user 0 away from the prior.
  EXPECT_GT((a.row(0) - cold.row(0)).cwiseAbs().maxCoeff(), 1e-4f);
}

}  // namespace
}  // namespace prefmix
