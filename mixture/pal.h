#pragma once
// Families `pal-a` and `pal-b` (PAL, docs/families.md#pal-a): ideal-point reward models on cached
// embeddings. Each user u has simplex weights w_u = softmax(omega_u) over K shared prototypes;
// items are mapped by a shared projector f: R^D -> R^d.
//
//  - pal-a (distance):  r_u(e) = -|f(e) - a_u|, with the ideal point (--ideal)
//        Pw     (default)  a_u = P' w_u,          P in R^{K x d}
//        f(Pw)  (PAL's)    a_u = f(P' w_u),       P in R^{K x D}, only when d = D
//        f(P)w             a_u = sum_k w_uk f(p_k), P in R^{K x D}
//    f = PAL's `mlp2-relu-residual`: L3(ReLU(L2(ReLU(L1 e)))) (+ e when d = D).
//  - pal-b (cosine):    r_u(c, e) = s cos(f(e), a_u(c)), s = min(exp(theta), 100),
//    theta_0 = log(1/0.07); a_u(c) = sum_k w_uk g_k(c) with K prompt projectors g_k on the
//    pair's context embedding (/contexts/embeddings), and a_u = P' w_u (learned prototypes
//    p_k in R^d) for pairs without a context. f, g_k = PAL's `mlp2-gelu` (no residual).
// |x| is computed as sqrt(|x|^2 + kPalEps) everywhere (training and the user step alike), so
// both rewards are smooth.
//
// Training (LibTorch, mixture/pal_train.cpp): Adam with PAL's per-parameter-group step sizes,
// mini-batches, the Bradley-Terry loss -log sigma(r_u(a) - r_u(b)) (or PAL's hinge
// max(0, 1 - (r_u(a) - r_u(b))) with --loss hinge), early stopping on the validation loss.
//
// The user step (new users; docs/families.md#shared-step-and-user-step): f, P, g_k and s frozen, only omega_u fitted on
// the user's support pairs, all users in one OpenMP program:
//   J_u(omega) = sum_j c_j loss_j(omega) + lambda/2 |omega - omega0|^2,
// by full-batch Adam from omega0 (the population's log-weights) with step size lr decayed
// linearly to 0 over `steps` steps. lambda = 0 is PAL's recipe (only the number of steps holds
// omega near omega0); lambda > 0 with enough steps is the MAP estimate under a Gaussian prior on
// the logits. (lambda, steps) are chosen on pseudo-unseen users carved from the training users.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix::mixture {

/// Added under every square root of a squared norm.
constexpr double kPalEps = 1e-8;
/// Upper bound of pal-b's scale s = min(exp(theta), 100).
constexpr double kPalMaxScale = 100.0;

/// PAL's `mlp2` Connector: x -> L3(act(L2(act(L1 x)))) (+ x when residual). Linear layers are
/// stored as torch has them: weight [out, in], bias [out].
struct PalMlp {
  std::vector<RowMatrixF> weight;
  std::vector<Eigen::VectorXf> bias;
  bool gelu = false;      ///< GELU (erf form, as torch's default) instead of ReLU
  bool residual = false;  ///< adds the input (in = out only)

  int64_t InDim() const { return weight.empty() ? 0 : weight.front().cols(); }
  int64_t OutDim() const { return weight.empty() ? 0 : weight.back().rows(); }
  int64_t NumParams() const;
  /// Rows mapped: [n, in] -> [n, out], in double.
  RowMatrixD Forward(const RowMatrixD& x) const;
  /// The vector-Jacobian product J_f(x)' gy for one input x (a row of Forward's input).
  Eigen::VectorXd Backward(const Eigen::VectorXd& x, const Eigen::VectorXd& gy) const;
};

/// How pal-a forms the ideal point from the prototypes (--ideal).
enum class PalIdeal {
  kPw,   ///< a = P' w (default)
  kFPw,  ///< a = f(P' w)   (PAL's default; d = D)
  kFP,   ///< a = sum_k w_k f(p_k)
};
/// Parses "Pw" | "f(Pw)" | "f(P)w"; throws prefmix::Error naming --ideal.
PalIdeal ParsePalIdeal(const std::string& s);
const char* PalIdealName(PalIdeal ideal);

