#include "core/eval/fairness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/model/maxmin.h"
#include "core/rng.h"

namespace prefmix {
namespace {

// The per-pair scoring of core/eval/metrics.h (0.5 counts half; p clipped for the log).
constexpr auto Hit = PairHit;
constexpr auto Nll = PairLogLoss;

constexpr uint64_t kBootstrapStream = 0xb007;

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Say(const ProgressFn& p, const std::string& s) {
  if (p) p(s);
}

Json Pair(double a, double b) {
  Json j = Json::Array();
  j.push_back(a);
  j.push_back(b);
  return j;
}

}  // namespace

std::vector<Attribute> FairnessGroupings(const Dataset& ds, const std::vector<std::string>& by) {
  std::vector<Attribute> all = ds.GroupAttributes();
  if (by.empty()) return all;
  std::vector<Attribute> out;
  for (const auto& name : by) {
    auto it =
        std::find_if(all.begin(), all.end(), [&](const Attribute& a) { return a.name == name; });
    if (it == all.end()) {
      std::string known;
      for (const auto& a : all) known += (known.empty() ? "" : ", ") + a.name;
      throw Error(Cat("--by: ", ds.source, " has no user attribute '", name,
                      "' (it has: ", known.empty() ? "none" : known, ")"));
    }
    out.push_back(*it);
  }
  return out;
}

std::vector<double> RankingWinRates(const Dataset& ds, int32_t item) {
  std::vector<double> sum(ds.n_users(), 0.0), cnt(ds.n_users(), 0.0);
  for (int64_t r = 0; r < ds.n_rankings(); ++r) {
    const int64_t b = ds.rank_offsets[r], e = ds.rank_offsets[r + 1];
    if (e - b < 2) continue;
    for (int64_t x = b; x < e; ++x)
      if (ds.rank_items[x] == item) {
        sum[ds.rank_user[r]] += static_cast<double>(e - 1 - x) / static_cast<double>(e - b - 1);
        cnt[ds.rank_user[r]] += 1;
        break;
      }
  }
  std::vector<double> out(ds.n_users(), std::nan(""));
  for (int64_t u = 0; u < ds.n_users(); ++u)
    if (cnt[u] > 0) out[u] = sum[u] / cnt[u];
  return out;
}

Json GroupMeans(const std::vector<Attribute>& groupings, const std::vector<double>& per_user,
                int min_group_users) {
  Json out = Json::Object();
  for (const auto& a : groupings) {
    const int32_t L = std::max(a.NumCodes(), 0);
    std::vector<double> sum(L + 1, 0.0);
    std::vector<int64_t> n(L + 1, 0);
    for (size_t u = 0; u < per_user.size(); ++u) {
      if (std::isnan(per_user[u])) continue;
      const int32_t g = a.codes[u] < 0 ? L : a.codes[u];
      sum[g] += per_user[u];
      ++n[g];
    }
    Json ga = Json::Object();
    for (int32_t g = 0; g <= L; ++g) {
      if (n[g] == 0 || n[g] < min_group_users) continue;
      Json e = Json::Object();
      e["mean"] = sum[g] / n[g];
      e["n_users"] = n[g];
      ga[g == L ? std::string("unknown") : a.Label(g)] = e;
    }
    if (ga.size() > 0) out[a.name] = ga;
  }
  return out;
}

namespace {

/// Users with at least one pair, in row order.
std::vector<int32_t> ActiveUsers(const UserStats& st) {
  std::vector<int32_t> out;
  for (size_t u = 0; u < st.n.size(); ++u)
    if (st.n[u] > 0) out.push_back(static_cast<int32_t>(u));
  return out;
}

/// Overall accuracy / log loss / counts (+ CIs) of the pooled stats.
void AddOverall(const UserStats& st, const FairnessOptions& fo, uint64_t seed, Json* m) {
  double hits = 0, nll = 0;
  int64_t n = 0;
  for (size_t u = 0; u < st.n.size(); ++u) {
    hits += st.hits[u];
    nll += st.nll[u];
    n += st.n[u];
  }
  PREFMIX_ASSERT(n > 0, "no evaluated pairs");
  std::vector<int32_t> users = ActiveUsers(st);
  (*m)["accuracy"] = hits / n;
  if (fo.bootstrap > 0) {
    auto ci = BootstrapUsersCi(st, users, fo.bootstrap, fo.ci_level,
                               DeriveSeed(seed, kBootstrapStream, 0));
    (*m)["accuracy_ci"] = Pair(ci[0], ci[1]);
    (*m)["log_loss"] = nll / n;
    (*m)["log_loss_ci"] = Pair(ci[2], ci[3]);
  } else {
    (*m)["log_loss"] = nll / n;
  }
  (*m)["n_test_pairs"] = n;
  (*m)["n_users"] = static_cast<int64_t>(users.size());
  // Per-user accuracy distribution and its histogram over [0, 1].
  std::vector<double> acc;
  for (int32_t u : users) acc.push_back(st.hits[u] / st.n[u]);
  Json pu = Json::Object();
  pu["mean"] = std::accumulate(acc.begin(), acc.end(), 0.0) / acc.size();
  pu["p10"] = Percentile(acc, 10);
  pu["p50"] = Percentile(acc, 50);
  pu["p90"] = Percentile(acc, 90);
  pu["n_users"] = static_cast<int64_t>(acc.size());
  Json edges = Json::Array(), counts = Json::Array();
  std::vector<int64_t> c(fo.hist_bins, 0);
  for (double a : acc) {
    int b = static_cast<int>(std::floor(a * fo.hist_bins));
    ++c[std::min(std::max(b, 0), fo.hist_bins - 1)];  // accuracy 1.0 falls in the last bin
  }
  for (int b = 0; b <= fo.hist_bins; ++b) edges.push_back(static_cast<double>(b) / fo.hist_bins);
  for (int64_t x : c) counts.push_back(x);
  Json h = Json::Object();
  h["edges"] = edges;
  h["counts"] = counts;
  pu["histogram"] = h;
  (*m)["per_user"] = pu;
}

/// per_group for every grouping, worst group over them and the largest best-worst gap.
void AddGroups(const std::vector<Attribute>& groupings, const UserStats& st, int min_group_users,
               const FairnessOptions& fo, uint64_t seed, Json* m) {
  Json per_group = Json::Object();
  Json worst, gap;
  for (size_t g = 0; g < groupings.size(); ++g) {
    Json b = GroupBreakdown(groupings[g], st, min_group_users, fo,
                            DeriveSeed(seed, kBootstrapStream, 1 + g));
    if (b.is_null()) continue;
    const double wa = b.at("worst").at("accuracy").number();
    if (worst.is_null() || wa < worst.at("accuracy").number()) {
      worst = Json::Object();
      worst["attribute"] = groupings[g].name;
      worst["group"] = b.at("worst").at("group");
      worst["accuracy"] = wa;
    }
    if (gap.is_null() || b.at("gap").number() > gap.at("gap").number()) {
      gap = Json::Object();
      gap["attribute"] = groupings[g].name;
      gap["gap"] = b.at("gap");
    }
    per_group[groupings[g].name] = b;
  }
  if (per_group.size() > 0) (*m)["per_group"] = per_group;
  if (!worst.is_null()) (*m)["worst_group"] = worst;
  if (!gap.is_null()) (*m)["max_gap"] = gap;
}

/// Latent group of each user = argmax of a simplex latent (mixture weights / responsibilities);
/// false when the latent is not on the simplex (or has fewer than 2 components).
bool LatentGrouping(const RowMatrixF& lat, const std::vector<int32_t>& users, Attribute* out) {
  if (lat.cols() < 2 || users.empty()) return false;
  out->name = "latent";
  out->codes.assign(lat.rows(), -1);
  out->labels.clear();
  for (Eigen::Index k = 0; k < lat.cols(); ++k) out->labels.push_back(Cat("k", k));
  for (int32_t u : users) {
    const auto row = lat.row(u);
    if (!row.allFinite() || row.minCoeff() < -1e-5f || std::fabs(row.sum() - 1.0f) > 1e-3f)
      return false;
    Eigen::Index best = 0;
    row.maxCoeff(&best);
    out->codes[u] = static_cast<int32_t>(best);
  }
  return true;
}

/// Distinct users of pairs that have at least one ranking.
std::vector<int32_t> RankedUsers(const Dataset& ds, const PairSet& pairs) {
  std::vector<char> ranked(ds.n_users(), 0), taken(ds.n_users(), 0);
  for (int64_t u : ds.rank_user) ranked[u] = 1;
  std::vector<int32_t> out;
  for (int32_t u : pairs.user)
    if (ranked[u] && !taken[u]) {
      taken[u] = 1;
      out.push_back(u);
    }
  std::sort(out.begin(), out.end());
  return out;
}

/// One model's (or baseline's) evaluation pooled over the protocol's splits.
struct Eval {
  std::string name;
  bool baseline = false;
  UserStats st;
  TauAccumulator tau;
  bool has_tau = false;
  std::vector<int> shot_k;
  std::vector<UserStats> shot_st;
  Attribute latent;
  bool has_latent = false;
  UserStats latent_st;  ///< the stats of the run the latent groups come from
  double train_s = 0, adapt_s = 0, eval_s = 0;
  double implied = 0;  ///< closure: test pairs the training pairs decide
  Json params, hook;
};

}  // namespace

void UserStats::Add(const PairSet& pairs, const std::vector<double>& prob, int64_t n_users) {
  PREFMIX_ASSERT(prob.size() == pairs.size(), "prediction count ", prob.size(), " != pairs ",
                 pairs.size());
  if (static_cast<int64_t>(n.size()) < n_users) {
    hits.resize(n_users, 0.0);
    nll.resize(n_users, 0.0);
    n.resize(n_users, 0);
  }
  for (size_t j = 0; j < pairs.size(); ++j) {
    PREFMIX_CHECK_INPUT(std::isfinite(prob[j]) && prob[j] >= 0 && prob[j] <= 1,
                        "model produced an invalid probability ", prob[j], " for test pair ", j,
                        " (training diverged?)");
    const int32_t u = pairs.user[j];
    hits[u] += Hit(prob[j], pairs.label[j]);
    nll[u] += Nll(prob[j], pairs.label[j]);
    ++n[u];
  }
}

std::vector<double> BootstrapUsersCi(const UserStats& st, const std::vector<int32_t>& members,
                                     int resamples, double level, uint64_t seed) {
  PREFMIX_ASSERT(!members.empty() && resamples > 0, "bootstrap of an empty group");
  Rng rng(seed);
  std::vector<double> acc(resamples), ll(resamples);
  const uint64_t m = members.size();
  for (int b = 0; b < resamples; ++b) {
    double h = 0, l = 0, n = 0;
    for (uint64_t i = 0; i < m; ++i) {
      const int32_t u = members[rng.Below(m)];
      h += st.hits[u];
      l += st.nll[u];
      n += static_cast<double>(st.n[u]);
    }
    acc[b] = h / n;
    ll[b] = l / n;
  }
  const double lo = 50.0 * (1.0 - level), hi = 100.0 - lo;
  return {Percentile(acc, lo), Percentile(acc, hi), Percentile(ll, lo), Percentile(ll, hi)};
}

Json GroupBreakdown(const Attribute& a, const UserStats& st, int min_group_users,
                    const FairnessOptions& fo, uint64_t seed) {
  const int32_t L = std::max(a.NumCodes(), 0);
  std::vector<std::vector<int32_t>> members(L + 1);  // index L: code -1 ("unknown")
  for (size_t u = 0; u < st.n.size(); ++u) {
    if (st.n[u] == 0) continue;
    const int32_t c = a.codes[u];
    members[c < 0 ? L : c].push_back(static_cast<int32_t>(u));
  }
  Json groups = Json::Object(), worst, best;
  for (int32_t g = 0; g <= L; ++g) {
    const auto& mem = members[g];
    if (mem.empty() || static_cast<int>(mem.size()) < min_group_users) continue;
    double h = 0, l = 0;
    int64_t n = 0;
    for (int32_t u : mem) {
      h += st.hits[u];
      l += st.nll[u];
      n += st.n[u];
    }
    const std::string label = g == L ? "unknown" : a.Label(g);
    Json e = Json::Object();
    e["accuracy"] = h / n;
    e["log_loss"] = l / n;
    e["n_users"] = static_cast<int64_t>(mem.size());
    e["n_pairs"] = n;
    if (fo.bootstrap > 0) {
      auto ci = BootstrapUsersCi(st, mem, fo.bootstrap, fo.ci_level, DeriveSeed(seed, g));
      e["accuracy_ci"] = Pair(ci[0], ci[1]);
      e["log_loss_ci"] = Pair(ci[2], ci[3]);
    }
    groups[label] = e;
    if (worst.is_null() || h / n < worst.at("accuracy").number()) {
      worst = Json::Object();
      worst["group"] = label;
      worst["accuracy"] = h / n;
    }
    if (best.is_null() || h / n > best.at("accuracy").number()) {
      best = Json::Object();
      best["group"] = label;
      best["accuracy"] = h / n;
    }
  }
  if (groups.size() == 0) return Json();
  Json out = Json::Object();
  out["groups"] = groups;
  out["worst"] = worst;
  out["best"] = best;
  out["gap"] = best.at("accuracy").number() - worst.at("accuracy").number();
  return out;
}

void TauAccumulator::Add(const Dataset& ds, const std::vector<int32_t>& rows,
                         const RowMatrixF& scores) {
  PREFMIX_ASSERT(scores.rows() == static_cast<Eigen::Index>(rows.size()), "score rows ",
                 scores.rows(), " != users ", rows.size());
  std::vector<int64_t> row_of(ds.n_users(), -1);
  for (size_t i = 0; i < rows.size(); ++i) row_of[rows[i]] = static_cast<int64_t>(i);
  std::vector<double> sum(rows.size(), 0.0);
  std::vector<int64_t> cnt(rows.size(), 0);
  for (int64_t r = 0; r < ds.n_rankings(); ++r) {
    const int64_t i = row_of[ds.rank_user[r]];
    if (i < 0) continue;
    const int64_t b = ds.rank_offsets[r], e = ds.rank_offsets[r + 1];
    if (e - b < 2) continue;
    double c = 0, d = 0, ties = 0, n0 = 0;
    for (int64_t x = b; x < e; ++x)
      for (int64_t y = x + 1; y < e; ++y) {
        // Observed: item at x (earlier = better) preferred over item at y.
        const float diff = scores(i, ds.rank_items[x]) - scores(i, ds.rank_items[y]);
        if (diff > 0)
          ++c;
        else if (diff < 0)
          ++d;
        else
          ++ties;
        ++n0;
      }
    const double denom = std::sqrt(n0 * (n0 - ties));
    sum[i] += denom > 0 ? (c - d) / denom : 0.0;
    ++cnt[i];
    concordant_ += c;
    discordant_ += d;
    pairs_ += n0;
    ++n_rankings_;
  }
  for (size_t i = 0; i < rows.size(); ++i)
    if (cnt[i]) user_tau_.push_back(sum[i] / cnt[i]);
}

Json TauAccumulator::Result() const {
  if (user_tau_.empty() || pairs_ == 0) return Json();
  Json j = Json::Object();
  j["mean_user"] = std::accumulate(user_tau_.begin(), user_tau_.end(), 0.0) / user_tau_.size();
  j["pooled"] = (concordant_ - discordant_) / pairs_;
  j["n_users"] = static_cast<int64_t>(user_tau_.size());
  j["n_rankings"] = n_rankings_;
  return j;
}

std::vector<double> TransitiveClosurePredict(const PairSet& train, const PairSet& test,
                                             int64_t n_users) {
  std::vector<double> out(test.size(), 0.5);
  auto train_by = train.ByUser(n_users);
  auto test_by = test.ByUser(n_users);
  for (int64_t u = 0; u < n_users; ++u) {
    if (test_by[u].empty() || train_by[u].empty()) continue;
    // Local graph of the user's items: edge winner -> loser.
    std::unordered_map<int32_t, int> local;
    auto id = [&](int32_t item) {
      auto it = local.find(item);
      if (it != local.end()) return it->second;
      const int k = static_cast<int>(local.size());
      local.emplace(item, k);
      return k;
    };
    std::vector<std::pair<int, int>> edges;
    for (size_t j : train_by[u]) {
      int a = id(train.first[j]), b = id(train.second[j]);
      if (train.label[j] < 0.5f) std::swap(a, b);
      edges.emplace_back(a, b);
    }
    const int n = static_cast<int>(local.size());
    std::vector<std::vector<int>> adj(n);
    for (const auto& e : edges) adj[e.first].push_back(e.second);
    std::vector<std::vector<char>> reach(n);  // filled on demand (BFS from a source)
    auto reaches = [&](int s, int t) {
      if (reach[s].empty()) {
        reach[s].assign(n, 0);
        std::vector<int> stack = {s};
        while (!stack.empty()) {
          int v = stack.back();
          stack.pop_back();
          for (int w : adj[v])
            if (!reach[s][w]) {
              reach[s][w] = 1;
              stack.push_back(w);
            }
        }
      }
      return reach[s][t] != 0;
    };
    for (size_t j : test_by[u]) {
      auto ia = local.find(test.first[j]), ib = local.find(test.second[j]);
      if (ia == local.end() || ib == local.end()) continue;
      const bool ab = reaches(ia->second, ib->second), ba = reaches(ib->second, ia->second);
      if (ab != ba) out[j] = ab ? 1.0 : 0.0;
    }
  }
  return out;
}

RowMatrixF ScoreUsers(const Model& model, const Dataset& ds, const RowMatrixF& latents,
                      const std::vector<int32_t>& rows) {
  RowMatrixF out(static_cast<Eigen::Index>(rows.size()), ds.n_items());
  constexpr size_t kChunk = 512;
  for (size_t b = 0; b < rows.size(); b += kChunk) {
    const size_t e = std::min(rows.size(), b + kChunk);
    RowMatrixF sub(static_cast<Eigen::Index>(e - b), latents.cols());
    for (size_t i = b; i < e; ++i) sub.row(i - b) = latents.row(rows[i]);
    RowMatrixF s = model.Score(ds, sub);
    PREFMIX_ASSERT(s.rows() == sub.rows() && s.cols() == ds.n_items(), model.Family(),
                   ": Score returned ", s.rows(), " x ", s.cols());
    out.middleRows(static_cast<Eigen::Index>(b), s.rows()) = s;
  }
  return out;
}

Json RunFairness(const Dataset& ds, const std::vector<ModelOptions>& models,
                 const ProtocolOptions& protocol, const FairnessOptions& fo,
                 const ProgressFn& progress, const ModelHook& hook) {
  ValidateProtocolOptions(protocol);
  PREFMIX_CHECK_INPUT(!models.empty(), "fairness: no model family given (--models)");
  PREFMIX_CHECK_INPUT(fo.bootstrap >= 0, "--bootstrap: ", fo.bootstrap, " is negative");
  PREFMIX_CHECK_INPUT(fo.ci_level > 0 && fo.ci_level < 1, "--ci-level: ", fo.ci_level,
                      " is not in (0, 1)");
  PREFMIX_CHECK_INPUT(fo.hist_bins >= 1, "--hist-bins: ", fo.hist_bins, " must be >= 1");
  const std::vector<Attribute> groupings = FairnessGroupings(ds, fo.by);
  const PairSet all = ds.AllPairs();
  const bool unseen = protocol.name == "unseen", subsample = protocol.name == "subsample";
  const int runs = subsample ? protocol.repeats : 1;
  std::vector<int> shots = protocol.shots;
  std::sort(shots.begin(), shots.end());
  shots.erase(std::unique(shots.begin(), shots.end()), shots.end());
  const int64_t U = ds.n_users();

  std::vector<Eval> evals(models.size());
  for (size_t i = 0; i < models.size(); ++i) evals[i].name = models[i].family;
  const bool closure = fo.closure && ds.has_rankings();
  Eval closure_eval;
  closure_eval.name = "closure";
  closure_eval.baseline = true;

  int64_t n_left_out = 0, n_heldout = 0;
  for (int r = 0; r < runs; ++r) {
    Split s = unseen      ? MakeUnseenSplit(ds, all, protocol)
              : subsample ? MakeSubsampleSplit(ds, all, protocol, r)
                          : MakeSeenSplit(ds, all, protocol);
    PairSet test;
    if (unseen) {
      PREFMIX_CHECK_INPUT(!s.heldout_users.empty(), ds.source,
                          ": no held-out user has max --shots + 1 = ", shots.back() + 1,
                          " pairs; lower --shots");
      test = UnseenQueries(all, s, shots.back());
      n_left_out = s.n_left_out;
      n_heldout = static_cast<int64_t>(s.heldout_users.size());
    } else {
      test = s.test;
    }
    PREFMIX_CHECK_INPUT(!test.empty(), ds.source, ": the ", protocol.name,
                        " protocol left no test pairs");
    const std::vector<int32_t> ranked =
        ds.has_rankings() ? RankedUsers(ds, test) : std::vector<int32_t>();
    for (size_t i = 0; i < models.size(); ++i) {
      Eval& ev = evals[i];
      ModelOptions mo = models[i];
      if (subsample) mo.seed = models[i].seed + static_cast<uint64_t>(r);
      Say(progress,
          Cat(mo.family, subsample ? Cat(": repeat ", r + 1, "/", runs) : "", ": training on ",
              s.train.size(), " pairs (", s.valid.size(), " validation)"));
      auto model = MakeModel(mo);
      auto t0 = std::chrono::steady_clock::now();
      model->Fit(ds, s.train, s.valid);
      ev.train_s += Since(t0);
      RowMatrixF lat;
      std::vector<double> prob;
      if (unseen) {
        if (ev.shot_st.empty()) {
          ev.shot_k = shots;
          ev.shot_st.resize(shots.size());
        }
        for (size_t q = 0; q < shots.size(); ++q) {
          PairSet support = UnseenSupport(all, s, shots[q]);
          auto ta = std::chrono::steady_clock::now();
          lat = model->Adapt(ds, support, U, mo.device);
          ev.adapt_s += Since(ta);
          auto te = std::chrono::steady_clock::now();
          prob = model->PredictProb(ds, test, lat);
          ev.shot_st[q].Add(test, prob, U);
          ev.eval_s += Since(te);
        }
      } else {
        auto te = std::chrono::steady_clock::now();
        lat = model->TrainLatents();
        prob = model->PredictProb(ds, test, lat);
        ev.eval_s += Since(te);
      }
      ev.st.Add(test, prob, U);
      if (!ranked.empty()) {
        ev.tau.Add(ds, ranked, ScoreUsers(*model, ds, lat, ranked));
        ev.has_tau = true;
      }
      if (r == 0 && !subsample) {
        UserStats one;
        one.Add(test, prob, U);
        ev.has_latent = LatentGrouping(lat, ActiveUsers(one), &ev.latent);
        if (ev.has_latent) ev.latent_st = one;
      }
      if (r == 0 && hook) ev.hook = hook(*model, ds);
      ev.params = model->Params();
      Say(progress, Cat(mo.family, ": accuracy ", Accuracy(prob, test.label)));
    }
    if (closure) {
      PairSet known = unseen ? UnseenSupport(all, s, shots.back()) : Concat(s.train, s.valid);
      auto prob = TransitiveClosurePredict(known, test, U);
      closure_eval.st.Add(test, prob, U);
      for (double p : prob) closure_eval.implied += p != 0.5;
    }
  }

  Json out = Json::Object();
  out["format"] = "prefmix.fairness";
  out["format_version"] = 1;
  Json d = Json::Object();
  d["source"] = ds.source;
  d["n_users"] = U;
  d["n_items"] = ds.n_items();
  d["n_pairs"] = static_cast<int64_t>(all.size());
  d["has_rankings"] = ds.has_rankings();
  out["dataset"] = d;
  Json p = Json::Object();
  p["name"] = protocol.name;
  p["seed"] = static_cast<uint64_t>(protocol.seed);
  p["min_group_users"] = protocol.min_group_users;
  if (subsample) {
    p["repeats"] = protocol.repeats;
    p["users"] = protocol.users;
    p["train_pairs"] = protocol.train_pairs;
    p["test_pairs"] = protocol.test_pairs;
  } else if (unseen) {
    p["unseen_fraction"] = protocol.unseen_fraction;
    Json k = Json::Array();
    for (int x : shots) k.push_back(x);
    p["shots"] = k;
    p["n_unseen_users"] = n_heldout;
    p["n_unseen_users_left_out"] = n_left_out;
  } else {
    p["test_fraction"] = protocol.test_fraction;
  }
  out["protocol"] = p;
  Json gs = Json::Array();
  for (const auto& a : groupings) {
    Json g = Json::Object();
    g["name"] = a.name;
    Json labels = Json::Array();
    for (int32_t c = 0; c < a.NumCodes(); ++c) labels.push_back(a.Label(c));
    g["labels"] = labels;
    gs.push_back(g);
  }
  out["groupings"] = gs;
  Json bs = Json::Object();
  bs["resamples"] = fo.bootstrap;
  bs["level"] = fo.ci_level;
  bs["unit"] = "user";
  out["bootstrap"] = bs;

  Json ms = Json::Array();
  if (closure) evals.push_back(std::move(closure_eval));
  for (const Eval& ev : evals) {
    Json m = Json::Object();
    m["model"] = ev.name;
    if (ev.baseline) m["baseline"] = true;
    AddOverall(ev.st, fo, protocol.seed, &m);
    AddGroups(groupings, ev.st, protocol.min_group_users, fo, protocol.seed, &m);
    if (ev.baseline) m["implied_fraction"] = ev.implied / m.at("n_test_pairs").number();
    if (ev.has_latent) {
      Json b = GroupBreakdown(ev.latent, ev.latent_st, protocol.min_group_users, fo,
                              DeriveSeed(protocol.seed, kBootstrapStream, 999));
      if (!b.is_null()) m["latent_groups"] = b;
    }
    if (ev.has_tau) {
      Json t = ev.tau.Result();
      if (!t.is_null()) m["kendall_tau"] = t;
    }
    if (!ev.shot_st.empty()) {
      Json curve = Json::Array();
      for (size_t q = 0; q < ev.shot_k.size(); ++q) {
        const UserStats& st = ev.shot_st[q];
        double h = 0, l = 0;
        int64_t n = 0;
        for (size_t u = 0; u < st.n.size(); ++u) {
          h += st.hits[u];
          l += st.nll[u];
          n += st.n[u];
        }
        Json e = Json::Object();
        e["k"] = ev.shot_k[q];
        e["accuracy"] = h / n;
        e["log_loss"] = l / n;
        e["n_pairs"] = n;
        Json pg = Json::Object();
        FairnessOptions no_ci = fo;
        no_ci.bootstrap = 0;
        for (const auto& a : groupings) {
          Json b = GroupBreakdown(a, st, protocol.min_group_users, no_ci, 0);
          if (b.is_null()) continue;
          Json acc = Json::Object();
          for (const auto& kv : b.at("groups").members()) acc[kv.first] = kv.second.at("accuracy");
          pg[a.name] = acc;
        }
        if (pg.size() > 0) e["per_group"] = pg;
        curve.push_back(e);
      }
      m["shots"] = curve;
    }
    if (!ev.hook.is_null()) m["selection"] = ev.hook;
    if (!ev.baseline) {
      Json t = Json::Object();
      t["train_seconds"] = ev.train_s;
      if (unseen) t["adapt_seconds"] = ev.adapt_s;
      t["eval_seconds"] = ev.eval_s;
      t["runs"] = runs;
      m["timing"] = t;
      m["params"] = ev.params;
    }
    ms.push_back(m);
  }
  out["models"] = ms;
  return out;
}

/// MaxMin (egalitarian) vs utilitarian pick over all items by the calibrated head scores of a
/// multi-head model, with each group's win rate of both picks judged by the users' own observed
/// rankings (where /rankings exist) and by the planted truth (synthetic data). Null for models
/// without heads.
Json SelectionWinRates(const Model& model, const Dataset& ds,
                       const std::vector<Attribute>& groupings, int min_group_users,
                       uint64_t seed) {
  const auto* mh = dynamic_cast<const MultiHeadModel*>(&model.Fitted());
  if (!mh || ds.n_items() < 2) return Json();
  const RowMatrixF rewards = mh->HeadRewards(ds);
  const Eigen::VectorXd weights = mh->HeadWeights();
  Json out = Json::Object();
  out["n_heads"] = static_cast<int64_t>(rewards.rows());
  out["candidates"] = "all";
  if (ds.has_rankings() && ds.n_items() <= 5000) {
    // The pairwise calibration is O(K n^2): only for catalogues of ranked items.
    const RowMatrixD q = CalibratedScores(rewards);
    const int picks[2] = {EgalitarianPick(q), UtilitarianPick(q, weights)};
    const char* names[2] = {"egalitarian", "utilitarian"};
    Json by = Json::Object();
    for (int i = 0; i < 2; ++i) {
      Json e = Json::Object();
      e["pick"] = picks[i];
      if (!ds.item_ids.empty()) e["pick_id"] = ds.item_ids[picks[i]];
      const auto wins = RankingWinRates(ds, picks[i]);
      double s = 0;
      int64_t n = 0;
      for (double w : wins)
        if (!std::isnan(w)) {
          s += w;
          ++n;
        }
      if (n > 0) {
        e["win_rate"] = s / n;
        e["n_users"] = n;
        Json g = GroupMeans(groupings, wins, min_group_users);
        if (g.size() > 0) e["per_group"] = g;
      }
      by[names[i]] = e;
    }
    out["judged_by"] = "users' observed rankings (share of their ranked items the pick beats)";
    out["picks"] = by;
  }
  if (ds.truth_group_item_reward.rows() > 0) {
    SelectOptions so;
    so.seed = seed;
    out["truth"] = RunSelection(ds, rewards, weights, so);
  }
  if (!out.contains("picks") && !out.contains("truth")) return Json();
  return out;
}

}  // namespace prefmix
