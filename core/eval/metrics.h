#pragma once
// Metrics of docs/protocols.md#metrics-json: pooled accuracy (0.5 counts half), log loss (natural log,
// p clipped to [1e-7, 1-1e-7]), per-user accuracy distribution, per-group and worst group.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/io/dataset.h"
#include "core/io/json.h"

namespace prefmix {

/// One pair's score: 1 when p (P(first preferred)) is on the side of the label, 0 when not,
/// 0.5 when p is exactly 0.5.
inline double PairHit(double p, float label) {
  if (p == 0.5) return 0.5;
  return (p > 0.5) == (label > 0.5f) ? 1.0 : 0.0;
}
/// One pair's log loss (natural log), p clipped to [1e-7, 1 - 1e-7].
inline double PairLogLoss(double p, float label) {
  p = std::min(std::max(p, 1e-7), 1.0 - 1e-7);
  return label > 0.5f ? -std::log(p) : -std::log(1.0 - p);
}

/// Accuracy of predictions p (P(first preferred)) against labels; exactly 0.5 counts half.
double Accuracy(const std::vector<double>& p, const std::vector<float>& label);
/// Mean negative log-likelihood with p clipped to [1e-7, 1 - 1e-7].
double LogLoss(const std::vector<double>& p, const std::vector<float>& label);
/// Oracle accuracy from true probabilities (NaN entries skipped); NaN if none known.
double OracleAccuracy(const PairSet& pairs);
/// Percentile (linear interpolation, numpy's default) of v, q in [0, 100].
double Percentile(std::vector<double> v, double q);

/// The pair-level block of the metrics JSON: accuracy, log_loss, n_test_pairs, per_user,
/// per_group (every attribute, plus "planted_group" from /truth/user_group), worst_group and,
/// on synthetic data, oracle_accuracy. Throws prefmix::Error if a prediction is NaN.
Json PairMetrics(const Dataset& ds, const PairSet& pairs, const std::vector<double>& prob,
                 int min_group_users);

/// Per-user accuracies (users with at least one pair), for distributions.
std::vector<double> PerUserAccuracy(const PairSet& pairs, const std::vector<double>& prob,
                                    int64_t n_users);

}  // namespace prefmix
