#include "core/model/maxmin.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "core/userstep/math.h"

namespace prefmix {
namespace {

constexpr uint64_t kCandidateStream = 0x5e1ec7;

/// The candidate sets: all items, per context the items compared under it, or random draws.
struct CandidateSet {
  int context = -1;
  std::vector<int32_t> items;
};

std::vector<CandidateSet> CandidateSets(const Dataset& ds, const SelectOptions& o) {
  std::vector<CandidateSet> sets;
  const int64_t n = ds.n_items();
  if (o.candidates > 0) {
    for (int r = 0; r < o.repeats; ++r) {
      Rng rng(DeriveSeed(o.seed, kCandidateStream, static_cast<uint64_t>(r)));
      std::vector<int32_t> all(n);
      std::iota(all.begin(), all.end(), 0);
      // Partial Fisher-Yates: the first `candidates` entries are a uniform draw.
      for (int i = 0; i < o.candidates; ++i)
        std::swap(all[i], all[i + rng.Below(static_cast<uint64_t>(n - i))]);
      CandidateSet s;
      s.items.assign(all.begin(), all.begin() + o.candidates);
      std::sort(s.items.begin(), s.items.end());
      sets.push_back(std::move(s));
    }
    return sets;
  }
  std::map<int64_t, std::vector<char>> by_context;
  PairSet all = ds.AllPairs();
  for (size_t j = 0; j < all.size(); ++j) {
    if (all.context[j] < 0) continue;
    auto& mark = by_context[all.context[j]];
    if (mark.empty()) mark.assign(n, 0);
    mark[all.first[j]] = mark[all.second[j]] = 1;
  }
  if (by_context.empty()) {
    CandidateSet s;
    s.items.resize(n);
    std::iota(s.items.begin(), s.items.end(), 0);
    sets.push_back(std::move(s));
    return sets;
  }
  for (const auto& [c, mark] : by_context) {
    CandidateSet s;
    s.context = static_cast<int>(c);
    for (int64_t i = 0; i < n; ++i)
      if (mark[i]) s.items.push_back(static_cast<int32_t>(i));
    sets.push_back(std::move(s));
  }
  return sets;
}

/// Accumulates win rates of one kind of pick over the candidate sets.
struct WinTally {
  std::vector<double> head;                      // [K] mean q_k(pick)
  std::vector<double> group;                     // [G] planted group win rate
  std::vector<std::vector<double>> attr_sum;     // per attribute, per code (last: unknown)
  std::vector<std::vector<int64_t>> attr_users;  // users counted per code
  int n = 0;
};

}  // namespace

RowMatrixD CalibratedScores(const RowMatrixF& rewards) {
  const int64_t K = rewards.rows(), n = rewards.cols();
  RowMatrixD q(K, n);
  if (n == 1) {
    q.setConstant(0.5);
    return q;
  }
#pragma omp parallel for collapse(2) schedule(static) if (K * n * n >= (int64_t{1} << 17))
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t i = 0; i < n; ++i) {
      double s = 0;
      const double ri = rewards(k, i);
      for (int64_t t = 0; t < n; ++t)
        if (t != i) s += math::Sigmoid(ri - rewards(k, t));
      q(k, i) = s / static_cast<double>(n - 1);
    }
  }
  return q;
}

RowMatrixF CalibratedItemScores(const RowMatrixF& rewards, uint64_t seed, int64_t max_reference) {
  const int64_t K = rewards.rows(), n = rewards.cols();
  if (n <= max_reference) return CalibratedScores(rewards).cast<float>();
  Rng rng(seed);
  std::vector<int64_t> ref(n);
  std::iota(ref.begin(), ref.end(), 0);
  for (int64_t i = 0; i < max_reference; ++i)
    std::swap(ref[i], ref[i + static_cast<int64_t>(rng.Below(n - i))]);
  ref.resize(max_reference);
  RowMatrixF q(K, n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      int64_t c = 0;
      for (int64_t t : ref) {
        if (t == i) continue;
        s += math::Sigmoid(static_cast<double>(rewards(k, i)) - rewards(k, t));
        ++c;
      }
      q(k, i) = static_cast<float>(c > 0 ? s / c : 0.5);
    }
  }
  return q;
}

