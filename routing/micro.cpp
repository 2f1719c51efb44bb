#include "routing/micro.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "routing/online.h"

namespace prefmix::routing {

RowMatrixD MicroRoute(const RowMatrixD& x, const MicroParams& p) {
  RowMatrixD z = x * p.w.transpose();
  z.rowwise() += p.b.transpose();
  if (p.offset.size() > 0) {
    PREFMIX_ASSERT(p.offset.rows() == z.rows() && p.offset.cols() == z.cols(),
                   "micro: routing offsets of shape [", p.offset.rows(), ", ", p.offset.cols(),
                   "] for ", z.rows(), " inputs");
    z += p.offset;
  }
  for (Eigen::Index i = 0; i < z.rows(); ++i) {
    const double m = z.row(i).maxCoeff();
    z.row(i) = (z.row(i).array() - m).exp();
    z.row(i) /= z.row(i).sum();
  }
  return z;
}

MicroPass MicroLossAndGrad(const RowMatrixF& items, const RowMatrixD& x,
                           const std::vector<int32_t>& input, const PairSet& pairs,
                           const MicroParams& p, double balance, bool sample_entropy, double l2) {
  const int K = static_cast<int>(p.theta.cols());
  const int64_t n_items = items.rows(), n_in = x.rows(), m = static_cast<int64_t>(pairs.size());
  PREFMIX_ASSERT((int64_t)input.size() == m, "micro: one router input per pair");
  // Per-item rewards once per pass, gathered per pair.
  const RowMatrixD R = (items * p.theta.cast<float>()).cast<double>();
  const RowMatrixD Pi = MicroRoute(x, p);
  double C = 0;
  Eigen::VectorXd cnt = Eigen::VectorXd::Zero(n_in);
  for (int64_t j = 0; j < m; ++j) {
    C += pairs.weight[j];
    cnt[input[j]] += pairs.weight[j];
  }
  const double inv = C > 0 ? 1.0 / C : 0.0;
  const int T = omp_get_max_threads();
  std::vector<RowMatrixD> gr(T, RowMatrixD::Zero(n_items, K)), gpi(T, RowMatrixD::Zero(n_in, K));
  double data = 0;
#pragma omp parallel reduction(+ : data)
  {
    const int t = omp_get_thread_num();
    double* GR = gr[t].data();
    double* GP = gpi[t].data();
    double s[math::kMaxK];
#pragma omp for schedule(static)
    for (int64_t j = 0; j < m; ++j) {
      const int64_t a = pairs.first[j], b = pairs.second[j], i = input[j];
      const double sgn = pairs.label[j] > 0.5f ? 1.0 : -1.0;
      const double c = pairs.weight[j] * inv;
      double P = 0;
      for (int k = 0; k < K; ++k) {
        s[k] = math::Sigmoid(sgn * (R(a, k) - R(b, k)));
        P += Pi(i, k) * s[k];
      }
      P = std::max(P, 1e-300);
      data -= c * std::log(P);
      for (int k = 0; k < K; ++k) {
        GP[i * K + k] -= c * s[k] / P;
        const double gd = -c * Pi(i, k) * s[k] * (1 - s[k]) / P * sgn;
        GR[a * K + k] += gd;
        GR[b * K + k] -= gd;
      }
    }
  }
  for (int t = 1; t < T; ++t) {
    gr[0] += gr[t];
    gpi[0] += gpi[t];
  }
  RowMatrixD& GPi = gpi[0];
  // The entropy term, per router input (pairs sharing an input share its pi).
  double ent = 0;
  if (balance > 0 && C > 0) {
    if (sample_entropy) {
      // -lambda mean_j c_j H(pi_j) = lambda sum_i (cnt_i / C) sum_k pi_ik log pi_ik.
      for (int64_t i = 0; i < n_in; ++i) {
        if (cnt[i] == 0) continue;
        for (int k = 0; k < K; ++k) {
          const double pk = std::max(Pi(i, k), 1e-300);
          ent += balance * cnt[i] * inv * pk * std::log(pk);
          GPi(i, k) += balance * cnt[i] * inv * (std::log(pk) + 1);
        }
      }
    } else {
      // -lambda H(pi_bar), pi_bar = sum_i (cnt_i / C) pi_i.
      Eigen::VectorXd bar = (Pi.transpose() * cnt) * inv;
      for (int k = 0; k < K; ++k) {
        const double pk = std::max(bar[k], 1e-300);
        ent += balance * pk * std::log(pk);
        const double g = balance * (std::log(pk) + 1);
        for (int64_t i = 0; i < n_in; ++i) GPi(i, k) += g * cnt[i] * inv;
      }
    }
  }
  // Softmax backward: dz = pi (g - pi.g).
  RowMatrixD GZ(n_in, K);
  for (int64_t i = 0; i < n_in; ++i) {
    const double dot = Pi.row(i).dot(GPi.row(i));
    GZ.row(i) = Pi.row(i).array() * (GPi.row(i).array() - dot);
  }
  MicroPass out;
  out.data_loss = data;
  out.loss = data + ent + l2 * (p.theta.squaredNorm() + p.w.squaredNorm());
  out.grad.theta = (items.transpose() * gr[0].cast<float>()).cast<double>() + 2 * l2 * p.theta;
  // grad W = GZ' x as a row loop: K x Dx from n_in rows (one-hot / sparse inputs skip zeros);
  // Eigen's GEMM for this shape (4 x 5,000 x 23 on SUSHI) opened a parallel region per call
  // and dominated training time.
  out.grad.w = 2 * l2 * p.w;
  for (int64_t i = 0; i < n_in; ++i)
    for (int k = 0; k < K; ++k) {
      const double g = GZ(i, k);
      if (g == 0) continue;
      for (Eigen::Index d = 0; d < x.cols(); ++d)
        if (x(i, d) != 0) out.grad.w(k, d) += g * x(i, d);
    }
  out.grad.b = GZ.colwise().sum().transpose();
  if (p.offset.size() > 0) {
    const double prior = C > 0 ? 1.0 / (kMicroOffsetSd * kMicroOffsetSd * C) : 0.0;
    out.loss += 0.5 * prior * p.offset.squaredNorm();
    out.grad.offset = GZ + prior * p.offset;
  }
  return out;
}

namespace {

/// Reference items for the calibrated Score() when the dataset has more items than this.
constexpr int64_t kScoreReference = 4096;
/// EM iterations of the user step.
constexpr int kUserStepIters = 50;

/// Adam state of one parameter block.
struct Adam {
  Eigen::MatrixXd m, v;
  void Step(Eigen::MatrixXd* x, const Eigen::MatrixXd& g, double lr, int t) {
    if (m.size() != g.size()) {
      m = Eigen::MatrixXd::Zero(g.rows(), g.cols());
      v = m;
    }
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g.cwiseAbs2();
    const double c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
    x->array() -= (lr / c1) * m.array() / ((v.array() / c2).sqrt() + eps);
  }
};

/// Seed stream (DeriveSeed(--seed, stream)) of the initial heads and router.
constexpr uint64_t kInitStream = 0x3c10;

class MicroModel : public Model, public MultiHeadModel {
 public:
  explicit MicroModel(const ModelOptions&) {}
  std::string Family() const override { return "micro"; }
  int LatentDim() const override { return options_.Int("k"); }
  Eigen::VectorXf PopulationLatent() const override { return pibar_.cast<float>(); }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    const std::string r = options_.Text("router");
    if (r == "attributes") {
      PREFMIX_CHECK_INPUT(!ds.attributes.empty(), "--router attributes: ", ds.source,
                          " has no /users/attributes");
      attr_names_.clear();
      attr_codes_.clear();
      for (const auto& a : ds.attributes) {
        attr_names_.push_back(a.name);
        attr_codes_.push_back(a.NumCodes());
      }
    } else if (r == "features") {
      PREFMIX_CHECK_INPUT(ds.user_features.rows() > 0 && ds.user_features.cols() > 0,
                          "--router features: ", ds.source, " has no /users/features");
      feature_dim_ = ds.user_features.cols();
    } else if (ds.has_contexts) {
      context_dim = ds.contexts.cols();
    }
    const int max_epochs = options_.Int("epochs");
    FitReport rep;
    double l2 = options_.Real("l2");
    int epochs = max_epochs;
    if (!valid.empty()) {
      SelectOnValidation(
          "l2", L2Grid(l2, {1e-4, 1e-3, 1e-2}),
          [&](double g, int* be) { return Train(ds, train, &valid, g, max_epochs, be); }, &rep, &l2,
          &epochs);
      Train(ds, train, &valid, l2, epochs, nullptr);
      strength_ = options_.Real("user_prior") >= 0 ? options_.Real("user_prior")
                                                   : SelectStrength(ds, train, valid, &rep);
      if (options_.Flag("refit")) Train(ds, Concat(train, valid), nullptr, l2, epochs, nullptr);
    } else {
      if (l2 < 0) l2 = 1e-4;
      Train(ds, train, nullptr, l2, max_epochs, nullptr);
      strength_ = options_.Real("user_prior") >= 0 ? options_.Real("user_prior") : 2.0;
    }
    const PairSet all = options_.Flag("refit") ? Concat(train, valid) : train;
    SetTrainLatents(ds, TrainUserLatents(ds, all));
    {
      // Degeneracy: the router's spread over its training inputs and the users' latents' spread
      // around the mean routing (mean total-variation distance; 0: personalization changes
      // nothing).
      std::vector<int32_t> in;
      const RowMatrixD pi = MicroRoute(PairInputs(ds, all, &in), params_);
      double router = 0, latent = 0;
      for (int32_t i : in) router += 0.5 * (pi.row(i).transpose() - pibar_).cwiseAbs().sum();
      const RowMatrixF& lat = TrainLatents();
      for (Eigen::Index u = 0; u < lat.rows(); ++u)
        latent += 0.5 * (lat.row(u).transpose().cast<double>() - pibar_).cwiseAbs().sum();
      rep.details["router_spread"] = in.empty() ? 0.0 : router / in.size();
      rep.details["latent_spread"] = lat.rows() ? latent / lat.rows() : 0.0;
      rep.details["training_routing"] = UserRouting(ds) ? "per-user logits (no contexts)" : r;
    }
    params_.offset.resize(0, 0);  // training only: the model file and predictions do without
    rep.details["l2"] = l2;
    rep.details["epochs"] = epochs;
    rep.details["router"] = r;
    rep.details["user_prior"] = strength_;
    Json pb = Json::Array();
    for (int k = 0; k < options_.Int("k"); ++k) pb.push_back(pibar_[k]);
    rep.details["mean_routing"] = pb;
    rep.epochs_run = epochs;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    return AdaptWith(ds, support, n_users, device, strength_);
  }

