#include "core/eval/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace prefmix {

PairedTest WilcoxonSignedRank(const std::vector<double>& a, const std::vector<double>& b) {
  PREFMIX_ASSERT(a.size() == b.size(), "paired samples of different lengths");
  PairedTest t;
  std::vector<double> d;
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double x = b[i] - a[i];
    sum += x;
    if (x != 0) d.push_back(x);
  }
  t.mean_diff = a.empty() ? 0 : sum / a.size();
  t.n = static_cast<int>(d.size());
  if (t.n == 0) return t;
  std::vector<size_t> order(d.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t i, size_t j) { return std::fabs(d[i]) < std::fabs(d[j]); });
  // Doubled average ranks (integers even with ties).
  std::vector<int> rank2(d.size());
  double tie_term = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && std::fabs(d[order[j + 1]]) == std::fabs(d[order[i]])) ++j;
    const int r2 = static_cast<int>(i + 1 + j + 1);  // 2 * average of ranks i+1..j+1
    for (size_t k = i; k <= j; ++k) rank2[order[k]] = r2;
    const double tt = static_cast<double>(j - i + 1);
    tie_term += tt * tt * tt - tt;
    i = j + 1;
  }
  int w2 = 0, total2 = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    total2 += rank2[i];
    if (d[i] > 0) w2 += rank2[i];
  }
  t.statistic = w2 / 2.0;
  if (t.n <= 60) {
    // Exact: every sign pattern equally likely under H0; count by dynamic programming.
    std::vector<double> dist(total2 + 1, 0.0);
    dist[0] = 1.0;
    for (int r : rank2)
      for (int s = total2; s >= r; --s) dist[s] += dist[s - r];
    const double all = std::pow(2.0, t.n);
    double lo = 0, hi = 0;
    for (int s = 0; s <= total2; ++s) {
      if (s <= w2) lo += dist[s];
      if (s >= w2) hi += dist[s];
    }
    t.p_value = std::min(1.0, 2.0 * std::min(lo, hi) / all);
  } else {
    const double n = t.n;
    const double mean = n * (n + 1) / 4;
    const double var = n * (n + 1) * (2 * n + 1) / 24 - tie_term / 48;
    const double z = (t.statistic - mean) / std::sqrt(var);
    t.p_value = std::min(1.0, std::erfc(std::fabs(z) / std::sqrt(2.0)));
  }
  return t;
}

}  // namespace prefmix
