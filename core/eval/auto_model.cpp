#include "core/eval/auto_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"

namespace prefmix {

std::vector<std::string> ParseAutoFamilies(const std::string& list) {
  const std::vector<std::string> known = FamilyNames();  // the model families, not auto
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    std::string name = list.substr(start, comma == std::string::npos ? comma : comma - start);
    const size_t b = name.find_first_not_of(" \t"), e = name.find_last_not_of(" \t");
    name = b == std::string::npos ? "" : name.substr(b, e - b + 1);
    PREFMIX_CHECK_INPUT(!name.empty(), "--auto-families: empty entry in '", list, "'");
    if (name != "bt-mlp" && std::find(known.begin(), known.end(), name) == known.end()) {
      const std::vector<std::string> all = FamilyNames(true);
      PREFMIX_CHECK_INPUT(std::find(all.begin(), all.end(), name) == all.end(),
                          "--auto-families: '", name,
                          "' chooses among families; it cannot be a "
                          "candidate");
      std::string list;
      for (const auto& k : known) list += k + ", ";
      throw Error(Cat("--auto-families: unknown family '", name, "' (known: ", list, "bt-mlp)"));
    }
    PREFMIX_CHECK_INPUT(std::find(out.begin(), out.end(), name) == out.end(), "--auto-families: '",
                        name, "' is listed twice");
    out.push_back(name);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool Declares(const std::string& family, const std::string& key) {
  for (const auto& s : FamilyOptions(family))
    if (s.key == key) return true;
  return false;
}

/// A candidate's options: its family's defaults (bt-mlp: bt --arch mlp) with the run settings.
ModelOptions CandidateOptions(const std::string& name, const ModelOptions& run) {
  ModelOptions mo;
  mo.family = name == "bt-mlp" ? "bt" : name;
  mo.seed = run.seed;
  mo.threads = run.threads;
  mo.device = run.device;
  mo.quiet = run.quiet;
  if (name == "bt-mlp") mo.Set("arch", "mlp");
  return mo;
}

/// The pooled model with the winner's item map: the name shown and its options ("" when the
/// winner has no user latent: it is pooled itself).
std::string PooledCounterpart(const std::string& name, const Model& winner, ModelOptions* out) {
  const ModelOptions& w = winner.options();
  if (winner.LatentDim() == 0) return "";
  if (name == "gppl") {
    *out = w;
    out->Set("gppl_users", "pooled");
    return "gppl --gppl-users pooled";
  }
  std::string pooled = "bt";
  if (name == "pal-a" || name == "pal-b") pooled = "bt-mlp";  // PAL's item map is an MLP
  if (name == "vpl" && w.Text("arch") == "mlp") pooled = "bt-mlp";
  *out = CandidateOptions(pooled, w);
  return pooled;
}

/// Fits a candidate without letting the validation pairs into its parameters: a family with a
/// refit step selects on them with the refit turned off; one without (gppl, which trains on
/// every pair it is given) sees the training pairs only.
std::unique_ptr<Model> FitHeldOut(ModelOptions mo, const Dataset& ds, const PairSet& train,
                                  const PairSet& valid) {
  const bool refit = Declares(mo.family, "refit");
  if (refit) mo.Set("refit", false);
  auto m = MakeModel(mo);
  m->Fit(ds, train, refit ? valid : PairSet());
  return m;
}

/// Scores a fitted model on the validation pairs (per-pair log loss, accuracy, and how much the
/// user latents move the predictions).
void ScoreOnValidation(const Model& m, const Dataset& ds, const PairSet& valid, AutoCandidate* c) {
  const std::vector<double> p = m.PredictProb(ds, valid, m.TrainLatents());
  c->loss.resize(p.size());
  double sum = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    if (!std::isfinite(p[j])) {
      c->status = Cat("failed: non-finite validation prediction for pair ", j);
      return;
    }
    c->loss[j] = PairLogLoss(p[j], valid.label[j]);
    sum += c->loss[j];
  }
  c->mean_loss = sum / std::max<size_t>(p.size(), 1);
  c->accuracy = Accuracy(p, valid.label);
  c->personalized = m.LatentDim() > 0;
  if (c->personalized) {
    RowMatrixF pop(m.TrainLatents().rows(), m.LatentDim());
    pop.rowwise() = m.PopulationLatent().transpose();
    const std::vector<double> p0 = m.PredictProb(ds, valid, pop);
    double e = 0;
    for (size_t j = 0; j < p.size(); ++j) e += std::fabs(p[j] - p0[j]);
    c->effect = e / std::max<size_t>(p.size(), 1);
    c->degenerate = !ds.has_contexts && c->effect < kDegenerateEffect;
  }
}

/// Fits and scores one candidate: on the given validation split, or by cross-validation over
/// `folds` (the held-out pairs' losses in fold order, the effect and accuracy over all of them).
void Evaluate(const ModelOptions& mo, const Dataset& ds, const PairSet& train, const PairSet& valid,
              const std::vector<AutoFold>& folds, AutoCandidate* c) {
  if (folds.empty()) {
    auto m = FitHeldOut(mo, ds, train, valid);
    ClearDeadline();
    ScoreOnValidation(*m, ds, valid, c);
    return;
  }
  std::vector<double> loss;
  double correct = 0, effect = 0;
  for (const AutoFold& f : folds) {
    // Selected on one part, scored on another: a family's own selection (epochs, L2) never
    // sees the pairs it is scored on. A family without one trains on both.
    AutoCandidate part;
    auto m = FitHeldOut(mo, ds, Declares(mo.family, "refit") ? f.fit : Concat(f.fit, f.select),
                        f.select);
    const PairSet& va = f.held;
    ScoreOnValidation(*m, ds, va, &part);
    if (!part.fitted()) {
      c->status = part.status;
      return;
    }
    loss.insert(loss.end(), part.loss.begin(), part.loss.end());
    correct += part.accuracy * va.size();
    effect += part.effect * va.size();
    c->personalized = part.personalized;
  }
  ClearDeadline();
  const double n = static_cast<double>(std::max<size_t>(loss.size(), 1));
  c->mean_loss = 0;
  for (double x : loss) c->mean_loss += x / n;
  c->loss = std::move(loss);
  c->accuracy = correct / n;
  c->effect = c->personalized ? effect / n : 0.0;
  c->degenerate = c->personalized && !ds.has_contexts && c->effect < kDegenerateEffect;
}

/// Standard error of the mean of a - b (paired, same pairs).
double PairedSe(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  if (n < 2) return 0;
  double m = 0;
  for (size_t j = 0; j < n; ++j) m += a[j] - b[j];
  m /= n;
  double v = 0;
  for (size_t j = 0; j < n; ++j) v += (a[j] - b[j] - m) * (a[j] - b[j] - m);
  return std::sqrt(v / (n - 1) / n);
}

/// Clears the budget's deadline however the candidate's fit ends.
struct DeadlineGuard {
  ~DeadlineGuard() { ClearDeadline(); }
};

class AutoModel : public Model {
 public:
  explicit AutoModel(const ModelOptions& o) { ParseAutoFamilies(o.Text("auto_families")); }
  std::string Family() const override { return chosen_ ? chosen_->Family() : "auto"; }
  int LatentDim() const override { return chosen_ ? chosen_->LatentDim() : 0; }
  const Model& Fitted() const override {
    if (chosen_) return *chosen_;
    return *this;
  }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!valid.empty(), ds.source,
                        ": --model auto chooses on validation pairs and there are none "
                        "(--valid-fraction 0, or every user has a single pair)");
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<std::string> names = ParseAutoFamilies(options_.Text("auto_families"));
    const double budget = options_.Real("auto_budget");
    // Few validation pairs: choose by k-fold cross-validation over train + validation instead.
    const int k = static_cast<int>(options_.Int("auto_folds"));
    std::vector<AutoFold> folds;
    if (k >= 2 && static_cast<int64_t>(valid.size()) < kAutoCvBelowPairs)
      folds = MakeAutoFolds(train, valid, ds.n_users(), k, options_.seed);
    std::vector<AutoCandidate> cands;
    auto any_fitted = [&] {
      for (const auto& c : cands)
        if (c.fitted()) return true;
      return false;
    };
    for (const std::string& name : names) {
      AutoCandidate c;
      c.name = name;
      const double spent = Since(t0);
      const bool limited = budget > 0 && any_fitted();  // the first finisher is never stopped
      if (limited && spent >= budget) {
        c.status = "skipped (budget)";
        cands.push_back(std::move(c));
        continue;
      }
      const auto tc = std::chrono::steady_clock::now();
      DeadlineGuard guard;  // outside the try: the handler below still sees the deadline
      try {
        if (limited) SetDeadline(budget - spent);
        Evaluate(CandidateOptions(name, options_), ds, train, valid, folds, &c);
      } catch (const Cancelled&) {
        if (!DeadlinePassed()) throw;  // a real cancel (Ctrl-C) stops everything
        c.status = "stopped (budget)";
      } catch (const Error& e) {  // this family cannot fit this data; the others may
        c.status = Cat("failed: ", e.what());
      }
      c.seconds = Since(tc);
      cands.push_back(std::move(c));
    }
    const double candidates_s = Since(t0);

