// Family `vpl`: see personalization/vpl.h for the model. LibTorch + Adam (weight decay), early
// stopping on the validation log loss, latent size chosen on validation (--dim 0), then a refit
// on train + validation for the selected number of epochs.
#include "personalization/vpl.h"

#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "core/eval/metrics.h"
#include "core/io/serialize.h"
#include "core/model/fit.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/torch/glue.h"
#include "core/torch/module.h"
#include "core/userstep/math.h"

namespace prefmix::personalization {

double CosineAnneal(int64_t step, int64_t period, double floor) {
  PREFMIX_ASSERT(period >= 1, "vpl: annealing period must be >= 1");
  const double s = static_cast<double>(step % period) / static_cast<double>(period);
  const double y = (std::cos(M_PI * (s - 1.0)) + 1.0) / 2.0;
  return floor + (1.0 - floor) * y;
}

namespace {

/// KL(N(mu, exp(logvar)) || N(0, I)) per row: -1/2 sum_d (1 + logvar - mu^2 - exp(logvar)).
using torchglue::PairTensors;
using torchglue::ToMatrix;
using torchglue::ToTensors;
torch::Tensor FromMatrix(const RowMatrixF& m) { return torchglue::Copy(m); }
torch::Tensor ItemTensor(const Dataset& ds) { return torchglue::Items(ds); }

/// Seed streams (DeriveSeed(--seed, stream)).
constexpr uint64_t kHeldOutOrderStream = 0x5e1ec7;  ///< held-out users' pair order (vpl-adapt)
constexpr uint64_t kScoreReferenceSample = 0x5e0;   ///< the reference items of Score
constexpr uint64_t kContextStream = 0x791;          ///< training context sets
constexpr uint64_t kBatchOrderStream = 11;          ///< mini-batch order (--seed plus this)

torch::Tensor KlRows(const torch::Tensor& mu, const torch::Tensor& logvar) {
  return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1);
}

torch::Tensor LongTensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {(int64_t)v.size()},
                          torch::TensorOptions().dtype(torch::kLong))
      .clone();
}

torch::Tensor Leaky(const torch::Tensor& x) { return torch::leaky_relu(x, 0.2); }

struct VplNetImpl : torch::nn::Module {
  VplNetImpl(int64_t d, int64_t h, int64_t l, bool linear_decoder)
      : d_(d),
        h_(h),
        l_(l),
        linear_(linear_decoder),
        pair1(register_module("pair1", torch::nn::Linear(2 * d, h))),
        pair2(register_module("pair2", torch::nn::Linear(h, h))),
        pair3(register_module("pair3", torch::nn::Linear(h, h))),
        q(register_module("q", torch::nn::Linear(h, h))),
        k(register_module("k", torch::nn::Linear(h, h))),
        v(register_module("v", torch::nn::Linear(h, h))),
        mu_head(register_module("mu_head", torch::nn::Linear(h, l))),
        prec_head(register_module("prec_head", torch::nn::Linear(h, l))),
        dec1(nullptr),
        dec2(nullptr),
        dec3(nullptr),
        dec_lin(nullptr) {
    if (linear_) {
      dec_lin = register_module("dec_lin", torch::nn::Linear(l, d));
    } else {
      dec1 = register_module("dec1", torch::nn::Linear(d + l, h));
      dec2 = register_module("dec2", torch::nn::Linear(h, h));
      dec3 = register_module("dec3", torch::nn::Linear(h, 1));
    }
  }

  /// ea, eb [S, M, D] (preferred first), mask [S, M] (1 = a real pair): mu, logvar [S, L].
  std::pair<torch::Tensor, torch::Tensor> Encode(const torch::Tensor& ea, const torch::Tensor& eb,
                                                 const torch::Tensor& mask) {
    const int64_t S = ea.size(0), M = ea.size(1);
    if (M == 0) return {torch::zeros({S, l_}), torch::zeros({S, l_})};
    auto p = pair3(Leaky(pair2(Leaky(pair1(torch::cat({ea, eb}, -1))))));  // [S, M, H]
    // Small sets (training: <= 8 pairs) use broadcast products instead of batched GEMMs: one
    // BLAS call per set of 8 x 8 costs far more than the arithmetic. Large batches of wide
    // encodings (adaptation, D = 768) use the GEMMs: the broadcast tensor [S, M, M, H] would be
    // hundreds of MB.
    const bool small = M <= 16 && S * M * M * h_ <= (int64_t{1} << 22);
    auto qp = q(p), kp = k(p), vp = v(p);
    auto scores = (small ? (qp.unsqueeze(2) * kp.unsqueeze(1)).sum(-1)
                         : torch::matmul(qp, kp.transpose(1, 2))) /
                  std::sqrt((double)h_);  // [S, M, M]
    // Padded keys get -1e9 (not -inf: a set with no pair at all stays finite; its rows are
    // masked out below anyway).
    scores = scores.masked_fill(mask.unsqueeze(1) < 0.5, -1e9);
    auto att = torch::softmax(scores, -1);
    auto o =
        small ? (att.unsqueeze(-1) * vp.unsqueeze(1)).sum(2) : torch::matmul(att, vp);  // [S, M, H]
    auto m = mu_head(o);
    auto lam = torch::softplus(prec_head(o)) * mask.unsqueeze(-1);  // [S, M, L]
    auto prec = 1 + lam.sum(1);
    auto mu = (lam * m).sum(1) / prec;
    return {mu, -torch::log(prec)};
  }

