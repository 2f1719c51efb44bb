#pragma once
// Family `lowrank` (LoRe-style): r_u(e) = e^T V w_u with V in R^{D x K} shared and
// w_u = softmax(omega_u) on the simplex. Joint full-batch Adam with hand-written gradients
// (items are projected once per step, P = E V, and gathered per pair); the user step for unseen
// users is core's batched `linear` link with V frozen.
#include "core/model/model.h"

namespace prefmix::mixture {

/// One full-batch pass of the joint objective: loss and gradients wrt V and Omega.
/// Exposed for the unit tests (finite differences) and the benchmark.
struct LowRankPass {
  double loss = 0;
  Eigen::MatrixXf grad_v;  ///< [D, K]
  RowMatrixF grad_omega;   ///< [n_users, K]
};

/// Buffers reused across passes (an epoch loop keeps one).
struct LowRankWorkspace {
  RowMatrixF proj;                 // [n_items, K padded to 8]
  std::vector<RowMatrixF> gp, gw;  // per-thread item / user gradient accumulators
  std::vector<float> part;         // per-thread partial grad_V
};

/// Computes mean weighted BT loss + l2 |V|^2 and its gradients. `proj` is scratch [n_items, K].
LowRankPass LowRankLossAndGrad(const RowMatrixF& items, const PairSet& pairs,
                               const Eigen::MatrixXf& V, const RowMatrixF& omega, double l2,
                               RowMatrixF* proj);
/// The same with buffers kept in `ws` (proj may be null).
LowRankPass LowRankLossAndGrad(const RowMatrixF& items, const PairSet& pairs,
                               const Eigen::MatrixXf& V, const RowMatrixF& omega, double l2,
                               RowMatrixF* proj, LowRankWorkspace* ws);

}  // namespace prefmix::mixture
