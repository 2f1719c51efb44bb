#pragma once
// Paired significance for experiments over repeats.
#include <vector>

namespace prefmix {

/// Result of a paired test of b against a.
struct PairedTest {
  int n = 0;             ///< non-zero differences used
  double statistic = 0;  ///< Wilcoxon W+ (sum of ranks of positive differences b - a)
  double p_value = 1.0;  ///< two-sided
  double mean_diff = 0;  ///< mean of b - a over all pairs (zeros included)
};

/// Wilcoxon signed-rank test of the paired samples (b_i - a_i), zeros dropped, tied |d| given
/// average ranks. Exact sign-permutation distribution for n <= 60, normal approximation with tie
/// correction above. Throws prefmix::InternalError when the lengths differ.
PairedTest WilcoxonSignedRank(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace prefmix
