#include "mixture/lowrank.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"

namespace prefmix::mixture {
namespace {

RowMatrixF Softmax(const RowMatrixF& omega) {
  RowMatrixF w(omega.rows(), omega.cols());
  for (Eigen::Index u = 0; u < omega.rows(); ++u) {
    float m = omega.row(u).maxCoeff();
    Eigen::RowVectorXf e = (omega.row(u).array() - m).exp();
    w.row(u) = e / e.sum();
  }
  return w;
}

/// Mean weighted BT loss of pairs under projections P and user weights W.
double PairLoss(const RowMatrixF& P, const RowMatrixF& W, const PairSet& pairs) {
  double s = 0, sw = 0;
  const int K = static_cast<int>(P.cols());
#pragma omp parallel for reduction(+ : s, sw) schedule(static)
  for (int64_t j = 0; j < (int64_t)pairs.size(); ++j) {
    const float* pa = P.data() + (int64_t)pairs.first[j] * K;
    const float* pb = P.data() + (int64_t)pairs.second[j] * K;
    const float* w = W.data() + (int64_t)pairs.user[j] * K;
    double x = 0;
    for (int k = 0; k < K; ++k) x += (double)(pa[k] - pb[k]) * w[k];
    s += pairs.weight[j] * math::BtLoss(x, pairs.label[j]);
    sw += pairs.weight[j];
  }
  return sw > 0 ? s / sw : 0.0;
}

}  // namespace

namespace {

// ---- Skinny GEMMs for the lowrank pass (PROPOSAL). E is [n, D] row-major, K <= 32 padded to
// KP = 8 * KB lanes. Eigen's GEMM packs E into blocks (a second copy of a 300 MB stream) and its
// OpenMP version synchronises threads at every k-block; these kernels stream E once per product
// with a static row split and one reduction at the end.
template <int KB, int R>
__attribute__((target("avx2,fma"))) void ProjectBlock(const float* E, int64_t D, int64_t rows,
                                                      const float* Vp, float* Pp) {
  constexpr int KP = 8 * KB;
  __m256 acc[R][KB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < KB; ++b) acc[r][b] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m256 v[KB];
    for (int b = 0; b < KB; ++b) v[b] = _mm256_loadu_ps(Vp + d * KP + 8 * b);
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const __m256 e = _mm256_broadcast_ss(E + r * D + d);
      for (int b = 0; b < KB; ++b) acc[r][b] = _mm256_fmadd_ps(e, v[b], acc[r][b]);
    }
  }
  for (int r = 0; r < R && r < rows; ++r)
    for (int b = 0; b < KB; ++b) _mm256_storeu_ps(Pp + r * KP + 8 * b, acc[r][b]);
}

template <int KB>
__attribute__((target("avx2,fma"))) void ProjectAvx2(const float* E, int64_t n, int64_t D,
                                                     const float* Vp, float* Pp) {
  constexpr int R = KB == 1 ? 8 : KB == 2 ? 4 : 2;
  constexpr int KP = 8 * KB;
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += R)
    ProjectBlock<KB, R>(E + i0 * D, D, std::min<int64_t>(R, n - i0), Vp, Pp + i0 * KP);
}

// One block of up to 8 rows of GradVAvx2, accumulated into the thread's gv. A function of its own
// (as ProjectBlock): clang does not give the OpenMP region's outlined body the enclosing
// function's target("avx2,fma"), so AVX intrinsics inside the region itself fail to compile.
template <int KB>
__attribute__((target("avx2,fma"))) void GradVBlock(const float* e, const float* g, int64_t rows,
                                                    int64_t D, float* gv) {
  constexpr int KP = 8 * KB;
  constexpr int DJ = KB == 1 ? 8 : KB == 2 ? 4 : 2;
  int64_t d0 = 0;
  for (; d0 + DJ <= D; d0 += DJ) {
    __m256 acc[DJ][KB];
    for (int j = 0; j < DJ; ++j)
      for (int b = 0; b < KB; ++b) acc[j][b] = _mm256_loadu_ps(gv + (d0 + j) * KP + 8 * b);
    for (int64_t r = 0; r < rows; ++r) {
      __m256 gr[KB];
      for (int b = 0; b < KB; ++b) gr[b] = _mm256_loadu_ps(g + r * KP + 8 * b);
      for (int j = 0; j < DJ; ++j) {
        const __m256 x = _mm256_broadcast_ss(e + r * D + d0 + j);
        for (int b = 0; b < KB; ++b) acc[j][b] = _mm256_fmadd_ps(x, gr[b], acc[j][b]);
      }
    }
    for (int j = 0; j < DJ; ++j)
      for (int b = 0; b < KB; ++b) _mm256_storeu_ps(gv + (d0 + j) * KP + 8 * b, acc[j][b]);
  }
  for (; d0 < D; ++d0)
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < KP; ++k) gv[d0 * KP + k] += e[r * D + d0] * g[r * KP + k];
}