    std::string rule;
    const int best = ChooseAutoCandidate(&cands, &rule);
    PREFMIX_CHECK_INPUT(best >= 0, "--model auto: no candidate finished (",
                        cands.empty() ? std::string("none listed") : cands.back().status,
                        "); raise --auto-budget or change --auto-families");
    const AutoCandidate& win = cands[best];

    // Refit the winner on train + validation: its own selection and refit (a family without a
    // refit step trains on both).
    const auto tr = std::chrono::steady_clock::now();
    auto chosen = MakeModel(CandidateOptions(win.name, options_));
    const FitReport wr = chosen->Fit(ds, train, valid);
    const double refit_s = Since(tr);

    // Personalization: the winner against the pooled model with its item map.
    Json gain;
    ModelOptions po;
    const std::string pooled = PooledCounterpart(win.name, *chosen, &po);
    if (!pooled.empty()) {
      AutoCandidate pc;
      pc.name = pooled;
      const AutoCandidate* ref = nullptr;
      for (const auto& c : cands)
        if (c.name == pooled && c.fitted()) ref = &c;
      if (!ref) {
        Evaluate(po, ds, train, valid, folds, &pc);
        PREFMIX_CHECK_INPUT(pc.fitted(), "--model auto: the pooled reference ", pooled, " ",
                            pc.status);
        ref = &pc;
      }
      gain = Json::Object();
      gain["pooled"] = pooled;
      gain["valid_log_loss_gain"] = ref->mean_loss - win.mean_loss;
      gain["valid_log_loss_gain_se"] = PairedSe(ref->loss, win.loss);
      gain["valid_accuracy_gain"] = win.accuracy - ref->accuracy;
    }

