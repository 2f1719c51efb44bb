#include "core/eval/experiment.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/eval/metrics.h"

namespace prefmix {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Say(const ProgressFn& p, const std::string& s) {
  if (p) p(s);
}

Json Timing(double train, double adapt, double eval) {
  Json t = Json::Object();
  t["train_seconds"] = train;
  if (adapt >= 0) t["adapt_seconds"] = adapt;
  t["eval_seconds"] = eval;
  return t;
}

Json Header(const ModelOptions& m, const ProtocolOptions& p) {
  Json j = Json::Object();
  j["model"] = m.family;
  j["protocol"] = p.name;
  j["seed"] = static_cast<uint64_t>(p.seed);
  return j;
}

void Merge(Json& into, const Json& from) {
  for (const auto& kv : from.members()) into[kv.first] = kv.second;
}

Json RunSeen(const Dataset& ds, const PairSet& all, const ModelOptions& mo,
             const ProtocolOptions& po, const ProgressFn& progress) {
  Split s = MakeSeenSplit(ds, all, po);
  PREFMIX_CHECK_INPUT(!s.test.empty(), ds.source,
                      ": the seen protocol left no test pairs (every user has a single pair?)");
  auto model = MakeModel(mo);
  Say(progress,
      Cat(mo.family, ": training on ", s.train.size(), " pairs (", s.valid.size(), " validation)"));
  auto t0 = std::chrono::steady_clock::now();
  FitReport rep = model->Fit(ds, s.train, s.valid);
  double train_s = Since(t0);
  t0 = std::chrono::steady_clock::now();
  auto prob = model->PredictProb(ds, s.test, model->TrainLatents());
  Json m = Header(mo, po);
  Merge(m, PairMetrics(ds, s.test, prob, po.min_group_users));
  double eval_s = Since(t0);
  m["timing"] = Timing(train_s, -1, eval_s);
  m["params"] = model->Params();
  m["fit"] = rep.details;
  return m;
}

Json RunUnseen(const Dataset& ds, const PairSet& all, const ModelOptions& mo,
               const ProtocolOptions& po, const ProgressFn& progress, const UnseenExtra* extra) {
  Split s = MakeUnseenSplit(ds, all, po);
  PREFMIX_CHECK_INPUT(
      !s.heldout_users.empty(), ds.source, ": no held-out user has max --shots + 1 = ",
      *std::max_element(po.shots.begin(), po.shots.end()) + 1, " pairs; lower --shots");
  auto model = MakeModel(mo);
  Say(progress, Cat(mo.family, ": training on ", s.train.size(), " pairs of ",
                    ds.n_users() - s.n_heldout_total, " users"));
  auto t0 = std::chrono::steady_clock::now();
  FitReport rep = model->Fit(ds, s.train, s.valid);
  double train_s = Since(t0);
  std::vector<int> shots = po.shots;
  std::sort(shots.begin(), shots.end());
  shots.erase(std::unique(shots.begin(), shots.end()), shots.end());
  const int max_k = shots.back();
  PairSet queries = UnseenQueries(all, s, max_k);
  Json curve = Json::Array();
  Json last;
  double adapt_s = 0, eval_s = 0, online_s = 0;
  for (int k : shots) {
    PairSet support = UnseenSupport(all, s, k);
    auto ta = std::chrono::steady_clock::now();
    RowMatrixF lat = model->Adapt(ds, support, ds.n_users(), mo.device);
    adapt_s = Since(ta);
    auto te = std::chrono::steady_clock::now();
    auto prob = model->PredictProb(ds, queries, lat);
    last = PairMetrics(ds, queries, prob, po.min_group_users);
    eval_s = Since(te);
    Json e = Json::Object();
    e["k"] = k;
    e["accuracy"] = last.at("accuracy");
    e["log_loss"] = last.at("log_loss");
    e["n_pairs"] = static_cast<int64_t>(queries.size());
    curve.push_back(e);
    Say(progress, Cat(mo.family, ": ", k, " shots -> accuracy ", last.at("accuracy").number()));
  }
  Json m = Header(mo, po);
  Merge(m, last);
  m["shots"] = curve;
  if (po.online) {
    auto to = std::chrono::steady_clock::now();
    const PairSet stream = UnseenSupport(all, s, max_k + 1);
    const OnlineResult on = model->AdaptOnline(ds, stream, ds.n_users(), po.online_estimator);
    m["online"] = OnlineCurve(stream, on.prob, max_k);
    // The state after max_k labels, scored on the batch curve's queries.
    OnlineResult fin =
        model->AdaptOnline(ds, UnseenSupport(all, s, max_k), ds.n_users(), po.online_estimator);
    const auto prob = model->PredictProb(ds, queries, fin.latent);
    Json q = Json::Object();
    q["labels"] = max_k;
    q["accuracy"] = Accuracy(prob, queries.label);
    q["log_loss"] = LogLoss(prob, queries.label);
    q["batch_accuracy"] = last.at("accuracy");
    q["batch_log_loss"] = last.at("log_loss");
    q["n_pairs"] = static_cast<int64_t>(queries.size());
    m["online_queries"] = q;
    m["online_estimator"] = po.online_estimator;
    online_s = Since(to);
    Say(progress, Cat(mo.family, ": online (", po.online_estimator, ") at ", max_k,
                      " labels -> accuracy ", q.at("accuracy").number(), " on the queries"));
  }
  m["n_unseen_users"] = static_cast<int64_t>(s.heldout_users.size());
  m["n_unseen_users_left_out"] = s.n_left_out;
  m["timing"] = Timing(train_s, adapt_s, eval_s);
  if (po.online) m["timing"]["online_seconds"] = online_s;
  m["params"] = model->Params();
  m["fit"] = rep.details;
  if (extra && extra->run) m[extra->key] = extra->run(*model, ds, all, s);
  return m;
}

Json RunSubsample(const Dataset& ds, const PairSet& all, const ModelOptions& mo,
                  const ProtocolOptions& po, const ProgressFn& progress) {
  Json reps = Json::Array();
  std::vector<double> acc, ll;
  double train_total = 0, eval_total = 0;
  int64_t n_test = 0;
  Json params;
  for (int r = 0; r < po.repeats; ++r) {
    Split s = MakeSubsampleSplit(ds, all, po, r);
    ModelOptions m = mo;
    m.seed = mo.seed + static_cast<uint64_t>(r);
    auto model = MakeModel(m);
    auto t0 = std::chrono::steady_clock::now();
    const FitReport rep = model->Fit(ds, s.train, s.valid);
    double tr = Since(t0);
    t0 = std::chrono::steady_clock::now();
    auto prob = model->PredictProb(ds, s.test, model->TrainLatents());
    double a = Accuracy(prob, s.test.label), l = LogLoss(prob, s.test.label);
    for (double p : prob)
      PREFMIX_CHECK_INPUT(std::isfinite(p), "model produced a non-finite probability in repeat ", r,
                          " (training diverged?)");
    eval_total += Since(t0);
    train_total += tr;
    acc.push_back(a);
    ll.push_back(l);
    n_test += static_cast<int64_t>(s.test.size());
    Json e = Json::Object();
    e["repeat"] = r;
    e["accuracy"] = a;
    e["log_loss"] = l;
    e["seconds"] = tr;
    e["fit"] = rep.details;
    reps.push_back(e);
    params = model->Params();
    Say(progress, Cat(mo.family, ": repeat ", r + 1, "/", po.repeats, " accuracy ", a));
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / v.size();
  };
  auto sd = [&](const std::vector<double>& v) {
    double m = mean(v), s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / v.size());
  };
  Json m = Header(mo, po);
  m["accuracy"] = mean(acc);
  m["accuracy_std"] = sd(acc);
  m["log_loss"] = mean(ll);
  m["log_loss_std"] = sd(ll);
  m["n_test_pairs"] = n_test;
  m["repeats"] = reps;
  m["timing"] = Timing(train_total, -1, eval_total);
  m["timing"]["seconds_per_run"] = (train_total + eval_total) / po.repeats;
  m["params"] = params;
  return m;
}

}  // namespace

