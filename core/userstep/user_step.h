#pragma once
// The batched user step (docs/families.md#shared-step-and-user-step): thousands of small per-user
// problems solved at once, on CPU (OpenMP over users) or CUDA (cuda/, registered as a backend). The
// same call infers users during training and adapts brand-new users from k support pairs.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"
#include "core/userstep/user_step_raw.h"

namespace prefmix {

/// Which per-user problem to solve (maths in core/userstep/math.h).
enum class UserStepLink {
  kLoglik,      ///< l_uk = sum_j c_j log sigma(q_jk) + log prior_k; posterior (hard or soft)
  kLinear,      ///< w_u = argmax over the simplex of sum_j c_j log sigma(b_j + w.q_j) -
                ///< lambda/2|w-w0|^2
  kMixture,     ///< w_u = argmax over the simplex of sum_j c_j log sum_k w_k sigma(q_jk) +
                ///< lambda sum_k w0_uk log w_k (MAP, EM; w0_u = init row u, else prior, else
                ///< uniform; the solver starts at w0_u)
  kNormalized,  ///< w_u = softmax(o_u), o_u = argmin of -sum_j c_j log sigma(b_j + s w.q_j /
                ///< sqrt(w'Gw + eps)) + lambda/2 |o - o0|^2 (pal-b without contexts; o0 =
                ///< prior, else 0; BFGS with corner probes, see math::SolveNormalizedSimplex)
  kGaussian,    ///< x_u = argmax over R^K of sum_j c_j log F(b_j + x.q_j) - 1/2 (x - x0)' P
                ///< (x - x0), F = Phi (probit) or sigma (logistic), P = precision (the prior
                ///< precision, positive definite), x0 = prior (else 0): the Laplace posterior
                ///< N(x_u, H^-1) by Newton's method; variance = diag(H^-1) (gppl's new users).
                ///< K up to kMaxGaussianK.
};

/// Largest K of the gaussian link (its scratch is K^2 doubles per user or thread).
constexpr int kMaxGaussianK = 1024;

/// Inputs of one batched user step. Pairs are grouped by user in CSR form.
struct UserStepProblem {
  int K = 0;  ///< components (<= math::kMaxK)
  int64_t n_users = 0;
  std::vector<int64_t> offsets;  ///< [n_users + 1]: user u owns pairs [offsets[u], offsets[u+1])
  std::vector<float> q;          ///< [n_pairs, K] per-pair per-component quantities
  std::vector<float> offset;     ///< [n_pairs] or empty (linear link's b_j)
  std::vector<float> weight;     ///< [n_pairs] or empty (all 1)
  std::vector<float> prior;  ///< loglik: log prior [K] or empty; linear / mixture: centre w0 [K]
                             ///< or empty (uniform); normalized: centre logits o0 [K] or empty (0)
  double lambda = 0.0;       ///< linear, mixture, normalized: prior strength
  std::vector<float> gram;   ///< normalized: G [K, K] row-major
  std::vector<double> precision;  ///< gaussian: the prior precision P [K, K] row-major
  bool probit = true;             ///< gaussian: probit (Phi) likelihood, else logistic (sigma)
  /// gaussian: 0 = variance is diag(H^-1), the Laplace posterior's marginals; s in (0, K): the
  /// marginals of its mean-field version over the blocks [0, s) and [s, K) (the inverses of H's
  /// diagonal blocks), as a model whose training latents are mean-field needs.
  int variance_split = 0;
  double scale = 1.0;     ///< normalized: s
  double norm_eps = 0.0;  ///< normalized: eps added under the square root
  int64_t n_pairs() const { return offsets.empty() ? 0 : offsets.back(); }
};

/// Solver options.
struct UserStepOptions {
  bool hard = false;   ///< loglik: one-hot argmax instead of the soft posterior
  int max_iter = 500;  ///< linear: Newton iterations at most; mixture: EM iterations at most;
                       ///< normalized: BFGS iterations at most (per start)
  double tol = 1e-7;   ///< linear: stop when the KKT residual is below tol; mixture: when no
                       ///< weight moves by more than tol; normalized: when |dJ/do|_inf < tol
};

/// Outputs: latent [n_users, K] (posterior or w_u), the per-user objective (loglik: the
/// log-evidence log sum_k exp(l_k); linear: f(w_u); mixture: g(w_u); normalized: -J(o_u)), and
/// the solvers' residual (linear: KKT residual; mixture: last EM move; normalized: gradient
/// norm) and iterations.
struct UserStepResult {
  RowMatrixF latent;
  RowMatrixF loglik;    ///< loglik link only: l_uk [n_users, K]
  RowMatrixD logits;    ///< normalized link only: o_u [n_users, K] (latent = softmax(o_u))
  RowMatrixF variance;  ///< gaussian link only: diag of the Laplace covariance [n_users, K]
  std::vector<double> objective;
  std::vector<double> residual;
  std::vector<int> iterations;
};

/// Solves every user's problem on `device` ("cpu" or "cuda"). `init` (linear link): starting
/// points [n_users, K] or empty (uniform); (mixture link): per-user prior centres w0_u, which
/// are also the starting points, or empty (`prior`, else uniform). Throws prefmix::Error for an
/// unavailable device.
UserStepResult RunUserStep(UserStepLink link, const UserStepProblem& problem,
                           const UserStepOptions& options, const std::string& device = "cpu",
                           const RowMatrixF* init = nullptr);

/// Checks a problem's shapes for `link` (internal invariant).
void CheckUserStepProblem(const UserStepProblem& p, UserStepLink link = UserStepLink::kLinear);

/// The pairs part of a problem from per-item values [n_items, K] computed once from the frozen
/// shared parameters (e.g. each head's reward of every item), gathered per pair:
/// q_j = s_j (values[first_j] - values[second_j]), s_j = +1 when label_j = 1 else -1; weights
/// copied; pairs grouped by user (users 0..n_users-1, pair order kept within a user).
UserStepProblem GatherUserStepProblem(const RowMatrixF& item_values, const PairSet& pairs,
                                      int64_t n_users);

/// The raw-pointer view of a problem (host pointers into `problem`, `init` and, when r is
/// non-null, r's output arrays, which must be sized already).
raw::UserStepArgs RawArgs(UserStepLink link, const UserStepProblem& problem,
                          const UserStepOptions& options, const RowMatrixF* init,
                          UserStepResult* r);
static_assert(static_cast<int>(UserStepLink::kLoglik) == raw::kLoglik &&
                  static_cast<int>(UserStepLink::kLinear) == raw::kLinear &&
                  static_cast<int>(UserStepLink::kMixture) == raw::kMixture &&
                  static_cast<int>(UserStepLink::kNormalized) == raw::kNormalized &&
                  static_cast<int>(UserStepLink::kGaussian) == raw::kGaussian,
              "link codes");

/// The CUDA backend's entry point, registered by cuda/ when built with CUDA.
using UserStepBackendFn = UserStepResult (*)(UserStepLink, const UserStepProblem&,
                                             const UserStepOptions&, const RowMatrixF*);
/// Registers the CUDA implementation (called from a static initialiser in cuda/).
void RegisterCudaUserStep(UserStepBackendFn fn, int (*device_count)());

}  // namespace prefmix