  /// Stage 2: routing/online.h's sequential estimators on the same inputs and prior as the
  /// batch user step (heads frozen).
  OnlineResult AdaptOnline(const Dataset& ds, const PairSet& stream, int64_t n_users,
                           const std::string& estimator) const override {
    const OnlineEstimator e = ParseOnlineEstimator(estimator);
    const RowMatrixF R = ds.items * params_.theta.cast<float>();
    const UserStepProblem prob = GatherUserStepProblem(R, stream, n_users);
    OnlinePass pass =
        RunOnlineMixture(prob, PriorLatents(ds, n_users), strength_, e, kUserStepIters, 1e-6);
    OnlineResult r;
    r.latent = std::move(pass.latent);
    // The problem groups pairs by user and keeps their order within a user.
    r.prob.resize(stream.size());
    std::vector<int64_t> next(prob.offsets.begin(), prob.offsets.end() - 1);
    for (size_t j = 0; j < stream.size(); ++j) r.prob[j] = pass.prob[next[stream.user[j]]++];
    return r;
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    const int K = options_.Int("k");
    const RowMatrixD R = (ds.items * params_.theta.cast<float>()).cast<double>();
    RowMatrixD ctx_pi;
    const bool by_context =
        options_.Text("router") == "context" && context_dim > 0 && ds.has_contexts;
    if (by_context) ctx_pi = MicroRoute(ContextInputs(ds), params_);
    std::vector<double> out(pairs.size());
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < (int64_t)pairs.size(); ++j) {
      const int64_t a = pairs.first[j], b = pairs.second[j];
      const bool use_ctx = by_context && pairs.context[j] >= 0;
      double p = 0, z = 0;
      for (int k = 0; k < K; ++k) {
        const double w = use_ctx ? ctx_pi(pairs.context[j], k) : latents(pairs.user[j], k);
        p += w * math::Sigmoid(R(a, k) - R(b, k));
        z += w;
      }
      out[j] = z > 0 ? p / z : 0.5;
    }
    return out;
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    return latents * CalibratedItemScores(HeadRewards(ds),
                                          DeriveSeed(options_.seed, kScoreReferenceStream),
                                          kScoreReference);
  }

