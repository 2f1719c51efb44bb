// The linear link's CPU loop (issue 21, core/userstep/linear_cpu.h): the vector exp and log
// against libm, the transposed SIMD pass against the row pass it replaces, the hinted simplex
// projection and the two-right-hand-side LDL' solve against their references, and the whole
// loop against the row solver and between its two builds (baseline and x86-64-v3).
// The 32-byte vector types pass between inline functions of this file only (no ABI boundary).
#pragma GCC diagnostic ignored "-Wpsabi"
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/userstep/linear_cpu.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "core/userstep/user_step_cpu.h"
#include "core/userstep/user_step_raw.h"

namespace prefmix {
namespace {

TEST(LinearCpuTest, VectorExpAndLogMatchLibm) {
  double worst_exp = 0, worst_log = 0;
  for (int i = 0; i <= 400000; ++i) {
    // t over [-708, 0], denser near 0 where the sigmoid lives.
    const double u = i / 400000.0;
    const double t = -708.0 * u * u * u;
    const math::Vec4d e = math::ExpNonPositive4(math::Vec4d{t, t * 0.5, -u, -u * 1e-9});
    const double ref[4] = {std::exp(t), std::exp(t * 0.5), std::exp(-u), std::exp(-u * 1e-9)};
    for (int l = 0; l < 4; ++l) worst_exp = std::max(worst_exp, std::fabs(e[l] - ref[l]) / ref[l]);
    const math::Vec4d lg = math::Log1pUnit4(math::Vec4d{u, 1 - u, u * 1e-6, std::exp(t)});
    const double lref[4] = {std::log1p(u), std::log1p(1 - u), std::log1p(u * 1e-6),
                            std::log1p(std::exp(t))};
    for (int l = 0; l < 4; ++l) worst_log = std::max(worst_log, std::fabs(lg[l] - lref[l]));
  }
  // A few units in the last place for exp; for log(1 + e) the rounding of 1 + e (as the scalar
  // path's log(1 + e)), below 2.3e-16 absolute, plus the series' last bits.
  EXPECT_LT(worst_exp, 1e-15);
  EXPECT_LT(worst_log, 3.5e-16);
  EXPECT_EQ(math::ExpNonPositive4(math::Splat4(0.0))[0], 1.0);
  EXPECT_EQ(math::Log1pUnit4(math::Splat4(0.0))[0], 0.0);
  // Far below -708 the result stays finite and tiny.
  EXPECT_LT(math::ExpNonPositive4(math::Splat4(-1e6))[0], 1e-300);
  EXPECT_GE(math::ExpNonPositive4(math::Splat4(-1e6))[0], 0.0);
}

/// Random rows q [n, K], offsets and weights (or none), a point w on the simplex with some zeros.
struct RandomUser {
  std::vector<float> q, offset, weight, w0;
  std::vector<double> w;
};

RandomUser MakeUser(Rng& rng, int n, int K, bool offsets, bool weights, bool centre) {
  RandomUser r;
  r.q.resize(static_cast<size_t>(n) * K);
  for (auto& x : r.q) x = static_cast<float>(2.0 * rng.Normal());
  if (offsets) {
    r.offset.resize(n);
    for (auto& b : r.offset) b = static_cast<float>(rng.Normal());
  }
  if (weights) {
    r.weight.resize(n);
    for (auto& c : r.weight) c = static_cast<float>(0.2 + 2 * rng.Uniform());
  }
  if (centre) {
    r.w0.resize(K);
    for (auto& c : r.w0) c = static_cast<float>(rng.Uniform());
  }
  r.w.resize(K);
  double s = 0;
  for (int k = 0; k < K; ++k) s += (r.w[k] = rng.Uniform() < 0.3 ? 0.0 : rng.Uniform());
  if (s == 0) r.w[0] = s = 1;
  for (auto& x : r.w) x /= s;
  return r;
}

TEST(LinearCpuTest, TransposedPassIsTheRowPass) {
  Rng rng(21);
  int checked = 0;
  for (int K : {1, 3, 10, 16, 32})
    for (int n : {0, 1, 3, 4, 5, 20, 37, math::kLinearSimdMaxPairs})
      for (int variant = 0; variant < 4; ++variant) {
        const RandomUser u = MakeUser(rng, n, K, variant & 1, variant & 2, variant == 3);
        const float* off = u.offset.empty() ? nullptr : u.offset.data();
        const float* wt = u.weight.empty() ? nullptr : u.weight.data();
        const float* w0 = u.w0.empty() ? nullptr : u.w0.data();
        const double lambda = 0.3;
        const math::LinearRowPairs row{u.q.data(), off, wt, n, K};
        static math::LinearTransposedPairs<32> tp;  // 64 KB: off the stack
        tp.Load(u.q.data(), off, wt, n, K);
        EXPECT_NEAR(tp.Lipschitz(lambda), row.Lipschitz(lambda), 1e-12 * row.Lipschitz(lambda));
        EXPECT_NEAR(tp.Objective(u.w.data(), w0, lambda), row.Objective(u.w.data(), w0, lambda),
                    1e-12 * (1 + n));
        int F1[32], F2[32], m1 = 0, m2 = 0;
        double g1[32], g2[32], H1[32 * 33 / 2], H2[32 * 33 / 2];
        const double f1 = row.FullPass<32>(u.w.data(), w0, lambda, F1, &m1, g1, H1);
        const double f2 = tp.FullPass<32>(u.w.data(), w0, lambda, F2, &m2, g2, H2);
        EXPECT_NEAR(f2, f1, 1e-12 * (1 + std::fabs(f1))) << "K=" << K << " n=" << n;
        ASSERT_EQ(m1, m2);
        for (int a = 0; a < m1; ++a) ASSERT_EQ(F1[a], F2[a]);
        for (int k = 0; k < K; ++k) EXPECT_NEAR(g2[k], g1[k], 1e-11 * (1 + n)) << k;
        for (int i = 0; i < m1 * (m1 + 1) / 2; ++i) EXPECT_NEAR(H2[i], H1[i], 1e-11 * (1 + n)) << i;
        ++checked;
      }
  EXPECT_EQ(checked, 5 * 8 * 4);
}

TEST(LinearCpuTest, HintedProjectionIsTheProjection) {
  Rng rng(4);
  for (int trial = 0; trial < 4000; ++trial) {
    const int K = 1 + static_cast<int>(rng.Below(32));
    double v[32], hint[32], a[32], b[32];
    for (int k = 0; k < K; ++k) {
      v[k] = trial % 5 == 0 ? 0.1 * rng.Normal() : rng.Normal();
      // Hints: the true support (trial % 3 == 0), none, or random.
      hint[k] = rng.Uniform() < 0.5 ? 1.0 : 0.0;
    }
    for (int k = 0; k < K; ++k) a[k] = b[k] = v[k];
    math::ProjectSimplex<32>(a, K);
    if (trial % 3 == 0)
      for (int k = 0; k < K; ++k) hint[k] = a[k];
    if (trial % 7 == 0)
      for (int k = 0; k < K; ++k) hint[k] = 0;
    math::ProjectSimplexWithHint<32>(b, K, hint);
    double sum = 0;
    for (int k = 0; k < K; ++k) {
      EXPECT_NEAR(b[k], a[k], 1e-14) << "trial " << trial << " k " << k;
      EXPECT_GE(b[k], 0.0);
      sum += b[k];
    }
    EXPECT_NEAR(sum, 1.0, 1e-13);
  }
}

TEST(LinearCpuTest, LdltSolveTwoSolvesBothSystems) {
  Rng rng(8);
  for (int n = 1; n <= 32; ++n) {
    Eigen::MatrixXd B(n, n + 2);
    for (int i = 0; i < B.size(); ++i) B.data()[i] = rng.Normal();
    const Eigen::MatrixXd A = B * B.transpose() + 0.1 * Eigen::MatrixXd::Identity(n, n);
    std::vector<double> packed(n * (n + 1) / 2);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) packed[math::Tri(i, j)] = A(i, j);
    Eigen::VectorXd b1(n), b2 = Eigen::VectorXd::Ones(n);
    for (int i = 0; i < n; ++i) b1[i] = rng.Normal();
    std::vector<double> x1(b1.data(), b1.data() + n), x2(b2.data(), b2.data() + n);
    math::LdltSolveTwo<32>(packed.data(), n, 1e-300, x1.data(), x2.data());
    const Eigen::VectorXd r1 = A * Eigen::Map<Eigen::VectorXd>(x1.data(), n) - b1;
    const Eigen::VectorXd r2 = A * Eigen::Map<Eigen::VectorXd>(x2.data(), n) - b2;
    EXPECT_LT(r1.norm(), 1e-9 * (1 + b1.norm()) * A.norm()) << n;
    EXPECT_LT(r2.norm(), 1e-9 * (1 + b2.norm()) * A.norm()) << n;
  }
  // A singular matrix: pivots below the floor are floored, the result stays finite.
  double packed[3] = {1.0, 1.0, 1.0};  // [[1, 1], [1, 1]]
  double x1[2] = {1.0, 2.0}, x2[2] = {1.0, 1.0};
  math::LdltSolveTwo<4>(static_cast<double*>(packed), 2, 1e-9, x1, x2);
  for (double x : {x1[0], x1[1], x2[0], x2[1]}) EXPECT_TRUE(std::isfinite(x));
}

/// Users with 0..max_pairs pairs (and a few above kLinearSimdMaxPairs: the row fallback).
UserStepProblem LoopProblem(int K, int n_users, uint64_t seed) {
  Rng rng(seed);
  UserStepProblem p;
  p.K = K;
  p.n_users = n_users;
  p.offsets.push_back(0);
  for (int u = 0; u < n_users; ++u)
    p.offsets.push_back(p.offsets.back() +
                        (u % 50 == 7 ? math::kLinearSimdMaxPairs + 1 + u % 9 : u % 41));
  p.q.resize(p.n_pairs() * K);
  for (size_t i = 0; i < p.q.size(); ++i)  // every third margin large (saturated sigmoids)
    p.q[i] = static_cast<float>((i % 3 ? 1.5 : 6.0) * rng.Normal());
  p.weight.resize(p.n_pairs());
  for (auto& c : p.weight) c = static_cast<float>(0.5 + rng.Uniform());
  p.offset.resize(p.n_pairs());
  for (auto& b : p.offset) b = static_cast<float>(0.5 * rng.Normal());
  return p;
}

TEST(LinearCpuTest, UnknownIsaNamesAreRefusedNotTakenAsAuto) {
  UserStepProblem p = LoopProblem(4, 20, 3);
  p.lambda = 0.2;
  UserStepOptions o;
  for (const char* v : {"avx512", "Base", "v3"}) {
    setenv("PREFMIX_CPU_ISA", v, 1);
    try {
      RunUserStep(UserStepLink::kLinear, p, o);
      ADD_FAILURE() << "PREFMIX_CPU_ISA=" << v << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("PREFMIX_CPU_ISA=") + v), std::string::npos)
          << e.what();
    }
  }
  for (const char* v : {"auto", "", "base"}) {
    setenv("PREFMIX_CPU_ISA", v, 1);
    EXPECT_NO_THROW(RunUserStep(UserStepLink::kLinear, p, o)) << v;
  }
  unsetenv("PREFMIX_CPU_ISA");
}

