// The LibTorch shared step of pal-a / pal-b: f, P, the g_k, theta and every user's logits
// omega_u trained jointly by mini-batch Adam with PAL's per-group step sizes.
#include "mixture/pal_train.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/model/fit.h"
#include "core/threads.h"
#include "core/torch/glue.h"
#include "core/torch/module.h"

namespace prefmix::mixture {
namespace {

namespace nn = torch::nn;

nn::Sequential MakeMlp(int64_t in, int64_t hidden, int64_t out, bool gelu) {
  if (gelu)
    return nn::Sequential(nn::Linear(in, hidden), nn::GELU(), nn::Linear(hidden, hidden),
                          nn::GELU(), nn::Linear(hidden, out));
  return nn::Sequential(nn::Linear(in, hidden), nn::ReLU(), nn::Linear(hidden, hidden), nn::ReLU(),
                        nn::Linear(hidden, out));
}

PalMlp ToEigen(const nn::Sequential& s, bool gelu, bool residual) {
  PalMlp m;
  m.gelu = gelu;
  m.residual = residual;
  for (const auto& p : s->named_parameters()) {
    auto t = p.value().detach().contiguous();
    if (t.dim() == 2) {
      RowMatrixF w(t.size(0), t.size(1));
      std::memcpy(w.data(), t.data_ptr<float>(), sizeof(float) * w.size());
      m.weight.push_back(std::move(w));
    } else {
      Eigen::VectorXf b(t.size(0));
      std::memcpy(b.data(), t.data_ptr<float>(), sizeof(float) * b.size());
      m.bias.push_back(std::move(b));
    }
  }
  return m;
}

using torchglue::PairTensors;
using torchglue::ToTensors;

/// Seed stream of the mini-batch order (the config's seed plus this offset).
constexpr uint64_t kBatchOrderStream = 7;

/// The trainable model. Parameters are plain tensors / Sequentials grouped for the optimiser.
class PalNet {
 public:
  PalNet(const Dataset& ds, const PalTrainConfig& c) : c_(c) {
    torch::manual_seed(c.seed);
    const int64_t D = ds.dim(), d = c.dim;
    residual_ = D == d;
    f_ = MakeMlp(D, c.hidden, d, c.cosine);
    E_ = torch::from_blob(const_cast<float*>(ds.items.data()), {ds.n_items(), D},
                          torch::TensorOptions().dtype(torch::kFloat32));
    // Prototypes: N(0, I) rows scaled to unit norm (PAL's is_expectation_norm_init = False).
    const int64_t pd = !c.cosine && c.ideal != PalIdeal::kPw ? D : d;
    P_ = torch::randn({c.k, pd});
    P_ = (P_ / P_.norm(2, 1, true)).detach().requires_grad_(true);
    omega_ = torch::randn({ds.n_users(), c.k}).requires_grad_(true);
    theta_ = torch::full({1}, std::log(1.0 / 0.07)).requires_grad_(true);
    if (c.contexts) {
      C_ = torch::from_blob(const_cast<float*>(ds.contexts.data()),
                            {ds.contexts.rows(), ds.contexts.cols()},
                            torch::TensorOptions().dtype(torch::kFloat32));
      for (int k = 0; k < c.k; ++k) g_.push_back(MakeMlp(ds.contexts.cols(), c.hidden, d, true));
    }
  }

  std::vector<torch::optim::OptimizerParamGroup> Groups() const {
    using torch::optim::AdamOptions;
    std::vector<torch::optim::OptimizerParamGroup> groups;
    std::vector<torch::Tensor> proj = f_->parameters();
    for (const auto& g : g_)
      for (const auto& p : g->parameters()) proj.push_back(p);
    groups.emplace_back(proj,
                        std::make_unique<AdamOptions>(AdamOptions(c_.lr).weight_decay(c_.l2)));
    groups.emplace_back(std::vector<torch::Tensor>{P_, omega_},
                        std::make_unique<AdamOptions>(AdamOptions(c_.lr_proto)));
    if (c_.cosine)
      groups.emplace_back(std::vector<torch::Tensor>{theta_},
                          std::make_unique<AdamOptions>(AdamOptions(c_.lr_scale)));
    return groups;
  }

  /// Every trained tensor: the projector's parameters, the prompt projectors', P, omega, theta.
  std::vector<torch::Tensor> Parameters() const {
    std::vector<torch::Tensor> s = f_->parameters();
    for (const auto& g : g_)
      for (const auto& p : g->parameters()) s.push_back(p);
    s.push_back(P_);
    s.push_back(omega_);
    s.push_back(theta_);
    return s;
  }