int EgalitarianPick(const RowMatrixD& q) {
  PREFMIX_ASSERT(q.cols() >= 1 && q.rows() >= 1, "no candidates or heads");
  int best = 0;
  double best_v = q.col(0).minCoeff();
  for (Eigen::Index i = 1; i < q.cols(); ++i) {
    const double v = q.col(i).minCoeff();
    if (v > best_v) {
      best_v = v;
      best = static_cast<int>(i);
    }
  }
  return best;
}

int UtilitarianPick(const RowMatrixD& q, const Eigen::VectorXd& w) {
  PREFMIX_ASSERT(q.cols() >= 1 && w.size() == q.rows(), "weights ", w.size(), " heads ", q.rows());
  Eigen::VectorXd s = q.transpose() * w;
  Eigen::Index best = 0;
  s.maxCoeff(&best);  // first maximum
  return static_cast<int>(best);
}

double WinRate(const std::vector<float>& truth, int pick) {
  const size_t n = truth.size();
  if (n <= 1) return 0.0;
  double wins = 0;
  for (size_t t = 0; t < n; ++t)
    if (static_cast<int>(t) != pick && truth[pick] > truth[t]) wins += 1;
  return wins / static_cast<double>(n - 1);
}

void ValidateSelectOptions(const SelectOptions& o, int64_t n_items) {
  PREFMIX_CHECK_INPUT(o.aggregate == "min" || o.aggregate == "mean", "--aggregate: '", o.aggregate,
                      "' is not one of min, mean");
  PREFMIX_CHECK_INPUT(o.candidates >= 0, "--candidates: ", o.candidates, " is negative");
  PREFMIX_CHECK_INPUT(o.candidates == 0 || (o.candidates >= 2 && o.candidates <= n_items),
                      "--candidates: ", o.candidates, " is not in [2, ", n_items,
                      "] (the dataset's items) and not 0 (all items)");
  PREFMIX_CHECK_INPUT(o.repeats >= 1, "--repeats: ", o.repeats, " must be >= 1");
}