template <int KB>
__attribute__((target("avx2,fma"))) void GradVAvx2(const float* E, int64_t n, int64_t D,
                                                   const float* Gp, float* part, int T) {
  constexpr int KP = 8 * KB;
  constexpr int R = 8;
  std::fill(part, part + static_cast<size_t>(T) * D * KP, 0.0f);
#pragma omp parallel num_threads(T)
  {
    float* gv = part + static_cast<size_t>(omp_get_thread_num()) * D * KP;
#pragma omp for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += R)
      GradVBlock<KB>(E + i0 * D, Gp + i0 * KP, std::min<int64_t>(R, n - i0), D, gv);
  }
  for (int t = 1; t < T; ++t)
    for (int64_t x = 0; x < D * KP; ++x) part[x] += part[static_cast<size_t>(t) * D * KP + x];
}

bool HaveAvx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

}  // namespace

LowRankPass LowRankLossAndGrad(const RowMatrixF& items, const PairSet& pairs,
                               const Eigen::MatrixXf& V, const RowMatrixF& omega, double l2,
                               RowMatrixF* proj) {
  LowRankWorkspace ws;
  return LowRankLossAndGrad(items, pairs, V, omega, l2, proj, &ws);
}

LowRankPass LowRankLossAndGrad(const RowMatrixF& items, const PairSet& pairs,
                               const Eigen::MatrixXf& V, const RowMatrixF& omega, double l2,
                               RowMatrixF* proj, LowRankWorkspace* ws) {
  const int K = static_cast<int>(V.cols());
  const int64_t n_items = items.rows(), U = omega.rows(), D = items.cols();
  const int T = omp_get_max_threads();
  const bool fast = HaveAvx2() && K <= 32;
  const int KB = (K + 7) / 8, KS = fast ? 8 * KB : K;  // KS: row stride of P and G
  // P (and the per-thread item gradients) are kept [n_items, KS], padded with zero lanes.
  RowMatrixF& P = ws->proj;
  P.resize(n_items, KS);
  if (fast) {
    RowMatrixF Vp = RowMatrixF::Zero(D, KS);
    Vp.leftCols(K) = V;
    switch (KB) {
      case 1:
        ProjectAvx2<1>(items.data(), n_items, D, Vp.data(), P.data());
        break;
      case 2:
        ProjectAvx2<2>(items.data(), n_items, D, Vp.data(), P.data());
        break;
      case 3:
        ProjectAvx2<3>(items.data(), n_items, D, Vp.data(), P.data());
        break;
      default:
        ProjectAvx2<4>(items.data(), n_items, D, Vp.data(), P.data());
        break;
    }
  } else {
    P.noalias() = items * V;
  }
  if (proj) *proj = P.leftCols(K);  // the old contract: proj holds E V
  RowMatrixF W = Softmax(omega);
  double sw = 0;
  for (float w : pairs.weight) sw += w;
  const double inv = sw > 0 ? 1.0 / sw : 0.0;
  // Per-thread accumulators, kept in the workspace across epochs (fresh pages cost ~16 us each).
  if ((int)ws->gp.size() != T || ws->gp[0].rows() != n_items || ws->gp[0].cols() != KS) {
    ws->gp.assign(T, RowMatrixF::Zero(n_items, KS));
  } else {
    for (auto& m : ws->gp) m.setZero();
  }
  if ((int)ws->gw.size() != T || ws->gw[0].rows() != U || ws->gw[0].cols() != K) {
    ws->gw.assign(T, RowMatrixF::Zero(U, K));
  } else {
    for (auto& m : ws->gw) m.setZero();
  }
  const int64_t m = static_cast<int64_t>(pairs.size());
  constexpr int64_t kAhead = 16;  // prefetch distance in pairs
  double loss = 0;
#pragma omp parallel reduction(+ : loss)
  {
    const int t = omp_get_thread_num();
    float* GP = ws->gp[t].data();
    float* GW = ws->gw[t].data();
#pragma omp for schedule(static)
    for (int64_t j = 0; j < m; ++j) {
      // The pass is bound by the latency of the random rows P[a], P[b], GP[a], GP[b]
      // (2 x 3.2 MB, beyond L2): fetch them kAhead pairs early.
      if (j + kAhead < m) {
        const int64_t a2 = pairs.first[j + kAhead], b2 = pairs.second[j + kAhead];
        __builtin_prefetch(P.data() + a2 * KS);
        __builtin_prefetch(P.data() + b2 * KS);
        __builtin_prefetch(GP + a2 * KS, 1);
        __builtin_prefetch(GP + b2 * KS, 1);
      }
      const int64_t a = pairs.first[j], b = pairs.second[j], u = pairs.user[j];
      const float* pa = P.data() + a * KS;
      const float* pb = P.data() + b * KS;
      const float* w = W.data() + u * K;
      double x = 0;
      for (int k = 0; k < K; ++k) x += (double)(pa[k] - pb[k]) * w[k];
      const double c = pairs.weight[j] * inv;
      double dx = 0;
      loss += c * math::BtLossAndGrad(x, pairs.label[j], &dx);
      const float g = static_cast<float>(c * dx);
      for (int k = 0; k < K; ++k) {
        GP[a * KS + k] += g * w[k];
        GP[b * KS + k] -= g * w[k];
        GW[u * K + k] += g * (pa[k] - pb[k]);
      }
    }
  }
  for (int t = 1; t < T; ++t) {
    ws->gp[0] += ws->gp[t];
    ws->gw[0] += ws->gw[t];
  }
  LowRankPass out;
  if (fast) {
    ws->part.resize(static_cast<size_t>(T) * D * KS);
    switch (KB) {
      case 1:
        GradVAvx2<1>(items.data(), n_items, D, ws->gp[0].data(), ws->part.data(), T);
        break;
      case 2:
        GradVAvx2<2>(items.data(), n_items, D, ws->gp[0].data(), ws->part.data(), T);
        break;
      case 3:
        GradVAvx2<3>(items.data(), n_items, D, ws->gp[0].data(), ws->part.data(), T);
        break;
      default:
        GradVAvx2<4>(items.data(), n_items, D, ws->gp[0].data(), ws->part.data(), T);
        break;
    }
    out.grad_v = Eigen::Map<const RowMatrixF>(ws->part.data(), D, KS).leftCols(K);
  } else {
    out.grad_v.noalias() = items.transpose() * ws->gp[0];
  }
  out.grad_v += static_cast<float>(2 * l2) * V;
  out.loss = loss + l2 * V.squaredNorm();
  out.grad_omega.resize(U, K);
  for (int64_t u = 0; u < U; ++u) {
    float dot = W.row(u).dot(ws->gw[0].row(u));
    out.grad_omega.row(u) = W.row(u).array() * (ws->gw[0].row(u).array() - dot);
  }
  return out;
}

