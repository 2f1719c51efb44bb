// Unit tests of core's maths: BT loss/gradient, log-sigmoid at extreme margins, the simplex
// projection and the user-step solvers against float64 references; JSON and SHA-256.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/device.h"
#include "core/error.h"
#include "core/io/json.h"
#include "core/io/sha256.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"

namespace prefmix {
namespace {

TEST(MathTest, BtLossMatchesHandValues) {
  // -log sigma(0) = log 2; -log sigma(2) = log(1 + e^-2).
  EXPECT_NEAR(math::BtLoss(0.0, 1.0), std::log(2.0), 1e-12);
  EXPECT_NEAR(math::BtLoss(2.0, 1.0), std::log1p(std::exp(-2.0)), 1e-12);
  EXPECT_NEAR(math::BtLoss(2.0, 0.0), std::log1p(std::exp(2.0)), 1e-12);
  EXPECT_NEAR(math::Sigmoid(1.5), 1.0 / (1.0 + std::exp(-1.5)), 1e-15);
}

TEST(MathTest, BtGradientMatchesFiniteDifferences) {
  for (double y : {0.0, 0.3, 1.0})
    for (double x : {-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0}) {
      const double h = 1e-5;
      double fd = (math::BtLoss(x + h, y) - math::BtLoss(x - h, y)) / (2 * h);
      EXPECT_NEAR(math::BtLossGrad(x, y), fd, 1e-6) << "x=" << x << " y=" << y;
    }
}

TEST(MathTest, LogSigmoidIsFiniteAtExtremeMargins) {
  for (double x : {-1e6, -800.0, -40.0, 40.0, 800.0, 1e6}) {
    EXPECT_TRUE(std::isfinite(math::LogSigmoid(x))) << x;
    EXPECT_TRUE(std::isfinite(math::Sigmoid(x))) << x;
  }
  EXPECT_NEAR(math::LogSigmoid(-800.0), -800.0, 1e-9);
  EXPECT_NEAR(math::LogSigmoid(800.0), 0.0, 1e-12);
}

TEST(MathTest, PolynomialLog1pAndLogSigmoidMeetTheirStatedBounds) {
  // Log1pPoly01: |t P(t) - log1p(t)| < 2.0e-7 and relative < 3.2e-7 on a fine grid of [0, 1].
  double worst_abs = 0, worst_rel = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float t = static_cast<float>(i / 200000.0);
    const double exact = std::log1p(static_cast<double>(t));
    const double err = std::fabs(static_cast<double>(math::Log1pPoly01(t)) - exact);
    worst_abs = std::max(worst_abs, err);
    if (exact > 0) worst_rel = std::max(worst_rel, err / exact);
  }
  EXPECT_LT(worst_abs, 2.0e-7);
  EXPECT_LT(worst_rel, 3.2e-7);
  EXPECT_EQ(math::Log1pPoly01(0.0f), 0.0f);
  // LogSigmoidPoly against the double formula: error below 3e-7 plus the float rounding of the
  // result (1.2e-7 |log sigma|); finite and never positive at extreme margins.
  for (int i = -40000; i <= 40000; ++i) {
    const float x = static_cast<float>(i / 1000.0);
    const double exact = math::LogSigmoid(static_cast<double>(x));
    const double got = math::LogSigmoidPoly(x);
    ASSERT_LE(std::fabs(got - exact), 3e-7 + 1.2e-7 * std::fabs(exact)) << x;
  }
  for (float x : {-1e30f, -88.0f, 88.0f, 1e30f}) {
    EXPECT_TRUE(std::isfinite(math::LogSigmoidPoly(x))) << x;
    EXPECT_LE(math::LogSigmoidPoly(x), 0.0f) << x;
  }
}

TEST(MathTest, ProjectSimplexGivesTheClosestSimplexPoint) {
  Rng rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int K = 1 + static_cast<int>(rng.Below(8));
    double v[math::kMaxK], p[math::kMaxK];
    for (int k = 0; k < K; ++k) p[k] = v[k] = 3 * rng.Normal();
    math::ProjectSimplex(p, K);
    double s = 0;
    for (int k = 0; k < K; ++k) {
      EXPECT_GE(p[k], 0.0);
      s += p[k];
    }
    EXPECT_NEAR(s, 1.0, 1e-12);
    // Optimality: no random simplex point is closer to v.
    double d = 0;
    for (int k = 0; k < K; ++k) d += (p[k] - v[k]) * (p[k] - v[k]);
    for (int r = 0; r < 50; ++r) {
      double w[math::kMaxK], z = 0;
      for (int k = 0; k < K; ++k) z += (w[k] = rng.Gamma(0.5));
      double dw = 0;
      for (int k = 0; k < K; ++k) dw += (w[k] / z - v[k]) * (w[k] / z - v[k]);
      EXPECT_GE(dw, d - 1e-12);
    }
  }
}

