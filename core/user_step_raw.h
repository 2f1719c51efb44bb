#pragma once
// The user step on raw arrays: one plain struct and the per-user solve, written once for the
// CPU loop (core/user_step.cpp), the CUDA kernels (cuda/user_step_kernels.cuh) and the
// dependency-free device check (bench/device/), which builds with CUDA + CMake alone.
#include <cstdint>

#include "core/math.h"

namespace prefmix::raw {

/// Link codes (same order as prefmix::UserStepLink).
enum Link : int { kLoglik = 0, kLinear = 1, kMixture = 2, kNormalized = 3 };

/// Inputs and outputs of one batched user step, as raw pointers (host or device memory).
/// Optional inputs are null. See core/user_step.h for the meaning of each field.
struct UserStepArgs {
  int link = kLoglik;
  int K = 0;
  int64_t n_users = 0;
  const int64_t* offsets = nullptr;  ///< [n_users + 1]
  const float* q = nullptr;          ///< [n_pairs, K]
  const float* offset = nullptr;     ///< [n_pairs] or null
  const float* weight = nullptr;     ///< [n_pairs] or null
  const float* prior = nullptr;      ///< [K] or null
  const float* gram = nullptr;       ///< [K, K] (normalized) or null
  const float* init = nullptr;       ///< [n_users, K] or null
  double lambda = 0, scale = 1, norm_eps = 0, tol = 1e-7;
  int max_iter = 500;
  int hard = 0;
  float* latent = nullptr;      ///< [n_users, K]
  float* loglik = nullptr;      ///< [n_users, K] (loglik link) or null
  double* logits = nullptr;     ///< [n_users, K] (normalized link: o_u) or null
  double* objective = nullptr;  ///< [n_users]
  double* residual = nullptr;   ///< [n_users]
  int* iterations = nullptr;    ///< [n_users]
};

/// Solves user u's problem and writes its outputs.
PREFMIX_HOST_DEVICE inline void SolveUser(const UserStepArgs& a, int64_t u) {
  const int K = a.K;
  const int64_t b = a.offsets[u], n = a.offsets[u + 1] - b;
  const float* q = a.q + b * K;
  const float* off = a.offset ? a.offset + b : nullptr;
  const float* wt = a.weight ? a.weight + b : nullptr;
  double v[math::kMaxK] = {};
  double objective = 0, residual = 0;
  int iterations = 0;
  if (a.link == kLoglik) {
    math::UserLoglik(q, wt, n, K, a.prior, v);
    double m = v[0];
    for (int k = 0; k < K; ++k) {
      if (a.loglik) a.loglik[u * K + k] = static_cast<float>(v[k]);
      m = v[k] > m ? v[k] : m;
    }
    double z = 0;
    for (int k = 0; k < K; ++k) z += exp(v[k] - m);
    objective = m + log(z);
    math::Posterior(v, K, a.hard != 0);
  } else if (a.link == kMixture) {  // init rows are the per-user prior centres
    float centre[math::kMaxK];
    for (int k = 0; k < K; ++k) {
      centre[k] = a.init ? a.init[u * K + k] : a.prior ? a.prior[k] : 1.0f / K;
      v[k] = centre[k];
    }
    const math::MixtureSolveInfo info =
        math::SolveMixtureSimplex(q, wt, n, K, centre, a.lambda, a.max_iter, a.tol, v);
    objective = info.objective;
    residual = info.residual;
    iterations = info.iterations;
  } else if (a.link == kNormalized) {
    const math::SimplexSolveInfo info = math::SolveNormalizedSimplex(
        q, off, wt, n, K, a.gram, a.scale, a.norm_eps, a.prior, a.lambda, a.max_iter, a.tol, v,
        a.logits ? a.logits + u * K : nullptr);
    objective = info.objective;
    residual = info.residual;
    iterations = info.iterations;
  } else {
    for (int k = 0; k < K; ++k) v[k] = a.init ? a.init[u * K + k] : 1.0 / K;
    const math::SimplexSolveInfo info =
        math::SolveLinearSimplex(q, off, wt, n, K, a.prior, a.lambda, a.max_iter, a.tol, v);
    objective = info.objective;
    residual = info.residual;
    iterations = info.iterations;
  }
  for (int k = 0; k < K; ++k) a.latent[u * K + k] = static_cast<float>(v[k]);
  a.objective[u] = objective;
  if (a.residual) a.residual[u] = residual;
  if (a.iterations) a.iterations[u] = iterations;
}

}  // namespace prefmix::raw
