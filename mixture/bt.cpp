// Family `bt`: one Bradley-Terry reward for everybody, r(e) = theta.e (linear) or an MLP.
// Adam, L2 chosen on the validation split, early stopping on validation log loss, then a refit on
// train + validation for the selected number of epochs. The linear reward is trained here with
// Eigen; the MLP with LibTorch in the LibTorch module (bt_mlp.cpp), loaded only for --arch mlp.
#include "mixture/bt.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/torch/module.h"
#include "core/userstep/math.h"

namespace prefmix::mixture {
namespace {

/// r(e) = theta.e, theta from 0, trained by Adam with LibTorch's update rule (betas .9 / .999,
/// eps 1e-8, bias-corrected), so that it answers as the LibTorch version it replaced did (to
/// rounding: it trains in double). Every sum runs in a fixed order (plain loops, not Eigen's
/// products, whose order depends on the addresses of the buffers), so the same data and seed give
/// the same bytes in any process.
class LinearBtNet : public BtNet {
 public:
  explicit LinearBtNet(const BtNetConfig& c) : c_(c), theta_(Eigen::VectorXf::Zero(c.dim)) {}

  double Train(const Dataset& ds, const PairSet& train, const PairSet* valid, double l2, int epochs,
               int* best_epoch) override {
    PREFMIX_ASSERT(ds.dim() == c_.dim, "bt: dimension");
    // The items the pairs name (often a small part of a large item table): r and the gradient
    // touch only these rows.
    std::vector<int32_t> used;
    std::vector<int32_t> slot(ds.n_items(), -1);
    auto add = [&](const PairSet& p) {
      for (size_t j = 0; j < p.size(); ++j)
        for (int32_t i : {p.first[j], p.second[j]})
          if (slot[i] < 0) {
            slot[i] = static_cast<int32_t>(used.size());
            used.push_back(i);
          }
    };
    add(train);
    if (valid) add(*valid);
    const int64_t n_used = static_cast<int64_t>(used.size()), d = c_.dim;
    const RowMatrixF& E = ds.items;

    Eigen::VectorXd theta = Eigen::VectorXd::Zero(d), m = theta, v = theta, best = theta;
    Eigen::VectorXd grad(d), r(n_used), g_item(n_used);
    // r at the current theta; `current` spares the recomputation when theta has not moved since
    // (the validation pass ends an epoch at the theta the next epoch's first step starts from).
    bool current = false;
    auto rewards = [&] {
      if (current) return;
      for (int64_t k = 0; k < n_used; ++k) r[k] = Dot(E.row(used[k]).data(), theta.data(), d);
      current = true;
    };
    const int64_t n = static_cast<int64_t>(train.size());
    const int64_t batch = c_.batch > 0 ? std::min<int64_t>(c_.batch, n) : n;
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), int64_t{0});
    Rng rng(c_.seed + kBtBatchOrderStream);
    EarlyStopping stop(c_.patience);
    constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
    int64_t step = 0;
    bool kept = false;
    for (int ep = 1; ep <= epochs; ++ep) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      if (batch < n) rng.Shuffle(order);
      for (int64_t b = 0; b < n; b += batch) {
        const int64_t e = std::min(n, b + batch);
        rewards();
        g_item.setZero();
        double wsum = 0;
        for (int64_t k = b; k < e; ++k) wsum += train.weight[order[k]];
        for (int64_t k = b; k < e; ++k) {
          const int64_t j = order[k];
          const int32_t a = slot[train.first[j]], c = slot[train.second[j]];
          const double g = train.weight[j] * math::BtLossGrad(r[a] - r[c], train.label[j]) / wsum;
          g_item[a] += g;
          g_item[c] -= g;
        }
        grad = (2.0 * l2) * theta;
        for (int64_t k = 0; k < n_used; ++k) {
          const double gk = g_item[k];
          if (gk == 0) continue;
          const float* row = E.row(used[k]).data();
          for (int64_t q = 0; q < d; ++q) grad[q] += gk * row[q];
        }
        ++step;
        const double bc1 = 1.0 - std::pow(kBeta1, static_cast<double>(step));
        const double bc2 = 1.0 - std::pow(kBeta2, static_cast<double>(step));
        m = kBeta1 * m + (1 - kBeta1) * grad;
        v = kBeta2 * v + (1 - kBeta2) * grad.cwiseAbs2();
        theta.array() -= (c_.lr / bc1) * m.array() / (v.array().sqrt() / std::sqrt(bc2) + kEps);
        current = false;
      }
      if (!valid) continue;
      rewards();
      double loss = 0, wsum = 0;
      for (size_t j = 0; j < valid->size(); ++j) {
        const double x = r[slot[valid->first[j]]] - r[slot[valid->second[j]]];
        loss += valid->weight[j] * math::BtLoss(x, valid->label[j]);
        wsum += valid->weight[j];
      }
      const double vl = loss / wsum;
      PREFMIX_CHECK_INPUT(std::isfinite(vl), "bt: training diverged (validation loss ", vl,
                          " at epoch ", ep, "); lower --lr");
      if (stop.Better(vl, ep)) {
        if (best_epoch) *best_epoch = ep;
        best = theta;
        kept = true;
      } else if (stop.Stop()) {
        break;
      }
    }
    if (valid && kept) theta = best;
    PREFMIX_CHECK_INPUT(theta.allFinite(),
                        "bt: training diverged (non-finite parameters); lower --lr");
    theta_ = theta.cast<float>();
    return stop.best();
  }

  Eigen::VectorXf Rewards(const Dataset& ds) const override {
    const Eigen::VectorXd theta = theta_.cast<double>();
    Eigen::VectorXf out(ds.n_items());
    for (int64_t i = 0; i < ds.n_items(); ++i)
      out[i] = static_cast<float>(Dot(ds.items.row(i).data(), theta.data(), c_.dim));
    return out;
  }

  std::vector<RowMatrixF> Params() const override {
    RowMatrixF t(1, c_.dim);
    t.row(0) = theta_.transpose();
    return {t};
  }
  void SetParams(const std::vector<RowMatrixF>& params) override {
    theta_ = Eigen::Map<const Eigen::VectorXf>(params[0].data(), c_.dim);
  }
  std::vector<int64_t> ParamSizes() const override { return {c_.dim}; }

 private:
  /// e.theta in double, in index order.
  static double Dot(const float* e, const double* theta, int64_t d) {
    double s = 0;
    for (int64_t q = 0; q < d; ++q) s += e[q] * theta[q];
    return s;
  }

  BtNetConfig c_;
  Eigen::VectorXf theta_;
};

