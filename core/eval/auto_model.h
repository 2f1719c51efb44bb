#pragma once
// `--model auto` (docs/families.md#auto): a family that fits candidate families on the training
// pairs, scores each on the validation pairs, refits the chosen one (train + validation) and
// from then on *is* that model — its model file is the chosen family's, loadable without auto.
//
// Choice, on the pooled validation pairs (every user's validation pairs together), or, with
// fewer than kAutoCvBelowPairs of them, on every pair by --auto-folds cross-validation (each
// candidate fitted once per round: scored on one part, selecting on the next, fitted on the
// rest; see MakeAutoFolds):
//   1. Each candidate is fitted with its defaults (refit off, so the validation pairs stay out of
//      its fit), under a budget: a candidate starts only while --auto-budget seconds remain, and
//      one still running when they run out is stopped (the first candidate always finishes).
//   2. Score: mean validation log loss L_c, with the standard error of its paired difference to
//      the lowest one (per-pair losses, same pairs).
//   3. Degenerate: a personalized candidate whose user latents change no validation prediction
//      (mean |P(user latent) - P(population latent)| < kDegenerateEffect) on data without
//      contexts — e.g. a mixture that collapsed into one component. It can win only when no
//      candidate that is not degenerate is left.
//   4. The lowest L_c wins; if that is a pooled candidate (no user latent: bt, bt-mlp) and a
//   personalized,
//      non-degenerate candidate is within one standard error of it, the best such candidate wins
//      instead (the richer model, when the data cannot tell them apart).
//   5. For the winner: its gain over the pooled model of the same item map (bt for linear heads,
//      bt-mlp for MLP item maps, pooled gppl for gppl) in validation log loss and accuracy — how
//      much of the result is personalization.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix {

/// Default candidate list of --auto-families, cheapest first (the order the budget is spent in).
inline constexpr const char* kAutoDefaultFamilies =
    "bt,bt-mlp,micro,lowrank,em-bt,gppl,pal-b,pal-a,vpl";
/// With fewer validation pairs than this, the choice is by --auto-folds cross-validation over
/// train + validation (every candidate fitted once per fold): a few hundred pairs cannot tell
/// the candidates apart (SUSHI-A-small: 50).
inline constexpr int64_t kAutoCvBelowPairs = 2000;
/// Seed stream of the cross-validation folds.
inline constexpr uint64_t kAutoFoldStream = 731;
/// Below this mean |P(user) - P(population)| on the validation pairs, user latents change nothing.
inline constexpr double kDegenerateEffect = 1e-4;

/// One candidate's validation record.
struct AutoCandidate {
  std::string name;
  std::string status = "fitted";  ///< fitted | skipped (budget) | stopped (budget) | failed: ...
  double seconds = 0;
  std::vector<double> loss;  ///< log loss per validation pair
  double mean_loss = 0, accuracy = 0;
  double effect = 0;  ///< mean |P(user latent) - P(population latent)| (personalized only)
  double se = 0;      ///< standard error of mean(loss - loss of the lowest), set by the choice
  bool personalized = false, degenerate = false;
  bool fitted() const { return status == "fitted"; }
};

/// Steps 2-4 above: sets every fitted candidate's `se` and returns the index of the chosen one
/// (-1 when none is fitted), with the rule that chose it in *rule.
int ChooseAutoCandidate(std::vector<AutoCandidate>* cands, std::string* rule);

/// One round of the cross-validated choice: the candidate is fitted on `fit`, selects (epochs,
/// L2: the families with a refit step) on `select`, and is scored on `held`.
struct AutoFold {
  PairSet fit, select, held;
};
/// The rounds: train + validation pairs, each user's pairs shuffled (seeded) and dealt
/// round-robin into k parts; round f holds out part f, selects on part f + 1 (mod k) and fits on
/// the rest.
std::vector<AutoFold> MakeAutoFolds(const PairSet& train, const PairSet& valid, int64_t n_users,
                                    int k, uint64_t seed);

/// Parses a --auto-families list: registered families except auto, and bt-mlp (bt --arch mlp);
/// throws prefmix::Error naming the flag and the bad or repeated entry.
std::vector<std::string> ParseAutoFamilies(const std::string& list);

}  // namespace prefmix
