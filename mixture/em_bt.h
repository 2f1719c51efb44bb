#pragma once
// Family `em-bt` (MaxMin-RLHF, docs/families.md#em-bt): a mixture of K linear Bradley-Terry reward
// heads r_k(e) = theta_k' e with one latent group per user, fitted by EM.
//
//  - E-step (core's batched user step, `kLoglik` link): for every user at once
//      l_uk = sum_j c_j log sigma(r_k(a_j) - r_k(b_j)) + log pi_k   (log pi_k dropped with
//      --em-prior off, as in MaxMin-RLHF);
//    hard EM: z_u = argmax_k l_uk (one-hot gamma_u); soft EM: gamma_uk = softmax_k(l_uk).
//  - M-step: every head's weighted BT fit, sum_j c_j gamma_{u_j k} BtLoss + rho |theta_k|^2,
//    by warm-started truncated Newton (conjugate gradients, exact Hessian-vector products,
//    Armijo backtracking, so it never increases the objective); rho = l2 * sum_j c_j (the `l2`
//    of bt and lowrank: mean loss + l2 |theta|^2). Then pi_k = (sum_u gamma_uk + 1) / (U + K)
//    (MAP under a Dirichlet(2) prior, so a component never gets log 0).
//  - Objective (never decreases across rounds): hard
//      J = sum_u [l_{u z_u}] - rho sum_k |theta_k|^2 + sum_k log pi_k,
//    soft: the marginal log-likelihood sum_u log sum_k pi_k e^{l_uk} with the same two terms.
//
// Per-item rewards R = E Theta [n_items, K] are computed once per pass and gathered per pair
// (never one embedding product per comparison). Users without pairs take the population
// posterior pi. Predictions P(a > b | u) = sum_k gamma_uk sigma(r_k(a) - r_k(b)) (hard EM: the
// user's own head). Adapt (new users) = the soft posterior from the support pairs in both
// modes (with log pi unless --em-prior off); cold start = pi. A mixture has no single reward, so
// Score(e) = sum_k gamma_uk q_k(e) with q_k head k's calibrated win rate against the items
// (core/model/maxmin.h). Heads are linear; an MLP head option is not implemented.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::mixture {

/// Knobs of one EM run at fixed K and l2 (the model maps ModelOptions onto it).
struct EmOptions {
  bool hard = true;            ///< hard (MaxMin-RLHF) or soft (posterior) E-step
  bool use_prior = true;       ///< add log pi_k in the E-step (--em-prior on|off)
  int max_rounds = 100;        ///< EM rounds at most
  double tol = 1e-9;           ///< stop when the objective gains less than tol * (1 + |J|)
  double l2 = 1e-3;            ///< L2 strength per unit of pair weight (rho = l2 * sum_j c_j)
  int newton_iters = 3;        ///< Newton steps per head per M-step (warm-started)
  int cg_iters = 50;           ///< conjugate-gradient iterations per Newton step at most
  double newton_tol = 1e-10;   ///< stop Newton when every head's decrement is below this * W
  std::string device = "cpu";  ///< user-step device (cpu | cuda)
};

/// Pair indices grouped by user (CSR), built once per fit: user u owns
/// order[offsets[u] .. offsets[u + 1]).
struct UserPairs {
  int64_t n_users = 0;
  std::vector<int64_t> offsets;
  std::vector<size_t> order;
  /// Number of users with at least one pair.
  int64_t n_active = 0;
};

/// Groups the pairs by user (pairs' user values must lie in [0, n_users)).
UserPairs GroupByUser(const PairSet& pairs, int64_t n_users);

/// Each user's component by the largest responsibility (argmax of gamma's row); -1 for users
/// without pairs in `index`.
std::vector<int> HardAssignments(const RowMatrixF& gamma, const UserPairs& index);
/// Share of the users with pairs whose most probable component (argmax gamma) is the most common
/// one: 1 when every user sits in one component.
double LargestClusterShare(const RowMatrixF& gamma, const UserPairs& index);
/// A fit has collapsed when K >= 2 and at least this share of its users sit in one component:
/// the mixture then predicts (nearly) as one Bradley-Terry model.
inline constexpr double kCollapseShare = 0.95;
inline bool Collapsed(double largest_share, int K) {
  return K >= 2 && largest_share >= kCollapseShare;
}

/// Parameters of the mixture: heads Theta [D, K] and mixing weights pi [K].
struct EmState {
  Eigen::MatrixXd theta;
  Eigen::VectorXd pi;
};

/// Result of one E-step.
struct EStepResult {
  RowMatrixF gamma;   ///< [n_users, K]: one-hot (hard) or posterior (soft); pi if no pairs
  RowMatrixF loglik;  ///< [n_users, K]: l_uk including log pi_k when the prior is used
  std::vector<double> evidence;  ///< per user log sum_k exp(l_uk)
  double data_term = 0;  ///< hard: sum_u max_k l_uk; soft: sum_u evidence (users with pairs)
};

/// Per-item rewards of every head: R = items * theta, [n_items, K].
RowMatrixF ItemHeadRewards(const RowMatrixF& items, const Eigen::MatrixXd& theta);

/// The batched E-step through core's user step (`kLoglik` link) on `device`; q_jk is the signed
/// margin (label 1: first chosen) of pair j under head k, gathered from `rewards`.
EStepResult EStep(const RowMatrixF& rewards, const PairSet& pairs, const UserPairs& index,
                  const Eigen::VectorXd& pi, bool hard, bool use_prior,
                  const std::string& device = "cpu");

/// The EM objective J (see the file comment) of state given an E-step computed from it.
double EmObjective(const EStepResult& e, const EmState& state, const EmOptions& o,
                   double total_weight);

/// The M-step: newton_iters warm-started Newton steps on every head with weights gamma, then the
/// pi update over users with pairs. Returns the largest Newton decrement of the last step.
double MStep(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
             const RowMatrixF& gamma, const EmOptions& o, EmState* state);

/// Outcome of an EM run.
struct EmRun {
  std::vector<double> objective;  ///< J after each E-step (first entry: the starting state)
  EStepResult last;               ///< E-step of the final state
  int rounds = 0;                 ///< M-steps taken
};

/// EM from `state` until the objective gains less than tol or max_rounds M-steps were taken.
EmRun RunEm(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
            const EmOptions& o, EmState* state);

/// Data-driven start: k-means++ (seeded) + Lloyd on the unit directions of per-user ridge BT
/// fits (D <= 128: Newton; larger D: the gradient at zero). Returns one label per user (-1 for
/// users without pairs).
std::vector<int> KMeansStart(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
                             int K, uint64_t seed);

/// A state fitted to fixed labels (one M-step from zero heads run to convergence).
EmState StateFromLabels(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
                        const std::vector<int>& labels, int K, const EmOptions& o);

/// Mean (weighted) predictive log-likelihood of pairs: log sum_k gamma_uk sigma(margin_k).
double MixtureLogLik(const RowMatrixF& rewards, const PairSet& pairs, const RowMatrixF& gamma);

/// Adjusted Rand index of two labelings of the same items (entries < 0 are skipped).
double AdjustedRandIndex(const std::vector<int>& a, const std::vector<int>& b);

}  // namespace prefmix::mixture