TEST(LinearCpuTest, CpuLoopIsTheRowSolverInBothBuilds) {
  for (int K : {2, 10, 32}) {
    UserStepProblem p = LoopProblem(K, 400, 77 + K);
    p.lambda = 0.2;
    UserStepOptions o;
    o.tol = 1e-8;
    o.max_iter = 300;
    const UserStepResult got = RunUserStep(UserStepLink::kLinear, p, o);
    setenv("PREFMIX_CPU_ISA", "base", 1);
    const UserStepResult base = RunUserStep(UserStepLink::kLinear, p, o);
    unsetenv("PREFMIX_CPU_ISA");
    // The row solver, user by user (what the CUDA kernel runs).
    UserStepResult row;
    row.latent.resize(p.n_users, K);
    row.objective.resize(p.n_users);
    row.residual.resize(p.n_users);
    row.iterations.resize(p.n_users);
    const raw::UserStepArgs a = RawArgs(UserStepLink::kLinear, p, o, nullptr, &row);
    for (int64_t u = 0; u < p.n_users; ++u) raw::SolveUser(a, u);
    int row_converged = 0, got_converged = 0, base_converged = 0;
    for (int64_t u = 0; u < p.n_users; ++u) {
      const double tol = 1e-9 * (1 + std::fabs(row.objective[u]));
      EXPECT_NEAR(got.objective[u], row.objective[u], tol) << "K=" << K << " user " << u;
      EXPECT_NEAR(base.objective[u], got.objective[u], tol) << "K=" << K << " user " << u;
      EXPECT_LT((got.latent.row(u) - row.latent.row(u)).cwiseAbs().maxCoeff(), 1e-4);
      row_converged += row.residual[u] < o.tol;
      got_converged += got.residual[u] < o.tol;
      base_converged += base.residual[u] < o.tol;
    }
    // Saturated margins stop some users where f no longer ascends in double precision, before
    // the KKT tolerance (as the row solver does); the SIMD loop must stop no more often.
    std::printf("K=%d: KKT below %.0e for %d (row), %d (this build), %d (base) of %d users\n", K,
                o.tol, row_converged, got_converged, base_converged, static_cast<int>(p.n_users));
    EXPECT_GE(got_converged, row_converged - p.n_users / 100) << "K=" << K;
    EXPECT_GE(base_converged, row_converged - p.n_users / 100) << "K=" << K;
    EXPECT_GT(row_converged, p.n_users / 2) << "K=" << K;
  }
  std::printf("linear CPU loop build on this machine: %s\n", cpu::LinearUserStepIsa());
}

}  // namespace
}  // namespace prefmix
