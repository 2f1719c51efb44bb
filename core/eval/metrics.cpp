#include "core/eval/metrics.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace prefmix {

namespace {
constexpr auto Hit = PairHit;
constexpr auto Nll = PairLogLoss;
}  // namespace

double Accuracy(const std::vector<double>& p, const std::vector<float>& label) {
  PREFMIX_ASSERT(p.size() == label.size(), "prediction/label length mismatch");
  if (p.empty()) return std::nan("");
  double s = 0;
  for (size_t j = 0; j < p.size(); ++j) s += Hit(p[j], label[j]);
  return s / p.size();
}

double LogLoss(const std::vector<double>& p, const std::vector<float>& label) {
  PREFMIX_ASSERT(p.size() == label.size(), "prediction/label length mismatch");
  if (p.empty()) return std::nan("");
  double s = 0;
  for (size_t j = 0; j < p.size(); ++j) s += Nll(p[j], label[j]);
  return s / p.size();
}

double OracleAccuracy(const PairSet& pairs) {
  double s = 0;
  int64_t n = 0;
  for (size_t j = 0; j < pairs.size(); ++j) {
    if (std::isnan(pairs.truth[j])) continue;
    s += Hit(pairs.truth[j], pairs.label[j]);
    ++n;
  }
  return n ? s / n : std::nan("");
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  double pos = q / 100.0 * (v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

std::vector<double> PerUserAccuracy(const PairSet& pairs, const std::vector<double>& prob,
                                    int64_t n_users) {
  std::vector<double> hit(n_users, 0.0);
  std::vector<int64_t> cnt(n_users, 0);
  for (size_t j = 0; j < pairs.size(); ++j) {
    hit[pairs.user[j]] += Hit(prob[j], pairs.label[j]);
    ++cnt[pairs.user[j]];
  }
  std::vector<double> out;
  for (int64_t u = 0; u < n_users; ++u)
    if (cnt[u]) out.push_back(hit[u] / cnt[u]);
  return out;
}

Json PairMetrics(const Dataset& ds, const PairSet& pairs, const std::vector<double>& prob,
                 int min_group_users) {
  PREFMIX_ASSERT(prob.size() == pairs.size(), "prediction count ", prob.size(), " != pairs ",
                 pairs.size());
  for (size_t j = 0; j < prob.size(); ++j)
    PREFMIX_CHECK_INPUT(std::isfinite(prob[j]) && prob[j] >= 0 && prob[j] <= 1,
                        "model produced an invalid probability ", prob[j], " for test pair ", j,
                        " (training diverged?)");
  Json m = Json::Object();
  m["accuracy"] = Accuracy(prob, pairs.label);
  m["log_loss"] = LogLoss(prob, pairs.label);
  m["n_test_pairs"] = static_cast<int64_t>(pairs.size());
  double oracle = OracleAccuracy(pairs);
  if (!std::isnan(oracle)) m["oracle_accuracy"] = oracle;
  auto per_user = PerUserAccuracy(pairs, prob, ds.n_users());
  if (!per_user.empty()) {
    Json pu = Json::Object();
    double mean = 0;
    for (double a : per_user) mean += a;
    pu["mean"] = mean / per_user.size();
    pu["p10"] = Percentile(per_user, 10);
    pu["p50"] = Percentile(per_user, 50);
    pu["p90"] = Percentile(per_user, 90);
    pu["n_users"] = static_cast<int64_t>(per_user.size());
    m["per_user"] = pu;
  }
  // Group definitions: every attribute, plus the planted group on synthetic data.
  const std::vector<Attribute> groups = ds.GroupAttributes();
  Json per_group = Json::Object();
  Json worst;
  double worst_acc = 2.0;
  for (const auto& a : groups) {
    const int32_t L = std::max(a.NumCodes(), 0);
    // index L holds code -1 ("unknown")
    std::vector<double> hit(L + 1, 0), nll(L + 1, 0), ohit(L + 1, 0);
    std::vector<int64_t> np(L + 1, 0), onp(L + 1, 0);
    std::vector<std::vector<char>> seen_user(L + 1);
    std::vector<int64_t> nu(L + 1, 0);
    std::vector<char> user_counted(ds.n_users(), 0);
    for (size_t j = 0; j < pairs.size(); ++j) {
      int32_t u = pairs.user[j];
      int32_t c = a.codes[u];
      int32_t g = c < 0 ? L : c;
      hit[g] += Hit(prob[j], pairs.label[j]);
      nll[g] += Nll(prob[j], pairs.label[j]);
      ++np[g];
      if (!std::isnan(pairs.truth[j])) {
        ohit[g] += Hit(pairs.truth[j], pairs.label[j]);
        ++onp[g];
      }
      if (!user_counted[u]) {
        user_counted[u] = 1;
        ++nu[g];
      }
    }
    Json ga = Json::Object();
    for (int32_t g = 0; g <= L; ++g) {
      if (nu[g] < min_group_users || np[g] == 0) continue;
      Json e = Json::Object();
      e["accuracy"] = hit[g] / np[g];
      e["log_loss"] = nll[g] / np[g];
      e["n_users"] = nu[g];
      e["n_pairs"] = np[g];
      if (onp[g]) e["oracle_accuracy"] = ohit[g] / onp[g];
      std::string label = g == L ? "unknown" : a.Label(g);
      ga[label] = e;
      if (hit[g] / np[g] < worst_acc) {
        worst_acc = hit[g] / np[g];
        worst = Json::Object();
        worst["attribute"] = a.name;
        worst["group"] = label;
        worst["accuracy"] = worst_acc;
      }
    }
    if (ga.size() > 0) per_group[a.name] = ga;
  }
  if (per_group.size() > 0) m["per_group"] = per_group;
  if (!worst.is_null()) m["worst_group"] = worst;
  return m;
}

}  // namespace prefmix