/// The shared (item-side) parameters of a trained PAL model.
struct PalParams {
  bool cosine = false;  ///< pal-b: s cos(f(e), a); pal-a: -|f(e) - a|
  PalIdeal ideal = PalIdeal::kPw;
  PalMlp f;               ///< item projector R^D -> R^d
  RowMatrixF protos;      ///< P: [K, d] (Pw, pal-b) or [K, D] (f(Pw), f(P)w)
  std::vector<PalMlp> g;  ///< pal-b with contexts: K prompt projectors R^Dc -> R^d
  double log_scale = 0;   ///< pal-b: theta

  int K() const { return static_cast<int>(protos.rows()); }
  int64_t Dim() const { return f.OutDim(); }
  /// pal-b's s = min(exp(theta), 100); 1 for pal-a (unused).
  double Scale() const;
  /// The rows a = B' w is formed from for pairs without a context: P (Pw, f(Pw), pal-b) or
  /// f(P) (f(P)w); [K, d] except for f(Pw) ([K, D], mapped by f afterwards).
  RowMatrixD Basis() const;
  /// Shared parameter count (f, P, the g_k, theta).
  int64_t NumParams() const;
};

/// Reward of a projected item z (d) for the ideal point a (d); writes dr/da to grad_a when
/// non-null.
double PalReward(bool cosine, double scale, const double* z, const double* a, int64_t d,
                 double* grad_a);

/// Frozen per-batch inputs of the user step and of predictions: projected items and per-context
/// bases computed once for the items / contexts the pairs reference.
struct PalPairInputs {
  RowMatrixD z;                 ///< [n_used_items, d] f(e) of the referenced items
  std::vector<int32_t> za, zb;  ///< per pair: rows of z
  RowMatrixD ctx_basis;         ///< [n_used_contexts * K, d] g_k(c) rows, context-major
  std::vector<int32_t> ctx;     ///< per pair: used-context index, or -1 (shared basis)
  RowMatrixD basis;             ///< Basis() of the params
};
/// Builds the inputs for `pairs` (only the items and contexts they reference are projected).
PalPairInputs MakePalPairInputs(const PalParams& p, const Dataset& ds, const PairSet& pairs);

/// The user step's settings (see the header comment).
struct PalUserStepOptions {
  double lambda = 0.0;  ///< Gaussian pull of omega_u towards omega0
  int steps = 100;      ///< Adam steps (each over all of the user's pairs)
  double lr = 0.05;     ///< Adam step size at the first step, decayed linearly to 0
  bool hinge = false;   ///< the hinge loss instead of Bradley-Terry
  bool adam = false;    ///< Adam even where the shared user step applies (tests compare them)
};

/// Whether PalUserStep runs on core's shared user step (the `normalized` link: pal-b, no
/// prompt projectors, BT loss, a prior lambda > 0, hard labels); otherwise it runs its own Adam.
bool PalUsesSharedUserStep(const PalParams& p, const PairSet& support,
                           const PalUserStepOptions& options);

/// J_u(omega) of one user whose pairs are `idx` (indices into pairs / inputs), and its gradient
/// with respect to omega (K values) when grad != null. Exposed for tests.
double PalUserObjective(const PalParams& p, const PalPairInputs& in, const PairSet& pairs,
                        const std::vector<size_t>& idx, const double* omega, const double* omega0,
                        double lambda, bool hinge, double* grad);

/// The batched user step: log-weights omega [n_users, K] for users 0..n_users-1 fitted on their
/// `support` pairs (pair user = row), from omega0. Users without pairs keep omega0. Where
/// PalUsesSharedUserStep holds, the MAP problem is solved by core's user step (on `device`, cpu
/// or cuda); otherwise by Adam on the CPU (`device` must be cpu).
RowMatrixD PalUserStep(const PalParams& p, const Dataset& ds, const PairSet& support,
                       int64_t n_users, const Eigen::VectorXd& omega0,
                       const PalUserStepOptions& options, const std::string& device = "cpu");

/// Margins r_u(first) - r_u(second) for each pair, user weights w [*, K] (rows = pair users).
std::vector<double> PalPairMargins(const PalParams& p, const Dataset& ds, const PairSet& pairs,
                                   const RowMatrixF& w);

/// Rewards [w.rows(), n_items] of every item for each row of w (the context-free ideal point).
RowMatrixF PalScore(const PalParams& p, const Dataset& ds, const RowMatrixF& w);

/// Row-wise softmax.
RowMatrixD PalSoftmax(const RowMatrixD& omega);

}  // namespace prefmix::mixture