namespace {

/// Seed streams (DeriveSeed(--seed, stream)).
constexpr uint64_t kInitStream = 101;       ///< the initial V and omega
constexpr uint64_t kPriorDrawStream = 202;  ///< the Bayes user step's Dirichlet prior draws

class LowRankModel : public Model {
 public:
  explicit LowRankModel(const ModelOptions&) {}
  std::string Family() const override { return "lowrank"; }
  int LatentDim() const override { return options_.Int("k"); }
  Eigen::VectorXf PopulationLatent() const override { return w0_; }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    const int max_epochs = options_.Int("epochs");
    FitReport rep;
    double l2 = options_.Real("l2");
    int epochs = max_epochs;
    RowMatrixF omega;
    if (!valid.empty()) {
      SelectOnValidation(
          "l2", L2Grid(l2, {1e-4, 1e-3, 1e-2}),
          [&](double g, int* be) { return Train(ds, train, &valid, g, max_epochs, be, &omega); },
          &rep, &l2, &epochs);
      // Select the user-step prior on pseudo-unseen users: support from training pairs, queries
      // from validation pairs, with the model trained without the validation pairs.
      int be = 0;
      Train(ds, train, &valid, l2, epochs, &be, &omega);
      FitPrior(Softmax(omega), train, ds.n_users());
      lambda_ = options_.Real("user_prior") >= 0 ? options_.Real("user_prior")
                                                 : SelectPrior(ds, train, valid, &rep);
      if (options_.Flag("refit"))
        Train(ds, Concat(train, valid), nullptr, l2, epochs, nullptr, &omega);
    } else {
      if (l2 < 0) l2 = 1e-4;
      Train(ds, train, nullptr, l2, max_epochs, nullptr, &omega);
      lambda_ = options_.Real("user_prior") >= 0 ? options_.Real("user_prior") : -1.0;  // Bayes
    }
    // Population latent: mean simplex weight of the users that had training pairs.
    RowMatrixF W = Softmax(omega);
    std::vector<char> has(ds.n_users(), 0);
    for (int32_t u : train.user) has[u] = 1;
    FitPrior(W, train, ds.n_users());
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (!has[u]) W.row(u) = w0_.transpose();
    SetTrainLatents(ds, W);
    rep.details["l2"] = l2;
    rep.details["epochs"] = epochs;
    if (lambda_ < 0) {
      rep.details["user_step"] = "bayes";
    } else {
      rep.details["user_step"] = "map";
      rep.details["user_prior"] = lambda_;
    }
    Json alpha = Json::Array();
    for (int k = 0; k < options_.Int("k"); ++k) alpha.push_back(static_cast<double>(alpha_[k]));
    rep.details["dirichlet_prior"] = alpha;
    rep.epochs_run = epochs;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    if (lambda_ < 0) return AdaptBayes(ds, support, n_users, device);
    return AdaptWith(ds, support, n_users, device, lambda_);
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    const int K = options_.Int("k");
    RowMatrixF P = ds.items * V_;
    std::vector<double> p(pairs.size());
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < (int64_t)pairs.size(); ++j) {
      double x = 0;
      for (int k = 0; k < K; ++k)
        x += (double)(P(pairs.first[j], k) - P(pairs.second[j], k)) * latents(pairs.user[j], k);
      p[j] = math::Sigmoid(x);
    }
    return p;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    RowMatrixF P = ds.items * V_;
    return latents * P.transpose();
  }

  Json Params() const override {
    Json j = Json::Object();
    j["shared"] = static_cast<int64_t>(V_.size());
    j["per_user"] = options_.Int("k");
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    SaveBase(os);
    cereal::PortableBinaryOutputArchive ar(os);
    ar(V_, w0_, alpha_, lambda_);
  }
  void LoadPayload(std::istream& is) override {
    LoadBase(is);
    cereal::PortableBinaryInputArchive ar(is);
    ar(V_, w0_, alpha_, lambda_);
    PREFMIX_CHECK_INPUT(V_.rows() == dim && V_.cols() == options_.Int("k") &&
                            w0_.size() == options_.Int("k") && alpha_.size() == options_.Int("k"),
                        "model file: lowrank basis has shape [", V_.rows(), ", ", V_.cols(),
                        "], expected [", dim, ", ", options_.Int("k"), "]");
  }

 private:
  /// Joint Adam on (V, Omega) from a seeded init. With `valid`, early stopping on its log loss:
  /// the parameters of the best epoch are kept and that loss returned.
  double Train(const Dataset& ds, const PairSet& tr, const PairSet* va, double l2, int epochs,
               int* best_epoch, RowMatrixF* omega_out) {
    const int K = options_.Int("k");
    const int64_t D = ds.dim(), U = ds.n_users();
    Rng rng(DeriveSeed(options_.seed, kInitStream));
    V_.resize(D, K);
    const float sv = 1.0f / std::sqrt(static_cast<float>(D));
    for (Eigen::Index i = 0; i < V_.size(); ++i)
      V_.data()[i] = sv * static_cast<float>(rng.Normal());
    RowMatrixF omega(U, K);
    for (Eigen::Index i = 0; i < omega.size(); ++i)
      omega.data()[i] = 0.5f * static_cast<float>(rng.Normal());
    const double lr = options_.Real("lr");
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    Eigen::MatrixXf mv = Eigen::MatrixXf::Zero(D, K), vv = mv;
    RowMatrixF mo = RowMatrixF::Zero(U, K), vo = mo;
    RowMatrixF P(ds.n_items(), K);
    LowRankWorkspace ws;  // buffers reused by every epoch
    EarlyStopping stop(options_.Int("patience"));
    Eigen::MatrixXf best_v = V_;
    RowMatrixF best_o = omega;
    for (int ep = 1; ep <= epochs; ++ep) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      LowRankPass pass = LowRankLossAndGrad(ds.items, tr, V_, omega, l2, &P, &ws);
      PREFMIX_CHECK_INPUT(std::isfinite(pass.loss), "lowrank: training diverged (loss ", pass.loss,
                          " at epoch ", ep, "); lower --lr");
      const double c1 = 1 - std::pow(b1, ep), c2 = 1 - std::pow(b2, ep);
      mv = b1 * mv + (1 - b1) * pass.grad_v;
      vv = b2 * vv + (1 - b2) * pass.grad_v.cwiseAbs2();
      V_.array() -= (lr / c1) * mv.array() / ((vv.array() / c2).sqrt() + eps);
      mo = b1 * mo + (1 - b1) * pass.grad_omega;
      vo = b2 * vo + (1 - b2) * pass.grad_omega.cwiseAbs2();
      omega.array() -= (lr / c1) * mo.array() / ((vo.array() / c2).sqrt() + eps);
      if (!va) continue;
      RowMatrixF Pn = ds.items * V_;
      double v = PairLoss(Pn, Softmax(omega), *va);
      if (stop.Better(v, ep)) {
        if (best_epoch) *best_epoch = ep;
        best_v = V_;
        best_o = omega;
      } else if (stop.Stop()) {
        break;
      }
    }
    if (va) {
      V_ = best_v;
      omega = best_o;
    }
    *omega_out = omega;
    return stop.best();
  }

  /// The batched user step with V frozen: q_j = (2y-1)(P[a]-P[b]), prior centre w0.
  RowMatrixF AdaptWith(const Dataset& ds, const PairSet& support, int64_t n_users,
                       const std::string& device, double lambda) const {
    const int K = options_.Int("k");
    RowMatrixF P = ds.items * V_;
    UserStepProblem prob = GatherUserStepProblem(P, support, n_users);
    prob.prior.assign(w0_.data(), w0_.data() + K);
    prob.lambda = lambda;
    RowMatrixF init(n_users, K);
    for (int64_t u = 0; u < n_users; ++u) init.row(u) = w0_.transpose();
    UserStepResult r = RunUserStep(UserStepLink::kLinear, prob, UserStepOptions{}, device, &init);
    for (int64_t u = 0; u < n_users; ++u)
      if (prob.offsets[u + 1] == prob.offsets[u]) r.latent.row(u) = w0_.transpose();
    return r.latent;
  }

  /// Chooses the prior strength by the log loss on validation pairs of pseudo-unseen users
  /// adapted from a few of their training pairs (k in {2, 5, 10}).
  double SelectPrior(const Dataset& ds, const PairSet& train, const PairSet& valid,
                     FitReport* rep) const {
    const int64_t U = ds.n_users();
    // A negative entry stands for the Bayes posterior mean under the fitted Dirichlet prior.
    const std::vector<double> grid = {-1, 0.01, 0.1, 1, 10, 100};
    std::vector<double> mean;
    const size_t best = SelectUserStepOnPseudoUnseen(
        train, U, {2, 5, 10}, grid.size(),
        [&](size_t g, const PairSet& support) {
          RowMatrixF lat = grid[g] < 0 ? AdaptBayes(ds, support, U, "cpu")
                                       : AdaptWith(ds, support, U, "cpu", grid[g]);
          return LogLoss(PredictProb(ds, valid, lat), valid.label);
        },
        &mean);
    Json curve = Json::Array();
    for (size_t g = 0; g < grid.size(); ++g) {
      Json e = Json::Object();
      if (grid[g] < 0)
        e["user_step"] = "bayes";
      else
        e["user_prior"] = grid[g];
      e["pseudo_unseen_log_loss"] = mean[g];
      curve.push_back(e);
    }
    rep->details["user_prior_selection"] = curve;
    return grid[best];
  }

  /// Population weight w0 (mean of the training users' w) and a Dirichlet prior fitted to the
  /// training users' w by the method of moments.
  void FitPrior(const RowMatrixF& W, const PairSet& train, int64_t n_users) {
    const int K = options_.Int("k");
    std::vector<char> has(n_users, 0);
    for (int32_t u : train.user) has[u] = 1;
    Eigen::VectorXd m = Eigen::VectorXd::Zero(K), m2 = Eigen::VectorXd::Zero(K);
    int64_t n = 0;
    for (int64_t u = 0; u < n_users; ++u) {
      if (!has[u]) continue;
      Eigen::VectorXd w = W.row(u).transpose().cast<double>();
      m += w;
      m2 += w.cwiseAbs2();
      ++n;
    }
    n = std::max<int64_t>(n, 1);
    m /= n;
    m2 /= n;
    w0_ = m.cast<float>();
    // Var(w_k) = m_k (1 - m_k) / (s + 1): one precision s, the median over k.
    std::vector<double> sk;
    for (int k = 0; k < K; ++k) {
      double var = m2[k] - m[k] * m[k];
      if (var > 1e-12 && m[k] > 1e-6 && m[k] < 1 - 1e-6) sk.push_back(m[k] * (1 - m[k]) / var - 1);
    }
    double s = 1.0;
    if (!sk.empty()) {
      std::nth_element(sk.begin(), sk.begin() + sk.size() / 2, sk.end());
      s = sk[sk.size() / 2];
    }
    s = std::min(std::max(s, 0.05), 1000.0);
    alpha_ = (s * m).cwiseMax(1e-3).cast<float>();
  }

  /// Posterior mean of w_u under the Dirichlet prior by self-normalised importance sampling with
  /// a fixed, seeded set of prior draws; users whose effective sample size is too small for the
  /// estimate to be trusted (many, very informative pairs) fall back to the MAP step.
  RowMatrixF AdaptBayes(const Dataset& ds, const PairSet& support, int64_t n_users,
                        const std::string& device) const {
    constexpr int kSamples = 4096;
    constexpr double kMinEss = 16;
    const int K = options_.Int("k");
    Rng rng(DeriveSeed(options_.seed, kPriorDrawStream));
    RowMatrixF S(kSamples, K);
    for (int m = 0; m < kSamples; ++m) {
      double z = 0;
      for (int k = 0; k < K; ++k) z += (S(m, k) = static_cast<float>(rng.Gamma(alpha_[k]) + 1e-30));
      S.row(m) /= static_cast<float>(z);
    }
    RowMatrixF P = ds.items * V_;
    auto by = support.ByUser(n_users);
    RowMatrixF out(n_users, K);
    std::vector<char> fallback(n_users, 0);
#pragma omp parallel
    {
      Eigen::VectorXd ll(kSamples);
      Eigen::VectorXf q(K);
#pragma omp for schedule(dynamic, 8)
      for (int64_t u = 0; u < n_users; ++u) {
        if (by[u].empty()) {
          out.row(u) = w0_.transpose();
          continue;
        }
        ll.setZero();
        for (size_t j : by[u]) {
          const float sgn = support.label[j] > 0.5f ? 1.0f : -1.0f;
          for (int k = 0; k < K; ++k)
            q[k] = sgn * (P(support.first[j], k) - P(support.second[j], k));
          Eigen::VectorXf x = S * q;
          for (int m = 0; m < kSamples; ++m) ll[m] += support.weight[j] * math::LogSigmoid(x[m]);
        }
        const double mx = ll.maxCoeff();
        Eigen::VectorXd p = (ll.array() - mx).exp();
        p /= p.sum();
        const double ess = 1.0 / p.squaredNorm();
        if (ess < kMinEss) fallback[u] = 1;
        out.row(u) = (S.transpose().cast<double>() * p).transpose().cast<float>();
      }
    }
    bool any = false;
    for (char f : fallback) any |= f != 0;
    if (any) {
      PairSet rest;
      for (int64_t u = 0; u < n_users; ++u)
        if (fallback[u])
          for (size_t j : by[u]) rest.PushFrom(support, j);
      RowMatrixF map = AdaptWith(ds, rest, n_users, device, 1.0);
      for (int64_t u = 0; u < n_users; ++u)
        if (fallback[u]) out.row(u) = map.row(u);
    }
    return out;
  }

  Eigen::MatrixXf V_;      ///< [D, K] shared basis
  Eigen::VectorXf w0_;     ///< population weights (prior centre, cold start)
  Eigen::VectorXf alpha_;  ///< Dirichlet prior of the user weights (Bayes user step)
  double lambda_ = 1.0;    ///< MAP user-step prior strength; < 0 selects the Bayes user step
};

OptionSpec LowRankK() {
  OptionSpec k = opt::K(4, false);
  k.max = math::kMaxK;
  return k;
}

const bool kRegistered = RegisterFamily(
    {"lowrank",
     "LoRe-style low-rank rewards r_u(e) = e'V softmax(w_u); joint Adam; batched simplex user step",
     {LowRankK(), opt::Epochs(500), opt::Lr("0.05"), opt::L2("-1", "< 0: chosen on validation"),
      opt::Patience(50),
      opt::UserPrior("-1",
                     "< 0: chosen on held-out training users, or Bayes without validation pairs"),
      opt::Refit()},
     [](const ModelOptions& o) { return std::make_unique<LowRankModel>(o); },
     1,
     {},
     ""});

}  // namespace
}  // namespace prefmix::mixture