    // From here on this model is the chosen one.
    dim = chosen->dim;
    embedding_model = chosen->embedding_model;
    context_dim = chosen->context_dim;
    train_latents_ = chosen->TrainLatents();
    train_user_ids_ = chosen->TrainUserIds();
    chosen_ = std::move(chosen);

    Json list = Json::Array();
    for (const auto& c : cands) {
      Json e = Json::Object();
      e["candidate"] = c.name;
      e["status"] = c.status;
      e["seconds"] = c.seconds;
      if (c.fitted()) {
        e["valid_log_loss"] = c.mean_loss;
        e["valid_log_loss_se_vs_lowest"] = c.se;
        e["valid_accuracy"] = c.accuracy;
        if (c.personalized) {
          e["personalization_effect"] = c.effect;
          e["degenerate"] = c.degenerate;
        }
      }
      list.push_back(e);
    }
    Json a = Json::Object();
    a["chosen"] = win.name;
    a["rule"] = rule;
    a["n_valid_pairs"] = static_cast<int64_t>(valid.size());
    a["selection"] = folds.empty()
                         ? std::string("validation pairs")
                         : Cat(k, "-fold cross-validation over ", train.size() + valid.size(),
                               " pairs (fewer than ", kAutoCvBelowPairs, " validation pairs)");
    a["budget_seconds"] = budget;
    a["candidates_seconds"] = candidates_s;
    a["refit_seconds"] = refit_s;
    a["candidates"] = list;
    a["personalization_gain"] = gain;
    FitReport rep;
    rep.details["auto"] = a;
    rep.details["chosen_fit"] = wr.details;
    rep.epochs_run = wr.epochs_run;
    rep.seconds = Since(t0);
    return rep;
  }

  Eigen::VectorXf PopulationLatent() const override { return Chosen().PopulationLatent(); }
  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    return Chosen().Adapt(ds, support, n_users, device);
  }
  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    return Chosen().PredictProb(ds, pairs, latents);
  }
  OnlineResult AdaptOnline(const Dataset& ds, const PairSet& stream, int64_t n_users,
                           const std::string& estimator) const override {
    return Chosen().AdaptOnline(ds, stream, n_users, estimator);
  }
  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    return Chosen().Score(ds, latents);
  }
  Json Params() const override { return Chosen().Params(); }
  void SavePayload(std::ostream& os) const override { Chosen().SavePayload(os); }
  void LoadPayload(std::istream&) override {
    throw Error(
        "model file: family 'auto' is never written (a fitted auto model is saved as the family "
        "it chose)");
  }

 private:
  const Model& Chosen() const {
    PREFMIX_CHECK_INPUT(chosen_ != nullptr, "--model auto: the model has not been fitted");
    return *chosen_;
  }
  std::unique_ptr<Model> chosen_;
};

}  // namespace