  /// r(e, z) for rows e [N, D], z [N, L]: [N].
  torch::Tensor Decode(const torch::Tensor& e, const torch::Tensor& z) {
    if (linear_) return (e * dec_lin(z)).sum(-1);
    return dec3(Leaky(dec2(Leaky(dec1(torch::cat({e, z}, -1)))))).reshape({-1});
  }

  /// r(e_j, z_i) for every pair of rows e [n, D], z [N, L]: [N, n]. The linear decoder is one
  /// GEMM, (W z_i + b)' e_j; the MLP decoder runs row by row of z.
  torch::Tensor DecodeAll(const torch::Tensor& e, const torch::Tensor& z) {
    if (linear_) return torch::mm(dec_lin(z), e.t());
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < z.size(0); ++i)
      rows.push_back(Decode(e, z.slice(0, i, i + 1).expand({e.size(0), l_})));
    return torch::stack(rows, 0);
  }

  int64_t d_, h_, l_;
  bool linear_;
  torch::nn::Linear pair1, pair2, pair3, q, k, v, mu_head, prec_head, dec1, dec2, dec3, dec_lin;
};
TORCH_MODULE(VplNet);

/// Padded index tensors of a batch of context sets.
struct SetTensors {
  torch::Tensor a, b, mask;  // [S, M] long, long, float
};

SetTensors Pad(const std::vector<const ContextSet*>& sets) {
  int64_t M = 0;
  for (const auto* s : sets) M = std::max<int64_t>(M, (int64_t)s->size());
  const int64_t S = (int64_t)sets.size();
  SetTensors t;
  if (M == 0 || S == 0) {
    t.a = torch::zeros({S, M}, torch::kLong);
    t.b = torch::zeros({S, M}, torch::kLong);
    t.mask = torch::zeros({S, M});
    return t;
  }
  std::vector<int64_t> a(S * M, 0), b(S * M, 0);
  std::vector<float> mask(S * M, 0.0f);
  for (int64_t i = 0; i < S; ++i)
    for (size_t j = 0; j < sets[i]->size(); ++j) {
      a[i * M + j] = (*sets[i])[j].chosen;
      b[i * M + j] = (*sets[i])[j].rejected;
      mask[i * M + j] = 1.0f;
    }
  auto L = torch::TensorOptions().dtype(torch::kLong);
  t.a = torch::from_blob(a.data(), {S, M}, L).clone();
  t.b = torch::from_blob(b.data(), {S, M}, L).clone();
  t.mask =
      torch::from_blob(mask.data(), {S, M}, torch::TensorOptions().dtype(torch::kFloat32)).clone();
  return t;
}

/// The rows of m whose flag is set, in order.
RowMatrixF RowsWhere(const RowMatrixF& m, const std::vector<char>& keep) {
  RowMatrixF out(std::count(keep.begin(), keep.end(), 1), m.cols());
  for (Eigen::Index i = 0, r = 0; i < m.rows(); ++i)
    if (keep[i]) out.row(r++) = m.row(i);
  return out;
}