  RowMatrixF HeadRewards(const Dataset& ds) const override {
    return (ds.items * params_.theta.cast<float>()).transpose();
  }
  Eigen::VectorXd HeadWeights() const override { return pibar_; }

  Json Params() const override {
    Json j = Json::Object();
    j["shared"] = static_cast<int64_t>(params_.theta.size() + params_.w.size() + params_.b.size());
    j["per_user"] = options_.Int("k");
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    SaveBase(os);
    cereal::PortableBinaryOutputArchive ar(os);
    ar(params_.theta, params_.w, params_.b, pibar_, attr_names_, attr_codes_, feature_dim_,
       strength_);
  }
  void LoadPayload(std::istream& is) override {
    LoadBase(is);
    cereal::PortableBinaryInputArchive ar(is);
    ar(params_.theta, params_.w, params_.b, pibar_, attr_names_, attr_codes_, feature_dim_,
       strength_);
    const int K = options_.Int("k");
    PREFMIX_CHECK_INPUT(
        params_.theta.rows() == dim && params_.theta.cols() == K && params_.w.rows() == K &&
            params_.w.cols() == InputDim() && params_.b.size() == K && pibar_.size() == K &&
            attr_names_.size() == attr_codes_.size(),
        "model file: micro parameters have shapes theta [", params_.theta.rows(), ", ",
        params_.theta.cols(), "], W [", params_.w.rows(), ", ", params_.w.cols(), "], expected [",
        dim, ", ", K, "] and [", K, ", ", InputDim(), "]");
  }

