#pragma once
// Family `micro` (MiCRo, docs/families.md#micro): K linear Bradley-Terry heads r_k(e) = theta_k' e
// and a router pi(x) = softmax(W x + b), mixed in probability, not in reward:
//   P(a > b | x) = sum_k pi_k(x) sigma(r_k(a) - r_k(b)).
// The router input x is chosen by --router:
//  - context:    the pair's context embedding (/contexts/embeddings; a pair without a context
//                routes on x = 0, i.e. softmax(b)); on data without any context, training routes
//                each pair on its user's own logits softmax(b + o_u) (MicroParams::offset), so
//                that the heads specialise by user as they would by context;
//  - attributes: the concatenated one-hot codes of every /users/attributes entry (code -1, or an
//                attribute missing from new data, is all zeros);
//  - features:   the user's /users/features row.
// Training (full batch, hand-written gradients, Adam, early stopping on validation log loss):
//   loss = -mean_j c_j log P_j - lambda H(pi_bar) + l2 (|Theta|^2 + |W|^2),
// pi_bar the pair-weighted mean routing of the batch (load balancing, lambda = --balance, 0.5);
// with --sample-entropy the term is MiCRo's code's per-sample one, -lambda mean_j c_j H(pi(x_j)),
// which pulls every pi(x) towards uniform. Per-item rewards E Theta are computed once per pass
// and gathered per pair.
//
// User latent (LatentDim() = K): the user's mixture weights pi_u. The user step (core's batched
// `mixture` link) fits pi_u on the simplex from the user's pairs by EM, with a Dirichlet pull of
// strength s (chosen on pseudo-unseen users, or --user-prior) towards the router's prior pi0_u:
// attributes / features: pi0_u = pi(x_u) (cold start = the router on the user's attributes);
// context: pi0_u = pi_bar. Training users' latents are the user step on their training pairs
// (context router on data with contexts: the mean routing of the user's pairs).
// Predictions: attributes / features mix with the user's pi_u; context routing mixes a pair that
// has a context with pi(c_j) (MiCRo's per-context routing) and a pair without one with pi_u.
// Score(e) = sum_k pi_uk q_k(e), q_k head k's calibrated win rate (core/model/maxmin.h).
#include <cstdint>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::routing {

/// Parameters of the mixture: heads Theta [D, K], router W [K, Dx] and b [K].
struct MicroParams {
  Eigen::MatrixXd theta;
  Eigen::MatrixXd w;
  Eigen::VectorXd b;
  /// Per-input logit offsets [n_inputs, K], added to x W' + b; empty: none. Training only: with
  /// the context router on data without contexts every input is a user and the router has
  /// nothing to read, so each user gets free routing logits (a Gaussian prior of sd
  /// kMicroOffsetSd per logit, in the loss's per-pair units: + |O|^2 / (2 sd^2 C)).
  Eigen::MatrixXd offset;
};

/// Prior standard deviation of the per-user routing logits (MicroParams::offset).
inline constexpr double kMicroOffsetSd = 1.0;

/// One full-batch pass: the loss of the header comment and its gradients (grad.offset when the
/// parameters have offsets).
struct MicroPass {
  double loss = 0;       ///< the whole objective
  double data_loss = 0;  ///< -mean_j c_j log P_j alone
  MicroParams grad;
};

/// Loss and gradients. `x` holds the router inputs [n_inputs, Dx]; pair j routes on row
/// input[j]. `sample_entropy` picks the per-sample entropy term instead of the batch-mean one.
MicroPass MicroLossAndGrad(const RowMatrixF& items, const RowMatrixD& x,
                           const std::vector<int32_t>& input, const PairSet& pairs,
                           const MicroParams& params, double balance, bool sample_entropy,
                           double l2);

/// Router weights softmax(x W' + b) for every input row: [n_inputs, K].
RowMatrixD MicroRoute(const RowMatrixD& x, const MicroParams& params);

}  // namespace prefmix::routing
