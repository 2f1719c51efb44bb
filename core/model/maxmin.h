#pragma once
// MaxMin aggregation over reward heads (docs/families.md#maxmin-selection).
//
// A BT head is defined only up to an additive constant (and, with L2, a scale), so raw rewards
// are never compared across heads. Each head's *calibrated* score of candidate y is its mean win
// probability against the other candidates, q_k(y) = mean_{y' != y} sigma(r_k(y) - r_k(y')).
// Egalitarian selection picks argmax_y min_k q_k(y); utilitarian picks argmax_y sum_k pi_k q_k(y).
// Ties go to the lowest candidate index.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/capabilities.h"

namespace prefmix {

/// Calibrated scores q [K, n] of n candidates from their head rewards [K, n] (n >= 2; n == 1
/// gives 0.5).
RowMatrixD CalibratedScores(const RowMatrixF& rewards);

/// The seed stream (DeriveSeed(--seed, stream)) of the reference sample below, shared by the
/// multi-head families so that their scores use the same reference items.
constexpr uint64_t kScoreReferenceStream = 0x5c0e;

/// Calibrated scores [K, n_items] of every item for scoring all items of a dataset: each head's
/// mean win probability against every other item, or, with more than `max_reference` items,
/// against a fixed reference sample of that many items drawn with `seed`.
RowMatrixF CalibratedItemScores(const RowMatrixF& rewards, uint64_t seed,
                                int64_t max_reference = 4096);

/// argmax_y min_k q_k(y).
int EgalitarianPick(const RowMatrixD& q);
/// argmax_y sum_k w_k q_k(y).
int UtilitarianPick(const RowMatrixD& q, const Eigen::VectorXd& w);

/// Win rate of candidate `pick` under true rewards `truth` of the candidates:
/// mean over y' != pick of 1[truth[pick] > truth[y']] (0 when there is a single candidate).
double WinRate(const std::vector<float>& truth, int pick);

/// Options of `prefmix select`.
struct SelectOptions {
  std::string aggregate = "min";  ///< min (egalitarian) | mean (utilitarian): the reported pick
  int candidates = 0;  ///< 0: all items, or per context the items compared under it; N: N random
  int repeats = 1;     ///< candidate sets drawn when candidates > 0
  uint64_t seed = 1;   ///< draws of the candidate sets
};

/// Checks the options; throws prefmix::Error naming the flag.
void ValidateSelectOptions(const SelectOptions& o, int64_t n_items);

/// Runs the selection over the candidate sets: per set both picks (egalitarian, utilitarian)
/// and their head scores; win rates of each pick per head (q_k), per planted group (judged by
/// /truth/group_item_reward) and per user attribute group (each user judged by the reward of
/// their planted group), averaged over the sets. `rewards` [K, n_items], `weights` [K].
Json RunSelection(const Dataset& ds, const RowMatrixF& rewards, const Eigen::VectorXd& weights,
                  const SelectOptions& o);

}  // namespace prefmix