 private:
  /// Training routes on per-user logits: the context router on data without contexts.
  bool UserRouting(const Dataset& ds) const {
    return options_.Text("router") == "context" && !ds.has_contexts;
  }

  /// Router input size for the configured router.
  int64_t InputDim() const {
    if (options_.Text("router") == "attributes") {
      int64_t d = 0;
      for (int32_t c : attr_codes_) d += c;
      return d;
    }
    if (options_.Text("router") == "features") return feature_dim_;
    return context_dim;
  }

  /// Router inputs of the users of ds [n_users, Dx] (attributes / features routers).
  RowMatrixD UserInputs(const Dataset& ds) const {
    const int64_t U = ds.n_users();
    RowMatrixD x = RowMatrixD::Zero(U, InputDim());
    if (options_.Text("router") == "attributes") {
      int64_t col = 0;
      for (size_t a = 0; a < attr_names_.size(); ++a) {
        const int idx = ds.FindAttribute(attr_names_[a]);
        if (idx >= 0) {
          const auto& codes = ds.attributes[idx].codes;
          for (int64_t u = 0; u < U; ++u)
            if (codes[u] >= 0 && codes[u] < attr_codes_[a]) x(u, col + codes[u]) = 1.0;
        }
        col += attr_codes_[a];
      }
    } else if (options_.Text("router") == "features" && ds.user_features.rows() > 0) {
      PREFMIX_CHECK_INPUT(ds.user_features.cols() == feature_dim_, ds.source,
                          ": /users/features has ", ds.user_features.cols(),
                          " columns, the micro model was trained with ", feature_dim_);
      x = ds.user_features.cast<double>();
    }
    return x;
  }

  /// Context inputs [n_contexts, Dc] (context router); 0 rows when the data has none.
  RowMatrixD ContextInputs(const Dataset& ds) const {
    if (!ds.has_contexts || context_dim == 0) return RowMatrixD::Zero(0, context_dim);
    PREFMIX_CHECK_INPUT(ds.contexts.cols() == context_dim, ds.source, ": contexts have dimension ",
                        ds.contexts.cols(), ", the micro model was trained with ", context_dim);
    return ds.contexts.cast<double>();
  }

  /// The router input matrix for training (a zero row appended last) and each pair's row.
  RowMatrixD PairInputs(const Dataset& ds, const PairSet& pairs,
                        std::vector<int32_t>* input) const {
    const bool ctx = options_.Text("router") == "context";
    if (ctx && UserRouting(ds)) {  // one input per user, nothing to read: offsets only
      input->assign(pairs.user.begin(), pairs.user.end());
      return RowMatrixD::Zero(ds.n_users(), 0);
    }
    RowMatrixD base = ctx ? ContextInputs(ds) : UserInputs(ds);
    RowMatrixD x = RowMatrixD::Zero(base.rows() + 1, base.cols());
    x.topRows(base.rows()) = base;
    const int32_t zero = static_cast<int32_t>(base.rows());
    input->resize(pairs.size());
    for (size_t j = 0; j < pairs.size(); ++j) {
      if (ctx)
        (*input)[j] = pairs.context[j] >= 0 && pairs.context[j] < zero ? pairs.context[j] : zero;
      else
        (*input)[j] = pairs.user[j];
    }
    return x;
  }