  torch::Tensor F(const torch::Tensor& x) const {
    auto y = f_->forward(x);
    return residual_ ? y + x : y;
  }

  /// Projected items of the pairs' first and second items.
  std::pair<torch::Tensor, torch::Tensor> Items(const torch::Tensor& a,
                                                const torch::Tensor& b) const {
    if (2 * a.size(0) >= E_.size(0)) {  // cheaper to map every item once
      auto Z = F(E_);
      return {Z.index_select(0, a), Z.index_select(0, b)};
    }
    auto Z = F(E_.index_select(0, torch::cat({a, b})));
    return {Z.slice(0, 0, a.size(0)), Z.slice(0, a.size(0))};
  }

  /// Ideal points [B, d] of the pairs' users (and contexts).
  torch::Tensor Ideal(const torch::Tensor& user, const torch::Tensor& ctx) const {
    auto w = torch::softmax(omega_.index_select(0, user), 1);
    torch::Tensor a;
    if (c_.cosine || c_.ideal == PalIdeal::kPw)
      a = w.mm(P_);
    else if (c_.ideal == PalIdeal::kFPw)
      a = F(w.mm(P_));
    else
      a = w.mm(F(P_));
    if (!g_.empty()) {
      auto has = ctx.ge(0);
      auto C = C_.index_select(0, ctx.clamp_min(0));
      std::vector<torch::Tensor> gk;
      for (auto& g : g_) gk.push_back(g->forward(C));
      auto G = torch::stack(gk, 1);                        // [B, K, d]
      auto ac = torch::bmm(w.unsqueeze(1), G).squeeze(1);  // [B, d]
      a = torch::where(has.unsqueeze(1), ac, a);
    }
    return a;
  }

  torch::Tensor Reward(const torch::Tensor& z, const torch::Tensor& a) const {
    if (!c_.cosine) return -((z - a).pow(2).sum(1) + kPalEps).sqrt();
    auto s = theta_.exp().clamp_max(kPalMaxScale);
    auto nz = (z.pow(2).sum(1) + kPalEps).sqrt(), na = (a.pow(2).sum(1) + kPalEps).sqrt();
    return s * (z * a).sum(1) / (nz * na);
  }

  /// Mean weighted loss of the pairs idx of p.
  torch::Tensor Loss(const PairTensors& p, const torch::Tensor& idx) const {
    auto first = p.first.index_select(0, idx), second = p.second.index_select(0, idx);
    auto [za, zb] = Items(first, second);
    auto a = Ideal(p.user.index_select(0, idx), p.context.index_select(0, idx));
    auto margin = Reward(za, a) - Reward(zb, a);
    auto w = p.weight.index_select(0, idx), y = p.label.index_select(0, idx);
    torch::Tensor l;
    if (c_.hinge)
      l = (w * torch::relu(1 - (2 * y - 1) * margin)).sum();
    else
      l = torch::binary_cross_entropy_with_logits(margin, y, w, {}, torch::Reduction::Sum);
    return l / w.sum();
  }

  /// Loss over all pairs of p without gradients, in chunks.
  double EvalLoss(const PairTensors& p) const {
    torch::NoGradGuard ng;
    constexpr int64_t kChunk = 1 << 16;
    double total = 0, wsum = p.weight.sum().item<double>();
    for (int64_t b = 0; b < p.n; b += kChunk) {
      auto idx = torch::arange(b, std::min(p.n, b + kChunk), torch::kLong);
      auto w = p.weight.index_select(0, idx).sum().item<double>();
      total += Loss(p, idx).item<double>() * w;
    }
    return wsum > 0 ? total / wsum : 0.0;
  }