class BtModel : public Model {
 public:
  explicit BtModel(const ModelOptions&) {}
  std::string Family() const override { return "bt"; }
  int LatentDim() const override { return 0; }
  Eigen::VectorXf PopulationLatent() const override { return Eigen::VectorXf(); }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    const int max_epochs = options_.Int("epochs");
    Build(dim);
    FitReport rep;
    double l2 = options_.Real("l2");
    int epochs = max_epochs;
    if (!valid.empty()) {
      SelectOnValidation(
          "l2", L2Grid(l2, {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}),
          [&](double g, int* be) { return net_->Train(ds, train, &valid, g, max_epochs, be); },
          &rep, &l2, &epochs);
      if (options_.Flag("refit")) {
        net_->Train(ds, Concat(train, valid), nullptr, l2, epochs, nullptr);
      } else {
        int be = 0;
        net_->Train(ds, train, &valid, l2, max_epochs, &be);
      }
    } else {
      if (l2 < 0) l2 = 1e-4;
      net_->Train(ds, train, nullptr, l2, max_epochs, nullptr);
    }
    rep.details["l2"] = l2;
    rep.details["epochs"] = epochs;
    rep.epochs_run = epochs;
    SetTrainLatents(ds, RowMatrixF(ds.n_users(), 0));
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet&, int64_t n_users,
                   const std::string&) const override {
    (void)ds;
    return RowMatrixF(n_users,
                      0);  // bt has no per-user latent: everybody gets the population model
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF&) const override {
    Eigen::VectorXf r = Net().Rewards(ds);
    std::vector<double> p(pairs.size());
    for (size_t j = 0; j < pairs.size(); ++j)
      p[j] = math::Sigmoid(static_cast<double>(r[pairs.first[j]]) - r[pairs.second[j]]);
    return p;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    Eigen::VectorXf r = Net().Rewards(ds);
    RowMatrixF out(latents.rows(), ds.n_items());
    for (Eigen::Index i = 0; i < out.rows(); ++i) out.row(i) = r.transpose();
    return out;
  }

  Json Params() const override {
    Json j = Json::Object();
    int64_t n = 0;
    for (int64_t s : Net().ParamSizes()) n += s;
    j["shared"] = n;
    j["per_user"] = 0;
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    SaveBase(os);
    cereal::PortableBinaryOutputArchive ar(os);
    std::vector<RowMatrixF> params = Net().Params();
    ar(params);
  }

  void LoadPayload(std::istream& is) override {
    LoadBase(is);
    cereal::PortableBinaryInputArchive ar(is);
    std::vector<RowMatrixF> params;
    ar(params);
    // The header's dim and the options' hidden size the net: check them against the values the
    // file holds before building it, so that a corrupt dim or hidden never sizes an allocation.
    const bool linear = options_.Text("arch") == "linear";
    const int64_t h = options_.Int("hidden");
    long double stored = 0;
    for (const auto& p : params) stored += static_cast<long double>(p.size());
    PREFMIX_CHECK_INPUT(dim >= 1 && (linear || h >= 1) && ParamCount(dim, h, linear) == stored,
                        "model file: bt (arch ", options_.Text("arch"), ", dim ", dim, ", hidden ",
                        h, ") does not match the ", static_cast<double>(stored),
                        " parameter values stored");
    Build(dim);
    const std::vector<int64_t> sizes = net_->ParamSizes();
    PREFMIX_CHECK_INPUT(sizes.size() == params.size(), "model file: bt has ", params.size(),
                        " parameter tensors, expected ", sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i)
      PREFMIX_CHECK_INPUT(params[i].size() == sizes[i], "model file: bt parameter ", i, " has ",
                          params[i].size(), " values, expected ", sizes[i]);
    net_->SetParams(params);
  }

 private:
  const BtNet& Net() const {
    PREFMIX_ASSERT(net_ != nullptr, "bt model used before training/loading");
    return *net_;
  }

  /// The number of values of the net Build(d) makes (exact in long double for real sizes).
  static long double ParamCount(int64_t d, int64_t h, bool linear) {
    const long double D = static_cast<long double>(d), H = static_cast<long double>(h);
    return linear ? D : (D * H + H) + (H * H + H) + (H + 1);
  }

  void Build(int64_t d) {
    const bool linear = options_.Text("arch") == "linear";
    BtNetConfig c;
    c.dim = d;
    c.hidden = options_.Int("hidden");
    c.lr = options_.Real("lr") > 0 ? options_.Real("lr") : linear ? 0.05 : 0.005;
    c.batch = options_.Int("batch");
    c.patience = options_.Int("patience");
    c.seed = options_.seed;
    if (linear)
      net_ = std::make_unique<LinearBtNet>(c);
    else
      net_ = torchmodule::Need<MakeBtMlpFn>("bt.mlp", "bt --arch mlp")(c);
  }

  std::unique_ptr<BtNet> net_;
};

const bool kRegistered = RegisterFamily(
    {"bt",
     "one Bradley-Terry reward for all users (linear or --arch mlp); Adam",
     {opt::Epochs(300), opt::Lr("0", "0: 0.05 linear, 0.005 mlp"), opt::Batch(0, "0: full batch"),
      opt::L2("-1", "< 0: chosen on validation"),
      opt::Text("arch", "linear", {"linear", "mlp"}, "the item reward: linear, or an MLP"),
      opt::Hidden(64), opt::Patience(20), opt::Refit()},
     [](const ModelOptions& o) { return std::make_unique<BtModel>(o); },
     0,
     {},
     ""});

}  // namespace
}  // namespace prefmix::mixture
