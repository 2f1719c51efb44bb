// Family `gppl`: see personalization/gppl.h for the model and the inference.
#include "personalization/gppl.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <unordered_map>

#include "core/device.h"
#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/serialize.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"

namespace prefmix::personalization {

using math::LogNormalCdf;
using math::NormalHazard;

namespace {
constexpr double kSqrt2 = 1.4142135623730951;
// Seed streams of this family.
constexpr uint64_t kLengthScaleStream = 0x6770706c01ULL;
constexpr uint64_t kInducingStream = 0x6770706c02ULL;
constexpr uint64_t kInitStream = 0x6770706c03ULL;
constexpr uint64_t kBatchStream = 0x6770706c04ULL;
constexpr uint64_t kInducingUserStream = 0x6770706c05ULL;
}  // namespace

std::vector<double> MedianLengthScales(const RowMatrixF& items, double factor, uint64_t seed) {
  const int64_t n = items.rows(), D = items.cols();
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  if (n > 1000) {
    Rng rng(DeriveSeed(seed, kLengthScaleStream));
    for (int64_t i = 0; i < 1000; ++i) std::swap(rows[i], rows[i + rng.Below(n - i)]);
    rows.resize(1000);
  }
  auto median = [](std::vector<double>& v) {
    if (v.empty()) return 0.0;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  std::vector<double> out;
  if (D <= kGpplArdMaxDim) {
    for (int64_t d = 0; d < D; ++d) {
      std::vector<double> diff;
      for (size_t i = 0; i < rows.size(); ++i)
        for (size_t j = i + 1; j < rows.size(); ++j) {
          const double x = std::fabs(double(items(rows[i], d)) - items(rows[j], d));
          if (x > 0) diff.push_back(x);
        }
      out.push_back(median(diff) * factor);
    }
  } else {
    std::vector<double> dist;
    for (size_t i = 0; i < rows.size(); ++i)
      for (size_t j = i + 1; j < rows.size(); ++j)
        dist.push_back((items.row(rows[i]) - items.row(rows[j])).cast<double>().norm());
    const double m = median(dist);
    out.push_back(m > 0 ? m * factor : 1.0);
  }
  return out;
}

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
/// Row-major: the item maps, whose rows (one per item) are read pair by pair.
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// The item kernel: Matern 3/2 on the length-scaled distance, or the identity (k = 1 for equal
/// embeddings, else 0).
struct ItemKernel {
  bool identity = false;
  std::vector<double> inv_ls;  ///< one per feature (ARD) or one for all features

  double operator()(const float* x, const float* y, int64_t D) const {
    if (identity) {
      for (int64_t d = 0; d < D; ++d)
        if (x[d] != y[d]) return 0.0;
      return 1.0;
    }
    double r2 = 0;
    const bool ard = inv_ls.size() > 1;
    for (int64_t d = 0; d < D; ++d) {
      const double s = (double(x[d]) - y[d]) * (ard ? inv_ls[d] : inv_ls[0]);
      r2 += s * s;
    }
    const double r = std::sqrt(3.0 * r2);
    return (1.0 + r) * std::exp(-r);
  }
};

/// A Gaussian factor over the M inducing values, kept in natural parameters (precision, shift)
/// and moments (mean, covariance).
struct GaussFactor {
  Mat prec, cov;
  Vec shift, mean;
  void Moments() {
    Eigen::LLT<Mat> llt(prec);
    PREFMIX_ASSERT(llt.info() == Eigen::Success, "gppl: a posterior precision is not positive");
    cov = llt.solve(Mat::Identity(prec.rows(), prec.cols()));
    mean = llt.solve(shift);
  }
  double LogDetCov() const {
    Eigen::LLT<Mat> llt(prec);
    return -2.0 * llt.matrixLLT().diagonal().array().log().sum();
  }
};

/// Gamma(shape, rate) factor of an inverse scale.
struct GammaFactor {
  double shape = 1, rate = 1;
  double Mean() const { return shape / rate; }
  double MeanLog() const { return std::log(rate) * -1.0 + Digamma(shape); }
  static double Digamma(double x) {
    double r = 0;
    while (x < 6) {
      r -= 1 / x;
      x += 1;
    }
    const double f = 1 / (x * x);
    return r + std::log(x) - 0.5 / x -
           f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
  }
  /// KL(this || Gamma(a0, b0)).
  double Kl(double a0, double b0) const {
    return (shape - a0) * Digamma(shape) - std::lgamma(shape) + std::lgamma(a0) +
           a0 * (std::log(rate) - std::log(b0)) + shape * (b0 - rate) / rate;
  }
};

/// k-means++ seeding of at most m of `rows` (rows of X) in the kernel's metric, distance^2 =
/// 2 - 2 k(x, z); sorted, distinct.
std::vector<int64_t> KMeansPlusPlus(const RowMatrixF& X, const std::vector<int64_t>& rows,
                                    const ItemKernel& kernel, int64_t m, Rng& rng) {
  std::vector<int64_t> chosen;
  std::vector<double> d2(rows.size(), INFINITY);
  size_t next = rng.Below(rows.size());
  for (int64_t k = 0; k < m; ++k) {
    chosen.push_back(rows[next]);
    const float* z = X.row(rows[next]).data();
    double total = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const double d = 2.0 - 2.0 * kernel(X.row(rows[i]).data(), z, X.cols());
      d2[i] = std::min(d2[i], std::max(d, 0.0));
      total += d2[i];
    }
    if (total <= 0) break;
    double r = rng.Uniform() * total;
    next = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      r -= d2[i];
      if (r <= 0) {
        next = i;
        break;
      }
    }
  }
  std::sort(chosen.begin(), chosen.end());
  chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  return chosen;
}

/// Median-heuristic length-scales of X's rows `rows` as inverse length-scales; scaled by sqrt(D)
/// (D = the varying features) when `scale` (more points than inducing points: see
/// ChooseInducing).
std::vector<double> InverseLengthScales(const RowMatrixF& X, const std::vector<int64_t>& rows,
                                        double factor, uint64_t seed, bool scale) {
  RowMatrixF sub(rows.size(), X.cols());
  for (size_t k = 0; k < rows.size(); ++k) sub.row(k) = X.row(rows[k]);
  std::vector<double> ls = MedianLengthScales(sub, factor, seed);
  if (scale && ls.size() > 1) {
    int64_t varying = 0;
    for (double l : ls) varying += l > 0;
    for (double& l : ls) l *= std::sqrt(static_cast<double>(std::max<int64_t>(varying, 1)));
  }
  std::vector<double> inv;
  for (double l : ls) inv.push_back(l > 0 ? 1.0 / l : 0.0);
  return inv;
}

enum class Variant { kCrowd, kPerUser, kPooled };

Variant ParseVariant(const std::string& s) {
  if (s == "crowd") return Variant::kCrowd;
  if (s == "per-user") return Variant::kPerUser;
  PREFMIX_CHECK_INPUT(s == "pooled", "--gppl-users: '", s,
                      "' is not one of crowd, per-user, pooled");
  return Variant::kPooled;
}

/// Pairs of one batch in the model's working form: items renumbered to the rows of `A` (the
/// batch's items mapped onto the inducing values), pairs grouped by user.
}  // namespace

Eigen::MatrixXd ScatterThroughItems(const RowMat& A, const std::vector<int32_t>& a,
                                    const std::vector<int32_t>& b,
                                    const std::vector<int64_t>& offsets,
                                    const std::vector<int64_t>& xoff, const std::vector<double>& x,
                                    const Mat& P0) {
  const int64_t n_items = A.rows(), users = static_cast<int64_t>(offsets.size()) - 1;
  Mat L = Mat::Zero(n_items, n_items);
  for (int64_t k = 0; k < users; ++k) {
    const int64_t p0 = offsets[k], n = offsets[k + 1] - p0;
    const Eigen::Map<const Mat> X(x.data() + xoff[k], n, n);
    for (int64_t l = 0; l < n; ++l)
      for (int64_t i = 0; i < n; ++i) {
        const double v = X(i, l);
        const int32_t ai = a[p0 + i], bi = b[p0 + i], al = a[p0 + l], bl = b[p0 + l];
        L(ai, al) += v;
        L(bi, bl) += v;
        L(ai, bl) -= v;
        L(bi, al) -= v;
      }
  }
  const Mat ALA = A.transpose() * (L * A);
  Mat s = static_cast<double>(users) * P0 - P0 * ALA * P0;
  return 0.5 * (s + s.transpose());
}

namespace {

struct Batch {
  RowMat A;                      ///< [n_items_batch, M]
  std::vector<int32_t> a, b;     ///< item rows of the pair (first, second)
  std::vector<double> sign, w;   ///< +1 when the first is preferred, else -1; weight
  std::vector<int32_t> user;     ///< the pair's user (dataset row)
  std::vector<size_t> index;     ///< the pair's index in the PairSet the batch was made from
  std::vector<int64_t> users;    ///< distinct users, in order
  std::vector<int64_t> offsets;  ///< user users[k] owns pairs [offsets[k], offsets[k + 1])
  uint64_t id = 0;               ///< unique per MakeBatch call (the moments cache's key)
  size_t size() const { return a.size(); }
};

class GpplModel : public Model {
 public:
  explicit GpplModel(const ModelOptions& o) {
    variant_ = ParseVariant(o.Text("gppl_users"));
    C_ = variant_ == Variant::kCrowd ? o.Int("components") : 0;
    const std::string residual = o.Text("gppl_residual");
    has_g_ = variant_ == Variant::kPerUser || (variant_ == Variant::kCrowd && residual != "off");
    learned_ = variant_ == Variant::kCrowd && residual == "learned";
    auto_residual_ = variant_ == Variant::kCrowd && residual == "auto";
    const std::string uf = o.Text("user_features");
    PREFMIX_CHECK_INPUT(uf == "off" || variant_ == Variant::kCrowd, "--user-features ", uf,
                        ": only --gppl-users crowd has user weights w_c(u)");
    Cf_ = uf == "all" ? C_ : uf == "half" ? (C_ + 1) / 2 : 0;
  }

  std::string Family() const override { return "gppl"; }
  /// Latent row: (mean, variance) of w_u (crowd), then, for g_u (per-user, or crowd with the
  /// residual), its means at the M inducing items, the variances of its deviations from their
  /// mean level and the variance of that level (see CenteredVariances). Payload version 1
  /// (until 2026-12-07) had no level column, and plain marginal variances.
  int LatentDim() const override {
    return 2 * C_ + (has_g_ ? 2 * M() + (legacy_latents_ ? 0 : 1) : 0);
  }
  int GOffset() const { return 2 * C_; }
  /// Prior rate of s^g: the paper's GPPL rate (--gamma-rate-t) for per-user, else the residual's.
  double RateG() const {
    return variant_ == Variant::kPerUser ? options_.Real("gamma_rate_t")
                                         : options_.Real("gamma_rate_g");
  }

