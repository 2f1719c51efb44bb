// Family `bt`: one Bradley-Terry reward for everybody, r(e) = theta.e (linear) or an MLP.
// LibTorch + Adam, L2 chosen on the validation split, early stopping on validation log loss,
// then a refit on train + validation for the selected number of epochs.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/model/model.h"
#include "core/threads.h"
#include "core/torch/glue.h"
#include "core/userstep/math.h"

namespace prefmix::mixture {
namespace {

using torchglue::PairTensors;
using torchglue::ToTensors;

/// Seed stream of the mini-batch order (the run's --seed plus this offset).
constexpr uint64_t kBatchOrderStream = 7;

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
    torch::Tensor E = torchglue::Items(ds);
    PairTensors tr = ToTensors(train);
    FitReport rep;
    double l2 = options_.Real("l2");
    int epochs = max_epochs;
    if (!valid.empty()) {
      PairTensors va = ToTensors(valid);
      SelectOnValidation(
          "l2", L2Grid(l2, {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}),
          [&](double g, int* be) { return TrainOnce(E, tr, &va, g, max_epochs, be); }, &rep, &l2,
          &epochs);
      if (options_.Flag("refit")) {
        PairTensors all = ToTensors(Concat(train, valid));
        TrainOnce(E, all, nullptr, l2, epochs, nullptr);
      } else {
        int be = 0;
        TrainOnce(E, tr, &va, l2, max_epochs, &be);
      }
    } else {
      if (l2 < 0) l2 = 1e-4;
      TrainOnce(E, tr, nullptr, l2, max_epochs, nullptr);
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
    Eigen::VectorXf r = Rewards(ds);
    std::vector<double> p(pairs.size());
    for (size_t j = 0; j < pairs.size(); ++j)
      p[j] = math::Sigmoid(static_cast<double>(r[pairs.first[j]]) - r[pairs.second[j]]);
    return p;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    Eigen::VectorXf r = Rewards(ds);
    RowMatrixF out(latents.rows(), ds.n_items());
    for (Eigen::Index i = 0; i < out.rows(); ++i) out.row(i) = r.transpose();
    return out;
  }