  /// Adam on all parameters from a seeded init. With `valid`, early stopping on its log loss
  /// under the router's P(a > b | x): the best epoch's parameters are kept and that loss
  /// returned. Sets pibar_ (the training pairs' mean routing).
  double Train(const Dataset& ds, const PairSet& tr, const PairSet* va, double l2, int epochs,
               int* best_epoch) {
    const int K = options_.Int("k");
    const int64_t D = ds.dim();
    std::vector<int32_t> in_tr, in_va;
    const RowMatrixD x = PairInputs(ds, tr, &in_tr);
    if (va) PairInputs(ds, *va, &in_va);
    Rng rng(DeriveSeed(options_.seed, kInitStream));
    params_.theta.resize(D, K);
    const double sv = 1.0 / std::sqrt(static_cast<double>(D));
    for (Eigen::Index i = 0; i < params_.theta.size(); ++i)
      params_.theta.data()[i] = sv * rng.Normal();
    params_.w.resize(K, x.cols());
    for (Eigen::Index i = 0; i < params_.w.size(); ++i) params_.w.data()[i] = 0.01 * rng.Normal();
    params_.b = Eigen::VectorXd::Zero(K);
    params_.offset.resize(0, 0);
    if (UserRouting(ds)) params_.offset = Eigen::MatrixXd::Zero(x.rows(), K);
    const double lr = options_.Real("lr");
    Adam at, aw, ab, ao;
    EarlyStopping stop(options_.Int("patience"));
    MicroParams best_p = params_;
    for (int ep = 1; ep <= epochs; ++ep) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      MicroPass pass = MicroLossAndGrad(ds.items, x, in_tr, tr, params_, options_.Real("balance"),
                                        options_.Flag("sample_entropy"), l2);
      PREFMIX_CHECK_INPUT(std::isfinite(pass.loss), "micro: training diverged (loss ", pass.loss,
                          " at epoch ", ep, "); lower --lr");
      at.Step(&params_.theta, pass.grad.theta, lr, ep);
      aw.Step(&params_.w, pass.grad.w, lr, ep);
      Eigen::MatrixXd b = params_.b, gb = pass.grad.b;
      ab.Step(&b, gb, lr, ep);
      params_.b = b;
      if (params_.offset.size() > 0) ao.Step(&params_.offset, pass.grad.offset, lr, ep);
      if (!va) continue;
      const double v = MicroLossAndGrad(ds.items, x, in_va, *va, params_, 0, false, 0).data_loss;
      if (stop.Better(v, ep)) {
        if (best_epoch) *best_epoch = ep;
        best_p = params_;
      } else if (stop.Stop()) {
        break;
      }
    }
    if (va) params_ = best_p;
    // Mean routing of the training pairs (population latent, context prior, HeadWeights).
    const RowMatrixD Pi = MicroRoute(x, params_);
    pibar_ = Eigen::VectorXd::Zero(K);
    double C = 0;
    for (size_t j = 0; j < tr.size(); ++j) {
      pibar_ += tr.weight[j] * Pi.row(in_tr[j]).transpose();
      C += tr.weight[j];
    }
    pibar_ /= std::max(C, 1e-300);
    return stop.best();
  }

  /// Router prior pi0_u for every user of ds [n_users, K].
  RowMatrixF PriorLatents(const Dataset& ds, int64_t n_users) const {
    RowMatrixF out(n_users, options_.Int("k"));
    if (options_.Text("router") == "context") {
      for (int64_t u = 0; u < n_users; ++u) out.row(u) = pibar_.transpose().cast<float>();
      return out;
    }
    const RowMatrixD pi = MicroRoute(UserInputs(ds), params_);
    PREFMIX_ASSERT(pi.rows() >= n_users, "micro: more users than dataset rows");
    out = pi.topRows(n_users).cast<float>();
    return out;
  }

  /// The batched user step (`mixture` link) with the heads frozen.
  RowMatrixF AdaptWith(const Dataset& ds, const PairSet& support, int64_t n_users,
                       const std::string& device, double strength) const {
    const RowMatrixF R = ds.items * params_.theta.cast<float>();
    UserStepProblem prob = GatherUserStepProblem(R, support, n_users);
    prob.lambda = strength;
    const RowMatrixF prior = PriorLatents(ds, n_users);
    UserStepOptions opt;
    opt.max_iter = kUserStepIters;
    opt.tol = 1e-6;
    UserStepResult r = RunUserStep(UserStepLink::kMixture, prob, opt, device, &prior);
    return r.latent;
  }

  /// Training users' latents: context router: the mean routing of each user's pairs (pibar
  /// without pairs); otherwise the user step on the user's pairs.
  RowMatrixF TrainUserLatents(const Dataset& ds, const PairSet& pairs) const {
    const int64_t U = ds.n_users();
    if (options_.Text("router") != "context" || context_dim == 0)
      return AdaptWith(ds, pairs, U, "cpu", strength_);
    std::vector<int32_t> in;
    const RowMatrixD Pi = MicroRoute(PairInputs(ds, pairs, &in), params_);
    RowMatrixD acc = RowMatrixD::Zero(U, options_.Int("k"));
    std::vector<double> c(U, 0.0);
    for (size_t j = 0; j < pairs.size(); ++j) {
      acc.row(pairs.user[j]) += pairs.weight[j] * Pi.row(in[j]);
      c[pairs.user[j]] += pairs.weight[j];
    }
    RowMatrixF out(U, options_.Int("k"));
    for (int64_t u = 0; u < U; ++u)
      out.row(u) = c[u] > 0 ? (acc.row(u) / c[u]).cast<float>().eval()
                            : pibar_.transpose().cast<float>().eval();
    return out;
  }

  /// Chooses the Dirichlet strength of the user step by the log loss on validation pairs of
  /// pseudo-unseen users adapted from k in {1, 2, 5, 10} of their training pairs.
  double SelectStrength(const Dataset& ds, const PairSet& train, const PairSet& valid,
                        FitReport* rep) const {
    const int64_t U = ds.n_users();
    const std::vector<double> grid = {0.25, 1, 2, 4, 8, 16};
    std::vector<double> mean;
    const size_t best = SelectUserStepOnPseudoUnseen(
        train, U, {1, 2, 5, 10}, grid.size(),
        [&](size_t g, const PairSet& support) {
          const RowMatrixF lat = AdaptWith(ds, support, U, "cpu", grid[g]);
          return LogLoss(PredictProb(ds, valid, lat), valid.label);
        },
        &mean);
    Json curve = Json::Array();
    for (size_t g = 0; g < grid.size(); ++g) {
      Json e = Json::Object();
      e["user_prior"] = grid[g];
      e["pseudo_unseen_log_loss"] = mean[g];
      curve.push_back(e);
    }
    rep->details["user_prior_selection"] = curve;
    return grid[best];
  }

  MicroParams params_;
  Eigen::VectorXd pibar_;                ///< mean routing of the training pairs [K]
  std::vector<std::string> attr_names_;  ///< attributes router: attribute order
  std::vector<int32_t> attr_codes_;      ///< attributes router: one-hot width per attribute
  int64_t feature_dim_ = 0;              ///< features router: Du
  double strength_ = 2.0;                ///< Dirichlet strength s of the user step
};

