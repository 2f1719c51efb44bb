#include "core/eval/active.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/csv.h"
#include "core/rng.h"
#include "core/userstep/math.h"

namespace prefmix {
namespace {

double BinaryEntropy(double p) {
  p = std::clamp(p, 1e-12, 1 - 1e-12);
  return -p * std::log(p) - (1 - p) * std::log(1 - p);
}

const AmortizedPosteriorModel& AsAmortized(const Model& model) {
  const auto* m = dynamic_cast<const AmortizedPosteriorModel*>(&model.Fitted());
  PREFMIX_CHECK_INPUT(m != nullptr, "active query selection needs a model with an amortized ",
                      "posterior (vpl); family '", model.Family(), "' has none");
  return *m;
}

/// Picks one pool index per user (-1 when the pool is exhausted) by o.criterion.
std::vector<int> PickRound(const AmortizedPosteriorModel& model, const Dataset& ds,
                           const std::vector<ActiveUser>& users,
                           const std::vector<std::vector<char>>& asked, const ActiveOptions& o,
                           Rng* rng) {
  const size_t U = users.size();
  std::vector<int> pick(U, -1);
  std::vector<std::vector<int>> remaining(U);
  for (size_t u = 0; u < U; ++u)
    for (size_t i = 0; i < users[u].pool_a.size(); ++i)
      if (!asked[u][i]) remaining[u].push_back((int)i);
  if (o.criterion == "random") {
    for (size_t u = 0; u < U; ++u)
      if (!remaining[u].empty()) pick[u] = remaining[u][rng->Below(remaining[u].size())];
    return pick;
  }
  std::vector<ContextSet> now(U);
  for (size_t u = 0; u < U; ++u) now[u] = users[u].context;
  const Posterior cur = model.Encode(ds, now);
  const int64_t L = cur.mu.cols();
  // P(a > b | z) for the candidates: at z = mu (entropy) or at posterior draws (bald).
  const int S = o.criterion == "bald" ? o.samples : 1;
  std::vector<int32_t> a, b;
  std::vector<size_t> owner;
  for (size_t u = 0; u < U; ++u)
    for (int i : remaining[u])
      for (int s = 0; s < S; ++s) {
        a.push_back(users[u].pool_a[i]);
        b.push_back(users[u].pool_b[i]);
        owner.push_back(u);
      }
  if (a.empty()) return pick;
  RowMatrixF z(a.size(), L);
  {
    size_t row = 0;
    for (size_t u = 0; u < U; ++u) {
      if (remaining[u].empty()) continue;
      RowMatrixF zu(S, L);
      for (int s = 0; s < S; ++s)
        for (int64_t d = 0; d < L; ++d)
          zu(s, d) = S == 1
                         ? cur.mu(u, d)
                         : cur.mu(u, d) + std::exp(0.5f * cur.logvar(u, d)) * (float)rng->Normal();
      for (size_t c = 0; c < remaining[u].size(); ++c)
        for (int s = 0; s < S; ++s) z.row(row++) = zu.row(s);
    }
  }
  const std::vector<double> p = model.PairProbWithLatent(ds, a, b, z);
  if (o.criterion == "bald") {
    size_t row = 0;
    for (size_t u = 0; u < U; ++u) {
      double best = -INFINITY;
      for (int i : remaining[u]) {
        double mean = 0, cond = 0;
        for (int s = 0; s < S; ++s, ++row) {
          mean += p[row];
          cond += BinaryEntropy(p[row]);
        }
        const double gain = BinaryEntropy(mean / S) - cond / S;
        if (gain > best) {
          best = gain;
          pick[u] = i;
        }
      }
    }
    return pick;
  }
  // entropy: encode C + (a > b) and C + (b > a) for every candidate, batched.
  std::vector<ContextSet> sets;
  for (size_t u = 0; u < U; ++u)
    for (int i : remaining[u]) {
      sets.push_back(users[u].context);
      sets.back().push_back({users[u].pool_a[i], users[u].pool_b[i]});
      sets.push_back(users[u].context);
      sets.back().push_back({users[u].pool_b[i], users[u].pool_a[i]});
    }
  const Posterior q = model.Encode(ds, sets);
  size_t row = 0;
  for (size_t u = 0; u < U; ++u) {
    double best = INFINITY;
    for (int i : remaining[u]) {
      const double h1 = GaussianEntropy(q.logvar.row(2 * row).data(), L);
      const double h0 = GaussianEntropy(q.logvar.row(2 * row + 1).data(), L);
      const double e = p[row] * h1 + (1 - p[row]) * h0;
      ++row;
      if (e < best) {
        best = e;
        pick[u] = i;
      }
    }
  }
  return pick;
}

bool ParseIndex(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

void ValidateActiveOptions(const ActiveOptions& o) {
  PREFMIX_CHECK_INPUT(o.queries >= 1, "--active: ", o.queries, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.criterion == "entropy" || o.criterion == "bald" || o.criterion == "random",
                      "--criterion: '", o.criterion, "' is not one of entropy, bald, random");
  PREFMIX_CHECK_INPUT(o.samples >= 1, "active samples: ", o.samples, " must be >= 1");
}

double GaussianEntropy(const float* logvar, int64_t n) {
  double h = 0;
  for (int64_t d = 0; d < n; ++d) h += 0.5 * (1 + std::log(2 * M_PI) + logvar[d]);
  return h;
}

std::vector<std::vector<int>> SelectQueries(const AmortizedPosteriorModel& model, const Dataset& ds,
                                            std::vector<ActiveUser>* users, const ActiveOptions& o,
                                            const LabelOracle& oracle,
                                            const std::function<void(int)>& after_round) {
  ValidateActiveOptions(o);
  const size_t U = users->size();
  std::vector<std::vector<char>> asked(U);
  for (size_t u = 0; u < U; ++u) {
    const auto& x = (*users)[u];
    PREFMIX_ASSERT(x.pool_a.size() == x.pool_b.size(), "active: pool sides differ in length");
    asked[u].assign(x.pool_a.size(), 0);
  }
  std::vector<std::vector<int>> order(U);
  Rng rng(DeriveSeed(o.seed, 0xac7));
  if (after_round) after_round(0);
  for (int r = 1; r <= o.queries; ++r) {
    const std::vector<int> pick = PickRound(model, ds, *users, asked, o, &rng);
    if (std::all_of(pick.begin(), pick.end(), [](int p) { return p < 0; })) {
      // Every pool is used up: the remaining rounds would ask nothing (a million rounds over a
      // 4-pair pool used to run for minutes). A curve still gets its remaining points.
      if (after_round)
        for (int rest = r; rest <= o.queries; ++rest) after_round(rest);
      break;
    }
    for (size_t u = 0; u < U; ++u) {
      if (pick[u] < 0) continue;
      auto& x = (*users)[u];
      asked[u][pick[u]] = 1;
      order[u].push_back(pick[u]);
      // The label is revealed only now.
      if (oracle(u, pick[u]))
        x.context.push_back({x.pool_a[pick[u]], x.pool_b[pick[u]]});
      else
        x.context.push_back({x.pool_b[pick[u]], x.pool_a[pick[u]]});
    }
    if (after_round) after_round(r);
  }
  return order;
}

Json ActiveCurve(const Model& model, const Dataset& ds, const PairSet& all, const Split& s,
                 int max_shots, const ActiveOptions& o) {
  ValidateActiveOptions(o);
  const AmortizedPosteriorModel& am = AsAmortized(model);
  const size_t U = s.heldout_users.size();
  // Per user: the pool (first half of the queries) and the fixed evaluation half.
  std::vector<std::vector<size_t>> pool(U), fixed(U);
  for (size_t u = 0; u < U; ++u) {
    const auto& idx = s.heldout_pairs[u];
    std::vector<size_t> q(idx.begin() + std::min<size_t>(max_shots, idx.size()), idx.end());
    const size_t half = (q.size() + 1) / 2;
    pool[u].assign(q.begin(), q.begin() + half);
    fixed[u].assign(q.begin() + half, q.end());
  }
  auto run = [&](const std::string& criterion, Json* acc_rem, Json* acc_fix) {
    std::vector<ActiveUser> users(U);
    for (size_t u = 0; u < U; ++u)
      for (size_t j : pool[u]) {
        // A fixed orientation that does not reveal the label: lower item index first.
        users[u].pool_a.push_back(std::min(all.first[j], all.second[j]));
        users[u].pool_b.push_back(std::max(all.first[j], all.second[j]));
      }
    std::vector<std::vector<char>> asked(U);
    for (size_t u = 0; u < U; ++u) asked[u].assign(pool[u].size(), 0);
    LabelOracle oracle = [&](size_t u, size_t i) {
      asked[u][i] = 1;
      const size_t j = pool[u][i];
      const int32_t winner = all.label[j] > 0.5f ? all.first[j] : all.second[j];
      return winner == users[u].pool_a[i];
    };
    auto evaluate = [&](int) {
      std::vector<ContextSet> sets(U);
      for (size_t u = 0; u < U; ++u) sets[u] = users[u].context;
      const RowMatrixF mu = am.LatentsOf(ds, sets);
      PairSet rem, fix;
      std::vector<int32_t> row;
      for (size_t u = 0; u < U; ++u) {
        for (size_t i = 0; i < pool[u].size(); ++i)
          if (!asked[u][i]) {
            rem.PushFrom(all, pool[u][i]);
            rem.user.back() = (int32_t)u;
          }
        for (size_t j : fixed[u]) {
          rem.PushFrom(all, j);
          rem.user.back() = (int32_t)u;
          fix.PushFrom(all, j);
          fix.user.back() = (int32_t)u;
        }
      }
      acc_rem->push_back(Accuracy(model.PredictProb(ds, rem, mu), rem.label));
      acc_fix->push_back(Accuracy(model.PredictProb(ds, fix, mu), fix.label));
    };
    ActiveOptions oo = o;
    oo.criterion = criterion;
    SelectQueries(am, ds, &users, oo, oracle, evaluate);
  };
  Json ar = Json::Array(), af = Json::Array(), rr = Json::Array(), rf = Json::Array();
  run(o.criterion, &ar, &af);
  run("random", &rr, &rf);
  Json curve = Json::Array();
  int match_rem = -1, match_fix = -1;
  const double target_rem = rr.items().back().number(), target_fix = rf.items().back().number();
  for (int n = 0; n <= o.queries; ++n) {
    Json e = Json::Object();
    e["queries"] = n;
    e["accuracy_remaining"] = ar.items()[n];
    e["random_accuracy_remaining"] = rr.items()[n];
    e["accuracy_heldout"] = af.items()[n];
    e["random_accuracy_heldout"] = rf.items()[n];
    curve.push_back(e);
    if (match_rem < 0 && ar.items()[n].number() >= target_rem) match_rem = n;
    if (match_fix < 0 && af.items()[n].number() >= target_fix) match_fix = n;
  }
  Json j = Json::Object();
  j["criterion"] = o.criterion;
  j["queries"] = o.queries;
  j["n_users"] = static_cast<int64_t>(U);
  j["curve"] = curve;
  // The fewest queries at which the criterion reaches random selection's accuracy at
  // o.queries questions (null when it never does).
  j["queries_to_match_random_remaining"] = match_rem >= 0 ? Json(match_rem) : Json();
  j["queries_to_match_random_heldout"] = match_fix >= 0 ? Json(match_fix) : Json();
  return j;
}

RowMatrixF AdaptActive(const Model& model, const Dataset& ds, const std::string& pool_csv,
                       const ActiveOptions& o, std::vector<AskedPair>* asked) {
  ValidateActiveOptions(o);
  const AmortizedPosteriorModel& am = AsAmortized(model);
  CsvTable t = ReadCsvFile(pool_csv);
  const std::vector<std::string> want = {"user", "chosen", "rejected"};
  PREFMIX_CHECK_INPUT(
      t.header.size() >= 3 && std::equal(want.begin(), want.end(), t.header.begin()), pool_csv,
      ": header is '", JoinFields(t.header), "', expected user,chosen,rejected[,context][,weight]");
  for (size_t c = 3; c < t.header.size(); ++c)
    PREFMIX_CHECK_INPUT(t.header[c] == "context" || t.header[c] == "weight", pool_csv,
                        ": unknown column ", QuoteValue(t.header[c]),
                        " (expected user,chosen,rejected[,context][,weight])");
  std::unordered_map<std::string, int32_t> index;
  for (int64_t u = 0; u < ds.n_users(); ++u) index[ds.user_ids[u]] = (int32_t)u;
  std::vector<ActiveUser> users(ds.n_users());
  std::vector<std::vector<char>> label(ds.n_users());  // 1: pool_a was chosen
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& f = t.rows[r];
    PREFMIX_CHECK_INPUT(f.size() == t.header.size(), pool_csv, ": line ", t.lines[r], " has ",
                        f.size(), " fields, expected ", t.header.size());
    auto it = index.find(f[0]);
    PREFMIX_CHECK_INPUT(it != index.end(), pool_csv, ": line ", t.lines[r],
                        ", field 'user': ", QuoteValue(f[0]), " is not a user of ", ds.source);
    int64_t item[2];
    for (int c = 0; c < 2; ++c)
      PREFMIX_CHECK_INPUT(ParseIndex(f[1 + c], &item[c]) && item[c] >= 0 && item[c] < ds.n_items(),
                          pool_csv, ": line ", t.lines[r], ", field '", want[1 + c],
                          "': ", QuoteValue(f[1 + c]), " is not an item row in [0, ", ds.n_items(),
                          ")");
    PREFMIX_CHECK_INPUT(item[0] != item[1], pool_csv, ": line ", t.lines[r],
                        ": chosen == rejected (", item[0], ")");
    auto& x = users[it->second];
    x.pool_a.push_back((int32_t)std::min(item[0], item[1]));
    x.pool_b.push_back((int32_t)std::max(item[0], item[1]));
    label[it->second].push_back(item[0] < item[1]);
  }
  const PairSet mine = ds.AllPairs();
  for (size_t j = 0; j < mine.size(); ++j)
    if ((int)users[mine.user[j]].context.size() < kMaxContext)
      users[mine.user[j]].context.push_back(
          {mine.label[j] > 0.5f ? mine.first[j] : mine.second[j],
           mine.label[j] > 0.5f ? mine.second[j] : mine.first[j]});
  LabelOracle oracle = [&](size_t u, size_t i) { return label[u][i] != 0; };
  const auto order = SelectQueries(am, ds, &users, o, oracle);
  if (asked) {
    asked->clear();
    for (size_t u = 0; u < order.size(); ++u)
      for (size_t r = 0; r < order[u].size(); ++r) {
        const int i = order[u][r];
        const bool a_won = label[u][i] != 0;
        asked->push_back({(int32_t)u, a_won ? users[u].pool_a[i] : users[u].pool_b[i],
                          a_won ? users[u].pool_b[i] : users[u].pool_a[i], (int)r + 1});
      }
  }
  std::vector<ContextSet> sets(users.size());
  for (size_t u = 0; u < users.size(); ++u) sets[u] = users[u].context;
  return am.LatentsOf(ds, sets);
}

}  // namespace prefmix