  Json Params() const override {
    Json j = Json::Object();
    int64_t n = 0;
    for (const auto& p : Net()->parameters()) n += p.numel();
    j["shared"] = n;
    j["per_user"] = 0;
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    SaveBase(os);
    cereal::PortableBinaryOutputArchive ar(os);
    std::vector<RowMatrixF> params;
    for (const auto& p : Net()->parameters()) {
      auto c = p.detach().contiguous().reshape({-1});
      RowMatrixF m(1, c.numel());
      std::memcpy(m.data(), c.data_ptr<float>(), sizeof(float) * c.numel());
      params.push_back(m);
    }
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
    auto ps = net_->parameters();
    PREFMIX_CHECK_INPUT(ps.size() == params.size(), "model file: bt has ", params.size(),
                        " parameter tensors, expected ", ps.size());
    torch::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); ++i) {
      PREFMIX_CHECK_INPUT(params[i].size() == ps[i].numel(), "model file: bt parameter ", i,
                          " has ", params[i].size(), " values, expected ", ps[i].numel());
      std::memcpy(ps[i].data_ptr<float>(), params[i].data(), sizeof(float) * params[i].size());
    }
  }

 private:
  torch::nn::Sequential Net() const {
    PREFMIX_ASSERT(!net_.is_empty(), "bt model used before training/loading");
    return net_;
  }

  /// The number of values of the net Build(d) makes (exact in long double for real sizes).
  static long double ParamCount(int64_t d, int64_t h, bool linear) {
    const long double D = static_cast<long double>(d), H = static_cast<long double>(h);
    return linear ? D : (D * H + H) + (H * H + H) + (H + 1);
  }

  void Build(int64_t d) {
    torch::manual_seed(options_.seed);
    if (options_.Text("arch") == "linear") {
      net_ = torch::nn::Sequential(torch::nn::Linear(torch::nn::LinearOptions(d, 1).bias(false)));
      torch::NoGradGuard ng;
      for (auto& p : net_->parameters()) p.zero_();
    } else {
      const int h = options_.Int("hidden");
      net_ =
          torch::nn::Sequential(torch::nn::Linear(d, h), torch::nn::ReLU(), torch::nn::Linear(h, h),
                                torch::nn::ReLU(), torch::nn::Linear(h, 1));
    }
  }

  torch::Tensor Loss(const torch::Tensor& r, const PairTensors& p, const torch::Tensor& idx) const {
    auto f = p.first.index_select(0, idx), s = p.second.index_select(0, idx);
    auto margin = r.index_select(0, f) - r.index_select(0, s);
    auto w = p.weight.index_select(0, idx);
    auto l = torch::binary_cross_entropy_with_logits(margin, p.label.index_select(0, idx), w, {},
                                                     torch::Reduction::Sum);
    return l / w.sum();
  }

  torch::Tensor L2(double l2) const {
    torch::Tensor s = torch::zeros({});
    for (const auto& p : net_->named_parameters())
      if (p.key().find("bias") == std::string::npos) s = s + p.value().pow(2).sum();
    return l2 * s;
  }

  /// Trains from a fresh init for at most `epochs`; with `valid`, keeps the parameters of the
  /// epoch with the best validation log loss (patience early stopping) and returns that loss.
  double TrainOnce(const torch::Tensor& E, const PairTensors& tr, const PairTensors* va, double l2,
                   int epochs, int* best_epoch) {
    Build(E.size(1));
    const double lr = options_.Real("lr") > 0             ? options_.Real("lr")
                      : options_.Text("arch") == "linear" ? 0.05
                                                          : 0.005;
    torch::optim::Adam opt(net_->parameters(), torch::optim::AdamOptions(lr));
    const int64_t batch = options_.Int("batch") > 0 ? options_.Int("batch") : tr.n;
    torch::Tensor all_idx = torch::arange(tr.n, torch::kLong);
    torch::Tensor va_idx = va ? torch::arange(va->n, torch::kLong) : torch::Tensor();
    EarlyStopping stop(options_.Int("patience"));
    std::vector<torch::Tensor> best_state;
    torch::Generator gen = at::detail::createCPUGenerator(options_.seed + kBatchOrderStream);
    for (int ep = 1; ep <= epochs; ++ep) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      net_->train();
      torch::Tensor order = batch < tr.n ? torch::randperm(tr.n, gen, torch::kLong) : all_idx;
      for (int64_t b = 0; b < tr.n; b += batch) {
        auto idx = order.slice(0, b, std::min(tr.n, b + batch));
        opt.zero_grad();
        auto r = net_->forward(E).reshape({-1});
        auto loss = Loss(r, tr, idx) + L2(l2);
        loss.backward();
        opt.step();
      }
      if (!va) continue;
      torch::NoGradGuard ng;
      net_->eval();
      double v = Loss(net_->forward(E).reshape({-1}), *va, va_idx).item<double>();
      PREFMIX_CHECK_INPUT(std::isfinite(v), "bt: training diverged (validation loss ", v,
                          " at epoch ", ep, "); lower --lr");
      if (stop.Better(v, ep)) {
        if (best_epoch) *best_epoch = ep;
        best_state = torchglue::Snapshot(net_->parameters());
      } else if (stop.Stop()) {
        break;
      }
    }
    if (va && !best_state.empty()) torchglue::Restore(net_->parameters(), best_state);
    for (const auto& p : net_->parameters())
      PREFMIX_CHECK_INPUT(torch::isfinite(p).all().item<bool>(),
                          "bt: training diverged (non-finite parameters); lower --lr");
    return stop.best();
  }

  Eigen::VectorXf Rewards(const Dataset& ds) const {
    torch::NoGradGuard ng;
    auto net = Net();
    net->eval();
    auto r = net->forward(torchglue::Items(ds)).reshape({-1}).contiguous();
    Eigen::VectorXf out(ds.n_items());
    std::memcpy(out.data(), r.data_ptr<float>(), sizeof(float) * ds.n_items());
    return out;
  }

  torch::nn::Sequential net_{nullptr};
};

const bool kRegistered = RegisterFamily(
    {"bt",
     "one Bradley-Terry reward for all users (linear or --arch mlp); LibTorch + Adam",
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