std::vector<OptionSpec> MicroOptions() {
  OptionSpec k = opt::K(4, false);
  k.max = math::kMaxK;
  return {
      k,
      opt::Epochs(500),
      opt::Lr("0.05"),
      opt::L2("-1", "< 0: chosen on validation"),
      opt::Patience(20),
      opt::UserPrior("-1", "< 0: chosen on held-out training users, 2 without validation pairs"),
      opt::Refit(),
      opt::Text("router", "context", {"context", "attributes", "features"},
                "router input: the comparison's context, the user's attributes or features"),
      opt::Real("balance", "0.5", "load-balancing weight of the routing entropy term", 0),
      opt::Switch("sample_entropy", "sample-entropy", false,
                  "per-sample routing entropy (MiCRo's code) instead of the batch mean")};
}

const bool kRegistered = RegisterFamily(
    {"micro",
     "MiCRo: K linear BT heads mixed in probability by a router on the context, user attributes "
     "or user features; batched mixture-weight user step (cold start from the router)",
     MicroOptions(), [](const ModelOptions& o) { return std::make_unique<MicroModel>(o); }, 6,
     // The planted presets have no contexts: route on the user attributes (the segment tracks
     // the group).
     [](ModelOptions& o, int) { o.Set("router", "attributes"); }, ""});

}  // namespace
}  // namespace prefmix::routing