  Eigen::VectorXf PopulationLatent() const override {
    Eigen::VectorXf z = Eigen::VectorXf::Zero(LatentDim());
    if (variant_ == Variant::kCrowd)
      for (int c = 0; c < C_; ++c) z[C_ + c] = static_cast<float>(1.0 / sw_[c].Mean());
    if (has_g_) {
      const Mat& prior_cov = gprior_;
      Vec cv;
      double lv = 0;
      CenteredVariances(prior_cov.diagonal(), prior_cov.rowwise().sum(), &cv, &lv);
      WriteG(z.data(), Vec::Zero(M()), cv, lv);
    }
    return z;
  }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    auto t0 = std::chrono::steady_clock::now();
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    SetThreads(options_.threads);
    // Eigen's own threads split each product (M x M, a millisecond) in a parallel region of its
    // own: thousands of regions a fit, each waiting for a thread that another job may hold. The
    // fit's threads work in its own loops (per user, per pair chunk); Eigen runs serial.
    struct EigenSerial {
      int before = Eigen::nbThreads();
      EigenSerial() { Eigen::setNbThreads(1); }
      ~EigenSerial() { Eigen::setNbThreads(before); }
    } eigen_serial;
    // A Bayesian model needs no held-out selection of its priors: the validation pairs are
    // training data. The one exception is --gppl-residual auto: the ELBO prefers the kernel
    // residual on SUSHI even where the learned one predicts better (notebook §12), so the two are
    // compared on the validation pairs' log loss, fitted on the training pairs alone.
    PairSet all = train;
    for (size_t j = 0; j < valid.size(); ++j) all.PushFrom(valid, j);
    Json selection = Json::Array();
    if (auto_residual_) {
      bool pick = false;
      if (!valid.empty()) {
        double best = INFINITY;
        for (bool learned : {false, true}) {
          learned_ = learned;
          FitAll(ds, train);
          const double loss = LogLoss(PredictProb(ds, valid, TrainLatents()), valid.label);
          Json e = Json::Object();
          e["residual"] = learned ? "learned" : "kernel";
          e["valid_log_loss"] = loss;
          selection.push_back(e);
          if (loss < best) {
            best = loss;
            pick = learned;
          }
        }
      }
      learned_ = pick;
      // The model file records the residual chosen (and loads as that).
      options_.Set("gppl_residual", pick ? "learned" : "kernel");
    }
    FitReport rep = FitAll(ds, all);
    if (auto_residual_) {
      rep.details["residual_selection"] = selection;
      rep.details["residual"] = learned_ ? "learned" : "kernel";
    }
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

 private:
  /// Fit on `all` (train + validation), every factor from its prior.
  FitReport FitAll(const Dataset& ds, const PairSet& all) {
    auto t0 = std::chrono::steady_clock::now();
    ChooseInducing(ds, all);
    if (Cf_ > 0) {
      ChooseInducingUsers(ds, all);
      au_ = UserMap(ds.user_features, ds.n_users());
    }

    // Users with pairs, and the batches (whole users per batch).
    const auto by_user = all.ByUser(ds.n_users());
    std::vector<int64_t> active;
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (!by_user[u].empty()) active.push_back(u);
    const int64_t n_pairs = static_cast<int64_t>(all.size());
    const int64_t batch_pairs = options_.Int("batch") > 0
                                    ? options_.Int("batch")
                                    : (n_pairs <= kFullBatchMax ? n_pairs : 2000);
    const bool full = batch_pairs >= n_pairs;
    const double forget =
        options_.Real("svi_forget") >= 0 ? options_.Real("svi_forget") : (full ? 0.0 : 0.9);
    const int max_steps = options_.Int("epochs") > 0 ? options_.Int("epochs") : (full ? 100 : 20);

    // Priors and the initial posterior (= prior; users' means random to break the symmetry).
    wp_users_ = active;
    Init(ds.n_users());
    Rng rng(DeriveSeed(options_.seed, kInitStream));
    if (variant_ == Variant::kCrowd)
      for (int64_t u : active) {
        for (int c = 0; c < C_; ++c) wm_(u, c) = rng.Normal();
        wS_[u] = Mat::Identity(C_, C_) * 0.1;
      }

    Batch whole;
    if (full) whole = MakeBatch(ds, all, AllIndices(all));

    FitReport rep;
    std::vector<double> elbo_trace;
    double prev = -INFINITY;
    int steps = 0;
    std::vector<int64_t> order = active;
    Rng batch_rng(DeriveSeed(options_.seed, kBatchStream));
    bool converged = false;
    // The steps' parallel loops gain on idle cores and lose beside another job: time both.
    AdaptiveThreads threads;
    for (int epoch = 0; epoch < max_steps && !converged; ++epoch) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      if (!full)
        for (size_t i = order.size(); i > 1; --i)
          std::swap(order[i - 1], order[batch_rng.Below(i)]);
      size_t k = 0;
      while (k < order.size()) {
        std::vector<size_t> idx;
        size_t k0 = k;
        while (k < order.size() && (idx.empty() || (int64_t)idx.size() < batch_pairs)) {
          for (size_t j : by_user[order[k]]) idx.push_back(j);
          ++k;
        }
        const double scale = static_cast<double>(order.size()) / static_cast<double>(k - k0);
        const double step = std::pow(steps + options_.Real("svi_delay"), -forget);
        if (steps > 0) threads.Begin();  // the first step (no local step) is not typical
        if (full) {
          Step(whole, scale, step, 1, steps > 0);
        } else {
          Step(MakeBatch(ds, all, idx), scale, step, 5, steps > 0);
        }
        if (steps > 0) threads.End();
        ++steps;
      }
      if (full) {
        const double e = Elbo(whole);
        elbo_trace.push_back(e);
        PREFMIX_CHECK_INPUT(std::isfinite(e), "gppl: the ELBO became ", e,
                            " (non-finite) at iteration ", epoch + 1);
        if (std::fabs(e - prev) <= kTol * std::fabs(e)) converged = true;
        prev = e;
      }
    }
    // The local factors after the last global step, on every user's pairs.
    if (!full) whole = MakeBatch(ds, all, AllIndices(all));
    if (variant_ != Variant::kPooled) {
      LocalStep(whole, full ? 1 : 50);
      elbo_trace.push_back(Elbo(whole));
    }
    // Training latents: each user's posterior (mean, variance); users without pairs: the prior.
    RowMatrixF lat(ds.n_users(), LatentDim());
    const Eigen::VectorXf pop = PopulationLatent();
    for (int64_t u = 0; u < ds.n_users(); ++u)
      lat.row(u) = (by_user[u].empty() ? (Cf_ > 0 ? ColdLatent(au_.row(u)) : pop) : UserLatent(u))
                       .transpose();
    SetTrainLatents(ds, std::move(lat));
    ReleaseLocal();

    rep.epochs_run = static_cast<int>(elbo_trace.size());
    rep.details["variant"] = options_.Text("gppl_users");
    rep.details["inducing_items"] = static_cast<int64_t>(M());
    rep.details["exact_items"] = M() == ds.n_items();
    rep.details["components"] = C_;
    if (Cf_ > 0) {
      rep.details["user_feature_components"] = Cf_;
      rep.details["inducing_users"] = static_cast<int64_t>(Zu_.rows());
    }
    rep.details["batch_pairs"] = static_cast<int64_t>(std::min(batch_pairs, n_pairs));
    rep.details["svi_steps"] = steps;
    rep.details["forget"] = forget;
    rep.details["converged"] = converged;
    if (!elbo_trace.empty()) rep.details["elbo"] = elbo_trace.back();
    if (elbo_trace.size() <= 1000) {
      Json trace = Json::Array();
      for (double e : elbo_trace) trace.push_back(e);
      rep.details["elbo_trace"] = trace;
    }
    Json ls = Json::Array();
    for (double x : kernel_.inv_ls) ls.push_back(x > 0 ? 1.0 / x : 0.0);
    rep.details["length_scales"] = ls;
    rep.details["length_scale_rule"] =
        kernel_.identity ? "identity"
        : kernel_.inv_ls.size() <= 1
            ? "median distance"
            : (scaled_ard_ ? "per-feature median x sqrt(D) (more items than inducing points)"
                           : "per-feature median");
    Json sv = Json::Array(), sw = Json::Array();
    for (int c = 0; c < C_; ++c) {
      sv.push_back(sv_[c].Mean());
      sw.push_back(sw_[c].Mean());
    }
    rep.details["scale_v"] = sv;
    rep.details["scale_w"] = sw;
    rep.details["scale_t"] = variant_ == Variant::kPerUser ? sg_.Mean() : st_.Mean();
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