Json OnlineCurve(const PairSet& stream, const std::vector<double>& prob, int max_labels) {
  PREFMIX_ASSERT(prob.size() == stream.size(), "online: ", prob.size(), " predictions for ",
                 stream.size(), " pairs");
  std::vector<double> right, loss;
  std::vector<int64_t> n;
  int64_t prev = -1;
  size_t pos = 0;
  for (size_t j = 0; j < stream.size(); ++j) {
    if (stream.user[j] != prev) {
      prev = stream.user[j];
      pos = 0;
    }
    const double p = prob[j];
    PREFMIX_CHECK_INPUT(std::isfinite(p), "online: non-finite prediction for pair ", j,
                        " of user row ", stream.user[j], " (diverged model?)");
    if (max_labels < 0 || pos <= static_cast<size_t>(max_labels)) {
      if (pos >= n.size()) {
        right.resize(pos + 1, 0);
        loss.resize(pos + 1, 0);
        n.resize(pos + 1, 0);
      }
      right[pos] += PairHit(p, 1.0f);  // p is the probability of the observed label
      loss[pos] += PairLogLoss(p, 1.0f);
      ++n[pos];
    }
    ++pos;
  }
  Json curve = Json::Array();
  for (size_t t = 0; t < n.size(); ++t) {
    Json e = Json::Object();
    e["labels"] = static_cast<int64_t>(t);
    e["accuracy"] = right[t] / n[t];
    e["log_loss"] = loss[t] / n[t];
    e["n_users"] = n[t];
    curve.push_back(e);
  }
  return curve;
}

Json RunExperiment(const Dataset& ds, const ModelOptions& model, const ProtocolOptions& protocol,
                   const ProgressFn& progress, const UnseenExtra* extra) {
  ValidateProtocolOptions(protocol);
  PairSet all = ds.AllPairs();
  if (protocol.name == "seen") return RunSeen(ds, all, model, protocol, progress);
  if (protocol.name == "unseen") return RunUnseen(ds, all, model, protocol, progress, extra);
  return RunSubsample(ds, all, model, protocol, progress);
}

Json EvaluateModel(const Model& model, const Dataset& ds, int min_group_users) {
  int64_t unknown = 0;
  RowMatrixF lat = model.LatentsFor(ds, &unknown);
  PairSet all = ds.AllPairs();
  auto t0 = std::chrono::steady_clock::now();
  auto prob = model.PredictProb(ds, all, lat);
  Json m = Json::Object();
  m["model"] = model.Family();
  m["protocol"] = "eval";
  Merge(m, PairMetrics(ds, all, prob, min_group_users));
  m["n_users_unknown"] = unknown;
  m["timing"] = Timing(0, -1, Since(t0));
  m["params"] = model.Params();
  return m;
}

}  // namespace prefmix
