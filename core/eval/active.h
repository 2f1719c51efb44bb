#pragma once
// Active query selection for a new user of a model with an amortized posterior (vpl).
//
// A user has a context set C (labelled pairs so far) and a pool of candidate pairs whose labels
// are revealed only when asked (an oracle callback). Each round picks, for every user at once,
// one pool pair (a, b) by a criterion, asks its label and adds it to C:
//  - entropy (VPL's control code, `active_utils.py`): minimise the expected posterior entropy
//      E_y[H(q(z | C + (a, b, y)))],  H(q) = 1/2 sum_d (1 + log(2 pi sigma_d^2)),
//    y ~ P(a > b | z = mu(C)); both label outcomes are encoded (batched, no gradient steps);
//  - bald (information gain about z): maximise I(y; z | C) = H_b(E_q p) - E_q H_b(p),
//    p = P(a > b | z), estimated with `samples` draws z ~ q(z | C) (seeded);
//  - random: a uniform pick (the baseline).
// Selection never sees a label before it asks for it; pairs are presented in a fixed
// orientation (the criteria are symmetric in a <-> b). bald is the default: on the groups
// preset (10 seeds) it reaches random selection's 8-query accuracy with 4-5 queries, while
// entropy stays below random (with precision-weighted pooling the posterior entropy after a
// pair depends only on the encoder's precision for it, not on what its label would say;
// bench/RESULTS.md section 7.2).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/eval/protocol.h"
#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/capabilities.h"
#include "core/model/model.h"

namespace prefmix {

/// Options of the selection, with defaults.
struct ActiveOptions {
  int queries = 8;                 ///< --active N: pairs to ask per user
  std::string criterion = "bald";  ///< --criterion: bald | entropy | random
  int samples = 64;                ///< bald: posterior draws per user
  uint64_t seed = 1;               ///< random picks and bald draws
};

/// Throws prefmix::Error naming the flag for a bad option.
void ValidateActiveOptions(const ActiveOptions& o);

/// One user's problem: initial labelled pairs and the candidate pool (items of the dataset).
struct ActiveUser {
  ContextSet context;
  std::vector<int32_t> pool_a, pool_b;
};

/// Reveals the label of pool pair i of user u: true when pool_a[i] is preferred.
using LabelOracle = std::function<bool(size_t user, size_t pool_index)>;

/// Runs o.queries rounds for all users (fewer for a user whose pool runs out); the asked pairs
/// are appended to each user's context. Returns per user the asked pool indices, in order.
/// `after_round(r)` runs after round r (r = 1..) and once before the first (r = 0).
std::vector<std::vector<int>> SelectQueries(const AmortizedPosteriorModel& model, const Dataset& ds,
                                            std::vector<ActiveUser>* users, const ActiveOptions& o,
                                            const LabelOracle& oracle,
                                            const std::function<void(int)>& after_round = nullptr);

/// Entropy of a diagonal Gaussian from its log variances: 1/2 sum_d (1 + log 2 pi + logvar_d).
double GaussianEntropy(const float* logvar, int64_t n);

/// The unseen protocol's active-vs-random curve for a trained model: every held-out user starts
/// with no pair; the pool is the first half (rounded up) of the user's query pairs (those after
/// the largest shot), the second half is a fixed evaluation set. Reports, for 0..o.queries
/// questions, the accuracy on the user's query pairs not yet asked ("remaining") and on the
/// fixed half ("heldout"), for o.criterion and for random selection. Throws prefmix::Error
/// if the model has no amortized posterior.
Json ActiveCurve(const Model& model, const Dataset& ds, const PairSet& all, const Split& s,
                 int max_shots, const ActiveOptions& o);

/// `prefmix adapt --active N --pool POOL.csv`: for every user of ds, the context starts as the
/// user's pairs in ds; then o.queries pairs are asked from the user's rows of POOL.csv (header
/// user,chosen,rejected[,context][,weight]: user = an id of ds, items = rows of ds's items;
/// the label revealed when asked is chosen > rejected). Returns the latents z = mu [n_users, L];
/// *asked (if non-null) receives the asked pool pairs as (user row, chosen, rejected) in order.
struct AskedPair {
  int32_t user = 0;
  int32_t chosen = 0;
  int32_t rejected = 0;
  int round = 0;
};
RowMatrixF AdaptActive(const Model& model, const Dataset& ds, const std::string& pool_csv,
                       const ActiveOptions& o, std::vector<AskedPair>* asked);

}  // namespace prefmix
