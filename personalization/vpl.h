#pragma once
// Family `vpl` (Variational Preference Learning, docs/families.md#vpl) on cached embeddings.
//
// Encoder q(z | C) over a user's labelled context pairs C = {(a_j > b_j)}:
//   p_j = MLP([e_a; e_b])           Linear(2D, H) -> LeakyReLU(0.2) -> Linear(H, H) -> LeakyReLU
//                                    -> Linear(H, H)   (VPL's pair encoder, H = --hidden)
//   o_j = (softmax(Q K' / sqrt(H)) V)_j   single-head self-attention over the set (no positions,
//                                          padded entries masked out)
//   m_j = W_mu o_j,  lambda_j = softplus(W_lambda o_j)   per-pair mean and precision [L]
//   precision-weighted (product-of-experts) pooling with the prior N(0, I) as one expert:
//   1 / sigma^2 = 1 + sum_j lambda_j,   mu = sigma^2 * sum_j lambda_j m_j,   log sigma^2 = -log(1 +
//   sum_j lambda_j).
// Why not VPL's mean pooling with mu, log sigma^2 clamped to [-1, 1]: that posterior does not
// tighten as context pairs are added, and VPL trains on samples projected to a sphere of radius
// sqrt(L) while it evaluates with the raw mu (two scales). Here the posterior is a product of
// Gaussian experts, so sigma shrinks with every pair (never grows), the empty set gives the prior
// (cold start: z = 0), and training samples z = mu + sigma * eps, evaluation uses z = mu: one
// scale for both.
// Decoder r(e, z) = MLP([e; z]): Linear(D + L, H) -> LeakyReLU -> Linear(H, H) -> LeakyReLU ->
// Linear(H, 1); P(a > b | z) = sigmoid(r(a, z) - r(b, z)).
// Loss per comparison: -log sigmoid(r(a, z) - r(b, z)) + beta * anneal(t) * KL(q(z | C) || N(0,
// I)), anneal = cyclical cosine (VPL's Annealer: rises from `floor` to 1 over `period` optimizer
// steps, then restarts). Each training comparison gets a context set of 2-8 *other* training pairs
// of the same user (fewer when the user has fewer), resampled every epoch. Inference (no gradient
// steps, batched), for seen users from their training pairs (at most kMaxContext) and for new
// users (`Adapt`) from their k support pairs: `--vpl-adapt encoder`, VPL's z = mu(q(z | pairs)),
// or `--vpl-adapt population`, the posterior mean over the training users' encoded mu given
// those pairs (w_i proportional to the decoder's likelihood of the pairs under mu_i); the default
// `auto` picks one in Fit by the log loss of training users held out of an extra fit.
// Score: VPL-SPO's normalisation r~(e | z) = mean_{e' in
// S, e' != e} sigmoid(r(e, z) - r(e', z)), S = all items (a seeded sample of kScoreReference items
// when there are more): in [0, 1] per user, same order as r.
#include <cstdint>
#include <vector>

#include "core/io/dataset.h"
#include "core/model/capabilities.h"

namespace prefmix::personalization {

/// At most this many context pairs are encoded per user (the first ones) at evaluation.
constexpr int kMaxContext = 64;
/// --vpl-adapt auto: every kSelectEvery-th training user with more than kSelectContext pairs (at
/// most kSelectUsers) is held out of one extra fit and adapted from kSelectContext of its pairs.
constexpr int kSelectContext = 8;
constexpr int kSelectEvery = 5;
constexpr int64_t kSelectUsers = 2000;
/// Smallest and largest training context set (VPL's 2-8 pairs).
constexpr int kMinTrainContext = 2;
constexpr int kMaxTrainContext = 8;
/// Reference items of the normalised Score() when the dataset has more items.
constexpr int64_t kScoreReference = 1024;
/// A latent dimension is "active" when its variance across users' mu exceeds this.
constexpr double kActiveUnitVariance = 0.01;

/// VPL's cyclical cosine annealing weight at optimizer step `step` (0-based):
/// floor + (1 - floor) * (cos(pi * (s / period - 1)) + 1) / 2, s = step mod period.
double CosineAnneal(int64_t step, int64_t period, double floor);

/// KL(N(mu, diag exp(logvar)) || N(0, I)) of every row, computed by the same code as the loss.
std::vector<double> GaussianKl(const Posterior& q);

}  // namespace prefmix::personalization