/// Float64 reference for the linear link with K = 2: maximise over t in [0, 1] (w = (t, 1-t))
/// by golden-section search (the objective is concave).
double ReferenceK2(const std::vector<float>& q, const std::vector<float>& w0, double lambda) {
  auto f = [&](double t) {
    double w[2] = {t, 1 - t};
    return math::LinearObjective(q.data(), nullptr, nullptr, q.size() / 2, 2, w, w0.data(), lambda,
                                 nullptr);
  };
  double a = 0, b = 1;
  const double g = (std::sqrt(5.0) - 1) / 2;
  for (int i = 0; i < 200; ++i) {
    double c = b - g * (b - a), d = a + g * (b - a);
    if (f(c) > f(d))
      b = d;
    else
      a = c;
  }
  return std::max({f(0.5 * (a + b)), f(0.0), f(1.0)});
}

TEST(UserStepTest, LinearSolverReachesTheReferenceObjective) {
  Rng rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 1 + static_cast<int>(rng.Below(20));
    std::vector<float> q(2 * n), w0 = {0.4f, 0.6f};
    const double scale = trial % 3 == 0 ? 30.0 : 2.0;  // extreme margins too
    for (auto& x : q) x = static_cast<float>(scale * rng.Normal());
    const double lambda = trial % 2 ? 0.5 : 0.0;
    double w[2] = {0.5, 0.5};
    auto info = math::SolveLinearSimplex(q.data(), nullptr, nullptr, n, 2, w0.data(), lambda, 5000,
                                         1e-10, w);
    double ref = ReferenceK2(q, w0, lambda);
    EXPECT_NEAR(info.objective, ref, 1e-4 * (1 + std::fabs(ref))) << "trial " << trial;
    EXPECT_TRUE(std::isfinite(info.objective));
  }
}

TEST(UserStepTest, LinearSolverKktResidualIsSmallForK8) {
  Rng rng(5);
  UserStepProblem p;
  p.K = 8;
  p.n_users = 50;
  p.offsets.push_back(0);
  for (int u = 0; u < p.n_users; ++u) p.offsets.push_back(p.offsets.back() + 1 + u % 20);
  p.q.resize(p.n_pairs() * p.K);
  for (auto& x : p.q) x = static_cast<float>(rng.Normal());
  p.lambda = 1.0;
  auto r = RunUserStep(UserStepLink::kLinear, p, UserStepOptions{});
  for (int u = 0; u < p.n_users; ++u) {
    EXPECT_LT(r.residual[u], 1e-6) << "user " << u;
    EXPECT_NEAR(r.latent.row(u).sum(), 1.0f, 1e-5);
    EXPECT_GE(r.latent.row(u).minCoeff(), 0.0f);
  }
  // Deterministic: same input, same output bits.
  auto r2 = RunUserStep(UserStepLink::kLinear, p, UserStepOptions{});
  EXPECT_TRUE(r.latent == r2.latent);
}

TEST(UserStepTest, LoglikLinkMatchesHandComputation) {
  UserStepProblem p;
  p.K = 2;
  p.n_users = 1;
  p.offsets = {0, 2};
  p.q = {1.0f, -1.0f, 2.0f, 0.5f};
  p.weight = {1.0f, 2.0f};
  p.prior = {std::log(0.25f), std::log(0.75f)};
  UserStepOptions o;
  auto r = RunUserStep(UserStepLink::kLoglik, p, o);
  const double l0 = std::log(0.25) + math::LogSigmoid(1.0) + 2 * math::LogSigmoid(2.0);
  const double l1 = std::log(0.75) + math::LogSigmoid(-1.0) + 2 * math::LogSigmoid(0.5);
  EXPECT_NEAR(r.loglik(0, 0), l0, 1e-5);
  EXPECT_NEAR(r.loglik(0, 1), l1, 1e-5);
  const double g0 = 1.0 / (1.0 + std::exp(l1 - l0));
  EXPECT_NEAR(r.latent(0, 0), g0, 1e-6);
  o.hard = true;
  auto h = RunUserStep(UserStepLink::kLoglik, p, o);
  EXPECT_EQ(h.latent(0, 0), l0 > l1 ? 1.0f : 0.0f);
  // Extreme margins: no NaN.
  p.q = {1e4f, -1e4f, -1e4f, 1e4f};
  auto e = RunUserStep(UserStepLink::kLoglik, p, UserStepOptions{});
  EXPECT_TRUE(e.latent.allFinite());
}