/// The folds of the cross-validated choice: train + validation pairs, each user's pairs shuffled
/// (seeded) and dealt round-robin, so that every user with at least `k` pairs is in every fold.
/// A fold holds (training pairs, held-out pairs).
std::vector<AutoFold> MakeAutoFolds(const PairSet& train, const PairSet& valid, int64_t n_users,
                                    int k, uint64_t seed) {
  PairSet all = train;
  for (size_t j = 0; j < valid.size(); ++j) all.PushFrom(valid, j);
  const auto by_user = all.ByUser(n_users);
  std::vector<int> fold(all.size(), 0);
  for (int64_t u = 0; u < n_users; ++u) {
    std::vector<size_t> idx = by_user[u];
    Rng rng(DeriveSeed(seed, kAutoFoldStream, static_cast<uint64_t>(u)));
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.Below(i)]);
    for (size_t i = 0; i < idx.size(); ++i) fold[idx[i]] = static_cast<int>(i % k);
  }
  std::vector<AutoFold> folds(k);
  for (size_t j = 0; j < all.size(); ++j)
    for (int f = 0; f < k; ++f) {
      AutoFold& d = folds[f];
      (fold[j] == f ? d.held : fold[j] == (f + 1) % k ? d.select : d.fit).PushFrom(all, j);
    }
  return folds;
}

int ChooseAutoCandidate(std::vector<AutoCandidate>* cands_ptr, std::string* rule) {
  std::vector<AutoCandidate>& cands = *cands_ptr;
  // The lowest validation log loss among the candidates that are not degenerate (among all
  // fitted ones when every one is).
  int best = -1;
  bool any_sound = false;
  for (const auto& c : cands) any_sound |= c.fitted() && !c.degenerate;
  for (size_t i = 0; i < cands.size(); ++i) {
    const auto& c = cands[i];
    if (!c.fitted() || (any_sound && c.degenerate)) continue;
    if (best < 0 || c.mean_loss < cands[best].mean_loss) best = static_cast<int>(i);
  }
  if (best < 0) return -1;
  for (auto& c : cands)
    if (c.fitted()) c.se = PairedSe(c.loss, cands[best].loss);
  *rule = "lowest validation log loss";
  if (!cands[best].personalized) {
    // The richer model when the data cannot tell them apart.
    const int lowest = best;
    int richer = -1;
    for (size_t i = 0; i < cands.size(); ++i) {
      const auto& c = cands[i];
      if (!c.fitted() || !c.personalized || c.degenerate) continue;
      if (c.mean_loss - cands[lowest].mean_loss > c.se) continue;
      if (richer < 0 || c.mean_loss < cands[richer].mean_loss) richer = static_cast<int>(i);
    }
    if (richer >= 0) {
      best = richer;
      *rule =
          Cat("personalized, within one standard error of the lowest (", cands[lowest].name, ")");
    }
  }
  return best;
}

namespace {

const bool kRegistered = RegisterFamily(
    {"auto",
     "fits the candidate families (--auto-families) within --auto-budget seconds, chooses on the "
     "validation log loss, refits the winner; the model file is the winner's",
     {opt::Text("auto_families", kAutoDefaultFamilies, {},
                "candidates, cheapest first: families, and bt-mlp for bt --arch mlp"),
      opt::Int("auto_folds", 5,
               "with fewer than 2000 validation pairs, choose by this many-fold cross-validation "
               "over train + validation (0 or 1: on the validation pairs)",
               0, 20),
      opt::Real("auto_budget", "600",
                "seconds for the candidate fits (0: no limit); the first candidate always "
                "finishes, the winner's refit comes after",
                0, 1e9)},
     [](const ModelOptions& o) { return std::make_unique<AutoModel>(o); },
     1000,
     {},
     "",
     1,
     true});

}  // namespace
}  // namespace prefmix
