#pragma once
// Fairness benchmark (issue 8): which model serves which group of people how well.
//
// Everything here is generic over the family registry: models are made with MakeModel and used
// through the Model interface only, so a new family shows up with no change to this code.
//
// Units of the bootstrap are users: a resample draws a group's users with replacement and pools
// their pairs (hits / pairs), the same pooling as the point estimate.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/eval/experiment.h"
#include "core/eval/protocol.h"
#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/model.h"

namespace prefmix {

/// Options of `prefmix fairness`, with documented defaults.
struct FairnessOptions {
  std::vector<std::string> by;  ///< groupings to report (empty: every Dataset::GroupAttributes)
  int bootstrap = 1000;         ///< bootstrap resamples over users for the CIs (0: no CIs)
  double ci_level = 0.95;       ///< two-sided level of the percentile CIs
  int hist_bins = 10;           ///< bins of the per-user accuracy histogram over [0, 1]
  bool closure = true;          ///< add the transitive-closure baseline where /rankings exist
};

/// Per-user sufficient statistics of predictions on a set of pairs (index = dataset row).
struct UserStats {
  std::vector<double> hits;  ///< sum of 1[correct] (0.5 for p == 0.5)
  std::vector<double> nll;   ///< sum of -log p(label), p clipped to [1e-7, 1 - 1e-7]
  std::vector<int64_t> n;    ///< pairs
  /// Adds pairs with predictions prob (users are dataset rows < n_users).
  void Add(const PairSet& pairs, const std::vector<double>& prob, int64_t n_users);
};

/// Percentile bootstrap CI (over users drawn with replacement) of pooled accuracy and log loss
/// of the users `members`; returns {acc_lo, acc_hi, ll_lo, ll_hi}. Deterministic in seed.
std::vector<double> BootstrapUsersCi(const UserStats& st, const std::vector<int32_t>& members,
                                     int resamples, double level, uint64_t seed);

/// One grouping's breakdown: {"groups": {label: {accuracy, log_loss, n_users, n_pairs,
/// accuracy_ci, log_loss_ci}}, "worst": {group, accuracy}, "best": {...}, "gap"}; groups with
/// fewer than min_group_users users (with pairs) are left out. Null when no group qualifies.
Json GroupBreakdown(const Attribute& a, const UserStats& st, int min_group_users,
                    const FairnessOptions& fo, uint64_t seed);

/// Kendall tau of each user's predicted ranking (model scores) against their observed rankings.
/// Per ranking tau-b over all its item pairs (observed rankings have no ties; predicted ties
/// count in the denominator); a ranking whose predicted scores are all tied has tau 0.
class TauAccumulator {
 public:
  /// Adds the rankings of users `rows` (dataset rows); scores has one row per entry of rows.
  void Add(const Dataset& ds, const std::vector<int32_t>& rows, const RowMatrixF& scores);
  /// {"mean_user": mean over users of their mean tau-b, "pooled": (C - D) / pairs over every
  /// ranking pair of every user pooled, "n_users", "n_rankings"}; null when nothing was added.
  Json Result() const;

 private:
  std::vector<double> user_tau_;  ///< one entry per (user, Add call)
  double concordant_ = 0, discordant_ = 0, pairs_ = 0;
  int64_t n_rankings_ = 0;
};

/// The per-user transitive-closure baseline: P(first preferred) = 1 when the user's `train`
/// pairs imply first > second through transitivity, 0 when they imply the opposite, 0.5 when
/// neither or both. Labels of train are honoured (label 0: second preferred).
std::vector<double> TransitiveClosurePredict(const PairSet& train, const PairSet& test,
                                             int64_t n_users);

/// Model scores [rows.size(), n_items] of the users `rows` under `latents` (one row per
/// dataset user), computed in chunks of users to bound memory.
RowMatrixF ScoreUsers(const Model& model, const Dataset& ds, const RowMatrixF& latents,
                      const std::vector<int32_t>& rows);

/// The groupings reported: every Dataset::GroupAttributes entry, or those named in `by` (throws
/// prefmix::Error naming an unknown one and listing the known ones).
std::vector<Attribute> FairnessGroupings(const Dataset& ds, const std::vector<std::string>& by);

/// Each user's win rate of `item` judged by their own observed rankings: over the user's
/// rankings that contain it, the mean share of the other ranked items it beats. NaN for users
/// with no ranking containing the item.
std::vector<double> RankingWinRates(const Dataset& ds, int32_t item);

/// Mean of a per-user value (NaN = no value) per group of every grouping:
/// {grouping: {label: {"mean", "n_users"}}}; groups with fewer than min_group_users users with a
/// value are left out.
Json GroupMeans(const std::vector<Attribute>& groupings, const std::vector<double>& per_user,
                int min_group_users);

/// Extra per-model output computed by the caller on the trained model (e.g. MaxMin vs
/// utilitarian selection, which lives above core); null to add nothing.
using ModelHook = std::function<Json(const Model& model, const Dataset& ds)>;

/// Trains every family under the same split(s) and reports per-group accuracy / log loss with
/// bootstrap CIs, worst group, best-worst gap, per-user distributions, latent groups (models
/// whose latent is on the simplex: argmax component), Kendall tau where /rankings exist, the
/// shots curve per group (unseen) and the transitive-closure baseline (rankings). The result
/// follows data/schema/fairness.schema.json (without provenance, which the CLI adds).
Json RunFairness(const Dataset& ds, const std::vector<ModelOptions>& models,
                 const ProtocolOptions& protocol, const FairnessOptions& fo,
                 const ProgressFn& progress = nullptr, const ModelHook& hook = nullptr);

/// MaxMin (egalitarian) vs utilitarian pick over all items by the calibrated head scores of a
/// multi-head model (core/model/capabilities.h), with each group's win rate of both picks judged
/// by the users' own observed rankings (where /rankings exist) and by the planted truth
/// (synthetic data). Null for models without heads.
Json SelectionWinRates(const Model& model, const Dataset& ds,
                       const std::vector<Attribute>& groupings, int min_group_users, uint64_t seed);

}  // namespace prefmix