Json RunSelection(const Dataset& ds, const RowMatrixF& rewards, const Eigen::VectorXd& weights,
                  const SelectOptions& o) {
  ValidateSelectOptions(o, ds.n_items());
  PREFMIX_ASSERT(rewards.cols() == ds.n_items() && rewards.rows() == weights.size(),
                 "head rewards ", rewards.rows(), "x", rewards.cols(), " weights ", weights.size());
  const int K = static_cast<int>(rewards.rows());
  const bool has_truth = ds.truth_group_item_reward.rows() > 0 && !ds.truth_user_group.empty();
  const int G = has_truth ? static_cast<int>(ds.truth_group_item_reward.rows()) : 0;
  std::vector<CandidateSet> sets = CandidateSets(ds, o);

  const char* kinds[2] = {"min", "mean"};
  WinTally tally[2];
  for (auto& t : tally) {
    t.head.assign(K, 0.0);
    t.group.assign(G, 0.0);
    for (const auto& a : ds.attributes) {
      t.attr_sum.emplace_back(std::max(a.NumCodes(), 0) + 1, 0.0);
      t.attr_users.emplace_back(std::max(a.NumCodes(), 0) + 1, 0);
    }
  }
  Json picks = Json::Array();
  for (size_t si = 0; si < sets.size(); ++si) {
    const auto& s = sets[si];
    const int n = static_cast<int>(s.items.size());
    RowMatrixF r(K, n);
    for (int i = 0; i < n; ++i) r.col(i) = rewards.col(s.items[i]);
    RowMatrixD q = CalibratedScores(r);
    const int pick[2] = {EgalitarianPick(q), UtilitarianPick(q, weights)};
    // Each planted group's win rate of each pick.
    std::vector<double> gwin[2];
    for (int m = 0; m < 2; ++m) {
      gwin[m].assign(G, 0.0);
      for (int g = 0; g < G; ++g) {
        std::vector<float> truth(n);
        for (int i = 0; i < n; ++i) truth[i] = ds.truth_group_item_reward(g, s.items[i]);
        gwin[m][g] = WinRate(truth, pick[m]);
      }
      WinTally& t = tally[m];
      for (int k = 0; k < K; ++k) t.head[k] += q(k, pick[m]);
      for (int g = 0; g < G; ++g) t.group[g] += gwin[m][g];
      if (has_truth) {
        for (size_t a = 0; a < ds.attributes.size(); ++a) {
          const auto& attr = ds.attributes[a];
          const int32_t L = std::max(attr.NumCodes(), 0);
          for (int64_t u = 0; u < ds.n_users(); ++u) {
            const int32_t g = ds.truth_user_group[u];
            if (g < 0 || g >= G) continue;
            const int32_t c = attr.codes[u] < 0 ? L : attr.codes[u];
            t.attr_sum[a][c] += gwin[m][g];
            if (si == 0) ++t.attr_users[a][c];
          }
        }
      }
      ++t.n;
    }
    Json e = Json::Object();
    e["set"] = static_cast<int64_t>(si);
    if (s.context >= 0) e["context"] = s.context;
    e["n_candidates"] = n;
    const int chosen = o.aggregate == "min" ? pick[0] : pick[1];
    e["pick"] = s.items[chosen];
    if (!ds.item_ids.empty()) e["pick_id"] = ds.item_ids[s.items[chosen]];
    e["egalitarian_pick"] = s.items[pick[0]];
    e["utilitarian_pick"] = s.items[pick[1]];
    Json hs = Json::Array();
    for (int k = 0; k < K; ++k) hs.push_back(q(k, chosen));
    e["head_scores"] = hs;
    picks.push_back(e);
  }

  Json out = Json::Object();
  out["aggregate"] = o.aggregate;
  out["n_heads"] = K;
  Json w = Json::Array();
  for (int k = 0; k < K; ++k) w.push_back(weights[k]);
  out["head_weights"] = w;
  out["n_sets"] = static_cast<int64_t>(sets.size());
  out["candidates"] = o.candidates > 0 ? Json(o.candidates) : Json("all");
  out["judged_by"] = has_truth ? "truth/group_item_reward" : "model heads only (no planted truth)";
  Json by = Json::Object();
  for (int m = 0; m < 2; ++m) {
    const WinTally& t = tally[m];
    Json j = Json::Object();
    Json heads = Json::Array();
    for (int k = 0; k < K; ++k) heads.push_back(t.head[k] / t.n);
    j["heads"] = heads;
    if (has_truth) {
      Json pg = Json::Object();
      double worst = 2.0;
      for (int g = 0; g < G; ++g) {
        pg[std::to_string(g)] = t.group[g] / t.n;
        worst = std::min(worst, t.group[g] / t.n);
      }
      j["planted_group"] = pg;
      j["worst_planted_group"] = worst;
      Json attrs = Json::Object();
      for (size_t a = 0; a < ds.attributes.size(); ++a) {
        const auto& attr = ds.attributes[a];
        const int32_t L = std::max(attr.NumCodes(), 0);
        Json groups = Json::Object();
        for (int32_t c = 0; c <= L; ++c) {
          if (t.attr_users[a][c] == 0) continue;
          Json gj = Json::Object();
          gj["win_rate"] = t.attr_sum[a][c] / (static_cast<double>(t.attr_users[a][c]) * t.n);
          gj["n_users"] = t.attr_users[a][c];
          groups[attr.Label(c == L ? -1 : c)] = gj;
        }
        attrs[attr.name] = groups;
      }
      j["attributes"] = attrs;
    }
    by[kinds[m]] = j;
  }
  out["win_rates"] = by[o.aggregate];
  out["win_rates_by_aggregate"] = by;
  out["picks"] = picks;
  return out;
}

}  // namespace prefmix