class VplModel : public Model, public AmortizedPosteriorModel {
 public:
  explicit VplModel(const ModelOptions& o) {
    PREFMIX_CHECK_INPUT(o.device == "cpu", "--device ", o.device,
                        ": vpl trains and encodes with LibTorch, which is CPU-only in this build; "
                        "use --device cpu");
  }
  std::string Family() const override { return "vpl"; }
  int LatentDim() const override { return static_cast<int>(latent_); }
  /// A user without pairs: the prior mean z = 0 (encoder), or the mean of the training users' mu
  /// (population: the posterior mean given no pairs).
  Eigen::VectorXf PopulationLatent() const override {
    if (options_.Text("vpl_adapt") != "population" || population_.rows() == 0)
      return Eigen::VectorXf::Zero(latent_);
    return population_.colwise().mean().transpose();
  }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    // Training runs on one thread whatever --threads says: its steps are many small GEMMs
    // (a mini-batch of 512 comparisons x <= 8 context pairs), too small to split, and with two
    // threads OpenBLAS's and OpenMP's workers spin between them; on the shared 2-core machine
    // the demo's vpl fit went from 8 s (--threads 1) to more than 6 CPU minutes (--threads 2).
    // Adapt (batched encoding of many users) keeps the configured threads.
    ScopedThreads one_thread(1);
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    hidden_ = options_.Int("hidden");
    const int max_epochs = options_.Int("epochs");
    FitReport rep;
    int epochs = max_epochs;
    std::vector<int64_t> grid = options_.Int("dim") > 0 ? std::vector<int64_t>{options_.Int("dim")}
                                                        : std::vector<int64_t>{4, 8, 16};
    const double l2 = options_.Real("l2");
    AdaptLosses adapt_losses;
    if (!valid.empty()) {
      SelectOnValidation(
          "latent", grid,
          [&](int64_t L, int* be) {
            latent_ = L;
            return Train(ds, train, &valid, l2, max_epochs, be);
          },
          &rep, &best_latent_, &epochs);
      latent_ = best_latent_;
      // --vpl-adapt auto: one more fit of the selected size without some training users, who
      // then are new users to both adaptations.
      if (options_.Text("vpl_adapt") == "auto")
        adapt_losses = HeldOutUserLosses(ds, train, valid, l2, max_epochs);
      if (options_.Flag("refit")) {
        Train(ds, Concat(train, valid), nullptr, l2, epochs, nullptr);
      } else if (best_latent_ != grid.back() || adapt_losses.users > 0) {
        // The net holds the last grid point's best-validation parameters (or the held-out-user
        // fit of --vpl-adapt auto); retrain the selected size (seeded, so this is the selection
        // run again). Skipped when they are the same.
        int be = 0;
        Train(ds, train, &valid, l2, max_epochs, &be);
      }
    } else {
      latent_ = grid.back();
      Train(ds, train, nullptr, l2, max_epochs, nullptr);
    }
    if (options_.Text("vpl_adapt") == "auto") {
      // The adaptation with the lower log loss on the pseudo-new users' validation pairs; VPL's
      // encoder when there was nothing to choose on. From here on the model is that one (seen
      // latents, Adapt, model file).
      Json sel = Json::Object();
      sel["criterion"] =
          "log loss on held-out training users' other pairs given context_pairs of their pairs "
          "(seeded random order), from a fit without them";
      sel["users"] = adapt_losses.users;
      sel["context_pairs"] = kSelectContext;
      if (adapt_losses.users > 0) {
        sel["encoder_log_loss"] = adapt_losses.encoder;
        sel["population_log_loss"] = adapt_losses.population;
      }
      options_.Set("vpl_adapt",
                   adapt_losses.users > 0 && adapt_losses.population < adapt_losses.encoder
                       ? "population"
                       : "encoder");
      sel["chosen"] = options_.Text("vpl_adapt");
      rep.details["adapt_selection"] = sel;
    }
    const PairSet all = options_.Flag("refit") ? Concat(train, valid) : train;
    RowMatrixF lat = Encode(ds, UserContextSets(all, ds.n_users(), kMaxContext)).mu;
    // Active units: latent dimensions whose mu varies across users (posterior-collapse guard).
    std::vector<char> has(ds.n_users(), 0);
    for (int32_t u : all.user) has[u] = 1;
    Eigen::VectorXd mean = Eigen::VectorXd::Zero(latent_), sq = mean;
    int64_t n = 0;
    for (int64_t u = 0; u < ds.n_users(); ++u) {
      if (!has[u]) continue;
      Eigen::VectorXd x = lat.row(u).transpose().cast<double>();
      mean += x;
      sq += x.cwiseAbs2();
      ++n;
    }
    Json var = Json::Array();
    int active = 0;
    for (int64_t d = 0; d < latent_; ++d) {
      const double m = n ? mean[d] / n : 0, v = n ? sq[d] / n - m * m : 0;
      var.push_back(v);
      active += v > kActiveUnitVariance;
    }
    // The training users' encoded mu: k-means / active units above, and the candidates of the
    // population posterior (a user without pairs has mu = 0 exactly and is not one).
    population_ = RowsWhere(lat, has);
    if (options_.Text("vpl_adapt") == "population") {
      // Seen users too: the posterior mean over the training users' mu given the user's own
      // pairs (their own mu is among the candidates). Users without pairs: the mean of the mu_i.
      lat = LatentsOf(ds, UserContextSets(all, ds.n_users(), kMaxContext));
      for (int64_t u = 0; u < ds.n_users(); ++u)
        if (!has[u]) lat.row(u) = PopulationLatent().transpose();
    }
    SetTrainLatents(ds, lat);
    rep.details["seen_latents"] = options_.Text("vpl_adapt");
    rep.details["latent"] = latent_;
    rep.details["hidden"] = hidden_;
    rep.details["l2"] = l2;
    rep.details["beta"] = Beta();
    rep.details["epochs"] = epochs;
    rep.details["active_units"] = active;
    rep.details["latent_variance"] = var;
    rep.epochs_run = epochs;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    PREFMIX_CHECK_INPUT(device == "cpu", "--device ", device,
                        ": vpl encodes with LibTorch, which is CPU-only in this build; use "
                        "--device cpu");
    const std::vector<ContextSet> sets = UserContextSets(support, n_users, kMaxContext);
    RowMatrixF lat = LatentsOf(ds, sets);
    // A user without pairs gets the population latent exactly (the contract of Model::Adapt),
    // not a recomputation of it that differs in the last bit.
    const Eigen::RowVectorXf pop = PopulationLatent().transpose();
    for (int64_t u = 0; u < n_users; ++u)
      if (sets[u].empty()) lat.row(u) = pop;
    return lat;
  }

  RowMatrixF LatentsOf(const Dataset& ds, const std::vector<ContextSet>& sets) const override {
    if (options_.Text("vpl_adapt") == "population") return PopulationPosteriorMean(ds, sets);
    return Encode(ds, sets).mu;
  }

  /// Mean log loss of the held-out users' other pairs under each adaptation (users: how many).
  struct AdaptLosses {
    double encoder = 0, population = 0;
    int64_t users = 0;
  };

  /// --vpl-adapt auto's criterion. Every kSelectEvery-th training user with more than
  /// kSelectContext pairs (at most kSelectUsers of them) is held out; the selected latent size is
  /// fitted without them (early stopping on the others' validation pairs); each held-out user is
  /// then a new user with kSelectContext of its pairs (seeded random ones) as support, and its
  /// other pairs are predicted from the encoder's mu of that support and from the posterior mean
  /// over the fitted users' mu. Reads only train and valid.
  AdaptLosses HeldOutUserLosses(const Dataset& ds, const PairSet& train, const PairSet& valid,
                                double l2, int max_epochs) {
    AdaptLosses out;
    const PairSet both = Concat(train, valid);
    const auto by = both.ByUser(ds.n_users());
    std::vector<char> held(ds.n_users(), 0);
    int64_t eligible = 0, n_held = 0;
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (static_cast<int64_t>(by[u].size()) > kSelectContext && eligible++ % kSelectEvery == 0 &&
          n_held < kSelectUsers) {
        held[u] = 1;
        ++n_held;
      }
    PairSet tr, va, support, target;
    for (size_t j = 0; j < train.size(); ++j)
      if (!held[train.user[j]]) tr.PushFrom(train, j);
    for (size_t j = 0; j < valid.size(); ++j)
      if (!held[valid.user[j]]) va.PushFrom(valid, j);
    if (n_held == 0 || tr.empty() || va.empty()) return out;
    // Each held-out user's pairs in a seeded random order, as the unseen protocol draws a new
    // user's support: stored order can be structured (a ranking's pairs item by item), and its
    // first pairs would be a support set unlike any the encoder trained on.
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (held[u]) {
        std::vector<size_t> order = by[u];
        Rng rng(DeriveSeed(options_.seed, kHeldOutOrderStream, static_cast<uint64_t>(u)));
        rng.Shuffle(order);
        for (size_t i = 0; i < order.size(); ++i)
          (static_cast<int>(i) < kSelectContext ? support : target).PushFrom(both, order[i]);
      }
    int be = 0;
    Train(ds, tr, &va, l2, max_epochs, &be);
    const std::vector<ContextSet> fitted =
        UserContextSets(Concat(tr, va), ds.n_users(), kMaxContext);
    std::vector<char> fitted_user(ds.n_users(), 0);
    for (int64_t u = 0; u < ds.n_users(); ++u) fitted_user[u] = !fitted[u].empty();
    const RowMatrixF M = RowsWhere(Encode(ds, fitted).mu, fitted_user);
    const std::vector<ContextSet> all_sets = UserContextSets(support, ds.n_users(), kSelectContext);
    std::vector<ContextSet> sets;
    std::vector<Eigen::Index> set_of(ds.n_users(), -1);
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (held[u]) {
        set_of[u] = static_cast<Eigen::Index>(sets.size());
        sets.push_back(all_sets[u]);
      }
    const RowMatrixF z_enc = Encode(ds, sets).mu;
    const RowMatrixF z_pop = PosteriorMeanOver(ds, M, sets);
    RowMatrixF ze(static_cast<Eigen::Index>(target.size()), latent_), zp = ze;
    for (size_t j = 0; j < target.size(); ++j) {
      ze.row(static_cast<Eigen::Index>(j)) = z_enc.row(set_of[target.user[j]]);
      zp.row(static_cast<Eigen::Index>(j)) = z_pop.row(set_of[target.user[j]]);
    }
    auto loss = [&](const std::vector<double>& p) {
      double l = 0;
      for (size_t j = 0; j < p.size(); ++j)
        l -= std::log(std::clamp(target.label[j] > 0.5f ? p[j] : 1 - p[j], 1e-12, 1.0));
      return l / static_cast<double>(p.size());
    };
    out.encoder = loss(PairProbWithLatent(ds, target.first, target.second, ze));
    out.population = loss(PairProbWithLatent(ds, target.first, target.second, zp));
    out.users = n_held;
    return out;
  }

  /// `--vpl-adapt population`: for each set C, z = sum_i w_i mu_i over the training users' mu_i
  /// (their encoded means, saved in the model file: population_) with
  /// w_i proportional to prod_{(a > b) in C} sigma(r(a, mu_i) - r(b, mu_i)): the posterior mean
  /// of z under the empirical prior "a new user is one of the training users", from the trained
  /// decoder. No gradient steps. An empty set gives the mean of the mu_i.
  RowMatrixF PopulationPosteriorMean(const Dataset& ds, const std::vector<ContextSet>& sets) const {
    PREFMIX_CHECK_INPUT(population_.rows() > 0,
                        "--vpl-adapt population: the model has no training users' latents");
    return PosteriorMeanOver(ds, population_, sets);
  }

  /// z of each set: the posterior mean over the candidates M (rows) given the set's pairs.
  RowMatrixF PosteriorMeanOver(const Dataset& ds, const RowMatrixF& M,
                               const std::vector<ContextSet>& sets) const {
    // Rewards of the items the sets use only ([training users, used items]; col maps an item
    // to its column), not of every item of the dataset.
    std::vector<int64_t> used, col(ds.n_items(), -1);
    for (const ContextSet& set : sets)
      for (const ContextPair& c : set)
        for (int32_t item : {c.chosen, c.rejected})
          if (col[item] < 0) {
            col[item] = static_cast<int64_t>(used.size());
            used.push_back(item);
          }
    // RT [used items, training users]: a used item's rewards under every mu_i, contiguous, so
    // that a pair's margins under all the mu_i are one row difference.
    const Eigen::Index N = M.rows();
    RowMatrixF RT(static_cast<Eigen::Index>(used.size()), N);
    if (!used.empty()) {
      torch::NoGradGuard ng;
      auto net = Net();
      net->eval();
      const torch::Tensor E = ItemTensor(ds).index_select(0, LongTensor(used));
      RT = ToMatrix(net->DecodeAll(E, FromMatrix(M)).t());
    }
    // Per chunk of sets: the normalised weights W [sets, N] row by row (float log-likelihoods,
    // log sigma(x) = min(x, 0) - log1p(exp(-|x|)), vectorised over the mu_i), then z = W M.
    constexpr size_t kChunk = 256;
    const size_t n_chunks = (sets.size() + kChunk - 1) / kChunk;
    RowMatrixF z(static_cast<Eigen::Index>(sets.size()), latent_);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t c = 0; c < n_chunks; ++c) {
      const size_t lo = c * kChunk, hi = std::min(sets.size(), lo + kChunk);
      RowMatrixF W(static_cast<Eigen::Index>(hi - lo), N);
      Eigen::ArrayXf ll(N), x(N);
      for (size_t u = lo; u < hi; ++u) {
        ll.setZero();
        for (const ContextPair& p : sets[u]) {
          x = RT.row(col[p.chosen]).array().transpose() -
              RT.row(col[p.rejected]).array().transpose();
          ll += x.min(0.0f) - (-x.abs()).exp().log1p();
        }
        ll = (ll - ll.maxCoeff()).exp();
        W.row(static_cast<Eigen::Index>(u - lo)) = (ll / ll.sum()).matrix().transpose();
      }
      z.middleRows(static_cast<Eigen::Index>(lo), static_cast<Eigen::Index>(hi - lo)).noalias() =
          W * M;
    }
    return z;
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    RowMatrixF z(pairs.size(), latent_);
    for (size_t j = 0; j < pairs.size(); ++j) z.row(j) = latents.row(pairs.user[j]);
    return PairProbWithLatent(ds, pairs.first, pairs.second, z);
  }

  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    const RowMatrixF r = RawRewards(ds, latents);
    const int64_t n = ds.n_items();
    std::vector<int64_t> ref(n);
    std::iota(ref.begin(), ref.end(), 0);
    if (n > kScoreReference) {
      Rng rng(DeriveSeed(options_.seed, kScoreReferenceSample));
      for (int64_t i = 0; i < kScoreReference; ++i)
        std::swap(ref[i], ref[i + (int64_t)rng.Below(n - i)]);
      ref.resize(kScoreReference);
    }
    RowMatrixF out(r.rows(), n);