  PalTrainResult Export(const Dataset& ds, const PairSet& train) const {
    torch::NoGradGuard ng;
    PalTrainResult r;
    PalParams& p = r.params;
    p.cosine = c_.cosine;
    p.ideal = c_.cosine ? PalIdeal::kPw : c_.ideal;
    p.f = ToEigen(f_, c_.cosine, residual_);
    auto P = P_.detach().contiguous();
    if (!g_.empty()) {
      // Pairs without a context use P; when training had none, P never moved, so it becomes
      // the prompt projectors' mean basis over the training pairs' contexts instead.
      bool any_free = false;
      for (int32_t c : train.context) any_free |= c < 0;
      if (!any_free) {
        auto C = C_.index_select(0, ToTensors(train).context);
        std::vector<torch::Tensor> rows;
        for (auto& g : g_) rows.push_back(g->forward(C).mean(0));
        P = torch::stack(rows, 0).contiguous();
      }
      for (const auto& g : g_) p.g.push_back(ToEigen(g, true, false));
    }
    p.protos.resize(P.size(0), P.size(1));
    std::memcpy(p.protos.data(), P.data_ptr<float>(), sizeof(float) * p.protos.size());
    p.log_scale = theta_.item<double>();
    auto om = omega_.detach().contiguous();
    r.omega.resize(ds.n_users(), c_.k);
    std::memcpy(r.omega.data(), om.data_ptr<float>(), sizeof(float) * r.omega.size());
    return r;
  }

 private:
  PalTrainConfig c_;
  bool residual_ = false;
  // forward() of a torch Sequential is non-const.
  mutable nn::Sequential f_{nullptr};
  mutable std::vector<nn::Sequential> g_;
  torch::Tensor E_, C_, P_, omega_, theta_;
};

/// Floating-point operations of one training step (forward and backward, ~3x the forward's
/// multiply-adds, 2 flops each) of `batch` pairs: the projector on the items it maps, the ideal
/// points and rewards, and the prompt projectors.
double StepFlops(const Dataset& ds, const PalTrainConfig& c, int64_t batch) {
  const double D = ds.dim(), h = c.hidden, d = c.dim, K = c.k, B = static_cast<double>(batch);
  const double mlp_in = D * h + h * h + h * d;
  const double rows = 2 * B >= ds.n_items() ? ds.n_items() : 2 * B;
  double fwd = rows * mlp_in + B * (K * d + 8 * d);
  if (c.contexts) fwd += B * K * (ds.contexts.cols() * h + h * h + h * d);
  return 6 * fwd;
}

}  // namespace

PalTrainResult TrainPalTorch(const Dataset& ds, const PairSet& train, const PairSet* valid,
                             const PalTrainConfig& c) {
  PREFMIX_ASSERT(!train.empty() && c.k >= 1 && c.dim >= 1 && c.hidden >= 1, "pal: bad config");
  PalNet net(ds, c);
  torch::optim::Adam opt(net.Groups(), torch::optim::AdamOptions(c.lr));
  PairTensors tr = ToTensors(train);
  PairTensors va;
  if (valid && !valid->empty()) va = ToTensors(*valid);
  const bool has_valid = va.n > 0;
  const int64_t batch = c.batch > 0 ? std::min<int64_t>(c.batch, tr.n) : tr.n;
  // Torch's intra-op threads sized to a step's work (two threads lost 12 % on SUSHI-B's
  // 9-MFLOP steps, idle; more beside a busy core).
  ScopedThreads threads(ThreadsForStepFlops(StepFlops(ds, c, batch)));
  torch::Generator gen = at::detail::createCPUGenerator(c.seed + kBatchOrderStream);
  torch::Tensor all = torch::arange(tr.n, torch::kLong);
  torchglue::BestParameters<EarlyStopping> best{EarlyStopping(c.patience)};
  int ep = 0;
  for (ep = 1; ep <= c.epochs; ++ep) {
    ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
    torch::Tensor order = batch < tr.n ? torch::randperm(tr.n, gen, torch::kLong) : all;
    for (int64_t b = 0; b < tr.n; b += batch) {
      auto idx = order.slice(0, b, std::min(tr.n, b + batch));
      opt.zero_grad();
      auto loss = net.Loss(tr, idx);
      PREFMIX_CHECK_INPUT(std::isfinite(loss.item<double>()), "pal: training diverged (loss ",
                          loss.item<double>(), " at epoch ", ep, "); lower --lr");
      loss.backward();
      opt.step();
    }
    if (!has_valid) continue;
    if (best.Offer(net.EvalLoss(va), ep, net.Parameters())) break;
  }
  best.RestoreBest(net.Parameters());
  PalTrainResult r = net.Export(ds, train);
  r.best_valid = has_valid ? best.rule().best() : std::numeric_limits<double>::quiet_NaN();
  r.best_epoch = has_valid ? best.rule().best_epoch() : std::min(ep, c.epochs);
  return r;
}

namespace {
const bool kProvided = torchmodule::Provide("pal.train", &TrainPalTorch);
}  // namespace

}  // namespace prefmix::mixture
