// Family `bt`, --arch mlp: the MLP reward trained with LibTorch + Adam. Part of the LibTorch module
// (core/torch/module.h); the family itself (selection, refit, model file) is in bt.cpp.
#include <torch/torch.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/model/fit.h"
#include "core/threads.h"
#include "core/torch/glue.h"
#include "core/torch/module.h"
#include "mixture/bt.h"

namespace prefmix::mixture {
namespace {

using torchglue::PairTensors;
using torchglue::ToTensors;

class MlpBtNet : public BtNet {
 public:
  explicit MlpBtNet(const BtNetConfig& c) : c_(c) { Build(); }

  double Train(const Dataset& ds, const PairSet& train, const PairSet* valid, double l2, int epochs,
               int* best_epoch) override {
    Build();
    torch::Tensor E = torchglue::Items(ds);
    PairTensors tr = ToTensors(train);
    PairTensors va;
    if (valid) va = ToTensors(*valid);
    torch::optim::Adam opt(net_->parameters(), torch::optim::AdamOptions(c_.lr));
    const int64_t batch = c_.batch > 0 ? c_.batch : tr.n;
    torch::Tensor all_idx = torch::arange(tr.n, torch::kLong);
    torch::Tensor va_idx = valid ? torch::arange(va.n, torch::kLong) : torch::Tensor();
    torchglue::BestParameters<EarlyStopping> best{EarlyStopping(c_.patience)};
    torch::Generator gen = at::detail::createCPUGenerator(c_.seed + kBtBatchOrderStream);
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
      if (!valid) continue;
      torch::NoGradGuard ng;
      net_->eval();
      double v = Loss(net_->forward(E).reshape({-1}), va, va_idx).item<double>();
      PREFMIX_CHECK_INPUT(std::isfinite(v), "bt: training diverged (validation loss ", v,
                          " at epoch ", ep, "); lower --lr");
      if (best.Offer(v, ep, net_->parameters())) break;
    }
    best.RestoreBest(net_->parameters());
    if (best_epoch && best.rule().best_epoch() > 0) *best_epoch = best.rule().best_epoch();
    for (const auto& p : net_->parameters())
      PREFMIX_CHECK_INPUT(torch::isfinite(p).all().item<bool>(),
                          "bt: training diverged (non-finite parameters); lower --lr");
    return best.rule().best();
  }

  Eigen::VectorXf Rewards(const Dataset& ds) const override {
    torch::NoGradGuard ng;
    net_->eval();
    auto r = net_->forward(torchglue::Items(ds)).reshape({-1}).contiguous();
    Eigen::VectorXf out(ds.n_items());
    std::memcpy(out.data(), r.data_ptr<float>(), sizeof(float) * ds.n_items());
    return out;
  }

  std::vector<RowMatrixF> Params() const override {
    std::vector<RowMatrixF> params;
    for (const auto& p : net_->parameters()) {
      auto c = p.detach().contiguous().reshape({-1});
      RowMatrixF m(1, c.numel());
      std::memcpy(m.data(), c.data_ptr<float>(), sizeof(float) * c.numel());
      params.push_back(m);
    }
    return params;
  }

  void SetParams(const std::vector<RowMatrixF>& params) override {
    auto ps = net_->parameters();
    PREFMIX_ASSERT(ps.size() == params.size(), "bt mlp: parameter count");
    torch::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); ++i) {
      PREFMIX_ASSERT(params[i].size() == ps[i].numel(), "bt mlp: parameter size");
      std::memcpy(ps[i].data_ptr<float>(), params[i].data(), sizeof(float) * params[i].size());
    }
  }

  std::vector<int64_t> ParamSizes() const override {
    std::vector<int64_t> s;
    for (const auto& p : net_->parameters()) s.push_back(p.numel());
    return s;
  }

 private:
  void Build() {
    torch::manual_seed(c_.seed);
    const int64_t d = c_.dim, h = c_.hidden;
    net_ =
        torch::nn::Sequential(torch::nn::Linear(d, h), torch::nn::ReLU(), torch::nn::Linear(h, h),
                              torch::nn::ReLU(), torch::nn::Linear(h, 1));
  }

  static torch::Tensor Loss(const torch::Tensor& r, const PairTensors& p,
                            const torch::Tensor& idx) {
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

  BtNetConfig c_;
  // forward() of a torch Sequential is non-const.
  mutable torch::nn::Sequential net_{nullptr};
};

std::unique_ptr<BtNet> MakeBtMlp(const BtNetConfig& c) { return std::make_unique<MlpBtNet>(c); }
const bool kProvided = torchmodule::Provide("bt.mlp", &MakeBtMlp);

}  // namespace
}  // namespace prefmix::mixture
