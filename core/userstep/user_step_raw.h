#pragma once
// The user step on raw arrays: one plain struct and the per-user solve, written once for the
// CPU loop (core/userstep/user_step.cpp), the CUDA kernels (cuda/user_step_kernels.cuh) and the
// dependency-free device check (bench/device/), which builds with CUDA + CMake alone.
#include <cstdint>
#include <type_traits>

#include "core/userstep/math.h"

namespace prefmix::raw {

/// Link codes (same order as prefmix::UserStepLink).
enum Link : int { kLoglik = 0, kLinear = 1, kMixture = 2, kNormalized = 3, kGaussian = 4 };

/// Inputs and outputs of one batched user step, as raw pointers (host or device memory).
/// Optional inputs are null. See core/userstep/user_step.h for the meaning of each field.
struct UserStepArgs {
  int link = kLoglik;
  int K = 0;
  int64_t n_users = 0;
  const int64_t* offsets = nullptr;   ///< [n_users + 1]
  const float* q = nullptr;           ///< [n_pairs, K]
  const float* offset = nullptr;      ///< [n_pairs] or null
  const float* weight = nullptr;      ///< [n_pairs] or null
  const float* prior = nullptr;       ///< [K] or null
  const float* gram = nullptr;        ///< [K, K] (normalized) or null
  const double* precision = nullptr;  ///< [K, K] (gaussian: the prior precision) or null
  const float* init = nullptr;        ///< [n_users, K] or null
  double lambda = 0, scale = 1, norm_eps = 0, tol = 1e-7;
  int max_iter = 500;
  int hard = 0;
  int probit = 1;               ///< gaussian: 1 = probit likelihood Phi, 0 = logistic sigma
  int variance_split = 0;       ///< gaussian: 0 = Laplace marginals; s in (0, K): mean-field over
                                ///< [0, s) and [s, K)
  float* latent = nullptr;      ///< [n_users, K]
  float* loglik = nullptr;      ///< [n_users, K] (loglik link) or null
  double* logits = nullptr;     ///< [n_users, K] (normalized link: o_u) or null
  double* objective = nullptr;  ///< [n_users]
  double* residual = nullptr;   ///< [n_users]
  int* iterations = nullptr;    ///< [n_users]
  float* variance = nullptr;    ///< [n_users, K] (gaussian link: diag of the Laplace covariance)
  /// gaussian link, CUDA: scratch of work_users users x math::GaussianWorkDoubles(K) doubles
  /// (the launcher runs the users in chunks of work_users); the CPU loop uses its own.
  double* work = nullptr;
  int64_t work_users = 0;
};

PREFMIX_ISA_BEGIN

/// CPU vs CUDA parity tolerances, shared by the GoogleTest parity tests and the standalone
/// device check: objective |cuda - cpu| <= tol (1 + |cpu|) and weights max-abs <= kParityLatentTol.
/// The CUDA loglik link computes log sigma in single precision (math::LogSigmoidFast; sums in
/// double), hence 1e-5; the iterative links run the same double-precision code as the CPU, and
/// FMA contraction moves only the last bits (1e-7).
constexpr double kParityObjectiveTol[5] = {1e-5, 1e-7, 1e-7, 1e-7, 1e-7};
constexpr double kParityLatentTol = 1e-4;

/// Writes user u's outputs from its solution v.
PREFMIX_HOST_DEVICE inline void WriteUser(const UserStepArgs& a, int64_t u, const double* v,
                                          double objective, double residual, int iterations) {
  const int K = a.K;
  for (int k = 0; k < K; ++k) a.latent[u * K + k] = static_cast<float>(v[k]);
  a.objective[u] = objective;
  if (a.residual) a.residual[u] = residual;
  if (a.iterations) a.iterations[u] = iterations;
}

/// The loglik link for user u (exact, double precision).
PREFMIX_HOST_DEVICE inline void SolveLoglikUser(const UserStepArgs& a, int64_t u) {
  const int K = a.K;
  const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
  double v[math::kMaxK] = {};
  math::UserLoglik(a.q + b * K, a.weight ? a.weight + b : nullptr, n, K, a.prior, v);
  double m = v[0];
  for (int k = 0; k < K; ++k) {
    if (a.loglik) a.loglik[u * K + k] = static_cast<float>(v[k]);
    m = v[k] > m ? v[k] : m;
  }
  double z = 0;
  for (int k = 0; k < K; ++k) z += exp(v[k] - m);
  math::Posterior(v, K, a.hard != 0);
  WriteUser(a, u, v, m + log(z), 0.0, 0);
}

/// User u's pairs as the linear solver's row-form policy reads them.
PREFMIX_HOST_DEVICE inline math::LinearRowPairs LinearPairsOf(const UserStepArgs& a, int64_t u) {
  const int64_t b = a.offsets[u];
  return math::LinearRowPairs{a.q + b * a.K, a.offset ? a.offset + b : nullptr,
                              a.weight ? a.weight + b : nullptr, a.offsets[u + 1] - b, a.K};
}

/// User u's start: the given init row, or the simplex's centre.
PREFMIX_HOST_DEVICE inline void StartLatent(const UserStepArgs& a, int64_t u, double* v) {
  for (int k = 0; k < a.K; ++k) v[k] = a.init ? a.init[u * a.K + k] : 1.0 / a.K;
}

/// The linear link for user u, with scratch arrays of capacity KM >= K.
template <int KM>
PREFMIX_HOST_DEVICE inline void SolveLinearUser(const UserStepArgs& a, int64_t u) {
  const math::LinearRowPairs p = LinearPairsOf(a, u);
  double v[KM];
  StartLatent(a, u, v);
  const math::SimplexSolveInfo info = math::SolveLinearSimplex<KM>(
      p.q, p.offset, p.weight, p.n, p.K, a.prior, a.lambda, a.max_iter, a.tol, v);
  WriteUser(a, u, v, info.objective, info.residual, info.iterations);
}

/// The linear link for user u with the caller's scratch (two gradients of K, two packed
/// Hessians of K (K + 1) / 2; double* or math::Strided<double>): the CUDA kernel that keeps
/// them in shared memory.
template <int KM, typename GP, typename HP>
PREFMIX_HOST_DEVICE inline void SolveLinearUserWith(const UserStepArgs& a, int64_t u, GP g0, GP g1,
                                                    HP H0, HP H1) {
  double v[KM];
  StartLatent(a, u, v);
  const math::SimplexSolveInfo info = math::SolveLinearSimplexWith<KM>(
      LinearPairsOf(a, u), a.K, a.prior, a.lambda, a.max_iter, a.tol, v, g0, g1, H0, H1);
  WriteUser(a, u, v, info.objective, info.residual, info.iterations);
}

/// Calls f(std::integral_constant<int, KM>{}) with the smallest linear-link scratch capacity KM
/// (4, 8, 16 or 32) that holds K: the one dispatch of the CPU loop and the CUDA launcher.
template <typename F>
PREFMIX_HOST_DEVICE inline void WithLinearCapacity(int K, F&& f) {
  if (K <= 4)
    f(std::integral_constant<int, 4>{});
  else if (K <= 8)
    f(std::integral_constant<int, 8>{});
  else if (K <= 16)
    f(std::integral_constant<int, 16>{});
  else
    f(std::integral_constant<int, 32>{});
}

/// The mixture link for user u (init rows are the per-user prior centres).
PREFMIX_HOST_DEVICE inline void SolveMixtureUser(const UserStepArgs& a, int64_t u) {
  const int K = a.K;
  const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
  double v[math::kMaxK];
  float centre[math::kMaxK];
  for (int k = 0; k < K; ++k) {
    centre[k] = a.init ? a.init[u * K + k] : a.prior ? a.prior[k] : 1.0f / K;
    v[k] = centre[k];
  }
  const math::MixtureSolveInfo info = math::SolveMixtureSimplex(
      a.q + b * K, a.weight ? a.weight + b : nullptr, n, K, centre, a.lambda, a.max_iter, a.tol, v);
  WriteUser(a, u, v, info.objective, info.residual, info.iterations);
}

/// The normalized link for user u.
PREFMIX_HOST_DEVICE inline void SolveNormalizedUser(const UserStepArgs& a, int64_t u) {
  const int K = a.K;
  const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
  double v[math::kMaxK];
  const math::SimplexSolveInfo info = math::SolveNormalizedSimplex(
      a.q + b * K, a.offset ? a.offset + b : nullptr, a.weight ? a.weight + b : nullptr, n, K,
      a.gram, a.scale, a.norm_eps, a.prior, a.lambda, a.max_iter, a.tol, v,
      a.logits ? a.logits + u * K : nullptr);
  WriteUser(a, u, v, info.objective, info.residual, info.iterations);
}

/// The Gaussian link for user u with `work` (math::GaussianWorkDoubles(K) doubles): the
/// Laplace posterior's mode (latent) and marginal variances (variance).
PREFMIX_HOST_DEVICE inline void SolveGaussianUser(const UserStepArgs& a, int64_t u, double* work) {
  const int K = a.K;
  const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
  double* x = work + math::GaussianWorkDoubles(K);  // the caller's K more doubles
  for (int k = 0; k < K; ++k) x[k] = a.init ? a.init[u * K + k] : a.prior ? a.prior[k] : 0.0;
  double* var = x + K;
  const math::SimplexSolveInfo info = math::SolveGaussianLaplace(
      a.q + b * K, a.offset ? a.offset + b : nullptr, a.weight ? a.weight + b : nullptr, n, K,
      a.prior, a.precision, a.probit != 0, a.max_iter, a.tol, x, var, work, a.variance_split);
  WriteUser(a, u, x, info.objective, info.residual, info.iterations);
  if (a.variance)
    for (int k = 0; k < K; ++k) a.variance[u * K + k] = static_cast<float>(var[k]);
}

/// Doubles of scratch SolveGaussianUser needs per user.
PREFMIX_HOST_DEVICE inline int64_t GaussianUserWorkDoubles(int K) {
  return math::GaussianWorkDoubles(K) + 2 * static_cast<int64_t>(K);
}

/// Solves user u's problem and writes its outputs (the CPU loop's entry point; the gaussian
/// link needs the caller's scratch, SolveGaussianUser).
PREFMIX_HOST_DEVICE inline void SolveUser(const UserStepArgs& a, int64_t u) {
  switch (a.link) {
    case kLoglik:
      SolveLoglikUser(a, u);
      return;
    case kMixture:
      SolveMixtureUser(a, u);
      return;
    case kNormalized:
      SolveNormalizedUser(a, u);
      return;
    case kGaussian: {
      // Scratch on the stack for K <= kMaxK (RunUserStep gives larger K its own buffers).
      double work[math::kMaxK * math::kMaxK + 6 * math::kMaxK];
      if (a.K <= math::kMaxK) {
        SolveGaussianUser(a, u, work);
      } else {
        a.objective[u] = NAN;
        if (a.iterations) a.iterations[u] = -1;
      }
      return;
    }
    default:
      WithLinearCapacity(a.K, [&](auto km) { SolveLinearUser<decltype(km)::value>(a, u); });
  }
}

PREFMIX_ISA_END
}  // namespace prefmix::raw
