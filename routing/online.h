#pragma once
// Stage-2 online routing (MiCRo): a user arrives with a stream of labelled comparisons and the
// mixture weights pi_u are updated after each label, with the heads frozen. Inputs are those of
// core's `mixture` user step (per pair q_jk = s_j (r_k(a_j) - r_k(b_j)), signed by the label, so
// x_jk = sigma(q_jk) is head k's probability of the observed outcome), plus a prior centre pi0_u
// and a strength s (the same Dirichlet prior the batch user step uses).
//
// Estimators (--online-estimator):
//  - map (default): the state is the MAP of the labels seen so far, argmax over the simplex of
//    sum_j c_j log sum_k pi_k x_jk + s sum_k pi0_k log pi_k, recomputed after each label by EM
//    warm-started at the previous state (monotone; the same objective and optimum as the batch
//    user step on those labels, so after t labels it predicts exactly as a batch `adapt` from
//    those t labels). O(t K) time per EM iteration and O(t K) state after t labels.
//  - quasi-bayes: the posterior over pi_u is kept as a Dirichlet(alpha_u), alpha_u =
//    s pi0_u at the start. A label with likelihood sum_k pi_k x_k turns Dirichlet(alpha) into the
//    mixture sum_k c_k Dirichlet(alpha + e_k), c_k = alpha_k x_k / sum_k' alpha_k' x_k'; the
//    update alpha <- alpha + c (Makov & Smith 1977, "quasi-Bayes") stays in the Dirichlet family
//    and keeps that exact posterior's mean: (alpha_i + c_i) / (alpha0 + 1). The predictive
//    probability of the next label is exact under the current Dirichlet:
//    sum_k (alpha_k / alpha0) x_k. O(K) time and state per label; a label's responsibilities
//    are computed once, at the estimate of its time, and never revisited, so it learns more
//    slowly than the MAP from the same labels.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"
#include "core/userstep/user_step.h"

namespace prefmix::routing {

enum class OnlineEstimator { kQuasiBayes, kMap };

/// "quasi-bayes" | "map"; anything else throws prefmix::Error naming --online-estimator.
OnlineEstimator ParseOnlineEstimator(const std::string& name);

/// One quasi-Bayes step for a label with per-component log-odds q [K] (signed by the label) and
/// weight c: returns the predictive probability of the label before the update,
/// sum_k alpha_k x_k / alpha0, and adds c * (alpha_k x_k / sum alpha x) to alpha [K].
double QuasiBayesUpdate(const float* q, int K, double c, double* alpha);

/// Result of one batched online pass.
struct OnlinePass {
  std::vector<double> prob;  ///< per pair, in the problem's (CSR) order: P(observed label) given
                             ///< the user's earlier labels only
  RowMatrixF latent;         ///< [n_users, K]: the state after all of the user's labels
                             ///< (quasi-bayes: posterior mean; map: MAP)
  RowMatrixF alpha;          ///< quasi-bayes: the Dirichlet parameters [n_users, K]; map: empty
};

/// Runs the estimator over every user's pairs in order (OpenMP over users). `prior` [n_users, K]
/// holds the centres pi0_u (rows sum to 1), `strength` the Dirichlet strength s >= 0; map: at
/// most `max_iter` warm-started EM iterations per label, stopping when no weight moves by more
/// than `tol`.
OnlinePass RunOnlineMixture(const UserStepProblem& stream, const RowMatrixF& prior, double strength,
                            OnlineEstimator estimator, int max_iter = 50, double tol = 1e-6);

}  // namespace prefmix::routing
