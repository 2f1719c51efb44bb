// Families `pal-a` and `pal-b` (mixture/pal.h): the frozen-parameter maths in Eigen (rewards,
// the batched user step, predictions), model selection, the model file, and the registrations.
// The shared step (LibTorch) is in pal_train.cpp.
#include "mixture/pal.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>

#include "core/device.h"
#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/model/model.h"
#include "core/torch/module.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "mixture/pal_train.h"

namespace prefmix::mixture {

// Training runs in the LibTorch module (mixture/pal_train.cpp), loaded on first use; prediction,
// adaptation and the model file stay here.
PalTrainResult TrainPal(const Dataset& ds, const PairSet& train, const PairSet* valid,
                        const PalTrainConfig& c) {
  return torchmodule::Need<decltype(TrainPal)>("pal.train", "pal-a / pal-b training")(ds, train,
                                                                                      valid, c);
}

// ---------------------------------------------------------------------------------------------
// Projectors and rewards.

namespace {

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

inline double Act(double x, bool gelu) {
  return gelu ? 0.5 * x * (1.0 + std::erf(x * kInvSqrt2)) : (x > 0 ? x : 0.0);
}
inline double ActGrad(double x, bool gelu) {
  if (!gelu) return x > 0 ? 1.0 : 0.0;
  return 0.5 * (1.0 + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5 * x * x);
}

}  // namespace

int64_t PalMlp::NumParams() const {
  int64_t n = 0;
  for (const auto& w : weight) n += w.size();
  for (const auto& b : bias) n += b.size();
  return n;
}

RowMatrixD PalMlp::Forward(const RowMatrixD& x) const {
  RowMatrixD h = x;
  const size_t L = weight.size();
  for (size_t l = 0; l < L; ++l) {
    RowMatrixD next = h * weight[l].cast<double>().transpose();
    next.rowwise() += bias[l].cast<double>().transpose();
    if (l + 1 < L) next = next.unaryExpr([this](double v) { return Act(v, gelu); });
    h = std::move(next);
  }
  if (residual) h += x;
  return h;
}

Eigen::VectorXd PalMlp::Backward(const Eigen::VectorXd& x, const Eigen::VectorXd& gy) const {
  const size_t L = weight.size();
  std::vector<Eigen::VectorXd> pre(L);
  Eigen::VectorXd h = x;
  for (size_t l = 0; l < L; ++l) {
    pre[l] = weight[l].cast<double>() * h + bias[l].cast<double>();
    if (l + 1 < L) h = pre[l].unaryExpr([this](double v) { return Act(v, gelu); });
  }
  Eigen::VectorXd g = gy;
  for (size_t l = L; l-- > 0;) {
    if (l + 1 < L)
      for (Eigen::Index i = 0; i < g.size(); ++i) g[i] *= ActGrad(pre[l][i], gelu);
    g = weight[l].cast<double>().transpose() * g;
  }
  if (residual) g += gy;
  return g;
}

PalIdeal ParsePalIdeal(const std::string& s) {
  if (s == "Pw") return PalIdeal::kPw;
  if (s == "f(Pw)") return PalIdeal::kFPw;
  if (s == "f(P)w") return PalIdeal::kFP;
  throw Error(Cat("--ideal: '", s, "' is not one of Pw, f(Pw), f(P)w"));
}

const char* PalIdealName(PalIdeal ideal) {
  switch (ideal) {
    case PalIdeal::kPw:
      return "Pw";
    case PalIdeal::kFPw:
      return "f(Pw)";
    case PalIdeal::kFP:
      return "f(P)w";
  }
  throw InternalError("PalIdealName: unknown value");
}

double PalParams::Scale() const {
  return cosine ? std::min(std::exp(log_scale), kPalMaxScale) : 1.0;
}

RowMatrixD PalParams::Basis() const {
  RowMatrixD P = protos.cast<double>();
  return ideal == PalIdeal::kFP ? f.Forward(P) : P;
}

int64_t PalParams::NumParams() const {
  int64_t n = f.NumParams() + protos.size() + (cosine ? 1 : 0);
  for (const auto& m : g) n += m.NumParams();
  return n;
}

double PalReward(bool cosine, double scale, const double* z, const double* a, int64_t d,
                 double* grad_a) {
  if (!cosine) {
    double s2 = kPalEps;
    for (int64_t i = 0; i < d; ++i) s2 += (z[i] - a[i]) * (z[i] - a[i]);
    const double n = std::sqrt(s2);
    if (grad_a)
      for (int64_t i = 0; i < d; ++i) grad_a[i] = (z[i] - a[i]) / n;
    return -n;
  }
  double zz = kPalEps, aa = kPalEps, za = 0;
  for (int64_t i = 0; i < d; ++i) {
    zz += z[i] * z[i];
    aa += a[i] * a[i];
    za += z[i] * a[i];
  }
  const double nz = std::sqrt(zz), na = std::sqrt(aa);
  if (grad_a)
    for (int64_t i = 0; i < d; ++i)
      grad_a[i] = scale * (z[i] / (nz * na) - za * a[i] / (nz * na * aa));
  return scale * za / (nz * na);
}

RowMatrixD PalSoftmax(const RowMatrixD& omega) {
  RowMatrixD w(omega.rows(), omega.cols());
  for (Eigen::Index u = 0; u < omega.rows(); ++u) {
    const double m = omega.row(u).maxCoeff();
    w.row(u) = (omega.row(u).array() - m).exp();
    w.row(u) /= w.row(u).sum();
  }
  return w;
}

PalPairInputs MakePalPairInputs(const PalParams& p, const Dataset& ds, const PairSet& pairs) {
  PalPairInputs in;
  const size_t m = pairs.size();
  // Items: only those the pairs reference, each projected once.
  std::vector<int32_t> slot(ds.n_items(), -1);
  std::vector<int32_t> used;
  auto item = [&](int32_t i) {
    PREFMIX_ASSERT(i >= 0 && i < ds.n_items(), "pal: item index ", i, " out of range");
    if (slot[i] < 0) {
      slot[i] = static_cast<int32_t>(used.size());
      used.push_back(i);
    }
    return slot[i];
  };
  in.za.resize(m);
  in.zb.resize(m);
  for (size_t j = 0; j < m; ++j) {
    in.za[j] = item(pairs.first[j]);
    in.zb[j] = item(pairs.second[j]);
  }
  RowMatrixD e(used.size(), ds.dim());
  for (size_t r = 0; r < used.size(); ++r) e.row(r) = ds.items.row(used[r]).cast<double>();
  in.z = p.f.Forward(e);
  in.basis = p.Basis();
  in.ctx.assign(m, -1);
  if (!p.g.empty() && ds.has_contexts) {
    std::vector<int32_t> cslot(ds.contexts.rows(), -1), cused;
    for (size_t j = 0; j < m; ++j) {
      const int32_t c = pairs.context[j];
      if (c < 0) continue;
      PREFMIX_ASSERT(c < ds.contexts.rows(), "pal: context index ", c, " out of range");
      if (cslot[c] < 0) {
        cslot[c] = static_cast<int32_t>(cused.size());
        cused.push_back(c);
      }
      in.ctx[j] = cslot[c];
    }
    const int K = p.K();
    RowMatrixD C(cused.size(), ds.contexts.cols());
    for (size_t r = 0; r < cused.size(); ++r) C.row(r) = ds.contexts.row(cused[r]).cast<double>();
    in.ctx_basis.resize(cused.size() * K, p.Dim());
    for (int k = 0; k < K; ++k) {
      RowMatrixD G = p.g[k].Forward(C);
      for (size_t r = 0; r < cused.size(); ++r) in.ctx_basis.row(r * K + k) = G.row(r);
    }
  }
  return in;
}

// ---------------------------------------------------------------------------------------------
// The user step.

double PalUserObjective(const PalParams& p, const PalPairInputs& in, const PairSet& pairs,
                        const std::vector<size_t>& idx, const double* omega, const double* omega0,
                        double lambda, bool hinge, double* grad) {
  const int K = p.K();
  const int64_t d = p.Dim();
  const double scale = p.Scale();
  const bool mapped = p.ideal == PalIdeal::kFPw;
  Eigen::VectorXd w(K);
  const double mx = *std::max_element(omega, omega + K);
  for (int k = 0; k < K; ++k) w[k] = std::exp(omega[k] - mx);
  w /= w.sum();
  // The context-free ideal point (shared by the user's pairs without a context).
  Eigen::VectorXd pre = in.basis.transpose() * w;
  Eigen::VectorXd shared = mapped ? Eigen::VectorXd(p.f.Forward(pre.transpose()).transpose()) : pre;
  Eigen::VectorXd g_shared = Eigen::VectorXd::Zero(d), g_w = Eigen::VectorXd::Zero(K);
  Eigen::VectorXd a_ctx(d), ga(d), gb(d), g_a(d);
  bool any_shared = false;
  double J = 0;
  for (size_t j : idx) {
    const int32_t c = in.ctx[j];
    const double* a = shared.data();
    if (c >= 0) {
      a_ctx = in.ctx_basis.middleRows(static_cast<int64_t>(c) * K, K).transpose() * w;
      a = a_ctx.data();
    }
    const double ra = PalReward(p.cosine, scale, in.z.row(in.za[j]).data(), a, d, ga.data());
    const double rb = PalReward(p.cosine, scale, in.z.row(in.zb[j]).data(), a, d, gb.data());
    const double x = ra - rb, cw = pairs.weight[j];
    double dx = 0;
    if (hinge) {
      const double y = pairs.label[j] > 0.5f ? 1.0 : -1.0;
      const double h = 1.0 - y * x;
      J += cw * (h > 0 ? h : 0.0);
      dx = h > 0 ? -y : 0.0;
    } else {
      J += cw * math::BtLossAndGrad(x, pairs.label[j], &dx);
    }
    if (!grad) continue;
    g_a = (cw * dx) * (ga - gb);
    if (c >= 0) {
      g_w += in.ctx_basis.middleRows(static_cast<int64_t>(c) * K, K) * g_a;
    } else {
      g_shared += g_a;
      any_shared = true;
    }
  }
  double prior = 0;
  for (int k = 0; k < K; ++k) prior += (omega[k] - omega0[k]) * (omega[k] - omega0[k]);
  J += 0.5 * lambda * prior;
  if (grad) {
    if (any_shared) g_w += in.basis * (mapped ? p.f.Backward(pre, g_shared) : g_shared);
    const double dot = w.dot(g_w);
    for (int k = 0; k < K; ++k) grad[k] = w[k] * (g_w[k] - dot) + lambda * (omega[k] - omega0[k]);
  }
  return J;
}

namespace {

/// Logit offset of the corner starts of the MAP user step.
constexpr double kCornerOffset = 4.0;

/// `steps` full-batch Adam steps on J_u from *om, the step size decayed linearly to 0.
void AdamUserRun(const PalParams& p, const PalPairInputs& in, const PairSet& pairs,
                 const std::vector<size_t>& idx, const Eigen::VectorXd& omega0,
                 const PalUserStepOptions& o, int steps, Eigen::VectorXd* om) {
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const int K = p.K();
  Eigen::VectorXd g(K), m = Eigen::VectorXd::Zero(K), v = Eigen::VectorXd::Zero(K);
  for (int t = 1; t <= steps; ++t) {
    PalUserObjective(p, in, pairs, idx, om->data(), omega0.data(), o.lambda, o.hinge, g.data());
    const double lr = o.lr * (1.0 - static_cast<double>(t - 1) / steps);
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g.cwiseAbs2();
    const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
    om->array() -= lr * (m.array() / c1) / ((v.array() / c2).sqrt() + eps);
  }
}

}  // namespace

bool PalUsesSharedUserStep(const PalParams& p, const PairSet& support,
                           const PalUserStepOptions& o) {
  if (!p.cosine || !p.g.empty() || o.hinge || o.adam || !(o.lambda > 0)) return false;
  for (float y : support.label)
    if (y != 0.0f && y != 1.0f) return false;
  return true;
}

namespace {

/// Convergence of the shared user step (BFGS on omega): |dJ/domega|_inf below this.
constexpr double kSharedStepTol = 1e-6;
constexpr int kSharedStepMaxIter = 200;

/// pal-b without prompt projectors on core's `normalized` link: per item once,
/// v_ik = f(e_i).p_k / sqrt(|f(e_i)|^2 + eps), gathered per pair; G = P P'.
RowMatrixD PalSharedUserStep(const PalParams& p, const Dataset& ds, const PairSet& support,
                             int64_t n_users, const Eigen::VectorXd& omega0,
                             const PalUserStepOptions& o, const std::string& device) {
  const int K = p.K();
  std::vector<int32_t> used;
  std::vector<char> seen(ds.n_items(), 0);
  for (size_t j = 0; j < support.size(); ++j)
    for (int32_t i : {support.first[j], support.second[j]}) {
      PREFMIX_ASSERT(i >= 0 && i < ds.n_items(), "pal: item index ", i, " out of range");
      if (!seen[i]) {
        seen[i] = 1;
        used.push_back(i);
      }
    }
  RowMatrixD e(used.size(), ds.dim());
  for (size_t r = 0; r < used.size(); ++r) e.row(r) = ds.items.row(used[r]).cast<double>();
  RowMatrixD z = p.f.Forward(e);
  const RowMatrixD P = p.Basis();  // [K, d]
  for (Eigen::Index r = 0; r < z.rows(); ++r)
    z.row(r) /= std::sqrt(z.row(r).squaredNorm() + kPalEps);
  const RowMatrixD zp = z * P.transpose();  // [used, K]
  RowMatrixF values = RowMatrixF::Zero(ds.n_items(), K);
  for (size_t r = 0; r < used.size(); ++r) values.row(used[r]) = zp.row(r).cast<float>();
  UserStepProblem prob = GatherUserStepProblem(values, support, n_users);
  const RowMatrixD G = P * P.transpose();
  prob.gram.resize(static_cast<size_t>(K) * K);
  for (int a = 0; a < K; ++a)
    for (int b = 0; b < K; ++b) prob.gram[a * K + b] = static_cast<float>(G(a, b));
  prob.scale = p.Scale();
  prob.norm_eps = kPalEps;
  prob.lambda = o.lambda;
  prob.prior.resize(K);
  for (int k = 0; k < K; ++k) prob.prior[k] = static_cast<float>(omega0[k]);
  UserStepOptions so;
  so.max_iter = kSharedStepMaxIter;
  so.tol = kSharedStepTol;
  const UserStepResult r = RunUserStep(UserStepLink::kNormalized, prob, so, device);
  RowMatrixD out = r.logits;
  const auto by = support.ByUser(n_users);
  for (int64_t u = 0; u < n_users; ++u)
    if (by[u].empty()) out.row(u) = omega0.transpose();
  return out;
}

}  // namespace

RowMatrixD PalUserStep(const PalParams& p, const Dataset& ds, const PairSet& support,
                       int64_t n_users, const Eigen::VectorXd& omega0, const PalUserStepOptions& o,
                       const std::string& device) {
  const int K = p.K();
  PREFMIX_ASSERT(omega0.size() == K, "pal: omega0 has ", omega0.size(), " entries, K = ", K);
  RowMatrixD out(n_users, K);
  for (int64_t u = 0; u < n_users; ++u) out.row(u) = omega0.transpose();
  if (support.empty()) return out;
  for (int32_t u : support.user)
    PREFMIX_ASSERT(u >= 0 && u < n_users, "pal: support user ", u, " out of range");
  if (PalUsesSharedUserStep(p, support, o))
    return PalSharedUserStep(p, ds, support, n_users, omega0, o, device);
  PREFMIX_CHECK_INPUT(device == "cpu", "--device ", device, ": ", p.cosine ? "pal-b" : "pal-a",
                      "'s user step with this setting (",
                      p.cosine ? "prompt projectors, hinge loss or no prior" : "pal-a",
                      ") runs on the CPU only; use --device cpu");
  const PalPairInputs in = MakePalPairInputs(p, ds, support);
  const auto by = support.ByUser(n_users);
  // The MAP setting (lambda > 0) also probes a start near each prototype's corner with a short
  // run and runs the full schedule from whichever start got lowest: J is not convex in omega
  // (f(Pw) especially), and the corners are where sparse users sit.
  const bool probe = o.lambda > 0 && K > 1;
  const int probe_steps = std::max(1, o.steps / 10);
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t u = 0; u < n_users; ++u) {
    if (by[u].empty()) continue;
    auto run = [&](Eigen::VectorXd om, int steps) {
      AdamUserRun(p, in, support, by[u], omega0, o, steps, &om);
      return om;
    };
    Eigen::VectorXd start = omega0;
    if (probe) {
      double best = INFINITY;
      for (int k = -1; k < K; ++k) {
        Eigen::VectorXd s0 = omega0;
        if (k >= 0) s0[k] += kCornerOffset;
        const Eigen::VectorXd om = run(s0, probe_steps);
        const double J = PalUserObjective(p, in, support, by[u], om.data(), omega0.data(), o.lambda,
                                          o.hinge, nullptr);
        if (J < best) {
          best = J;
          start = s0;
        }
      }
    }
    out.row(u) = run(start, o.steps).transpose();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Predictions.

namespace {

/// Context-free ideal points [w.rows(), d] of the rows of w.
RowMatrixD SharedIdeal(const PalParams& p, const RowMatrixD& basis, const RowMatrixF& w) {
  RowMatrixD a = w.cast<double>() * basis;
  return p.ideal == PalIdeal::kFPw ? p.f.Forward(a) : a;
}

}  // namespace

std::vector<double> PalPairMargins(const PalParams& p, const Dataset& ds, const PairSet& pairs,
                                   const RowMatrixF& w) {
  const PalPairInputs in = MakePalPairInputs(p, ds, pairs);
  const RowMatrixD A = SharedIdeal(p, in.basis, w);
  const int K = p.K();
  const int64_t d = p.Dim();
  const double scale = p.Scale();
  std::vector<double> out(pairs.size());
#pragma omp parallel
  {
    Eigen::VectorXd a_ctx(d);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < static_cast<int64_t>(pairs.size()); ++j) {
      const int32_t u = pairs.user[j], c = in.ctx[j];
      const double* a = A.row(u).data();
      if (c >= 0) {
        a_ctx = in.ctx_basis.middleRows(static_cast<int64_t>(c) * K, K).transpose() *
                w.row(u).transpose().cast<double>();
        a = a_ctx.data();
      }
      out[j] = PalReward(p.cosine, scale, in.z.row(in.za[j]).data(), a, d, nullptr) -
               PalReward(p.cosine, scale, in.z.row(in.zb[j]).data(), a, d, nullptr);
    }
  }
  return out;
}

RowMatrixF PalScore(const PalParams& p, const Dataset& ds, const RowMatrixF& w) {
  const RowMatrixD Z = p.f.Forward(ds.items.cast<double>());
  const RowMatrixD A = SharedIdeal(p, p.Basis(), w);
  const RowMatrixD dot = A * Z.transpose();
  const Eigen::VectorXd zz = Z.rowwise().squaredNorm(), aa = A.rowwise().squaredNorm();
  const double scale = p.Scale();
  RowMatrixF out(A.rows(), Z.rows());
  for (Eigen::Index u = 0; u < A.rows(); ++u)
    for (Eigen::Index i = 0; i < Z.rows(); ++i) {
      if (p.cosine)
        out(u, i) = static_cast<float>(scale * dot(u, i) /
                                       (std::sqrt(zz[i] + kPalEps) * std::sqrt(aa[u] + kPalEps)));
      else
        out(u, i) =
            static_cast<float>(-std::sqrt(std::max(zz[i] + aa[u] - 2 * dot(u, i), 0.0) + kPalEps));
    }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The model.

namespace {

/// Adam steps of the user step when it is run to convergence (MAP).
constexpr int kConvergedSteps = 300;
/// Pairs per training step when --batch is 0 (PAL's 4 is far too small for CPU throughput;
/// on the ideal-point preset 4096 matches full-batch accuracy in fewer epochs).
constexpr int kDefaultBatch = 4096;
/// --k auto: K is chosen on validation loss among these, after d is chosen at kAutoFirstK.
constexpr int kAutoKGrid[] = {2, 4, 8, 16};
constexpr int kAutoFirstK = 4;

class PalModel : public Model {
 public:
  PalModel(const ModelOptions& o, bool cosine) : cosine_(cosine) {
    ideal_ = cosine ? PalIdeal::kPw : ParsePalIdeal(o.Text("ideal"));
  }
  std::string Family() const override { return cosine_ ? "pal-b" : "pal-a"; }
  int LatentDim() const override { return options_.Int("k"); }
  Eigen::VectorXf PopulationLatent() const override {
    return PalSoftmax(omega0_.transpose()).row(0).transpose().cast<float>();
  }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    bool ctx = false;
    if (cosine_ && ds.has_contexts)
      for (int32_t c : train.context) ctx |= c >= 0;
    context_dim = ctx ? ds.contexts.cols() : 0;
    const std::vector<int> grid = DimGrid(ds.dim());
    const bool auto_k = options_.Auto("k");
    PREFMIX_CHECK_INPUT(!auto_k || !valid.empty(), "--k auto: ", Family(),
                        " chooses K on validation pairs, and there are none (--valid-fraction 0?); "
                        "give a number");
    if (auto_k) options_.Set("k", kAutoFirstK);
    PalTrainConfig cfg = BaseConfig(ctx);
    FitReport rep;
    PalTrainResult fit;
    if (!valid.empty()) {
      // d (and with --k auto then K) on the validation loss (early-stopped runs), then the user
      // step on pseudo-unseen users, with the train-only model; then the refit on train +
      // validation.
      Json curve = Json::Array();
      double best = std::numeric_limits<double>::infinity();
      auto trial = [&](int k, int d) {
        PalTrainConfig c = cfg;
        c.k = k;
        c.dim = d;
        c.hidden = std::max(options_.Int("hidden"), d);
        PalTrainResult r = TrainPal(ds, train, &valid, c);
        Json e = Json::Object();
        if (auto_k) e["k"] = k;
        e["dim"] = d;
        e["hidden"] = c.hidden;
        e["valid_loss"] = r.best_valid;
        e["epochs"] = r.best_epoch;
        curve.push_back(e);
        if (r.best_valid < best) {
          best = r.best_valid;
          cfg = c;
          fit = std::move(r);
        }
      };
      for (int d : grid) trial(options_.Int("k"), d);
      if (auto_k) {
        // Coordinate search: d at K = kAutoFirstK, then K at that d.
        const int d = cfg.dim;
        for (int k : kAutoKGrid)
          if (k != kAutoFirstK) trial(k, d);
        // From here on the model is a K = cfg.k model (model file, latents, user step).
        options_.Set("k", cfg.k);
        rep.details["k_criterion"] = "validation loss";
      }
      rep.details["selection"] = curve;
      cfg.epochs = std::max(fit.best_epoch, 1);
      params_ = fit.params;
      SetPopulation(fit.omega, train, ds.n_users());
      step_ = SelectUserStep(ds, train, valid, &rep);
      seen_step_ = SelectSeenStep(ds, train, valid, fit.omega, &rep);
      if (options_.Flag("refit")) {
        const PairSet all = Concat(train, valid);
        fit = TrainPal(ds, all, nullptr, cfg);
        params_ = fit.params;
        SetPopulation(fit.omega, all, ds.n_users());
        SetTrainLatents(ds, SeenLatents(ds, all, fit.omega));
      } else {
        SetTrainLatents(ds, SeenLatents(ds, train, fit.omega));
      }
    } else {
      cfg.dim = grid[grid.size() / 2];
      cfg.hidden = std::max(options_.Int("hidden"), cfg.dim);
      fit = TrainPal(ds, train, nullptr, cfg);
      params_ = fit.params;
      SetPopulation(fit.omega, train, ds.n_users());
      step_ = DefaultUserStep();
      seen_step_.reset();
      SetTrainLatents(ds, SeenLatents(ds, train, fit.omega));
    }
    rep.details["k"] = options_.Int("k");
    rep.details["dim"] = cfg.dim;
    rep.details["hidden"] = cfg.hidden;
    rep.details["epochs"] = cfg.epochs;
    rep.details["ideal"] = PalIdealName(ideal_);
    rep.details["loss"] = options_.Text("loss");
    rep.details["contexts"] = ctx;
    if (cosine_) rep.details["scale"] = params_.Scale();
    Json us = Json::Object();
    us["lambda"] = step_.lambda;
    us["steps"] = step_.steps;
    us["lr"] = step_.lr;
    rep.details["user_step"] = us;
    if (seen_step_) {
      Json ss = Json::Object();
      ss["lambda"] = seen_step_->lambda;
      ss["steps"] = seen_step_->steps;
      rep.details["seen_latents"] = ss;
    } else {
      rep.details["seen_latents"] = "joint";
    }
    rep.epochs_run = cfg.epochs;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    CheckDevice(device);
    return PalSoftmax(PalUserStep(params_, ds, support, n_users, omega0_, step_, device))
        .cast<float>();
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    std::vector<double> p = PalPairMargins(params_, ds, pairs, latents);
    for (double& x : p) x = math::Sigmoid(x);
    return p;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    return PalScore(params_, ds, latents);
  }

  Json Params() const override {
    Json j = Json::Object();
    j["shared"] = params_.NumParams();
    j["per_user"] = options_.Int("k");
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    SaveBase(os);
    cereal::PortableBinaryOutputArchive ar(os);
    const int32_t ideal = static_cast<int32_t>(params_.ideal);
    const uint32_t n_g = static_cast<uint32_t>(params_.g.size());
    ar(params_.cosine, ideal, params_.protos, params_.log_scale, omega0_, step_.lambda, step_.steps,
       step_.lr, step_.hinge, n_g);
    SaveMlp(ar, params_.f);
    for (const auto& g : params_.g) SaveMlp(ar, g);
  }

  void LoadPayload(std::istream& is) override {
    LoadBase(is);
    cereal::PortableBinaryInputArchive ar(is);
    int32_t ideal = 0;
    uint32_t n_g = 0;
    ar(params_.cosine, ideal, params_.protos, params_.log_scale, omega0_, step_.lambda, step_.steps,
       step_.lr, step_.hinge, n_g);
    PREFMIX_CHECK_INPUT(ideal >= 0 && ideal <= 2 && params_.cosine == cosine_ &&
                            (n_g == 0 || n_g == static_cast<uint32_t>(options_.Int("k"))),
                        "model file: ", Family(), " payload is inconsistent (ideal ", ideal, ", ",
                        n_g, " prompt projectors)");
    params_.ideal = static_cast<PalIdeal>(ideal);
    params_.f = LoadMlp(ar);
    params_.g.clear();
    for (uint32_t k = 0; k < n_g; ++k) params_.g.push_back(LoadMlp(ar));
    const int64_t pd = params_.ideal == PalIdeal::kPw ? params_.f.OutDim() : dim;
    PREFMIX_CHECK_INPUT(
        params_.f.InDim() == dim && params_.protos.rows() == options_.Int("k") &&
            params_.protos.cols() == pd && omega0_.size() == options_.Int("k") && step_.steps >= 0,
        "model file: ", Family(), " parameters have shapes f [", params_.f.InDim(), " -> ",
        params_.f.OutDim(), "], P [", params_.protos.rows(), ", ", params_.protos.cols(),
        "]; expected input dimension ", dim, " and K = ", options_.Int("k"));
    for (const auto& g : params_.g)
      PREFMIX_CHECK_INPUT(g.InDim() == context_dim && g.OutDim() == params_.f.OutDim(),
                          "model file: ", Family(), " prompt projector has shape [", g.InDim(),
                          " -> ", g.OutDim(), "], expected [", context_dim, " -> ",
                          params_.f.OutDim(), "]");
  }

 private:
  static void SaveMlp(cereal::PortableBinaryOutputArchive& ar, const PalMlp& m) {
    ar(m.weight, m.bias, m.gelu, m.residual);
  }
  static PalMlp LoadMlp(cereal::PortableBinaryInputArchive& ar) {
    PalMlp m;
    ar(m.weight, m.bias, m.gelu, m.residual);
    bool ok = !m.weight.empty() && m.weight.size() == m.bias.size();
    for (size_t l = 0; ok && l < m.weight.size(); ++l) {
      ok = m.bias[l].size() == m.weight[l].rows() &&
           (l == 0 || m.weight[l].cols() == m.weight[l - 1].rows());
    }
    ok = ok && (!m.residual || m.InDim() == m.OutDim());
    PREFMIX_CHECK_INPUT(ok, "model file: a PAL projector's layer shapes do not chain");
    return m;
  }

  /// Candidate projected dimensions d: --dim when given; d = D for f(Pw); PAL's 512 (at most D)
  /// on wide embeddings; {4, 8, 16}, chosen on validation, on small-D data (D <= 64).
  std::vector<int> DimGrid(int64_t D) const {
    if (ideal_ == PalIdeal::kFPw) {
      PREFMIX_CHECK_INPUT(options_.Int("dim") == 0 || options_.Int("dim") == D,
                          "--ideal f(Pw) maps the "
                          "prototypes with f, so it needs --dim equal to the embedding dimension ",
                          D, " (got ", options_.Int("dim"), "; or leave --dim 0)");
      return {static_cast<int>(D)};
    }
    if (options_.Int("dim") > 0) return {options_.Int("dim")};
    if (D > 64) return {static_cast<int>(std::min<int64_t>(D, 512))};
    return {4, 8, 16};
  }

  PalTrainConfig BaseConfig(bool ctx) const {
    PalTrainConfig c;
    c.cosine = cosine_;
    c.ideal = ideal_;
    c.k = options_.Int("k");
    c.hinge = options_.Text("loss") == "hinge";
    c.contexts = ctx;
    c.epochs = options_.Int("epochs");
    c.batch = options_.Int("batch");
    c.lr = options_.Real("lr");
    c.lr_proto = 50 * c.lr;  // PAL: 5e-3 for P and W against 1e-4 for the projectors
    c.lr_scale = 0.1;        // PAL's logit_scale step size
    // PAL's projector weight decay (0.01, coupled Adam L2 on a mean loss) shrinks f far too much
    // over our few hundred steps (ideal-point preset, seed 1: validation loss 0.426 against
    // 0.379 without); it stays available as --l2 0.01.
    c.l2 = options_.Real("l2");
    c.patience = options_.Int("patience");
    c.seed = options_.seed;
    return c;
  }

  PalUserStepOptions DefaultUserStep() const {
    PalUserStepOptions s;
    s.hinge = options_.Text("loss") == "hinge";
    s.lambda = options_.Real("user_prior") >= 0 ? options_.Real("user_prior") : 1.0;
    s.steps = kConvergedSteps;
    return s;
  }

  /// The population: w0 = the mean simplex weight of the users with pairs, omega0 = log w0
  /// (centred).
  void SetPopulation(const RowMatrixF& omega, const PairSet& pairs, int64_t n_users) {
    std::vector<char> has(n_users, 0);
    for (int32_t u : pairs.user) has[u] = 1;
    const RowMatrixD W = PalSoftmax(omega.cast<double>());
    Eigen::VectorXd m = Eigen::VectorXd::Zero(options_.Int("k"));
    int64_t n = 0;
    for (int64_t u = 0; u < n_users; ++u)
      if (has[u]) {
        m += W.row(u).transpose();
        ++n;
      }
    m /= std::max<int64_t>(n, 1);
    omega0_ = m.array().max(1e-12).log().matrix();
    omega0_.array() -= omega0_.mean();
  }

  /// Candidate user steps: lambda = 0 rows are PAL's early-stopped Adam, the others the MAP
  /// step; only the MAP step at --user-prior when that is given.
  std::vector<PalUserStepOptions> UserStepGrid() const {
    std::vector<PalUserStepOptions> grid;
    PalUserStepOptions base;
    base.hinge = options_.Text("loss") == "hinge";
    if (options_.Real("user_prior") >= 0) {
      base.lambda = options_.Real("user_prior");
      base.steps = kConvergedSteps;
      grid.push_back(base);
      return grid;
    }
    if (cosine_ && params_.g.empty() && !base.hinge) {
      // pal-b without prompt projectors: the MAP step on core's shared user step only (one
      // code path for seen and new users); the prior's strength replaces early stopping.
      for (double lambda : {0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0}) {
        base.lambda = lambda;
        base.steps = kConvergedSteps;
        grid.push_back(base);
      }
      return grid;
    }
    for (int steps : {10, 30, 100, 300}) {
      base.lambda = 0;
      base.steps = steps;
      grid.push_back(base);
    }
    for (double lambda : {0.1, 1.0, 10.0}) {
      base.lambda = lambda;
      base.steps = kConvergedSteps;
      grid.push_back(base);
    }
    return grid;
  }

  static Json StepEntry(const PalUserStepOptions& s, const char* key, double loss) {
    Json e = Json::Object();
    e["lambda"] = s.lambda;
    e["steps"] = s.steps;
    e[key] = loss;
    return e;
  }

  /// The user step for new users, by the validation loss of pseudo-unseen users: every training
  /// user adapted from k in {2, 5, 10} of its training pairs, scored on its validation pairs.
  PalUserStepOptions SelectUserStep(const Dataset& ds, const PairSet& train, const PairSet& valid,
                                    FitReport* rep) const {
    const std::vector<PalUserStepOptions> grid = UserStepGrid();
    const int64_t U = ds.n_users();
    std::vector<double> mean;
    const size_t best = SelectUserStepOnPseudoUnseen(
        train, U, {2, 5, 10}, grid.size(),
        [&](size_t g, const PairSet& support) {
          RowMatrixF lat =
              PalSoftmax(PalUserStep(params_, ds, support, U, omega0_, grid[g])).cast<float>();
          return ValidLoss(ds, valid, lat);
        },
        &mean);
    Json curve = Json::Array();
    for (size_t g = 0; g < grid.size(); ++g)
      curve.push_back(StepEntry(grid[g], "pseudo_unseen_loss", mean[g]));
    rep->details["user_step_selection"] = curve;
    return grid[best];
  }

  /// The training users' latents: the jointly trained weights ("joint", nullopt) or the user
  /// step re-run on all of their training pairs, whichever has the lower validation loss.
  /// (Joint training fits each omega_u freely; with a few dozen pairs per user the shrinkage of
  /// the user step can predict their held-out pairs better.)
  std::optional<PalUserStepOptions> SelectSeenStep(const Dataset& ds, const PairSet& train,
                                                   const PairSet& valid, const RowMatrixF& omega,
                                                   FitReport* rep) const {
    const std::vector<PalUserStepOptions> grid = UserStepGrid();
    Json curve = Json::Array();
    double best = ValidLoss(ds, valid, PalSoftmax(omega.cast<double>()).cast<float>());
    Json joint = Json::Object();
    joint["latents"] = "joint";
    joint["valid_loss"] = best;
    curve.push_back(joint);
    std::optional<PalUserStepOptions> choice;
    for (const auto& g : grid) {
      RowMatrixF lat =
          PalSoftmax(PalUserStep(params_, ds, train, ds.n_users(), omega0_, g)).cast<float>();
      const double v = ValidLoss(ds, valid, lat);
      curve.push_back(StepEntry(g, "valid_loss", v));
      if (v < best) {
        best = v;
        choice = g;
      }
    }
    rep->details["seen_latents_selection"] = curve;
    return choice;
  }

  /// Latents of every user of ds: the seen step (or the joint weights) for users with pairs,
  /// the population for the others.
  RowMatrixF SeenLatents(const Dataset& ds, const PairSet& pairs, const RowMatrixF& omega) const {
    RowMatrixD om = seen_step_ ? PalUserStep(params_, ds, pairs, ds.n_users(), omega0_, *seen_step_)
                               : RowMatrixD(omega.cast<double>());
    std::vector<char> has(ds.n_users(), 0);
    for (int32_t u : pairs.user) has[u] = 1;
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (!has[u]) om.row(u) = omega0_.transpose();
    return PalSoftmax(om).cast<float>();
  }

  /// The training loss (BT log loss or hinge) of pairs under user weights lat.
  double ValidLoss(const Dataset& ds, const PairSet& pairs, const RowMatrixF& lat) const {
    std::vector<double> x = PalPairMargins(params_, ds, pairs, lat);
    const bool hinge = options_.Text("loss") == "hinge";  // once, not per pair
    double s = 0, sw = 0;
    for (size_t j = 0; j < x.size(); ++j) {
      const double c = pairs.weight[j];
      if (hinge) {
        const double y = pairs.label[j] > 0.5f ? 1.0 : -1.0;
        s += c * std::max(0.0, 1.0 - y * x[j]);
      } else {
        s += c * math::BtLoss(x[j], pairs.label[j]);
      }
      sw += c;
    }
    return sw > 0 ? s / sw : 0.0;
  }

  bool cosine_;
  PalIdeal ideal_ = PalIdeal::kPw;
  PalParams params_;
  Eigen::VectorXd omega0_;   ///< population log-weights (user-step start and prior centre)
  PalUserStepOptions step_;  ///< the selected user step
  std::optional<PalUserStepOptions> seen_step_;  ///< how training users' latents were formed
};

std::vector<OptionSpec> PalOptions(bool with_ideal) {
  std::vector<OptionSpec> v = {
      opt::K(4, true),
      opt::Dim(0, "0: {4, 8, 16} chosen on validation for D <= 64, else min(D, 512)"),
      opt::Epochs(300),
      opt::Lr("1e-3", "the prototypes and user weights step 50x this"),
      opt::Batch(kDefaultBatch, ""),
      opt::L2("0", "projector weight decay"),
      opt::Hidden(64),
      opt::Patience(20),
      opt::UserPrior("-1",
                     "< 0: the user step is chosen on held-out training users, 1 without "
                     "validation pairs"),
      opt::Refit(),
      opt::Text("loss", "bt", {"bt", "hinge"}, "training loss: Bradley-Terry, or PAL's hinge")};
  v[0].max = math::kMaxK;
  if (with_ideal)
    v.push_back(opt::Text("ideal", "Pw", {"Pw", "f(Pw)", "f(P)w"},
                          "the ideal point: a = P'w, PAL's f(Pw) (needs --dim = D) or f(P)w"));
  return v;
}

const bool kRegisteredA = RegisterFamily(
    {"pal-a",
     "PAL-A ideal point: r_u(e) = -|f(e) - a_u|, a_u = P'softmax(omega_u) (or f(Pw), f(P)w); "
     "LibTorch + Adam; batched user step on omega_u",
     PalOptions(true),
     [](const ModelOptions& o) { return std::make_unique<PalModel>(o, false); },
     3,
     {},
     ""});

const bool kRegisteredB = RegisterFamily(
    {"pal-b",
     "PAL-B ideal point: r_u(c, e) = s cos(f(e), sum_k w_uk g_k(c)) (learned p_k without "
     "contexts); LibTorch + Adam; batched user step on omega_u",
     PalOptions(false),
     [](const ModelOptions& o) { return std::make_unique<PalModel>(o, true); },
     4,
     {},
     ""});

}  // namespace
}  // namespace prefmix::mixture