TEST(DeviceTest, CudaWithoutDeviceIsAClearError) {
  UserStepProblem p;
  p.K = 2;
  p.n_users = 0;
  p.offsets = {0};
  if (CudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    RunUserStep(UserStepLink::kLinear, p, UserStepOptions{}, "cuda");
    FAIL() << "expected prefmix::Error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--device cuda"), std::string::npos) << m;
  }
}

TEST(JsonTest, RoundTripKeepsOrderAndValues) {
  Json j = Json::Object();
  j["b"] = 1;
  j["a"] = "x\"y\n";
  j["c"] = Json::Array();
  j["c"].push_back(0.25);
  j["c"].push_back(true);
  Json p = Json::Parse(j.Dump());
  EXPECT_EQ(p.members()[0].first, "b");
  EXPECT_EQ(p.at("a").str(), "x\"y\n");
  EXPECT_DOUBLE_EQ(p.at("c").items()[0].number(), 0.25);
  EXPECT_THROW(Json::Parse("{\"a\": }"), Error);
  Json bad = Json::Object();
  bad["x"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(bad.Dump(), InternalError);  // never write NaN into a metrics file
}

TEST(Sha256Test, KnownVectors) {
  Sha256 a;
  a.Update(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_EQ(a.HexDigest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 e;
  EXPECT_EQ(e.HexDigest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace prefmix

#include "core/eval/stats.h"

namespace prefmix {
namespace {

TEST(StatsTest, WilcoxonExactSmallSamples) {
  // Five positive differences: W+ = 15, P(W+ = 15) = 1/32, two-sided p = 1/16.
  auto t = WilcoxonSignedRank({0, 0, 0, 0, 0}, {1, 2, 3, 4, 5});
  EXPECT_EQ(t.n, 5);
  EXPECT_DOUBLE_EQ(t.statistic, 15);
  EXPECT_NEAR(t.p_value, 1.0 / 16, 1e-12);
  // d = (+1, -2, +3, +4, -5): W+ = 1 + 3 + 4 = 8 = n(n+1)/4 + 0.5 -> p = 1 (symmetric, central).
  auto c = WilcoxonSignedRank({0, 2, 0, 0, 5}, {1, 0, 3, 4, 0});
  EXPECT_DOUBLE_EQ(c.statistic, 8);
  // P(W+ <= 7) = P(W+ >= 8) = 1/2 for n = 5 -> p = min(1, 2 * 0.5) = 1.
  EXPECT_NEAR(c.p_value, 1.0, 1e-12);
  // 25 wins out of 25: p = 2 / 2^25.
  std::vector<double> a(25, 0.0), b(25);
  for (int i = 0; i < 25; ++i) b[i] = 0.01 * (i + 1);
  EXPECT_NEAR(WilcoxonSignedRank(a, b).p_value, 2.0 / std::pow(2.0, 25), 1e-15);
  // Zeros are dropped; all-equal samples give p = 1.
  EXPECT_EQ(WilcoxonSignedRank({1, 2}, {1, 2}).n, 0);
  EXPECT_DOUBLE_EQ(WilcoxonSignedRank({1, 2}, {1, 2}).p_value, 1.0);
}

TEST(StatsTest, WilcoxonTiesAndNormalApproximation) {
  // Ties: |d| = 1, 1, 2 -> ranks 1.5, 1.5, 3; all positive -> W+ = 6, p = 2/8.
  auto t = WilcoxonSignedRank({0, 0, 0}, {1, -0 + 1, 2});
  EXPECT_DOUBLE_EQ(t.statistic, 6);
  EXPECT_NEAR(t.p_value, 0.25, 1e-12);
  // n = 100 alternating signs of equal magnitude ranks -> large p; all positive -> tiny p.
  std::vector<double> a(100, 0.0), b(100);
  for (int i = 0; i < 100; ++i) b[i] = (i % 2 ? 1 : -1) * (1 + i / 2);
  EXPECT_GT(WilcoxonSignedRank(a, b).p_value, 0.5);
  for (int i = 0; i < 100; ++i) b[i] = 1 + i;
  EXPECT_LT(WilcoxonSignedRank(a, b).p_value, 1e-15);
}

}  // namespace
}  // namespace prefmix

namespace prefmix {
namespace {

TEST(MathTest, FusedBtLossAndGradMatchesSeparateFunctions) {
  for (double y : {0.0, 0.25, 1.0})
    for (double x : {-700.0, -20.0, -1.0, 0.0, 0.3, 5.0, 40.0, 700.0}) {
      double g = 0;
      const double l = math::BtLossAndGrad(x, y, &g);
      EXPECT_NEAR(l, math::BtLoss(x, y), 1e-12 * (1 + std::fabs(l))) << x;
      EXPECT_NEAR(g, math::BtLossGrad(x, y), 1e-15) << x;
    }
}

}  // namespace
}  // namespace prefmix