#pragma omp parallel for schedule(static)
    for (Eigen::Index u = 0; u < r.rows(); ++u)
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        int64_t c = 0;
        for (int64_t e : ref) {
          if (e == i) continue;
          s += math::Sigmoid(static_cast<double>(r(u, i)) - r(u, e));
          ++c;
        }
        out(u, i) = c ? static_cast<float>(s / c) : 0.5f;
      }
    return out;
  }

  Json Params() const override {
    Json j = Json::Object();
    int64_t n = 0;
    for (const auto& p : Net()->parameters()) n += p.numel();
    j["shared"] = n;
    j["per_user"] = latent_;
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    {
      // The sizes first: LoadBase checks the latents' width against LatentDim().
      cereal::PortableBinaryOutputArchive ar(os);
      ar(latent_, hidden_);
    }
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
    ar(population_);  // appended later: files without it are read as below
  }

  void LoadPayload(std::istream& is) override {
    {
      cereal::PortableBinaryInputArchive ar(is);
      ar(latent_, hidden_);
    }
    PREFMIX_CHECK_INPUT(latent_ >= 1 && latent_ <= 65536 && hidden_ >= 1 && hidden_ <= 65536,
                        "model file: vpl latent size ", latent_, " / hidden size ", hidden_,
                        " out of range");
    LoadBase(is);
    cereal::PortableBinaryInputArchive ar(is);
    std::vector<RowMatrixF> params;
    ar(params);
    // The header's dim and the stored sizes shape the net: check them against the values the
    // file holds before building it, so that a corrupt size never sizes an allocation.
    long double stored = 0;
    for (const auto& p : params) stored += static_cast<long double>(p.size());
    PREFMIX_CHECK_INPUT(
        dim >= 1 && ParamCount(dim, hidden_, latent_, options_.Text("arch") == "linear") == stored,
        "model file: vpl (dim ", dim, ", hidden ", hidden_, ", latent ", latent_,
        ") does not match the ", static_cast<double>(stored), " parameter values stored");
    Build();
    auto ps = net_->parameters();
    PREFMIX_CHECK_INPUT(ps.size() == params.size(), "model file: vpl has ", params.size(),
                        " parameter tensors, expected ", ps.size());
    torch::NoGradGuard ng;
    for (size_t i = 0; i < ps.size(); ++i) {
      PREFMIX_CHECK_INPUT(params[i].size() == ps[i].numel(), "model file: vpl parameter ", i,
                          " has ", params[i].size(), " values, expected ", ps[i].numel());
      std::memcpy(ps[i].data_ptr<float>(), params[i].data(), sizeof(float) * params[i].size());
    }
    PREFMIX_CHECK_INPUT(train_latents_.cols() == latent_ || train_latents_.rows() == 0,
                        "model file: vpl training latents have ", train_latents_.cols(),
                        " columns, expected ", latent_);
    if (is.peek() != std::char_traits<char>::eof()) {
      ar(population_);
      PREFMIX_CHECK_INPUT(population_.cols() == latent_ || population_.rows() == 0,
                          "model file: vpl population latents have ", population_.cols(),
                          " columns, expected ", latent_);
    } else {
      // Files written before the candidates were saved apart: their training latents are the
      // encoded mu (users without pairs: 0 exactly).
      std::vector<char> nonzero(train_latents_.rows(), 0);
      for (Eigen::Index i = 0; i < train_latents_.rows(); ++i)
        nonzero[i] = train_latents_.row(i).squaredNorm() > 0;
      population_ = RowsWhere(train_latents_, nonzero);
    }
  }

  // --- AmortizedPosteriorModel ---
  Posterior Encode(const Dataset& ds, const std::vector<ContextSet>& sets) const override {
    torch::NoGradGuard ng;
    auto net = Net();
    net->eval();
    const torch::Tensor E = ItemTensor(ds);
    Posterior out;
    out.mu.resize(sets.size(), latent_);
    out.logvar.resize(sets.size(), latent_);
    // Chunks bound the [S, M, M] attention scores.
    const size_t chunk = 1024;
    for (size_t s0 = 0; s0 < sets.size(); s0 += chunk) {
      const size_t s1 = std::min(sets.size(), s0 + chunk);
      std::vector<const ContextSet*> ptr;
      for (size_t s = s0; s < s1; ++s) {
        for (const auto& c : sets[s])
          PREFMIX_CHECK_INPUT(c.chosen >= 0 && c.chosen < ds.n_items() && c.rejected >= 0 &&
                                  c.rejected < ds.n_items(),
                              ds.source, ": context pair (", c.chosen, ", ", c.rejected,
                              ") is out of range for ", ds.n_items(), " items");
        ptr.push_back(&sets[s]);
      }
      auto [mu, lv] = EncodeTensors(net, E, Pad(ptr));
      out.mu.middleRows(s0, s1 - s0) = ToMatrix(mu);
      out.logvar.middleRows(s0, s1 - s0) = ToMatrix(lv);
    }
    return out;
  }

  std::vector<double> PairProbWithLatent(const Dataset& ds, const std::vector<int32_t>& a,
                                         const std::vector<int32_t>& b,
                                         const RowMatrixF& z) const override {
    PREFMIX_ASSERT(a.size() == b.size() && (int64_t)a.size() == z.rows() && z.cols() == latent_,
                   "vpl: PairProbWithLatent shapes");
    torch::NoGradGuard ng;
    auto net = Net();
    net->eval();
    const torch::Tensor E = ItemTensor(ds);
    std::vector<double> out(a.size());
    const size_t chunk = 1 << 16;
    for (size_t j0 = 0; j0 < a.size(); j0 += chunk) {
      const size_t j1 = std::min(a.size(), j0 + chunk);
      std::vector<int64_t> ia(a.begin() + j0, a.begin() + j1), ib(b.begin() + j0, b.begin() + j1);
      auto zt = FromMatrix(z.middleRows(j0, j1 - j0));
      auto m = net->Decode(E.index_select(0, LongTensor(ia)), zt) -
               net->Decode(E.index_select(0, LongTensor(ib)), zt);
      auto p = torch::sigmoid(m.to(torch::kDouble)).contiguous();
      std::memcpy(out.data() + j0, p.data_ptr<double>(), sizeof(double) * (j1 - j0));
    }
    return out;
  }

  RowMatrixF RawRewards(const Dataset& ds, const RowMatrixF& z) const override {
    torch::NoGradGuard ng;
    auto net = Net();
    net->eval();
    const torch::Tensor E = ItemTensor(ds);
    const int64_t n = ds.n_items();
    RowMatrixF out(z.rows(), n);
    for (Eigen::Index u = 0; u < z.rows(); ++u) {
      auto zt = FromMatrix(z.row(u)).expand({n, latent_});
      out.row(u) = ToMatrix(net->Decode(E, zt).reshape({1, n}));
    }
    return out;
  }

  double TrainingLoss(const Dataset& ds, const PairSet& pairs,
                      const std::vector<ContextSet>& contexts, double kl_weight,
                      const RowMatrixF* fixed_z, uint64_t seed) const override {
    PREFMIX_ASSERT(contexts.size() == pairs.size(), "vpl: one context set per pair");
    torch::NoGradGuard ng;
    auto net = Net();
    net->eval();
    std::vector<const ContextSet*> ptr;
    for (const auto& c : contexts) ptr.push_back(&c);
    torch::manual_seed(seed);
    return LossTensor(net, ItemTensor(ds), ToTensors(pairs), Pad(ptr), kl_weight,
                      fixed_z ? FromMatrix(*fixed_z) : torch::Tensor())
        .item<double>();
  }

 private:
  static std::pair<torch::Tensor, torch::Tensor> EncodeTensors(VplNet net, const torch::Tensor& E,
                                                               const SetTensors& s) {
    const int64_t S = s.a.size(0), M = s.a.size(1), D = E.size(1);
    auto ea = E.index_select(0, s.a.reshape({-1})).reshape({S, M, D});
    auto eb = E.index_select(0, s.b.reshape({-1})).reshape({S, M, D});
    return net->Encode(ea, eb, s.mask);
  }

  /// Weighted BT loss of the pairs under z (sampled from q(z | C) unless fixed_z is defined)
  /// plus kl_weight * mean KL.
  static torch::Tensor LossTensor(VplNet net, const torch::Tensor& E, const PairTensors& p,
                                  const SetTensors& ctx, double kl_weight,
                                  const torch::Tensor& fixed_z) {
    auto [mu, logvar] = EncodeTensors(net, E, ctx);
    torch::Tensor z =
        fixed_z.defined() ? fixed_z : mu + torch::exp(0.5 * logvar) * torch::randn_like(mu);
    auto margin =
        net->Decode(E.index_select(0, p.first), z) - net->Decode(E.index_select(0, p.second), z);
    auto bt = torch::binary_cross_entropy_with_logits(margin, p.label, p.weight, {},
                                                      torch::Reduction::Sum) /
              p.weight.sum();
    if (kl_weight == 0) return bt;
    return bt + kl_weight * KlRows(mu, logvar).mean();
  }

  double Beta() const { return options_.Real("beta"); }

  VplNet Net() const {
    PREFMIX_ASSERT(!net_.is_empty(), "vpl model used before training/loading");
    return net_;
  }

  /// The number of values of the net Build() makes (VplNetImpl's layers, each with a bias).
  static long double ParamCount(int64_t d, int64_t h, int64_t l, bool linear_decoder) {
    const long double D = static_cast<long double>(d), H = static_cast<long double>(h),
                      L = static_cast<long double>(l);
    const long double encoder = (2 * D * H + H) + 5 * (H * H + H) + 2 * (H * L + L);
    const long double decoder =
        linear_decoder ? L * D + D : ((D + L) * H + H) + (H * H + H) + (H + 1);
    return encoder + decoder;
  }

  void Build() {
    torch::manual_seed(options_.seed);
    net_ = VplNet(dim, hidden_, latent_, options_.Text("arch") == "linear");
  }

  /// Training context sets: for each pair j, 2-8 other pairs of its user (fewer when the user
  /// has fewer), drawn without replacement.
  static std::vector<ContextSet> SampleContexts(const PairSet& p,
                                                const std::vector<std::vector<size_t>>& by,
                                                Rng* rng) {
    std::vector<ContextSet> out(p.size());
    std::vector<size_t> pool;
    for (const auto& idx : by) {
      if (idx.empty()) continue;
      for (size_t j : idx) {
        pool.clear();
        for (size_t i : idx)
          if (i != j) pool.push_back(i);
        const int hi = std::min<int>(kMaxTrainContext, (int)pool.size());
        const int lo = std::min<int>(kMinTrainContext, hi);
        const int m = lo + (int)rng->Below(hi - lo + 1);
        for (int t = 0; t < m; ++t) {
          std::swap(pool[t], pool[t + rng->Below(pool.size() - t)]);
          out[j].push_back(Oriented(p, pool[t]));
        }
      }
    }
    return out;
  }

  /// Trains from a fresh seeded init for at most `epochs`; with `valid`, keeps the parameters of
  /// the epoch with the best validation log loss (z = mu from the user's training pairs) and
  /// returns it.
  double Train(const Dataset& ds, const PairSet& tr, const PairSet* va, double l2, int epochs,
               int* best_epoch) {
    // Every step allocates and frees the same few-MB activations; glibc's default serves them
    // with mmap/munmap, i.e. fresh zeroed pages (page faults) on every step. Keep them in the
    // heap instead.
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    Build();
    const double lr = options_.Real("lr");
    torch::optim::AdamW opt(net_->parameters(), torch::optim::AdamWOptions(lr).weight_decay(l2));
    const torch::Tensor E = ItemTensor(ds);
    const int64_t n = (int64_t)tr.size();
    const int64_t batch = options_.Int("batch");
    const PairTensors pt = ToTensors(tr);
    const auto by = tr.ByUser(ds.n_users());
    Rng rng(DeriveSeed(options_.seed, kContextStream));
    const std::vector<ContextSet> va_ctx =
        va ? UserContextSets(tr, ds.n_users(), kMaxContext) : std::vector<ContextSet>();
    const double beta = Beta();
    torchglue::BestParameters<EarlyStopping> best{EarlyStopping(options_.Int("patience"))};
    int64_t step = 0;
    torch::Generator gen = at::detail::createCPUGenerator(options_.seed + kBatchOrderStream);
    for (int ep = 1; ep <= epochs; ++ep) {
      ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
      net_->train();
      const auto ctx = SampleContexts(tr, by, &rng);
      torch::Tensor order = torch::randperm(n, gen, torch::kLong);
      const int64_t* ord = order.data_ptr<int64_t>();
      for (int64_t b0 = 0; b0 < n; b0 += batch) {
        const int64_t b1 = std::min(n, b0 + batch);
        auto idx = order.slice(0, b0, b1);
        std::vector<const ContextSet*> ptr;
        for (int64_t i = b0; i < b1; ++i) ptr.push_back(&ctx[ord[i]]);
        PairTensors bp;
        bp.first = pt.first.index_select(0, idx);
        bp.second = pt.second.index_select(0, idx);
        bp.label = pt.label.index_select(0, idx);
        bp.weight = pt.weight.index_select(0, idx);
        const double w = beta * CosineAnneal(step++, options_.Int("anneal_period"),
                                             options_.Real("anneal_floor"));
        opt.zero_grad();
        auto loss = LossTensor(net_, E, bp, Pad(ptr), w, torch::Tensor());
        loss.backward();
        opt.step();
      }
      if (!va) continue;
      net_->eval();
      const double v = LogLoss(PredictProb(ds, *va, Encode(ds, va_ctx).mu), va->label);
      PREFMIX_CHECK_INPUT(std::isfinite(v), "vpl: training diverged (validation loss ", v,
                          " at epoch ", ep, "); lower --lr");
      if (best.Offer(v, ep, net_->parameters())) break;
    }
    best.RestoreBest(net_->parameters());
    if (best_epoch && best.rule().best_epoch() > 0) *best_epoch = best.rule().best_epoch();
    net_->eval();
    for (const auto& p : net_->parameters())
      PREFMIX_CHECK_INPUT(torch::isfinite(p).all().item<bool>(),
                          "vpl: training diverged (non-finite parameters); lower --lr");
    return best.rule().best();
  }

  VplNet net_{nullptr};
  int64_t latent_ = 0;
  int64_t hidden_ = 64;
  int64_t best_latent_ = 0;
  /// The training users' encoded mu (users with pairs), the candidates of --vpl-adapt population.
  RowMatrixF population_;
};

std::unique_ptr<Model> MakeVpl(const ModelOptions& o) { return std::make_unique<VplModel>(o); }
const bool kProvided = torchmodule::Provide("vpl.make", &MakeVpl);

}  // namespace

std::vector<double> GaussianKl(const Posterior& q) {
  torch::NoGradGuard ng;
  auto kl = KlRows(FromMatrix(q.mu).to(torch::kDouble), FromMatrix(q.logvar).to(torch::kDouble))
                .contiguous();
  return std::vector<double>(kl.data_ptr<double>(), kl.data_ptr<double>() + kl.numel());
}

}  // namespace prefmix::personalization