 public:
  /// New users with V and t frozen: the Laplace posterior of x_u = (w_u, g_u at the inducing
  /// items) by the engine's batched user step (the gaussian link, CPU or CUDA): prior N(0,
  /// blockdiag(diag(1 / E[s_c^w]), K_ZZ / E[s^g])), likelihood Phi((t(a) - t(b) + f_u(a) -
  /// f_u(b)) / sqrt(2 + Var[t(a) - t(b)] + sum_c Var[v_c(a) - v_c(b)] / E[s_c^w])) per support
  /// pair. Latent rows: the mode and the marginal variances (of the mean-field version over w_u
  /// and g_u when both are there, as the training users').
  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    CheckDevice(device);
    RowMatrixF out(n_users, LatentDim());
    if (LatentDim() == 0) return out;
    const Eigen::VectorXf pop = PopulationLatent();
    // With user features, each new user's prior over w_u is centred at h(x_u) (the cold start).
    Mat au;
    if (Cf_ > 0) {
      PREFMIX_CHECK_INPUT(
          ds.user_features.rows() >= n_users && ds.user_features.cols() == Zu_.cols(), ds.source,
          ": gppl was trained with --user-features ", options_.Text("user_features"), " on ",
          Zu_.cols(), " user features; users/features here is ", ds.user_features.rows(), "x",
          ds.user_features.cols(), " for ", n_users, " users");
      au = UserMap(ds.user_features, n_users);
    }
    for (int64_t u = 0; u < n_users; ++u)
      out.row(u) = (Cf_ > 0 ? ColdLatent(au.row(u)) : pop).transpose();
    if (support.empty()) return out;
    const Batch bt = MakeBatch(ds, support, AllIndices(support));
    // Prior means of the support users' w_u (0 without user features): the step solves for the
    // deviation w_u - mu_u, the means moved into the pairs' offsets.
    Mat mu = Mat::Zero(bt.users.size(), C_);
    for (size_t k = 0; k < bt.users.size() && Cf_ > 0; ++k)
      for (int c = 0; c < Cf_; ++c) mu(k, c) = au.row(bt.users[k]).dot(h_[c].mean);
    std::vector<int64_t> pair_user(bt.size());
    for (size_t k = 0; k < bt.users.size(); ++k)
      for (int64_t j = bt.offsets[k]; j < bt.offsets[k + 1]; ++j) pair_user[j] = k;
    const ItemMoments im = Moments(bt);
    const int C = C_, Mg = has_g_ ? M() : 0, K = C + Mg;
    const bool crowd = variant_ == Variant::kCrowd;
    UserStepProblem p;
    p.K = K;
    p.n_users = static_cast<int64_t>(bt.users.size());
    p.offsets = bt.offsets;
    p.q.resize(bt.size() * K);
    p.offset.resize(bt.size());
    p.weight.resize(bt.size());
    std::vector<double> pair_scale(bt.size());
    for (size_t j = 0; j < bt.size(); ++j) {
      // The probit's noise: 2, plus the frozen t's and V's posterior variances on the pair
      // (V's weighted by the prior second moments of w).
      double noise = 2.0;
      const int64_t k = pair_user[j];
      if (crowd) {
        noise += im.tvar[j];
        for (int c = 0; c < C; ++c)
          noise += im.vvar(j, c) * (1.0 / sw_[c].Mean() + mu(k, c) * mu(k, c));
      }
      const double scale = bt.sign[j] / std::sqrt(noise);
      pair_scale[j] = scale;
      float* q = p.q.data() + j * K;
      for (int c = 0; c < C; ++c)
        q[c] = static_cast<float>(scale * (im.vm(bt.a[j], c) - im.vm(bt.b[j], c)));
      for (int m = 0; m < Mg; ++m)
        q[C + m] = static_cast<float>(scale * (bt.A(bt.a[j], m) - bt.A(bt.b[j], m)));
      double off = 0;
      if (crowd) {
        off = im.tm[bt.a[j]] - im.tm[bt.b[j]];
        for (int c = 0; c < Cf_; ++c) off += (im.vm(bt.a[j], c) - im.vm(bt.b[j], c)) * mu(k, c);
      }
      p.offset[j] = static_cast<float>(scale * off);
      p.weight[j] = static_cast<float>(bt.w[j]);
    }
    p.precision.assign(static_cast<size_t>(K) * K, 0.0);
    for (int c = 0; c < C; ++c) p.precision[c * K + c] = sw_[c].Mean();
    for (int a = 0; a < Mg; ++a)
      for (int b = 0; b < Mg; ++b) p.precision[(C + a) * K + C + b] = gprior_inv_(a, b);
    // Training users' latents are mean-field (q(w_u) q(g_u)); so are new users' variances.
    if (C > 0 && Mg > 0) p.variance_split = C;
    UserStepOptions o;
    o.max_iter = kAdaptIterations;
    o.tol = 1e-8;
    const UserStepResult r = RunUserStep(UserStepLink::kGaussian, p, o, device);
    for (size_t k = 0; k < bt.users.size(); ++k) {
      PREFMIX_CHECK_INPUT(r.iterations[k] >= 0 && std::isfinite(r.objective[k]),
                          "gppl: the new-user step failed for user row ", bt.users[k],
                          " (objective ", r.objective[k], ")");
      auto row = out.row(bt.users[k]);
      for (int c = 0; c < C; ++c) {
        row[c] = static_cast<float>(r.latent(k, c) + mu(k, c));
        row[C_ + c] = r.variance(k, c);
      }
      if (Mg == 0) continue;
      // q(g_u)'s covariance (the inverse of the Hessian's g block at the mode) in pair space:
      // W_j = c_j lambda_j s_j^2, lambda_j the probit's curvature at the mode, s_j the pair's
      // scale (sign / sqrt(noise)).
      const int64_t p0 = bt.offsets[k], n = bt.offsets[k + 1] - p0;
      Mat D(n, Mg);
      Vec winv(n);
      Vec g(Mg);
      for (int m = 0; m < Mg; ++m) g[m] = r.latent(k, C + m);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = p0 + i;
        const float* q = p.q.data() + j * K;
        double eta = p.offset[j];
        for (int a = 0; a < K; ++a) eta += static_cast<double>(q[a]) * r.latent(k, a);
        D.row(i) = bt.A.row(bt.a[j]) - bt.A.row(bt.b[j]);
        const double scale = pair_scale[j];
        const double lambda = math::GaussianLinkTerm(eta, true).curvature;
        winv[i] = 1.0 / std::max(p.weight[j] * lambda * scale * scale, 1e-12);
      }
      const Mat B = D * gprior_;
      Mat Wg = B * D.transpose();
      Wg = 0.5 * (Wg + Wg.transpose());
      Wg.diagonal() += winv;
      const Eigen::LLT<Mat> llt(Wg);
      PREFMIX_CHECK_INPUT(llt.info() == Eigen::Success,
                          "gppl: the new-user step's covariance failed for user row ", bt.users[k]);
      Vec cv;
      double lv = 0;
      GVariances(B, llt.solve(B), &cv, &lv);
      WriteG(row.data(), g, cv, lv);
    }
    return out;
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    std::vector<double> p(pairs.size());
    if (pairs.empty()) return p;
    const Batch bt = MakeBatch(ds, pairs, AllIndices(pairs));
    const ItemMoments im = Moments(bt);
    const int L = LatentDim();
    PREFMIX_CHECK_INPUT(latents.cols() == L, "gppl: latents have ", latents.cols(),
                        " columns, the model's have ", L);
    // The batch holds the pairs grouped by user: pair k of the batch is pairs' bt.index[k].
    for (size_t j = 0; j < bt.size(); ++j) {
      const int64_t u = bt.user[j];
      double mean = 0, var = 0;
      if (has_g_) {
        // Var[d g] ~ sum_m d_m^2 Var[g_m - level] + (sum_m d_m)^2 Var[level] (the cross term
        // and the deviations' covariances left out; sum_m d_m = 0 when every item is inducing).
        const int g0 = GOffset();
        Vec d = bt.A.row(bt.a[j]) - bt.A.row(bt.b[j]);
        for (int m = 0; m < M(); ++m) {
          mean += d[m] * latents(u, g0 + m);
          var += d[m] * d[m] * latents(u, g0 + M() + m);
        }
        if (!legacy_latents_) var += d.sum() * d.sum() * latents(u, g0 + 2 * M());
      }
      if (variant_ != Variant::kPerUser) {
        mean += im.tm[bt.a[j]] - im.tm[bt.b[j]];
        var += im.tvar[j];
        for (int c = 0; c < C_; ++c) {
          const double dv = im.vm(bt.a[j], c) - im.vm(bt.b[j], c);
          const double w = latents(u, c), sw = latents(u, C_ + c);
          mean += dv * w;
          var += im.vvar(j, c) * (w * w + sw) + dv * dv * sw;
        }
      }
      p[bt.index[j]] = 0.5 * std::erfc(-mean / std::sqrt(2.0 + var) / kSqrt2);
    }
    return p;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    const Mat A = ItemMap(ds, AllItems(ds.n_items()));
    RowMatrixF out(latents.rows(), ds.n_items());
    if (variant_ == Variant::kPerUser) {
      const Mat G = latents.leftCols(M()).cast<double>();
      out = (G * A.transpose()).cast<float>();
      return out;
    }
    if (has_g_) {
      const Mat G = latents.middleCols(GOffset(), M()).cast<double>();
      out = (G * A.transpose()).cast<float>();
    } else {
      out.setZero();
    }
    const Vec tm = A * t_.mean;
    Mat vm(ds.n_items(), C_);
    for (int c = 0; c < C_; ++c) vm.col(c) = A * v_[c].mean;
    for (Eigen::Index i = 0; i < latents.rows(); ++i) {
      Vec r = tm;
      if (C_ > 0) r += vm * latents.row(i).head(C_).transpose().cast<double>();
      out.row(i) += r.transpose().cast<float>();
    }
    return out;
  }

  Json Params() const override {
    Json j = Json::Object();
    const int64_t m = M();
    j["shared"] = variant_ == Variant::kPerUser
                      ? int64_t{1}
                      : m * (C_ + 1) + 2 * C_ + 1 + Cf_ * static_cast<int64_t>(Zu_.rows());
    j["per_user"] = C_ + (has_g_ ? m : 0);
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    // The model's own part first: the latent size of per-user depends on the inducing items.
    {
      cereal::PortableBinaryOutputArchive ar(os);
      int32_t variant = static_cast<int32_t>(variant_), C = C_;
      ar(variant, C, kernel_.identity, kernel_.inv_ls, Z_);
      auto save_g = [&](const GaussFactor& g) { ar(g.mean, g.cov, g.prec, g.shift); };
      auto save_s = [&](const GammaFactor& s) { ar(s.shape, s.rate); };
      save_g(t_);
      for (const auto& v : v_) save_g(v);
      save_s(st_);
      save_s(sg_);
      for (const auto& s : sv_) save_s(s);
      for (const auto& s : sw_) save_s(s);
      // Payload version 2: the learned residual's q(Sigma).
      ar(learned_, iw_psi_, iw_nu_);
      // Payload version 3: the user-feature GP.
      int32_t cf = Cf_;
      ar(cf);
      if (Cf_ > 0) {
        ar(ukernel_.inv_ls, Zu_);
        for (const auto& h : h_) save_g(h);
      }
    }
    SaveBase(os);
  }

  void LoadPayload(std::istream& is) override {
    {
      cereal::PortableBinaryInputArchive ar(is);
      int32_t variant = 0, C = 0;
      ar(variant, C, kernel_.identity, kernel_.inv_ls, Z_);
      PREFMIX_CHECK_INPUT(variant >= 0 && variant <= 2 && variant == (int)variant_,
                          "model file: gppl variant code ", variant, " does not match the options");
      PREFMIX_CHECK_INPUT(C == C_, "model file: gppl has ", C, " components, the options say ", C_);
      PREFMIX_CHECK_INPUT(Z_.cols() == dim && Z_.rows() >= 1, "model file: gppl inducing inputs ",
                          Z_.rows(), "x", Z_.cols(), " do not match the dimension ", dim);
      // The kernel reads inv_ls[0] (one length-scale) or inv_ls[d] for every feature d (ARD).
      PREFMIX_CHECK_INPUT(kernel_.identity || kernel_.inv_ls.size() == 1 ||
                              static_cast<int64_t>(kernel_.inv_ls.size()) == dim,
                          "model file: gppl has ", kernel_.inv_ls.size(),
                          " inverse length-scales, expected 1 or ", dim);
      // Every factor is over the m inducing items: checked as each is read, which also bounds m
      // (and the m x m kernel matrices built below) by the file's size.
      const int64_t m = Z_.rows();
      auto load_g = [&](GaussFactor& g) {
        ar(g.mean, g.cov, g.prec, g.shift);
        PREFMIX_CHECK_INPUT(g.mean.size() == m && g.shift.size() == m && g.cov.rows() == m &&
                                g.cov.cols() == m && g.prec.rows() == m && g.prec.cols() == m,
                            "model file: a gppl posterior factor has mean ", g.mean.size(),
                            ", covariance ", g.cov.rows(), "x", g.cov.cols(), ", expected ", m,
                            " inducing values");
      };
      auto load_s = [&](GammaFactor& s) { ar(s.shape, s.rate); };
      load_g(t_);
      v_.assign(C_, GaussFactor());
      for (auto& v : v_) load_g(v);
      load_s(st_);
      load_s(sg_);
      sv_.assign(C_, GammaFactor());
      sw_.assign(C_, GammaFactor());
      for (auto& s : sv_) load_s(s);
      for (auto& s : sw_) load_s(s);
      bool learned = false;
      if (payload_version() >= 2) ar(learned, iw_psi_, iw_nu_);
      PREFMIX_CHECK_INPUT(learned == learned_, "model file: gppl's residual is ",
                          learned ? "learned" : "not learned", ", the options say --gppl-residual ",
                          options_.Text("gppl_residual"));
      PREFMIX_CHECK_INPUT(!learned || (iw_psi_.rows() == m && iw_psi_.cols() == m &&
                                       std::isfinite(iw_nu_) && iw_nu_ > m - 1),
                          "model file: gppl's learned residual covariance is ", iw_psi_.rows(), "x",
                          iw_psi_.cols(), " with ", iw_nu_, " degrees of freedom, expected ", m,
                          "x", m, " and more than ", m - 1);
      int32_t cf = 0;
      if (payload_version() >= 3) ar(cf);
      PREFMIX_CHECK_INPUT(cf == Cf_, "model file: gppl has ", cf,
                          " user-feature components, the options (--user-features ",
                          options_.Text("user_features"), ") say ", Cf_);
      h_.assign(Cf_, GaussFactor());
      if (Cf_ > 0) {
        ar(ukernel_.inv_ls, Zu_);
        const int64_t mu = Zu_.rows();
        PREFMIX_CHECK_INPUT(mu >= 1 && (ukernel_.inv_ls.size() == 1 ||
                                        static_cast<int64_t>(ukernel_.inv_ls.size()) == Zu_.cols()),
                            "model file: gppl's inducing users are ", mu, "x", Zu_.cols(), " with ",
                            ukernel_.inv_ls.size(), " inverse length-scales");
        for (auto& h : h_) {
          ar(h.mean, h.cov, h.prec, h.shift);
          PREFMIX_CHECK_INPUT(h.mean.size() == mu && h.cov.rows() == mu && h.cov.cols() == mu &&
                                  h.prec.rows() == mu && h.prec.cols() == mu &&
                                  h.shift.size() == mu,
                              "model file: a gppl user-feature factor has mean ", h.mean.size(),
                              ", expected ", mu, " inducing users");
        }
        BuildUserKernel();
      }
    }
    BuildKernelMatrices();
    RefreshGPrior();
    // Payload version 1's latent rows lack the level column and hold g's plain marginal
    // variances: read them as written, then add a level variance of 0, which predicts exactly
    // as version 1 did.
    legacy_latents_ = has_g_ && payload_version() < 2;
    LoadBase(is);
    if (legacy_latents_) {
      legacy_latents_ = false;
      RowMatrixF lat(train_latents_.rows(), LatentDim());
      lat.leftCols(LatentDim() - 1) = train_latents_;
      lat.col(LatentDim() - 1).setZero();
      train_latents_ = std::move(lat);
    }
  }

 private:
  static constexpr int64_t kFullBatchMax = 200000;
  static constexpr double kTol = 1e-6;
  static constexpr int kAdaptIterations = 100;

  int M() const { return static_cast<int>(Z_.rows()); }

  /// g_u's prior covariance P0 at the inducing items and its inverse, as the local factors use
  /// them: K_ZZ / E[s^g] (kernel), or E_q[Sigma^-1]^-1 = Psi / nu (learned). Called whenever
  /// q(s^g) or q(Sigma) changes.
  void RefreshGPrior() {
    if (!has_g_) return;
    if (learned_) {
      gprior_ = iw_psi_ / iw_nu_;
      Eigen::LLT<Mat> llt(gprior_);
      PREFMIX_CHECK_INPUT(llt.info() == Eigen::Success,
                          "gppl: the learned residual covariance is not positive definite");
      gprior_inv_ = llt.solve(Mat::Identity(M(), M()));
      gprior_logdet_ = 2.0 * llt.matrixLLT().diagonal().array().log().sum();
    } else {
      gprior_ = Kzz_ / sg_.Mean();
      gprior_inv_ = Kinv_ * sg_.Mean();
      gprior_logdet_ = logdet_K_ - M() * std::log(sg_.Mean());
    }
  }
  /// The learned residual's inverse-Wishart prior IW(Psi0, nu0): nu0 = M + 1 + dof, Psi0 = dof
  /// K_ZZ rate / shape, so that E[Sigma] = K_ZZ rate / shape (the kernel residual's prior
  /// scale); dof = --residual-dof, or M / 20 when that is 0.
  double IwDof() const {
    const double d = options_.Real("residual_dof");
    return d > 0 ? d : M() / 20.0;
  }
  double IwNu0() const { return M() + 1 + IwDof(); }
  double IwScale0() const { return IwDof() * RateG() / options_.Real("gamma_shape"); }
  Mat IwPsi0() const { return Kzz_ * IwScale0(); }
  /// log Gamma_M(a) and the multivariate digamma psi_M(a).
  static double LogMvGamma(double a, int m) {
    double r = 0.25 * m * (m - 1) * std::log(M_PI);
    for (int i = 1; i <= m; ++i) r += std::lgamma(a + 0.5 * (1 - i));
    return r;
  }
  static double MvDigamma(double a, int m) {
    double r = 0;
    for (int i = 1; i <= m; ++i) r += GammaFactor::Digamma(a + 0.5 * (1 - i));
    return r;
  }

  /// g's part of a latent row: means, deviation variances, level variance.
  void WriteG(float* row, const Vec& mean, const Vec& cv, double lv) const {
    const int m = M(), g0 = GOffset();
    for (int k = 0; k < m; ++k) {
      row[g0 + k] = static_cast<float>(mean[k]);
      row[g0 + m + k] = static_cast<float>(cv[k]);
    }
    row[g0 + 2 * m] = static_cast<float>(lv);
  }

  /// Pairs see g_u only through differences, which are blind to its mean level over the
  /// inducing items (exactly so when every item is inducing), and the level keeps most of its
  /// prior variance. Marginal variances S_mm are dominated by it, so that sum_m d_m^2 S_mm
  /// overstates a pair's variance d'S d many times over (Sushi-A: 2.5 against 1.5; log loss
  /// .362 against .342). A latent row stores instead, from S's diagonal and row sums, the
  /// variances of the deviations from the level, diag(P S P) with P = I - 11'/M, and the
  /// level's variance 1'S1 / M^2.
  static void CenteredVariances(const Vec& diag, const Vec& rowsum, Vec* cv, double* lv) {
    const double m = static_cast<double>(diag.size()), total = rowsum.sum();
    *cv = (diag - 2.0 / m * rowsum).array() + total / (m * m);
    *cv = cv->cwiseMax(0.0);
    *lv = std::max(total / (m * m), 0.0);
  }

  /// The posterior covariance S = P0 - B' R B of g at the inducing items (P0 = K_ZZ / E[s^g],
  /// B = D P0 for the user's pair rows D, R = (W^-1 + D P0 D')^-1): its deviation and level
  /// variances from RB = R B, in O(n M).
  void GVariances(const Mat& B, const Mat& RB, Vec* cv, double* lv) const {
    const Mat& P0 = gprior_;
    const Vec diag = P0.diagonal() - B.cwiseProduct(RB).colwise().sum().transpose();
    const Vec rowsum = P0.rowwise().sum() - RB.transpose() * B.rowwise().sum();
    CenteredVariances(diag, rowsum, cv, lv);
  }

  static std::vector<size_t> AllIndices(const PairSet& p) {
    std::vector<size_t> idx(p.size());
    std::iota(idx.begin(), idx.end(), 0);
    return idx;
  }
  static std::vector<int64_t> AllItems(int64_t n) {
    std::vector<int64_t> v(n);
    std::iota(v.begin(), v.end(), 0);
    return v;
  }

  /// Inducing items: every item used by the training pairs when there are at most --inducing
  /// of them (or with the identity kernel), else a k-means++ seeding among them.
  void ChooseInducing(const Dataset& ds, const PairSet& pairs) {
    std::vector<char> used(ds.n_items(), 0);
    for (size_t j = 0; j < pairs.size(); ++j) used[pairs.first[j]] = used[pairs.second[j]] = 1;
    std::vector<int64_t> items;
    for (int64_t i = 0; i < ds.n_items(); ++i)
      if (used[i]) items.push_back(i);
    kernel_.identity = options_.Text("item_kernel") == "identity";
    if (!kernel_.identity) {
      // Per-feature median length-scales put two random items about sqrt(6 D) scaled units
      // apart (k ~ 5e-5 for D = 24): fine when every item is an inducing point, but then the
      // items that are not have no correlation with those that are, and the GP predicts 0 for
      // them. With more items than inducing points, scale by sqrt(D) so that the typical scaled
      // distance is about sqrt(6) whatever D (k ~ 0.3).
      scaled_ard_ = ds.dim() > 1 && ds.dim() <= kGpplArdMaxDim &&
                    static_cast<int64_t>(items.size()) > options_.Int("inducing");
      kernel_.inv_ls = InverseLengthScales(ds.items, items, options_.Real("ls_factor"),
                                           options_.seed, scaled_ard_);
    } else {
      PREFMIX_CHECK_INPUT(static_cast<int64_t>(items.size()) <= 20000,
                          "--item-kernel identity: ", items.size(),
                          " items used by the pairs; the identity kernel keeps one "
                          "inducing value per item and allows at most 20000");
    }
    std::vector<int64_t> chosen = items;
    if (!kernel_.identity && static_cast<int64_t>(items.size()) > options_.Int("inducing")) {
      Rng rng(DeriveSeed(options_.seed, kInducingStream));
      chosen = KMeansPlusPlus(ds.items, items, kernel_, options_.Int("inducing"), rng);
    }
    Z_.resize(chosen.size(), ds.dim());
    for (size_t k = 0; k < chosen.size(); ++k) Z_.row(k) = ds.items.row(chosen[k]);
    BuildKernelMatrices();
  }

  /// Inducing users for the user-feature GP: the training users' distinct feature rows when
  /// there are at most --inducing-users of them, else a k-means++ seeding among them;
  /// length-scales by the median heuristic over those rows (scaled as the items' are).
  void ChooseInducingUsers(const Dataset& ds, const PairSet& pairs) {
    const RowMatrixF& F = ds.user_features;
    PREFMIX_CHECK_INPUT(F.rows() == ds.n_users() && F.cols() > 0, ds.source, ": --user-features ",
                        options_.Text("user_features"),
                        " needs user features (users/features), and the file has none");
    PREFMIX_CHECK_INPUT(F.allFinite(), ds.source, ": users/features holds a non-finite value");
    std::vector<char> seen(ds.n_users(), 0);
    for (size_t j = 0; j < pairs.size(); ++j) seen[pairs.user[j]] = 1;
    std::map<std::vector<float>, int64_t> distinct;
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (seen[u])
        distinct.emplace(std::vector<float>(F.row(u).data(), F.row(u).data() + F.cols()), u);
    std::vector<int64_t> rows;
    for (const auto& d : distinct) rows.push_back(d.second);
    std::sort(rows.begin(), rows.end());
    const int64_t m = options_.Int("inducing_users");
    const bool more = static_cast<int64_t>(rows.size()) > m;
    ukernel_.identity = false;
    ukernel_.inv_ls = InverseLengthScales(F, rows, options_.Real("ls_factor"), options_.seed,
                                          more && F.cols() <= kGpplArdMaxDim);
    std::vector<int64_t> chosen = rows;
    if (more) {
      Rng rng(DeriveSeed(options_.seed, kInducingUserStream));
      chosen = KMeansPlusPlus(F, rows, ukernel_, m, rng);
    }
    Zu_.resize(chosen.size(), F.cols());
    for (size_t k = 0; k < chosen.size(); ++k) Zu_.row(k) = F.row(chosen[k]);
    BuildUserKernel();
  }

  void BuildUserKernel() {
    FactorKernel(Zu_, ukernel_, "users", &Kuu_, &Kuu_llt_, &Kuu_inv_, &logdet_Ku_);
  }

  /// Rows k(x_u, Zu) Kuu^-1 of the first n rows of F (users' features).
  Mat UserMap(const RowMatrixF& F, int64_t n) const {
    const int64_t m = Zu_.rows();
    Mat Kxz(n, m);
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < n; ++u)
      for (int64_t j = 0; j < m; ++j)
        Kxz(u, j) = ukernel_(F.row(u).data(), Zu_.row(j).data(), F.cols());
    return Kuu_llt_.solve(Kxz.transpose()).transpose();
  }

  /// tr(Kuu^-1 (S + m m')) of a user-feature factor.
  double TraceKuinvSecond(const GaussFactor& h) const {
    return (Kuu_inv_.cwiseProduct(h.cov)).sum() + h.mean.dot(Kuu_inv_ * h.mean);
  }

  /// The prior means a_u' E[h_c] and their variances a_u' Cov[h_c] a_u of every user's
  /// feature components (Fit).
  void RefreshWPrior() {
    if (Cf_ == 0) return;
    const int64_t n = au_.rows(), na = static_cast<int64_t>(wp_users_.size());
    wmu_ = Mat::Zero(n, Cf_);
    wmuvar_ = Mat::Zero(n, Cf_);
    Mat Aa(na, Zu_.rows());  // the users with pairs (the only ones whose w_u is fitted)
    for (int64_t k = 0; k < na; ++k) Aa.row(k) = au_.row(wp_users_[k]);
    for (int c = 0; c < Cf_; ++c) {
      const Vec mean = Aa * h_[c].mean;
      const Vec var = (Aa * h_[c].cov).cwiseProduct(Aa).rowwise().sum();
      for (int64_t k = 0; k < na; ++k) {
        wmu_(wp_users_[k], c) = mean[k];
        wmuvar_(wp_users_[k], c) = var[k];
      }
    }
  }

  /// A user without pairs: w_u's prior, centred at h(x_u) on the feature components.
  template <typename Row>
  Eigen::VectorXf ColdLatent(const Row& a) const {
    Eigen::VectorXf z = PopulationLatent();
    for (int c = 0; c < Cf_; ++c) {
      z[c] = static_cast<float>(a.dot(h_[c].mean));
      z[C_ + c] = static_cast<float>(1.0 / sw_[c].Mean() + a.dot(h_[c].cov * a.transpose()));
    }
    return z;
  }

  void BuildKernelMatrices() {
    FactorKernel(Z_, kernel_, "items", &Kzz_, &Kllt_, &Kinv_, &logdet_K_);
  }

  /// The inducing inputs' kernel matrix K (jitter added), its factor, inverse and log-determinant.
  static void FactorKernel(const RowMatrixF& Z, const ItemKernel& kernel, const char* what, Mat* K,
                           Eigen::LLT<Mat>* llt, Mat* inv, double* logdet) {
    const int64_t m = Z.rows();
    K->resize(m, m);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j <= i; ++j)
        (*K)(i, j) = (*K)(j, i) = kernel(Z.row(i).data(), Z.row(j).data(), Z.cols());
    K->diagonal().array() += kJitter;
    llt->compute(*K);
    PREFMIX_CHECK_INPUT(llt->info() == Eigen::Success, "gppl: the inducing ", what,
                        "' kernel matrix is not positive definite");
    *inv = llt->solve(Mat::Identity(m, m));
    *logdet = 2.0 * llt->matrixLLT().diagonal().array().log().sum();
  }

  /// Rows of k(x, Z) K_ZZ^-1 for the given items of ds.
  Mat ItemMap(const Dataset& ds, const std::vector<int64_t>& items) const {
    const int m = M();
    const int64_t n = static_cast<int64_t>(items.size());
    Mat Kxz(n, m);
    if (!kernel_.identity && kernel_.inv_ls.size() == 1) {
      // One length-scale (large D): squared distances |x|^2 + |z|^2 - 2 x.z by GEMM, in chunks
      // of items (O(chunk x D) memory).
      const double s = kernel_.inv_ls[0];
      const Mat Zs = Z_.cast<double>() * s;
      const Vec zz = Zs.rowwise().squaredNorm();
      constexpr int64_t kChunk = 4096;
      for (int64_t k0 = 0; k0 < n; k0 += kChunk) {
        const int64_t c = std::min(kChunk, n - k0);
        Mat Xs(c, dim);
        for (int64_t k = 0; k < c; ++k) Xs.row(k) = ds.items.row(items[k0 + k]).cast<double>() * s;
        const Vec xx = Xs.rowwise().squaredNorm();
        const Mat XZ = Xs * Zs.transpose();
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < c; ++k)
          for (int j = 0; j < m; ++j) {
            const double r = std::sqrt(3.0 * std::max(xx[k] + zz[j] - 2.0 * XZ(k, j), 0.0));
            Kxz(k0 + k, j) = (1.0 + r) * std::exp(-r);
          }
      }
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t k = 0; k < n; ++k)
        for (int j = 0; j < m; ++j)
          Kxz(k, j) = kernel_(ds.items.row(items[k]).data(), Z_.row(j).data(), dim);
    }
    // An item equal to an inducing input maps onto it exactly (the jitter aside).
    Mat A = Kllt_.solve(Kxz.transpose()).transpose();
    return A;
  }

  Batch MakeBatch(const Dataset& ds, const PairSet& p, const std::vector<size_t>& idx) const {
    Batch bt;
    std::vector<size_t> sorted = idx;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [&](size_t x, size_t y) { return p.user[x] < p.user[y]; });
    std::unordered_map<int64_t, int32_t> row;
    std::vector<int64_t> items;
    auto item_row = [&](int64_t i) {
      auto it = row.find(i);
      if (it != row.end()) return it->second;
      const int32_t r = static_cast<int32_t>(items.size());
      row.emplace(i, r);
      items.push_back(i);
      return r;
    };
    for (size_t j : sorted) {
      const int64_t u = p.user[j];
      if (bt.users.empty() || bt.users.back() != u) {
        bt.users.push_back(u);
        bt.offsets.push_back(static_cast<int64_t>(bt.a.size()));
      }
      bt.a.push_back(item_row(p.first[j]));
      bt.b.push_back(item_row(p.second[j]));
      bt.sign.push_back(p.label[j] >= 0.5f ? 1.0 : -1.0);
      bt.w.push_back(p.weight.empty() ? 1.0 : p.weight[j]);
      bt.user.push_back(static_cast<int32_t>(u));
      bt.index.push_back(j);
    }
    bt.offsets.push_back(static_cast<int64_t>(bt.a.size()));
    bt.A = ItemMap(ds, items);
    static std::atomic<uint64_t> next_id{1};
    bt.id = next_id++;
    return bt;
  }

  /// Posterior moments of the item functions on a batch: means per item, variances of each
  /// pair's difference.
  struct ItemMoments {
    Vec tm, tvar;  ///< t mean per item; Var[t(a) - t(b)] per pair
    Mat vm, vvar;  ///< v_c mean per item [n, C]; Var[v_c(a) - v_c(b)] per pair [P, C]
  };

  static double PairVar(const Batch& bt, const RowMat& AS, size_t j) {
    return (AS.row(bt.a[j]) - AS.row(bt.b[j])).dot(bt.A.row(bt.a[j]) - bt.A.row(bt.b[j]));
  }

  ItemMoments Moments(const Batch& bt) const {
    ItemMoments im;
    const int64_t P = static_cast<int64_t>(bt.size());
    im.tm = Vec::Zero(bt.A.rows());
    im.tvar = Vec::Zero(P);
    im.vm.resize(bt.A.rows(), C_);
    im.vvar.resize(P, C_);
    if (variant_ == Variant::kPerUser) return im;
    RefreshT(bt, &im);
    for (int c = 0; c < C_; ++c) RefreshV(bt, c, &im);
    return im;
  }
  /// Var[(A_a - A_b) u] of every pair for u with covariance `cov`: through the items'
  /// covariance A cov A' (O(1) a pair) when the batch has few items, else pair by pair (O(M)).
  template <typename Out>
  static void PairVariances(const Batch& bt, const Mat& cov, Out out) {
    const int64_t n = bt.A.rows(), P = static_cast<int64_t>(bt.size());
    const RowMat AS = bt.A * cov;
    if (n * n <= P) {
      const Mat IC = AS * bt.A.transpose();
      for (int64_t j = 0; j < P; ++j)
        out(j, IC(bt.a[j], bt.a[j]) + IC(bt.b[j], bt.b[j]) - 2 * IC(bt.a[j], bt.b[j]));
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < P; ++j) out(j, PairVar(bt, AS, j));
    }
  }
  void RefreshT(const Batch& bt, ItemMoments* im) const {
    im->tm = bt.A * t_.mean;
    PairVariances(bt, t_.cov, [&](int64_t j, double v) { im->tvar[j] = v; });
  }
  void RefreshV(const Batch& bt, int c, ItemMoments* im) const {
    im->vm.col(c) = bt.A * v_[c].mean;
    PairVariances(bt, v_[c].cov, [&](int64_t j, double v) { im->vvar(j, c) = v; });
  }

  /// The item moments of `bt`, computed once per change of the global factors (the last Step
  /// leaves them current; Init and LoadPayload clear them).
  const ItemMoments& CachedMoments(const Batch& bt) const {
    if (cache_for_ != bt.id) {
      cache_ = Moments(bt);
      cache_for_ = bt.id;
    }
    return cache_;
  }

  /// Mean of the pair's utility difference under the current posterior.
  double PairMean(const Batch& bt, const ItemMoments& im, size_t j) const {
    const double g = GDiff(bt, j);
    if (variant_ == Variant::kPerUser) return g;
    double m = g + im.tm[bt.a[j]] - im.tm[bt.b[j]];
    for (int c = 0; c < C_; ++c) m += (im.vm(bt.a[j], c) - im.vm(bt.b[j], c)) * wm_(bt.user[j], c);
    return m;
  }
  /// Mean of the residual's difference g_u(a) - g_u(b) (0 without a residual).
  double GDiff(const Batch& bt, size_t j) const {
    if (!has_g_) return 0.0;
    return (bt.A.row(bt.a[j]) - bt.A.row(bt.b[j])).dot(gm_.row(bt.user[j]));
  }
  /// E[z_j]: the mean of the truncated Gaussian margin.
  static double ZHat(double mean, double sign) {
    return mean + sign * kSqrt2 * NormalHazard(sign * mean / kSqrt2);
  }

  /// Priors; the posterior starts at the prior. keep_globals: only the local factors (Adapt).
  void Init(int64_t n_users, bool keep_globals = false) {
    const int m = M();
    cache_for_ = 0;
    if (!keep_globals) {
      const double a0 = options_.Real("gamma_shape");
      st_ = {a0, options_.Real("gamma_rate_t")};
      sg_ = {a0, RateG()};
      sv_.assign(C_, GammaFactor{a0, options_.Real("gamma_rate_v")});
      sw_.assign(C_, GammaFactor{a0, options_.Real("gamma_rate_w")});
      auto prior = [&](GaussFactor& g, double s) {
        g.prec = Kinv_ * s;
        g.shift = Vec::Zero(m);
        g.Moments();
      };
      prior(t_, st_.Mean());
      v_.assign(C_, GaussFactor());
      for (auto& v : v_) prior(v, sv_[0].Mean());
      h_.assign(Cf_, GaussFactor());
      for (int c = 0; c < Cf_; ++c) {
        h_[c].prec = Kuu_inv_ * sw_[c].Mean();
        h_[c].shift = Vec::Zero(Zu_.rows());
        h_[c].Moments();
      }
      RefreshWPrior();
    }
    if (variant_ == Variant::kCrowd) {
      wm_ = Mat::Zero(n_users, C_);
      wS_.assign(n_users, Mat());
    }
    if (learned_ && !keep_globals) {
      // q(Sigma) starts where E_q[Sigma^-1]^-1 is the prior's mean, K_ZZ rate / shape.
      iw_nu_ = IwNu0();
      iw_psi_ = Kzz_ * (iw_nu_ * RateG() / options_.Real("gamma_shape"));
    } else if (!learned_) {
      // None (and none left over from --gppl-residual auto's learned trial in the model file).
      iw_nu_ = 0;
      iw_psi_ = Mat();
    }
    if (!keep_globals) RefreshGPrior();
    if (has_g_) {
      gm_ = Mat::Zero(n_users, m);
      gdiag_ = Mat::Zero(n_users, m);
      glevel_.assign(n_users, 0.0);
      Vec cv;
      double lv = 0;
      CenteredVariances(gprior_.diagonal(), gprior_.rowwise().sum(), &cv, &lv);
      for (int64_t u = 0; u < n_users; ++u) {
        gdiag_.row(u) = cv.transpose();
        glevel_[u] = lv;
      }
      gT_.assign(n_users, 0.0);
      gLS_.assign(n_users, 0.0);
    }
  }
  void ReleaseLocal() {
    wm_.resize(0, 0);
    wS_.clear();
    gm_.resize(0, 0);
    gdiag_.resize(0, 0);
    glevel_.clear();
    gT_.clear();
    gLS_.clear();
    gpv_.clear();
    step_gdiff_ = step_dvm_ = step_gamma_ = step_r_ = galpha_ = step_x_ = {};
    step_dv_.resize(0, 0);
    step_sdv_.resize(0, 0);
    au_.resize(0, 0);
    wp_users_.clear();
    wmu_.resize(0, 0);
    wmuvar_.resize(0, 0);
  }

  /// Posterior of user u as a latent row: (mean, variance) of w_u or g_u.
  Eigen::VectorXf UserLatent(int64_t u) const {
    Eigen::VectorXf z(LatentDim());
    if (variant_ == Variant::kCrowd) {
      for (int c = 0; c < C_; ++c) {
        z[c] = static_cast<float>(wm_(u, c));
        z[C_ + c] = static_cast<float>(wS_[u].size() ? wS_[u](c, c) : 1.0 / sw_[c].Mean());
      }
    }
    if (has_g_) WriteG(z.data(), gm_.row(u).transpose(), gdiag_.row(u).transpose(), glevel_[u]);
    return z;
  }

  /// One SVI step on a batch (scale: users in the data / users in the batch; step: the
  /// natural-gradient step size): local factors, then each global factor, then the scales.
  void Step(const Batch& bt, double scale, double step, int local_iterations, bool local) {
    // The first step updates the globals from the random initial users' means (a local step
    // first would find w = 0 from the zero-mean item functions, a fixed point).
    if (variant_ != Variant::kPooled && (local || variant_ == Variant::kPerUser))
      LocalStep(bt, local_iterations, true);
    else if (has_g_)
      LocalStep(bt, 1, false);
    if (learned_) {
      // q(Sigma) = IW(Psi0 + sum_u E[g_u g_u'], nu0 + users), by a natural-gradient step.
      const double users = static_cast<double>(bt.users.size()) * scale;
      iw_psi_ = (1 - step) * iw_psi_ + step * (IwPsi0() + scale * gscatter_);
      iw_nu_ = (1 - step) * iw_nu_ + step * (IwNu0() + users);
      RefreshGPrior();
    } else if (has_g_) {
      // The residual's (per-user GP's) scale s^g.
      double stat = 0;
      for (int64_t u : bt.users) stat += gT_[u];
      const double users = static_cast<double>(bt.users.size()) * scale;
      GammaStep(&sg_, options_.Real("gamma_shape") + 0.5 * users * M(),
                RateG() + 0.5 * scale * stat, step);
      RefreshGPrior();
    }
    if (variant_ == Variant::kPerUser) return;
    if (Cf_ > 0) {
      // Each h_c given the users' w: a GP regression of E[w_c(u)] on the users' features with
      // noise 1 / E[s_c^w]; precision s (Kuu^-1 + scale sum_u a_u a_u'), shift s scale
      // sum_u a_u E[w_c(u)].
      const int64_t nb = static_cast<int64_t>(bt.users.size()), mu = Zu_.rows();
      Mat Ab(nb, mu), Wb(nb, Cf_);
      for (int64_t k = 0; k < nb; ++k) {
        Ab.row(k) = au_.row(bt.users[k]);
        for (int c = 0; c < Cf_; ++c) Wb(k, c) = wm_(bt.users[k], c);
      }
      const Mat AtA = Ab.transpose() * Ab;
      const Mat AtW = Ab.transpose() * Wb;
      for (int c = 0; c < Cf_; ++c) {
        const double sw = sw_[c].Mean();
        Mat prec = sw * (Kuu_inv_ + scale * AtA);
        prec = 0.5 * (prec + prec.transpose());
        h_[c].prec = (1 - step) * h_[c].prec + step * prec;
        h_[c].shift = (1 - step) * h_[c].shift + step * (sw * scale) * AtW.col(c);
        h_[c].Moments();
      }
      RefreshWPrior();
    }
    ItemMoments im = CachedMoments(bt);
    const int64_t P = static_cast<int64_t>(bt.size());
    // Per pair: the residual's and the components' mean differences, sum_c dv_c m_c and S_u dv,
    // kept up to date as each v_c moves (O(C) per pair and component). Row-major, so that a
    // pair's C values are contiguous; the buffers live across steps (no fresh pages per step).
    // The pair loops use the threads in chunks (FitAll's AdaptiveThreads drops to one thread
    // where the regions cost more than they save, as when another job holds a core). Each
    // pair's values are its own, so threads do not change a bit of the result.
    std::vector<double>& gdiff = step_gdiff_;
    std::vector<double>& dvm = step_dvm_;
    std::vector<double>& gamma = step_gamma_;
    std::vector<double>& r = step_r_;
    RowMat& DV = step_dv_;
    RowMat& SDv = step_sdv_;
    gdiff.resize(P);
    dvm.assign(P, 0.0);
    gamma.resize(P);
    r.resize(P);
    DV.resize(P, C_);
    SDv.resize(P, C_);
#pragma omp parallel for schedule(dynamic, kPairChunk) if (P >= kParallelPairs)
    for (int64_t j = 0; j < P; ++j) {
      const int64_t u = bt.user[j];
      gdiff[j] = GDiff(bt, j);
      for (int c = 0; c < C_; ++c) DV(j, c) = im.vm(bt.a[j], c) - im.vm(bt.b[j], c);
      if (C_ > 0) {
        dvm[j] = DV.row(j).dot(wm_.row(u));
        SDv.row(j).noalias() = (wS_[u] * DV.row(j).transpose()).transpose();
      }
    }
    auto tdiff = [&](int64_t j) { return im.tm[bt.a[j]] - im.tm[bt.b[j]]; };
    // t given everything else.
    {
#pragma omp parallel for schedule(dynamic, kPairChunk) if (P >= kParallelPairs)
      for (int64_t j = 0; j < P; ++j) {
        const double zhat = ZHat(tdiff(j) + gdiff[j] + dvm[j], bt.sign[j]);
        gamma[j] = 0.5 * bt.w[j];
        r[j] = 0.5 * bt.w[j] * (zhat - dvm[j] - gdiff[j]);
      }
      GlobalStep(bt, gamma, r, st_.Mean(), scale, step, &t_);
      RefreshT(bt, &im);
    }
    // Each v_c given everything else.
    for (int c = 0; c < C_; ++c) {
#pragma omp parallel for schedule(dynamic, kPairChunk) if (P >= kParallelPairs)
      for (int64_t j = 0; j < P; ++j) {
        const int64_t u = bt.user[j];
        const Mat& S = wS_[u];
        const double mc = wm_(u, c), rest = tdiff(j) + gdiff[j];
        const double zhat = ZHat(rest + dvm[j], bt.sign[j]);
        const double cross = mc * (dvm[j] - DV(j, c) * mc) + SDv(j, c) - S(c, c) * DV(j, c);
        gamma[j] = 0.5 * bt.w[j] * (mc * mc + S(c, c));
        r[j] = 0.5 * bt.w[j] * (mc * (zhat - rest) - cross);
      }
      GlobalStep(bt, gamma, r, sv_[c].Mean(), scale, step, &v_[c]);
      RefreshV(bt, c, &im);
#pragma omp parallel for schedule(dynamic, kPairChunk) if (P >= kParallelPairs)
      for (int64_t j = 0; j < P; ++j) {
        const int64_t u = bt.user[j];
        const double delta = im.vm(bt.a[j], c) - im.vm(bt.b[j], c) - DV(j, c);
        DV(j, c) += delta;
        dvm[j] += delta * wm_(u, c);
        SDv.row(j) += delta * wS_[u].col(c).transpose();
      }
    }
    cache_ = im;  // current after the refreshes above
    cache_for_ = bt.id;
    // Inverse scales.
    const double a0 = options_.Real("gamma_shape");
    GammaStep(&st_, a0 + 0.5 * M(),
              options_.Real("gamma_rate_t") + 0.5 * TraceKinvSecond(t_.mean, t_.cov), step);
    for (int c = 0; c < C_; ++c) {
      GammaStep(&sv_[c], a0 + 0.5 * M(),
                options_.Real("gamma_rate_v") + 0.5 * TraceKinvSecond(v_[c].mean, v_[c].cov), step);
      double stat = 0;
      for (int64_t u : bt.users) stat += WSecond(u, c);
      const bool f = c < Cf_;  // h_c ~ GP(0, Kuu / s_c^w) shares the inverse scale
      GammaStep(&sw_[c], a0 + 0.5 * scale * bt.users.size() + (f ? 0.5 * Zu_.rows() : 0.0),
                options_.Real("gamma_rate_w") + 0.5 * scale * stat +
                    (f ? 0.5 * TraceKuinvSecond(h_[c]) : 0.0),
                step);
    }
  }

  /// E[(w_c(u) - prior mean)^2] under q: (m - a_u' E[h_c])^2 + S_cc + a_u' Cov[h_c] a_u on the
  /// feature components, m^2 + S_cc on the others.
  double WSecond(int64_t u, int c) const {
    const double m = wm_(u, c), s = wS_[u](c, c);
    if (c >= Cf_) return m * m + s;
    const double d = m - wmu_(u, c);
    return d * d + s + wmuvar_(u, c);
  }

  static void GammaStep(GammaFactor* g, double shape, double rate, double step) {
    g->shape = (1 - step) * g->shape + step * shape;
    g->rate = (1 - step) * g->rate + step * rate;
  }

  /// tr(K^-1 (S + m m')).
  double TraceKinvSecond(const Vec& m, const Mat& S) const {
    return (Kinv_.cwiseProduct(S)).sum() + m.dot(Kinv_ * m);
  }

  /// Natural-gradient step of a global factor: precision s K^-1 + scale sum_j gamma_j d_j d_j',
  /// shift scale sum_j r_j d_j (d_j = A_a - A_b), blended with the current one by `step`.
  void GlobalStep(const Batch& bt, const std::vector<double>& gamma, const std::vector<double>& r,
                  double s, double scale, double step, GaussFactor* g) const {
    const int64_t n = bt.A.rows(), P = static_cast<int64_t>(bt.size());
    Vec y = Vec::Zero(n);
    for (int64_t j = 0; j < P; ++j) {
      y[bt.a[j]] += r[j];
      y[bt.b[j]] -= r[j];
    }
    Mat prec = Kinv_ * s;
    if (n * n <= P) {
      // A' L A with L the items' weighted Laplacian of the pairs (O(1) a pair).
      Mat L = Mat::Zero(n, n);
      for (int64_t j = 0; j < P; ++j) {
        L(bt.a[j], bt.a[j]) += gamma[j];
        L(bt.b[j], bt.b[j]) += gamma[j];
        L(bt.a[j], bt.b[j]) -= gamma[j];
        L(bt.b[j], bt.a[j]) -= gamma[j];
      }
      prec.noalias() += scale * (bt.A.transpose() * (L * bt.A));
    } else {
      RowMat Y = RowMat::Zero(n, M());  // L A, pair by pair (O(M) a pair)
      for (int64_t j = 0; j < P; ++j) {
        const auto da = bt.A.row(bt.a[j]), db = bt.A.row(bt.b[j]);
        Y.row(bt.a[j]) += gamma[j] * (da - db);
        Y.row(bt.b[j]) -= gamma[j] * (da - db);
      }
      prec.noalias() += scale * (bt.A.transpose() * Y);
    }
    prec = 0.5 * (prec + prec.transpose());
    const Vec shift = scale * (bt.A.transpose() * y);
    g->prec = (1 - step) * g->prec + step * prec;
    g->shift = (1 - step) * g->shift + step * shift;
    g->Moments();
  }

  /// The local factors of the batch's users: alternating exact updates of q(z) and q(w_u) (or
  /// q(g_u)), `iterations` rounds at most (stops early when no mean moves by 1e-9).
  void LocalStep(const Batch& bt, int iterations, bool update_w = true) {
    const ItemMoments& im = CachedMoments(bt);
    RowMat AK;  // A P0: row i = the prior covariance of g's inducing values with item i
    if (has_g_) {
      AK = bt.A * gprior_;
      gpv_.assign(bt.size(), 0.0);
    }
    const int64_t nb = static_cast<int64_t>(bt.users.size());
    // Learned residual: gscatter_ = sum_u E[g_u g_u'] = sum_u S_u + m_u m_u'. With S_u = P0 -
    // B_u' R_u B_u, m_u = B_u' alpha_u and B_u = D_u P0 = E_u A P0 (E_u: the user's pairs' +1/-1
    // rows over the batch's items), the sum is N P0 - P0 A' L A P0 with the items' matrix
    // L = sum_u E_u' (R_u - alpha_u alpha_u') E_u: O(n_u^2) a user instead of O(n_u M^2), where
    // the batch's items are few enough for a dense L. L is summed in user order after the
    // parallel loop (the same bits for any thread count).
    const int64_t n_items = bt.A.rows();
    const bool item_scatter = learned_ && n_items <= kItemScatterMax &&
                              n_items * n_items <= static_cast<int64_t>(bt.size()) * M();
    scatter_in_items_ = item_scatter;
    std::vector<int64_t> xoff;
    if (item_scatter) {
      xoff.assign(nb + 1, 0);
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t n = bt.offsets[k + 1] - bt.offsets[k];
        xoff[k + 1] = xoff[k] + n * n;
      }
      galpha_.assign(bt.size(), 0.0);
      step_x_.resize(xoff[nb]);
    }
    if (learned_) gscatter_ = Mat::Zero(M(), M());
