#pragma once
// Family `gppl`: Bayesian collaborative preference learning (crowdGPPL, Simpson & Gurevych 2020)
// and its two baselines, as one variational model (docs/gppl.md).
//
//   f_u(x) = sum_{c=1..C} v_c(x) w_c(u) + t(x)        (--gppl-users crowd, the default)
//   f_u(x) = g_u(x), one GP per person                 (--gppl-users per-user)
//   f(x)   = t(x), one GP for everybody                (--gppl-users pooled)
//
// v_c ~ GP(0, k_x / s_c^v), t ~ GP(0, k_x / s^t), g_u ~ GP(0, k_x / s^g), w_c(u) ~ N(0, 1 / s_c^w),
// each inverse scale s ~ Gamma(shape, rate); P(a > b) = Phi((f(a) - f(b)) / sqrt(2)).
// Item functions live on M inducing items (all items when there are at most M of them);
// f(x) = k(x, Z) K_ZZ^-1 u (the subset-of-regressors projection).
//
// Inference: mean-field variational Bayes with the probit written as a latent Gaussian margin
// z_j ~ N(f(a_j) - f(b_j), 2) whose sign is the label (Albert & Chib), so every factor has a
// closed-form update and the evidence lower bound (ELBO) is exact. Global factors (t, v_c and the
// inverse scales) take natural-gradient steps of size (i + delay)^-forget on mini-batches of
// users; each user's w_u (or g_u) is a local factor solved on all of the user's pairs. With one
// batch holding every pair and forget = 0 each step is exact coordinate ascent, and the ELBO
// never decreases (tests/test_gppl.cpp).
#include <Eigen/Dense>
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::personalization {

/// Length-scales of the item kernel by the median heuristic: for D <= kGpplArdMaxDim one per
/// feature (the median of the non-zero absolute differences of that feature over item pairs;
/// 0 = the feature is constant and ignored), else one for the embedding (the median Euclidean
/// distance between items), each times `factor`. Up to 1,000 items are used (seeded sample).
constexpr int kGpplArdMaxDim = 64;
std::vector<double> MedianLengthScales(const RowMatrixF& items, double factor, uint64_t seed);

/// The learned residual's statistic sum_u (P0 - P0 D_u' X_u D_u P0), where user u owns the pairs
/// [offsets[u], offsets[u + 1]), D_u's rows are A_a - A_b of those pairs and X_u is the n_u x n_u
/// column-major block x[xoff[u] ...] (n_u = that user's pair count): summed in item space as
/// users * P0 - P0 A' L A P0, L = sum_u E_u' X_u E_u (E_u: the pairs' +1 / -1 rows over A's rows),
/// O(n_u^2) a user. Users in order: the same bits for any thread count.
Eigen::MatrixXd ScatterThroughItems(
    const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& A,
    const std::vector<int32_t>& a, const std::vector<int32_t>& b,
    const std::vector<int64_t>& offsets, const std::vector<int64_t>& xoff,
    const std::vector<double>& x, const Eigen::MatrixXd& P0);

}  // namespace prefmix::personalization
