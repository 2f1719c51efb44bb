// core's user step (issue 7): the Newton solver of the linear link against the FISTA reference
// and KKT, the normalized link's objective against a direct computation and its gradient
// against finite differences, the gaussian link against hand-computed modes and the Laplace
// posterior's definition, and CPU vs CUDA parity for every link (skipped without a GPU).
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "core/userstep/user_step_raw.h"

namespace prefmix {
namespace {

/// A random problem: n_users users with 0..max_pairs pairs (user u has u % (max_pairs + 1)),
/// margins of scale `scale`, random weights and offsets when asked.
UserStepProblem RandomProblem(int K, int n_users, int max_pairs, double scale, bool offsets,
                              uint64_t seed) {
  Rng rng(seed);
  UserStepProblem p;
  p.K = K;
  p.n_users = n_users;
  p.offsets.push_back(0);
  for (int u = 0; u < n_users; ++u) p.offsets.push_back(p.offsets.back() + u % (max_pairs + 1));
  p.q.resize(p.n_pairs() * K);
  for (auto& x : p.q) x = static_cast<float>(scale * rng.Normal());
  p.weight.resize(p.n_pairs());
  for (auto& w : p.weight) w = static_cast<float>(0.5 + rng.Uniform());
  if (offsets) {
    p.offset.resize(p.n_pairs());
    for (auto& b : p.offset) b = static_cast<float>(rng.Normal());
  }
  return p;
}

TEST(UserStepTest, LinearNewtonReachesTheFistaObjectiveAndKkt) {
  int cases = 0, iters_total = 0, users_total = 0;
  for (int K : {1, 2, 3, 10, 32})
    for (double scale : {0.3, 1.5, 40.0})  // 40: extreme margins, saturated sigmoids
      for (double lambda : {0.0, 0.1, 1.0}) {
        UserStepProblem p = RandomProblem(K, 16, 40, scale, scale > 1, 1000 + K);
        p.lambda = lambda;
        if (lambda > 0) {
          p.prior.resize(K);
          for (int k = 0; k < K; ++k) p.prior[k] = 1.0f / K;
        }
        UserStepOptions o;
        o.tol = 1e-8;
        o.max_iter = 200;
        const UserStepResult r = RunUserStep(UserStepLink::kLinear, p, o);
        for (int u = 0; u < p.n_users; ++u) {
          const int64_t b = p.offsets[u], n = p.offsets[u + 1] - b;
          double w[math::kMaxK];
          for (int k = 0; k < K; ++k) w[k] = 1.0 / K;
          const auto ref = math::SolveLinearSimplexFista(
              p.q.data() + b * K, p.offset.empty() ? nullptr : p.offset.data() + b,
              p.weight.data() + b, n, K, p.prior.empty() ? nullptr : p.prior.data(), lambda, 10000,
              1e-10, w);
          ASSERT_TRUE(std::isfinite(r.objective[u]));
          EXPECT_GE(r.objective[u], ref.objective - 1e-5 * (1 + std::fabs(ref.objective)))
              << "K=" << K << " scale=" << scale << " lambda=" << lambda << " user " << u;
          EXPECT_NEAR(r.latent.row(u).sum(), 1.0f, 1e-5);
          EXPECT_GE(r.latent.row(u).minCoeff(), 0.0f);
          // KKT at tolerance, except where saturated margins make the gradient flat beyond
          // double precision (the objective check above still holds there).
          if (scale < 10) EXPECT_LT(r.residual[u], 1e-6) << "K=" << K << " user " << u;
          iters_total += r.iterations[u];
          ++users_total;
        }
        ++cases;
      }
  std::printf("linear Newton: %d cases, mean %.2f iterations per user\n", cases,
              static_cast<double>(iters_total) / users_total);
}

TEST(UserStepTest, LinearNewtonConvergesInFewIterations) {
  // The benchmark's setting (K = 10, k = 20, lambda = 0.1): Newton needs few iterations where
  // FISTA needed hundreds.
  UserStepProblem p = RandomProblem(10, 200, 20, 1.5, false, 7);
  for (int u = 0; u < p.n_users; ++u) p.offsets[u + 1] = p.offsets[u] + 20;
  p.q.resize(p.n_pairs() * 10);
  Rng rng(8);
  for (auto& x : p.q) x = static_cast<float>(1.5 * rng.Normal());
  p.weight.assign(p.n_pairs(), 1.0f);
  p.lambda = 0.1;
  UserStepOptions o;
  o.tol = 1e-5;
  o.max_iter = 100;
  const UserStepResult r = RunUserStep(UserStepLink::kLinear, p, o);
  double mean = 0;
  for (int u = 0; u < p.n_users; ++u) {
    EXPECT_LT(r.residual[u], 1e-5);
    mean += r.iterations[u];
  }
  mean /= p.n_users;
  std::printf("K=10, k=20: mean %.2f Newton iterations to KKT <= 1e-5\n", mean);
  EXPECT_LT(mean, 20);
}

TEST(UserStepTest, LinearNewtonConvergesForEveryUserAtSaturatedMargins) {
  // Regression: at margins ~30 a face can be stationary to rounding (the Newton step gains
  // exactly 0) while the KKT residual is large; the solver used to accept such zero-gain steps
  // for ever (found by the device check's CPU-vs-CUDA parity: 5 users in 6,000 stuck at
  // residuals 24-192 after 500 iterations, objectives up to 18% below the optimum). Every user
  // must now reach the tolerance, or stop early where f cannot ascend at machine precision
  // with FISTA's objective (20,000 iterations) not above its own.
  for (int K : {10, 32}) {
    UserStepProblem p = RandomProblem(K, 3000, 20, 30.0, true, 4242 + K);
    p.lambda = 0.5;
    UserStepOptions o;
    o.tol = 1e-5;
    o.max_iter = 500;
    const UserStepResult r = RunUserStep(UserStepLink::kLinear, p, o);
    int stuck = 0, precision_stops = 0, most = 0;
    for (int u = 0; u < p.n_users; ++u) {
      most = std::max(most, r.iterations[u]);
      if (r.residual[u] < 1e-5) continue;
      ++precision_stops;
      const int64_t b = p.offsets[u], n = p.offsets[u + 1] - b;
      double w[math::kMaxK];
      for (int k = 0; k < K; ++k) w[k] = 1.0 / K;
      const auto ref = math::SolveLinearSimplexFista(p.q.data() + b * K, p.offset.data() + b,
                                                     p.weight.data() + b, n, K, nullptr, p.lambda,
                                                     20000, 1e-9, w);
      stuck += r.iterations[u] >= o.max_iter ||
               r.objective[u] < ref.objective - 1e-9 * (1 + std::fabs(ref.objective));
    }
    EXPECT_EQ(stuck, 0) << "K=" << K << " (most iterations " << most << ")";
    EXPECT_LE(precision_stops, 3) << "K=" << K;
    EXPECT_LT(most, 200) << "K=" << K;
  }
}

TEST(UserStepTest, LinearSolverWithStridedScratchIsTheSameSolver) {
  // The CUDA linear kernel keeps each thread's gradients and Hessians in shared memory,
  // interleaved by thread (math::Strided). Here a block of T "threads" shares one such buffer on
  // the host: every user must get bit-identical outputs to the stack-scratch solver, read no
  // slot but its own (the rest is NaN) and write none.
  for (int K : {3, 10, 16}) {
    UserStepProblem p = RandomProblem(K, 140, 30, K == 10 ? 30.0 : 1.5, true, 99 + K);
    p.lambda = 0.5;
    UserStepOptions o;
    o.tol = 1e-6;
    UserStepResult ref, got;
    for (UserStepResult* r : {&ref, &got}) {
      r->latent.resize(p.n_users, K);
      r->objective.resize(p.n_users);
      r->residual.resize(p.n_users);
      r->iterations.resize(p.n_users);
    }
    const raw::UserStepArgs a = RawArgs(UserStepLink::kLinear, p, o, nullptr, &ref);
    const raw::UserStepArgs b = RawArgs(UserStepLink::kLinear, p, o, nullptr, &got);
    const int T = 7, tri = K * (K + 1) / 2, per = 2 * K + 2 * tri;
    std::vector<double> sh(static_cast<size_t>(per) * T);
    for (int64_t u = 0; u < p.n_users; ++u) {
      raw::SolveUser(a, u);
      std::fill(sh.begin(), sh.end(), std::nan(""));
      const int t = static_cast<int>(u % T);
      using S = math::Strided<double>;
      const S g0{sh.data() + t, T}, g1{sh.data() + K * T + t, T}, H0{sh.data() + 2 * K * T + t, T},
          H1{sh.data() + (2 * K + tri) * T + t, T};
      raw::WithLinearCapacity(K, [&](auto km) {
        raw::SolveLinearUserWith<decltype(km)::value, S, S>(b, u, g0, g1, H0, H1);
      });
      for (size_t i = 0; i < sh.size(); ++i)
        if (static_cast<int>(i % T) != t) ASSERT_TRUE(std::isnan(sh[i])) << "wrote slot " << i;
    }
    for (int64_t u = 0; u < p.n_users; ++u) {
      EXPECT_EQ(got.objective[u], ref.objective[u]) << "K=" << K << " user " << u;
      EXPECT_EQ(got.residual[u], ref.residual[u]) << "K=" << K << " user " << u;
      EXPECT_EQ(got.iterations[u], ref.iterations[u]) << "K=" << K << " user " << u;
      for (int k = 0; k < K; ++k) EXPECT_EQ(got.latent(u, k), ref.latent(u, k));
    }
    EXPECT_GT(*std::max_element(ref.iterations.begin(), ref.iterations.end()), 2) << K;
  }
}

/// pal-b's reward margin computed directly: s cos(z_a, a) - s cos(z_b, a), a = P'w.
double DirectNormalizedJ(const std::vector<double>& za, const std::vector<double>& zb,
                         const std::vector<double>& P, int K, int d, double s, double eps,
                         const double* o, const float* o0, double lambda, double offset, double c) {
  double w[math::kMaxK], mx = o[0], z = 0;
  for (int k = 1; k < K; ++k) mx = std::max(mx, o[k]);
  for (int k = 0; k < K; ++k) z += (w[k] = std::exp(o[k] - mx));
  std::vector<double> a(d, 0.0);
  for (int k = 0; k < K; ++k)
    for (int i = 0; i < d; ++i) a[i] += w[k] / z * P[k * d + i];
  auto cosine = [&](const std::vector<double>& x) {
    double xx = eps, aa = eps, xa = 0;
    for (int i = 0; i < d; ++i) {
      xx += x[i] * x[i];
      aa += a[i] * a[i];
      xa += x[i] * a[i];
    }
    return xa / (std::sqrt(xx) * std::sqrt(aa));
  };
  const double x = offset + s * (cosine(za) - cosine(zb));
  double J = -c * math::LogSigmoid(x);
  for (int k = 0; k < K; ++k) J += 0.5 * lambda * (o[k] - o0[k]) * (o[k] - o0[k]);
  return J;
}

TEST(UserStepTest, NormalizedObjectiveIsPalBsRewardAndItsGradientIsExact) {
  Rng rng(3);
  for (int K : {1, 2, 4}) {
    const int d = 3;
    const double s = 3.5, eps = 1e-8, lambda = 0.7, offset = 0.2, c = 1.3;
    std::vector<double> P(K * d), za(d), zb(d);
    for (auto& x : P) x = rng.Normal();
    for (auto& x : za) x = rng.Normal();
    for (auto& x : zb) x = rng.Normal();
    // q_k = (z_a/|z_a| - z_b/|z_b|).p_k, G = P P' (the |z| carry the same eps as pal's).
    std::vector<float> q(K), G(K * K), o0(K);
    double na = eps, nb = eps;
    for (int i = 0; i < d; ++i) {
      na += za[i] * za[i];
      nb += zb[i] * zb[i];
    }
    na = std::sqrt(na);
    nb = std::sqrt(nb);
    for (int k = 0; k < K; ++k) {
      double v = 0;
      for (int i = 0; i < d; ++i) v += (za[i] / na - zb[i] / nb) * P[k * d + i];
      q[k] = static_cast<float>(v);
      for (int l = 0; l < K; ++l) {
        double g = 0;
        for (int i = 0; i < d; ++i) g += P[k * d + i] * P[l * d + i];
        G[k * K + l] = static_cast<float>(g);
      }
      o0[k] = static_cast<float>(0.1 * k);
    }
    const float off = static_cast<float>(offset), cw = static_cast<float>(c);
    double o[math::kMaxK], grad[math::kMaxK];
    for (int k = 0; k < K; ++k) o[k] = rng.Normal();
    const double J = math::NormalizedObjective(q.data(), &off, &cw, 1, K, G.data(), s, eps, o,
                                               o0.data(), lambda, grad);
    const double ref = DirectNormalizedJ(za, zb, P, K, d, s, eps, o, o0.data(), lambda, offset, c);
    EXPECT_NEAR(J, ref, 1e-5 * (1 + std::fabs(ref))) << "K=" << K;
    for (int k = 0; k < K; ++k) {
      const double h = 1e-6;
      double op[math::kMaxK], om[math::kMaxK];
      for (int l = 0; l < K; ++l) op[l] = om[l] = o[l];
      op[k] += h;
      om[k] -= h;
      const double fd = (math::NormalizedObjective(q.data(), &off, &cw, 1, K, G.data(), s, eps, op,
                                                   o0.data(), lambda, nullptr) -
                         math::NormalizedObjective(q.data(), &off, &cw, 1, K, G.data(), s, eps, om,
                                                   o0.data(), lambda, nullptr)) /
                        (2 * h);
      EXPECT_NEAR(grad[k], fd, 1e-6 * (1 + std::fabs(fd))) << "K=" << K << " k=" << k;
    }
  }
}

TEST(UserStepTest, NormalizedSolverBeatsADenseGridAndStaysFinite) {
  // K = 3: the minimum over a dense grid of logits (o0 + [-6, 6]^3, step 0.25) bounds the
  // solver's answer from above; margins up to 50 must not give NaN.
  Rng rng(17);
  const int K = 3;
  for (int trial = 0; trial < 4; ++trial) {
    const double scale = trial == 3 ? 50.0 : 4.0;
    UserStepProblem p = RandomProblem(K, 1, 12, 1.0, false, 50 + trial);
    p.offsets = {0, 12};
    p.q.resize(12 * K);
    for (auto& x : p.q) x = static_cast<float>(rng.Normal());
    p.weight.assign(12, 1.0f);
    p.gram = {1.0f, 0.2f, -0.1f, 0.2f, 0.8f, 0.3f, -0.1f, 0.3f, 1.2f};
    p.scale = scale;
    p.norm_eps = 1e-8;
    p.lambda = 0.5;
    p.prior = {0.2f, -0.1f, -0.1f};
    UserStepOptions o;
    o.tol = 1e-8;
    o.max_iter = 200;
    const UserStepResult r = RunUserStep(UserStepLink::kNormalized, p, o);
    ASSERT_TRUE(std::isfinite(r.objective[0]));
    ASSERT_TRUE(r.latent.allFinite());
    double grid_best = INFINITY;
    double x[3];
    for (double a = -6; a <= 6; a += 0.25)
      for (double b = -6; b <= 6; b += 0.25)
        for (double c = -6; c <= 6; c += 0.25) {
          x[0] = p.prior[0] + a;
          x[1] = p.prior[1] + b;
          x[2] = p.prior[2] + c;
          grid_best = std::min(grid_best, math::NormalizedObjective(
                                              p.q.data(), nullptr, nullptr, 12, K, p.gram.data(),
                                              scale, 1e-8, x, p.prior.data(), p.lambda, nullptr));
        }
    EXPECT_LE(-r.objective[0], grid_best + 1e-9) << "trial " << trial;
    // The logits reproduce the reported objective and the latent is their softmax.
    const double J =
        math::NormalizedObjective(p.q.data(), nullptr, nullptr, 12, K, p.gram.data(), scale, 1e-8,
                                  r.logits.data(), p.prior.data(), p.lambda, nullptr);
    EXPECT_NEAR(J, -r.objective[0], 1e-12 * (1 + std::fabs(J)));
  }
}

// ---- The gaussian link (gppl's new users): a Laplace posterior by Newton's method. ----

/// Root of f on [lo, hi] by bisection (f(lo) > 0 > f(hi)).
template <typename F>
double Bisect(F f, double lo, double hi) {
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (f(mid) > 0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double PhiDensity(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }

UserStepProblem OnePairProblem(double prior_precision) {
  UserStepProblem p;
  p.K = 1;
  p.n_users = 1;
  p.offsets = {0, 1};
  p.q = {1.0f};
  p.precision = {prior_precision};
  return p;
}

TEST(UserStepTest, GaussianLinkSolvesOnePairByHand) {
  // max_x log F(x) - x^2 / 2: the mode solves F'(x) / F(x) = x, and the Laplace variance is
  // 1 / (1 + lambda(x)), lambda = -d2/dx2 log F.
  UserStepOptions o;
  o.tol = 1e-12;
  UserStepProblem p = OnePairProblem(1.0);
  p.probit = true;
  const double xp = Bisect([](double x) { return PhiDensity(x) / Phi(x) - x; }, 0.0, 2.0);
  UserStepResult r = RunUserStep(UserStepLink::kGaussian, p, o);
  const double hp = PhiDensity(xp) / Phi(xp);
  EXPECT_NEAR(r.latent(0, 0), xp, 1e-6);
  EXPECT_NEAR(r.variance(0, 0), 1.0 / (1.0 + hp * (xp + hp)), 1e-6);
  EXPECT_NEAR(r.objective[0], std::log(Phi(xp)) - 0.5 * xp * xp, 1e-12);
  EXPECT_GE(r.iterations[0], 1);
  EXPECT_LE(r.iterations[0], 10);

  p.probit = false;  // sigma(-x) = x
  const double xl = Bisect([](double x) { return 1.0 / (1.0 + std::exp(x)) - x; }, 0.0, 1.0);
  r = RunUserStep(UserStepLink::kGaussian, p, o);
  const double s = 1.0 / (1.0 + std::exp(-xl));
  EXPECT_NEAR(r.latent(0, 0), xl, 1e-6);
  EXPECT_NEAR(r.variance(0, 0), 1.0 / (1.0 + s * (1 - s)), 1e-6);

  // No pairs: the prior's mean and variance.
  p.offsets = {0, 0};
  p.q.clear();
  p.precision = {4.0};
  p.prior = {0.25f};
  r = RunUserStep(UserStepLink::kGaussian, p, o);
  EXPECT_FLOAT_EQ(r.latent(0, 0), 0.25f);
  EXPECT_FLOAT_EQ(r.variance(0, 0), 0.25f);
  EXPECT_EQ(r.iterations[0], 0);
}

/// A random symmetric positive definite K x K precision, row-major.
std::vector<double> RandomPrecision(int K, uint64_t seed) {
  Rng rng(seed);
  Eigen::MatrixXd B(K, K);
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j) B(i, j) = rng.Normal();
  Eigen::MatrixXd P = B * B.transpose() / K + Eigen::MatrixXd::Identity(K, K) * 0.5;
  std::vector<double> out(K * K);
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j) out[i * K + j] = P(i, j);
  return out;
}

TEST(UserStepTest, GaussianLinkIsTheLaplacePosterior) {
  // At the returned mode the gradient (computed here from the formulas, in double) vanishes,
  // and the returned variances are the diagonal of the inverse Hessian there (with
  // variance_split, of the inverses of its two diagonal blocks); for both likelihoods, with
  // offsets, weights and a prior centre, for K within and above kMaxK.
  for (bool probit : {true, false})
    for (int K : {3, 12, 40}) {
      UserStepProblem p = RandomProblem(K, 30, 25, 0.7, true, 500 + K);
      p.probit = probit;
      p.precision = RandomPrecision(K, 9 + K);
      Rng rng(3);
      p.prior.resize(K);
      for (auto& c : p.prior) c = static_cast<float>(0.3 * rng.Normal());
      UserStepOptions o;
      o.tol = 1e-10;
      const UserStepResult r = RunUserStep(UserStepLink::kGaussian, p, o);
      UserStepProblem split = p;  // the mean-field marginals over [0, s) and [s, K)
      const int s = K / 3;
      split.variance_split = s;
      const UserStepResult rs = RunUserStep(UserStepLink::kGaussian, split, o);
      Eigen::MatrixXd P(K, K);
      for (int i = 0; i < K; ++i)
        for (int j = 0; j < K; ++j) P(i, j) = p.precision[i * K + j];
      for (int u = 0; u < p.n_users; ++u) {
        Eigen::VectorXd x = r.latent.row(u).transpose().cast<double>();
        Eigen::VectorXd x0(K);
        for (int k = 0; k < K; ++k) x0[k] = p.prior[k];
        Eigen::VectorXd g = -P * (x - x0);
        Eigen::MatrixXd H = P;
        double f = -0.5 * (x - x0).dot(P * (x - x0));
        for (int64_t j = p.offsets[u]; j < p.offsets[u + 1]; ++j) {
          Eigen::VectorXd q(K);
          for (int k = 0; k < K; ++k) q[k] = p.q[j * K + k];
          const double z = p.offset[j] + q.dot(x), c = p.weight[j];
          double slope, curv, val;
          if (probit) {
            slope = PhiDensity(z) / Phi(z);
            curv = slope * (z + slope);
            val = std::log(Phi(z));
          } else {
            const double s = 1.0 / (1.0 + std::exp(-z));
            slope = 1 - s;
            curv = s * (1 - s);
            val = std::log(s);
          }
          g += c * slope * q;
          H += c * curv * q * q.transpose();
          f += c * val;
        }
        // The latent is stored in float: the gradient there is small, not zero.
        EXPECT_LT(g.cwiseAbs().maxCoeff(), 1e-4 * (1 + H.cwiseAbs().maxCoeff()))
            << "probit " << probit << " K " << K << " user " << u;
        EXPECT_NEAR(r.objective[u], f, 1e-5 * (1 + std::fabs(f)));
        const Eigen::VectorXd var = H.inverse().diagonal();
        for (int k = 0; k < K; ++k)
          EXPECT_NEAR(r.variance(u, k), var[k], 1e-4 * var[k]) << "K " << K << " user " << u;
        Eigen::VectorXd mf(K);
        mf << H.topLeftCorner(s, s).inverse().diagonal(),
            H.bottomRightCorner(K - s, K - s).inverse().diagonal();
        for (int k = 0; k < K; ++k) {
          EXPECT_NEAR(rs.variance(u, k), mf[k], 1e-4 * mf[k]) << "K " << K << " user " << u;
          EXPECT_LE(rs.variance(u, k), var[k] * (1 + 1e-4));  // conditioning shrinks
        }
        EXPECT_EQ(rs.latent.row(u), r.latent.row(u));
        // Newton stops at tol or where no step ascends at double precision (~1e-8 here).
        EXPECT_LT(r.residual[u], 1e-6);
      }
    }
}

TEST(UserStepTest, GaussianLinkRecoversAPlantedVector) {
  // 3,000 probit comparisons of a planted x under a weak prior: the mode is within a few
  // posterior standard deviations of x, and those deviations are small.
  const int K = 4, n = 3000;
  const double truth[K] = {1.0, -0.5, 0.25, 0.0};
  Rng rng(11);
  UserStepProblem p;
  p.K = K;
  p.n_users = 1;
  p.offsets = {0, n};
  for (int j = 0; j < n; ++j) {
    double z = 0;
    float q[K];
    for (int k = 0; k < K; ++k) z += truth[k] * (q[k] = static_cast<float>(rng.Normal()));
    const double sign = rng.Uniform() < Phi(z) ? 1.0 : -1.0;
    for (int k = 0; k < K; ++k) p.q.push_back(static_cast<float>(sign * q[k]));
  }
  p.precision.assign(K * K, 0.0);
  for (int k = 0; k < K; ++k) p.precision[k * K + k] = 0.01;
  const UserStepResult r = RunUserStep(UserStepLink::kGaussian, p, UserStepOptions());
  for (int k = 0; k < K; ++k) {
    const double sd = std::sqrt(r.variance(0, k));
    EXPECT_LT(sd, 0.06);
    EXPECT_NEAR(r.latent(0, k), truth[k], 4 * sd) << "component " << k;
  }
}

TEST(UserStepTest, GaussianLinkRefusesAPriorThatIsNotPositiveDefinite) {
  UserStepProblem p = OnePairProblem(-1.0);
  EXPECT_THROW(RunUserStep(UserStepLink::kGaussian, p, UserStepOptions()), InternalError);
  p.precision.clear();
  EXPECT_THROW(RunUserStep(UserStepLink::kGaussian, p, UserStepOptions()), InternalError);
}

TEST(UserStepTest, CudaMatchesCpuOnEveryLink) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  // Tolerances (raw::kParityObjectiveTol, raw::kParityLatentTol, shared with the standalone
  // device check): loglik computes log sigma in single precision on the device (1e-5
  // relative); the iterative links run the same double-precision code, where FMA contraction
  // may move the last bits (1e-7 relative); weights to 1e-4.
  for (int link = 0; link < 5; ++link)
    for (int K : {2, 10, 32})
      for (int k : {5, 20, 100})
        for (double scale : {1.0, 30.0}) {
          UserStepProblem p = RandomProblem(K, 300, k, scale, link == 1, 77 + K + k);
          p.lambda = link == 0 ? 0.0 : 0.5;
          if (link == 4) p.precision = RandomPrecision(K, 5 + K);
          if (link == 3) {
            p.gram.assign(K * K, 0.0f);
            for (int a = 0; a < K; ++a) p.gram[a * K + a] = 1.0f + 0.1f * a;
            p.scale = 2.0;
            p.norm_eps = 1e-8;
          }
          UserStepOptions o;
          o.tol = 1e-7;
          const auto l = static_cast<UserStepLink>(link);
          const UserStepResult c = RunUserStep(l, p, o, "cpu");
          const UserStepResult g = RunUserStep(l, p, o, "cuda");
          for (int u = 0; u < p.n_users; ++u) {
            const double tol = raw::kParityObjectiveTol[link];
            EXPECT_NEAR(g.objective[u], c.objective[u], tol * (1 + std::fabs(c.objective[u])))
                << "link " << link << " K=" << K << " k=" << k << " user " << u;
            EXPECT_LT((g.latent.row(u) - c.latent.row(u)).cwiseAbs().maxCoeff(),
                      raw::kParityLatentTol)
                << "link " << link << " K=" << K << " k=" << k << " user " << u;
            if (link == 4)
              EXPECT_LT((g.variance.row(u) - c.variance.row(u)).cwiseAbs().maxCoeff(),
                        raw::kParityLatentTol * (1 + c.variance.row(u).cwiseAbs().maxCoeff()))
                  << "K=" << K << " k=" << k << " user " << u;
          }
        }
}

}  // namespace
}  // namespace prefmix