#pragma omp parallel
    {
      Mat scatter;  // learned, per user: this thread's sum of E[g_u g_u'] = S_u + m_u m_u'
      if (learned_ && !item_scatter) scatter = Mat::Zero(M(), M());
#pragma omp for schedule(dynamic, 16)
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t u = bt.users[k], p0 = bt.offsets[k], p1 = bt.offsets[k + 1];
        if (variant_ == Variant::kCrowd && has_g_) {
          // w_u and the residual g_u are separate factors: alternate their exact updates.
          // q(g_u)'s pair-space system does not depend on w_u: it is set up once.
          const GSystem sys = SetupG(bt, AK, u, p0, p1);
          for (int it = 0; it < iterations; ++it) {
            const Vec w0 = wm_.row(u).transpose(), g0 = gm_.row(u).transpose();
            if (update_w) LocalCrowd(bt, im, u, p0, p1, 1);
            UpdateG(bt, im, sys, u, p0, p1, 1);
            const double move = std::max((wm_.row(u).transpose() - w0).cwiseAbs().maxCoeff(),
                                         (gm_.row(u).transpose() - g0).cwiseAbs().maxCoeff());
            if (move < 1e-9) break;
          }
          if (item_scatter) {
            const int64_t n = p1 - p0;
            Eigen::Map<Mat> X(step_x_.data() + xoff[k], n, n);
            X = sys.llt.solve(Mat::Identity(n, n));
            const Eigen::Map<const Vec> alpha(galpha_.data() + p0, n);
            X.noalias() -= alpha * alpha.transpose();
          } else if (learned_) {
            scatter += sys.S + gm_.row(u).transpose() * gm_.row(u);
          }
        } else if (variant_ == Variant::kCrowd) {
          LocalCrowd(bt, im, u, p0, p1, iterations);
        } else {
          UpdateG(bt, im, SetupG(bt, AK, u, p0, p1), u, p0, p1, iterations);
        }
      }
      if (learned_ && !item_scatter) {
#pragma omp critical
        gscatter_ += scatter;
      }
    }
    if (item_scatter)
      gscatter_ = ScatterThroughItems(bt.A, bt.a, bt.b, bt.offsets, xoff, step_x_, gprior_);
  }

  void LocalCrowd(const Batch& bt, const ItemMoments& im, int64_t u, int64_t p0, int64_t p1,
                  int iterations) {
    const int C = C_;
    Mat prec = Mat::Zero(C, C);
    for (int c = 0; c < C; ++c) prec(c, c) = sw_[c].Mean();
    Mat Q(p1 - p0, C);
    Vec tdiff(p1 - p0);
    for (int64_t j = p0; j < p1; ++j) {
      for (int c = 0; c < C; ++c) Q(j - p0, c) = im.vm(bt.a[j], c) - im.vm(bt.b[j], c);
      tdiff[j - p0] = im.tm[bt.a[j]] - im.tm[bt.b[j]] + GDiff(bt, j);
      const double g = 0.5 * bt.w[j];
      prec.noalias() += g * Q.row(j - p0).transpose() * Q.row(j - p0);
      for (int c = 0; c < C; ++c) prec(c, c) += g * im.vvar(j, c);
    }
    Eigen::LLT<Mat> llt(prec);
    Vec m = wm_.row(u).transpose();
    Vec h0 = Vec::Zero(C);  // the prior's mean times its precision (user features)
    for (int c = 0; c < Cf_; ++c) h0[c] = sw_[c].Mean() * wmu_(u, c);
    for (int it = 0; it < iterations; ++it) {
      Vec h = h0;
      for (int64_t j = p0; j < p1; ++j) {
        const double mean = tdiff[j - p0] + Q.row(j - p0).dot(m);
        h += 0.5 * bt.w[j] * (ZHat(mean, bt.sign[j]) - tdiff[j - p0]) * Q.row(j - p0).transpose();
      }
      Vec next = llt.solve(h);
      const double move = (next - m).cwiseAbs().maxCoeff();
      m = next;
      if (move < 1e-9) break;
    }
    wm_.row(u) = m.transpose();
    wS_[u] = llt.solve(Mat::Identity(C, C));
  }

  /// q(g_u) given everything else, in the space of the user's n pairs (the likelihood sees g_u
  /// only through D g, D the pairs' rows A_a - A_b): with prior covariance P0 = K_ZZ / E[s^g],
  /// B = D P0, G = B D', W = diag(w_j / 2) and R = (W^-1 + G)^-1, the posterior is
  /// S = P0 - B' R B and mean B' alpha, alpha = h - R G h (h_j = w_j / 2 (E[z_j] - offset_j)):
  /// O(n^2 M) per user instead of O(M^3). Everything but the mean is independent of the other
  /// factors: SetupG computes it (and writes S's diagonal and the pairs' variances), UpdateG
  /// the mean.
  struct GSystem {
    Mat Bk, D, G;
    Eigen::LLT<Mat> llt;  ///< of W^-1 + G
    Vec wdiag;
    double trace_rg = 0;  ///< tr(R G)
    double log_det = 0;   ///< log|W^-1 + G| + log|W| = log|P0| - log|S|
    Mat S;                ///< learned: the posterior covariance S (M x M)
  };
  GSystem SetupG(const Batch& bt, const RowMat& AK, int64_t u, int64_t p0, int64_t p1) {
    const int m = M();
    const int64_t n = p1 - p0;
    GSystem s;
    s.Bk.resize(n, m);
    s.D.resize(n, m);
    s.wdiag.resize(n);
    Vec winv(n);
    for (int64_t j = p0; j < p1; ++j) {
      const int64_t k = j - p0;
      s.D.row(k) = bt.A.row(bt.a[j]) - bt.A.row(bt.b[j]);
      s.Bk.row(k) = (AK.row(bt.a[j]) - AK.row(bt.b[j]));
      s.wdiag[k] = 0.5 * std::max(bt.w[j], 1e-12);
      winv[k] = 1.0 / s.wdiag[k];
    }
    s.G = s.Bk * s.D.transpose();
    s.G = 0.5 * (s.G + s.G.transpose());
    Mat Wg = s.G;
    Wg.diagonal() += winv;
    s.llt.compute(Wg);
    PREFMIX_ASSERT(s.llt.info() == Eigen::Success, "gppl: a user's pair-space system is singular");
    const Mat RB = s.llt.solve(s.Bk);  // R B, [n, M]
    if (learned_ && !scatter_in_items_) s.S = gprior_ - s.Bk.transpose() * RB;
    {
      Vec cv;
      GVariances(s.Bk, RB, &cv, &glevel_[u]);
      gdiag_.row(u) = cv.transpose();
    }
    // Only diag(R) is needed: R G = I - R W^-1, so tr(R G) = n - sum_j R_jj / W_jj and the
    // pairs' posterior variances diag(G - G R G) = diag(W^-1 - W^-1 R W^-1) (O(n^3 / 2)
    // instead of forming R G and G R G, O(3 n^3)).
    const Mat Linv = s.llt.matrixL().solve(Mat::Identity(n, n));
    const Vec rdiag = Linv.colwise().squaredNorm().transpose();
    for (int64_t j = p0; j < p1; ++j) {
      const int64_t k = j - p0;
      gpv_[j] = std::max(winv[k] - winv[k] * winv[k] * rdiag[k], 0.0);
    }
    s.trace_rg = static_cast<double>(n) - rdiag.dot(winv);
    s.log_det =
        2.0 * s.llt.matrixLLT().diagonal().array().log().sum() + s.wdiag.array().log().sum();
    return s;
  }
  void UpdateG(const Batch& bt, const ItemMoments& im, const GSystem& s, int64_t u, int64_t p0,
               int64_t p1, int iterations) {
    const int m = M();
    const int64_t n = p1 - p0;
    const double sbar = sg_.Mean();
    Vec off = Vec::Zero(n);  // the crowd part's mean difference
    if (variant_ == Variant::kCrowd)
      for (int64_t j = p0; j < p1; ++j) {
        const int64_t k = j - p0;
        off[k] = im.tm[bt.a[j]] - im.tm[bt.b[j]];
        for (int c = 0; c < C_; ++c) off[k] += (im.vm(bt.a[j], c) - im.vm(bt.b[j], c)) * wm_(u, c);
      }
    Vec gpair = s.D * gm_.row(u).transpose();
    Vec alpha = Vec::Zero(n);
    for (int it = 0; it < std::max(iterations, 1); ++it) {
      Vec h(n);
      for (int64_t j = p0; j < p1; ++j) {
        const int64_t k = j - p0;
        h[k] = s.wdiag[k] * (ZHat(off[k] + gpair[k], bt.sign[j]) - off[k]);
      }
      alpha = h - s.llt.solve(s.G * h);
      const Vec next = s.G * alpha;
      const double move = (next - gpair).cwiseAbs().maxCoeff();
      gpair = next;
      if (move < 1e-9) break;
    }
    gm_.row(u) = (s.Bk.transpose() * alpha).transpose();
    if (scatter_in_items_) std::copy(alpha.data(), alpha.data() + n, galpha_.begin() + p0);
    // tr(K^-1 (S + m m')) and log|S| - log|K| through the pair space.
    gT_[u] = (m - s.trace_rg + alpha.dot(s.G * alpha)) / sbar;
    // Kernel: log|S| - log|K|; learned: log|S|.
    gLS_[u] = learned_ ? gprior_logdet_ - s.log_det : -s.log_det - m * std::log(sbar);
  }

  /// The evidence lower bound on a batch holding every training pair.
  double Elbo(const Batch& bt) const {
    const ItemMoments& im = CachedMoments(bt);
    double e = 0;
    for (size_t j = 0; j < bt.size(); ++j) {
      const int64_t u = bt.user[j];
      const double mean = PairMean(bt, im, j);
      double var = 0;
      if (has_g_) var = gpv_[j];
      if (variant_ != Variant::kPerUser) {
        var += im.tvar[j];
        if (C_ > 0) {
          Vec dv(C_);
          for (int c = 0; c < C_; ++c) dv[c] = im.vm(bt.a[j], c) - im.vm(bt.b[j], c);
          const Mat& S = wS_[u];
          var += dv.dot(S * dv);
          for (int c = 0; c < C_; ++c) var += im.vvar(j, c) * (wm_(u, c) * wm_(u, c) + S(c, c));
        }
      }
      e += bt.w[j] * (LogNormalCdf(bt.sign[j] * mean / kSqrt2) - 0.25 * var);
    }
    const int m = M();
    const double a0 = options_.Real("gamma_shape");
    auto gauss_kl = [&](const GaussFactor& g, const GammaFactor& s) {
      return 0.5 * (s.Mean() * TraceKinvSecond(g.mean, g.cov) - m - m * s.MeanLog() + logdet_K_ -
                    g.LogDetCov());
    };
    if (learned_) {
      // E_q[log N(g_u; 0, Sigma)] + H[q(g_u)] summed over the users, then KL(q(Sigma) || p).
      const double n = static_cast<double>(bt.users.size());
      // Psi = nu P0 and Psi0 = c K_ZZ: their log-determinants and tr(Psi^-1 Psi0) come from the
      // factorizations RefreshGPrior and BuildKernelMatrices already made.
      const double nu0 = IwNu0(), nu = iw_nu_;
      const double c0 = IwScale0();
      const double logdet_psi = m * std::log(nu) + gprior_logdet_;
      const double logdet_psi0 = m * std::log(c0) + logdet_K_;
      const double elogdet = logdet_psi - m * std::log(2.0) - MvDigamma(0.5 * nu, m);
      double logdet_s = 0;
      for (int64_t u : bt.users) logdet_s += gLS_[u];
      e -= 0.5 * (n * elogdet + gprior_inv_.cwiseProduct(gscatter_).sum() - logdet_s - n * m);
      const double trace = c0 * gprior_inv_.cwiseProduct(Kzz_).sum() / nu;  // tr(Psi^-1 Psi0)
      e -= 0.5 * nu * trace - 0.5 * nu * m + 0.5 * nu0 * (logdet_psi - logdet_psi0) +
           LogMvGamma(0.5 * nu0, m) - LogMvGamma(0.5 * nu, m) +
           0.5 * (nu - nu0) * MvDigamma(0.5 * nu, m);
    } else if (has_g_) {
      for (int64_t u : bt.users) e -= 0.5 * (sg_.Mean() * gT_[u] - m - m * sg_.MeanLog() - gLS_[u]);
      e -= sg_.Kl(a0, RateG());
    }
    if (variant_ == Variant::kPerUser) return e;
    e -= gauss_kl(t_, st_) + st_.Kl(a0, options_.Real("gamma_rate_t"));
    for (int c = 0; c < C_; ++c)
      e -= gauss_kl(v_[c], sv_[c]) + sv_[c].Kl(a0, options_.Real("gamma_rate_v"));
    if (C_ == 0) return e;
    for (int c = 0; c < C_; ++c) e -= sw_[c].Kl(a0, options_.Real("gamma_rate_w"));
    for (int64_t u : bt.users) {
      const Mat& S = wS_[u];
      Eigen::LLT<Mat> llt(S);
      double kl = -2.0 * llt.matrixLLT().diagonal().array().log().sum() - C_;
      for (int c = 0; c < C_; ++c) kl += sw_[c].Mean() * WSecond(u, c) - sw_[c].MeanLog();
      e -= 0.5 * kl;
    }
    // KL(q(h_c) || N(0, Kuu / s_c^w)) in expectation over q(s_c^w).
    const double mu = static_cast<double>(Zu_.rows());
    for (int c = 0; c < Cf_; ++c)
      e -= 0.5 * (sw_[c].Mean() * TraceKuinvSecond(h_[c]) - mu - mu * sw_[c].MeanLog() +
                  logdet_Ku_ - h_[c].LogDetCov());
    return e;
  }

  static constexpr double kJitter = 1e-6;
  Variant variant_ = Variant::kCrowd;
  int C_ = 0;
  bool has_g_ = false;         ///< a per-user GP g_u: the per-user variant, or crowd's residual
  mutable ItemMoments cache_;  ///< item moments of batch cache_for_ (0: none)
  mutable uint64_t cache_for_ = 0;
  ItemKernel kernel_;
  bool scaled_ard_ = false;  ///< per-feature length-scales scaled by sqrt(D) (see ChooseInducing)
  RowMatrixF Z_;
  Mat Kzz_, Kinv_;
  Eigen::LLT<Mat> Kllt_;
  double logdet_K_ = 0;
  GaussFactor t_;
  std::vector<GaussFactor> v_;
  GammaFactor st_, sg_;
  std::vector<GammaFactor> sv_, sw_;
  // Local factors (during Fit / Adapt only).
  Mat wm_, gm_;
  std::vector<Mat> wS_;
  Mat gdiag_;                    ///< q(g_u): deviation variances (CenteredVariances)
  std::vector<double> glevel_;   ///< q(g_u): the level's variance
  Mat gscatter_;                 ///< learned: sum over the batch's users of E[g_u g_u']
  bool legacy_latents_ = false;  ///< reading payload version 1's latent rows
  // User features (--user-features): w_c(u) = h_c(x_u) + e_c(u) for c < Cf_, h_c ~ GP(0, k_u /
  // s_c^w) over the users' features on the inducing users Zu_ (q(h_c) a global factor), e_c(u) ~
  // N(0, 1 / s_c^w): w_c ~ GP(0, (k_u + identity) / s_c^w).
  int Cf_ = 0;
  ItemKernel ukernel_;
  RowMatrixF Zu_;
  Mat Kuu_, Kuu_inv_;
  Eigen::LLT<Mat> Kuu_llt_;
  double logdet_Ku_ = 0;
  std::vector<GaussFactor> h_;
  Mat au_;                         ///< Fit: every user's row k(x_u, Zu) Kuu^-1 [n_users, Mu]
  Mat wmu_;                        ///< Fit: the prior means a_u' E[h_c] [n_users, Cf]
  Mat wmuvar_;                     ///< Fit: their variances a_u' Cov[h_c] a_u [n_users, Cf]
  std::vector<int64_t> wp_users_;  ///< Fit: the users with pairs (rows of wmu_ kept current)
  // Step's per-pair work buffers (kept across steps).
  std::vector<double> step_gdiff_, step_dvm_, step_gamma_, step_r_;
  RowMat step_dv_, step_sdv_;
  // LocalStep's learned-residual scatter through the items (see there): per pair alpha, per user
  // R_u - alpha_u alpha_u'.
  bool scatter_in_items_ = false;
  std::vector<double> galpha_, step_x_;
  static constexpr int64_t kItemScatterMax = 2048;
  /// Step's pair loops use the threads from this many pairs on (a parallel region costs more
  /// than it saves below).
  static constexpr int64_t kParallelPairs = 16384;
  /// ... in chunks of this many, taken by whichever thread is free (a thread that shares its
  /// core with another job takes fewer).
  static constexpr int kPairChunk = 2048;
  bool learned_ = false;        ///< crowd with --gppl-residual learned: q(Sigma)
  bool auto_residual_ = false;  ///< crowd with --gppl-residual auto: learned_ chosen in Fit
  Mat iw_psi_;                  ///< learned: q(Sigma) = IW(iw_psi_, iw_nu_)
  double iw_nu_ = 0;
  Mat gprior_, gprior_inv_;  ///< g_u's prior covariance as the local factors use it (RefreshGPrior)
  double gprior_logdet_ = 0;
  std::vector<double> gT_, gLS_;  ///< q(g_u): tr(K^-1 (S + m m')), log|S| - log|K|
  std::vector<double> gpv_;       ///< Var[g_u(a) - g_u(b)] per pair of the last local step
};

