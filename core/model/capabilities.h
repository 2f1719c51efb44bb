#pragma once
// Capabilities a model may offer beyond the Model contract (core/model/model.h). Code that needs
// one asks for it with dynamic_cast and falls back when a model lacks it; no family includes
// another family's header and no app includes a family header.
//  - MultiHeadModel: several reward heads with mixing weights (em-bt, micro); MaxMin selection
//    (core/model/maxmin.h) aggregates over them.
//  - AmortizedPosteriorModel: a posterior over the user latent computed from a set of labelled
//    pairs without gradient steps (vpl); active query selection (core/eval/active.h) uses it.
#include <cstdint>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix {

/// A model with several reward heads and mixing weights. `select` and the fairness win rates
/// ask a model for this interface; a model without it is treated as one head (its population
/// reward).
class MultiHeadModel {
 public:
  virtual ~MultiHeadModel() = default;
  /// Reward of every item under every head: [K, n_items].
  virtual RowMatrixF HeadRewards(const Dataset& ds) const = 0;
  /// Mixing weights pi [K] (sum 1).
  virtual Eigen::VectorXd HeadWeights() const = 0;
};

/// At most this many context pairs are encoded per user (the first ones).
constexpr int kMaxContext = 64;

/// A labelled pair, preferred item first (rows of the dataset's items).
struct ContextPair {
  int32_t chosen = 0;
  int32_t rejected = 0;
};
/// One context set per user / per query.
using ContextSet = std::vector<ContextPair>;

/// Diagonal Gaussian posteriors, one row per context set: mean and log variance [n_sets, L].
struct Posterior {
  RowMatrixF mu;
  RowMatrixF logvar;
};

/// Pair j of `p` with its preferred item first (by its label).
ContextPair Oriented(const PairSet& p, size_t j);

/// The per-user context sets of `pairs` (each oriented preferred-first by its label): the first
/// `max_pairs` pairs of every user 0..n_users-1 (an empty set for users without pairs).
std::vector<ContextSet> UserContextSets(const PairSet& pairs, int64_t n_users, int max_pairs);

/// What active query selection and the tests need from a model with an amortized posterior.
class AmortizedPosteriorModel {
 public:
  virtual ~AmortizedPosteriorModel() = default;
  /// q(z | C) for every context set (no gradient steps; batched).
  virtual Posterior Encode(const Dataset& ds, const std::vector<ContextSet>& sets) const = 0;
  /// The latent z the model gives each context set (what Adapt gives a user with these pairs,
  /// without Adapt's cap of kMaxContext pairs).
  virtual RowMatrixF LatentsOf(const Dataset& ds, const std::vector<ContextSet>& sets) const = 0;
  /// P(a_j > b_j | z_j) for each j, z_j = row j of z.
  virtual std::vector<double> PairProbWithLatent(const Dataset& ds, const std::vector<int32_t>& a,
                                                 const std::vector<int32_t>& b,
                                                 const RowMatrixF& z) const = 0;
  /// Raw rewards r(e, z) of every item for each latent row [z.rows(), n_items].
  virtual RowMatrixF RawRewards(const Dataset& ds, const RowMatrixF& z) const = 0;
  /// The training objective on `pairs` with context set contexts[j] for pair j:
  /// mean_j w_j (-log sigmoid(+-(r(a_j, z_j) - r(b_j, z_j)))) / mean w + kl_weight * mean_j KL_j.
  /// z_j is the reparameterised sample (seeded by `seed`), or row j of *fixed_z when given.
  virtual double TrainingLoss(const Dataset& ds, const PairSet& pairs,
                              const std::vector<ContextSet>& contexts, double kl_weight,
                              const RowMatrixF* fixed_z, uint64_t seed) const = 0;
};

}  // namespace prefmix