std::vector<OptionSpec> GpplOptions() {
  auto positive = [](OptionSpec s) {
    s.min = 0;
    s.min_open = true;
    return s;
  };
  OptionSpec delay = opt::Real("svi_delay", "1", "SVI step size (i + delay)^-forget", 1);
  OptionSpec residual =
      opt::Text("gppl_residual", "auto", {"auto", "kernel", "learned", "on", "off"},
                "crowd: a per-user residual g_u(x) in f_u, with the item kernel's covariance or "
                "one learned from the people (inverse-Wishart), or the one whose fit on the "
                "training pairs predicts the validation pairs better (auto: both fitted, then "
                "the one chosen refitted on all pairs); on = kernel (the earlier name)");
  residual.legacy = "kernel";  // files from before the option had the kernel residual
  OptionSpec user_features = opt::Text(
      "user_features", "off", {"off", "half", "all"},
      "crowd: a GP over the users' features (users/features) as the prior mean of w_c(u) for "
      "half or all of the components (new users start there); off: w_u ~ N(0, 1 / s^w)");
  user_features.legacy = "off";
  return {
      opt::Epochs(0, "SVI steps; 0: 100 with one full batch, else 20"),
      opt::Batch(0, "0: all pairs when there are at most 200000, else 2000"),
      opt::Text("gppl_users", "crowd", {"crowd", "per-user", "pooled"},
                "crowdGPPL, an independent GP per person, or one GP for everybody"),
      residual,
      opt::Real("residual_dof", "0",
                "learned residual: inverse-Wishart degrees of freedom beyond M + 1 (0: M / 20)", 0,
                1e300),
      opt::Text("item_kernel", "matern32", {"matern32", "identity"},
                "item kernel: Matern 3/2 with median-heuristic length-scales, or the identity"),
      opt::Int("components", 20, "latent components C (crowd)", 1, 256),
      user_features,
      opt::Int("inducing_users", 200,
               "user-feature GP: inducing users (all distinct feature rows when at most this many)",
               1, 100000),
      opt::Int("inducing", 100, "inducing items M (all items when there are at most M)", 2, 1e9),
      positive(opt::Real("ls_factor", "1", "length-scale = factor x the median heuristic")),
      delay,
      opt::Real("svi_forget", "-1", "SVI forgetting rate (< 0: 0 with one full batch, else 0.9)",
                -1e300, 1),
      positive(opt::Real("gamma_shape", "1", "shape of the inverse-scale gamma priors")),
      positive(opt::Real("gamma_rate_t", "100",
                         "rate of the consensus (and per-user / pooled GP) inverse-scale prior")),
      positive(
          opt::Real("gamma_rate_v", "10", "rate of the item components' inverse-scale priors")),
      positive(opt::Real("gamma_rate_w", "10", "rate of the user weights' inverse-scale priors")),
      positive(opt::Real("gamma_rate_g", "1000",
                         "crowd: rate of the per-user residual's inverse-scale prior"))};
}

const bool kRegistered = RegisterFamily(
    {"gppl",
     "crowdGPPL: Bayesian collaborative preference learning, f_u = sum_c v_c w_c(u) + t with GP "
     "priors over item embeddings, probit likelihood, variational inference (--gppl-users "
     "crowd | per-user | pooled)",
     GpplOptions(), [](const ModelOptions& o) { return std::make_unique<GpplModel>(o); }, 7,
     // The demo's budget: the kernel residual (auto fits three times to choose).
     [](ModelOptions& o, int) { o.Set("gppl_residual", "kernel"); },
     "gppl runs with the kernel residual (the default, auto, fits both and chooses on validation).",
     /*payload_version=*/3});

}  // namespace
}  // namespace prefmix::personalization
