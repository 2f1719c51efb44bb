#include "mixture/em_bt.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "core/error.h"
#include "core/io/serialize.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"

namespace prefmix::mixture {
namespace {

/// Dirichlet pseudo-count of the pi update (pi_k = (n_k + 1) / (U + K)).
constexpr double kPiPseudo = 1.0;
/// Armijo constant and the most step halvings of the M-step line search.
constexpr double kArmijo = 1e-4;
constexpr int kMaxHalvings = 12;
/// Relative float32 rounding of a head's loss: decrements below it are noise, not progress.
constexpr double kLossRounding = 1e-7;
/// Relative residual at which conjugate gradients stop.
constexpr double kCgTol = 1e-4;
/// Per-user ridge strength of the data-driven start, and the dimension above which the start
/// uses the gradient at zero instead of Newton.
constexpr double kStartRidge = 1.0;
constexpr int64_t kStartNewtonMaxDim = 128;
/// Pair-head products below which a loop runs on one thread: many short parallel regions per
/// EM round cost more than they save on small data (and much more on a busy machine).
constexpr int64_t kParallelMinWork = int64_t{1} << 17;

inline float Sign(const PairSet& p, size_t j) { return p.label[j] > 0.5f ? 1.0f : -1.0f; }

double TotalWeight(const PairSet& p) {
  double w = 0;
  for (float c : p.weight) w += c;
  return w;
}

/// Per-head penalised weighted BT losses F_k = sum_j a_jk BtLoss(x_jk, y_j) + rho |theta_k|^2
/// at rewards R = E theta. With `g_items` the item-level gradient scatter [n_items, K] (so that
/// dF/dtheta = E' g_items + 2 rho theta) and with `h` the per-pair curvatures a_jk s (1 - s).
std::vector<double> HeadLosses(const RowMatrixF& R, const PairSet& pairs,
                               const std::vector<float>& a, const Eigen::MatrixXd& theta,
                               double rho, RowMatrixF* g_items, std::vector<float>* h) {
  const int K = static_cast<int>(R.cols());
  const int64_t n_items = R.rows(), m = static_cast<int64_t>(pairs.size());
  const int T = omp_get_max_threads();
  std::vector<std::vector<double>> loss(T, std::vector<double>(K, 0.0));
  std::vector<RowMatrixF> scatter;
  if (g_items) scatter.assign(T, RowMatrixF::Zero(n_items, K));
  if (h) h->resize(m * K);
#pragma omp parallel if (m * K >= kParallelMinWork)
  {
    const int t = omp_get_thread_num();
    double* L = loss[t].data();
    float* S = g_items ? scatter[t].data() : nullptr;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < m; ++j) {
      const int64_t ia = pairs.first[j], ib = pairs.second[j];
      const float* ra = R.data() + ia * K;
      const float* rb = R.data() + ib * K;
      const double y = pairs.label[j];
      for (int k = 0; k < K; ++k) {
        const double w = a[j * K + k];
        if (w == 0) {
          if (h) (*h)[j * K + k] = 0;
          continue;
        }
        const double x = static_cast<double>(ra[k]) - rb[k];
        L[k] += w * math::BtLoss(x, y);
        if (S || h) {
          const double s = math::Sigmoid(x);
          if (S) {
            const float g = static_cast<float>(w * (s - y));
            S[ia * K + k] += g;
            S[ib * K + k] -= g;
          }
          if (h) (*h)[j * K + k] = static_cast<float>(w * s * (1.0 - s));
        }
      }
    }
  }
  std::vector<double> F(K, 0.0);
  for (int k = 0; k < K; ++k) {
    for (int t = 0; t < T; ++t) F[k] += loss[t][k];
    F[k] += rho * theta.col(k).squaredNorm();
  }
  if (g_items) {
    for (int t = 1; t < T; ++t) scatter[0] += scatter[t];
    *g_items = std::move(scatter[0]);
  }
  return F;
}

/// Hessian-vector products of every head at once: column k of the result is H_k V_k, with
/// H_k = E' diag-scatter(h_.k) E + 2 rho I, computed through per-item projections Z = E V.
Eigen::MatrixXd HessianTimes(const RowMatrixF& items, const PairSet& pairs,
                             const std::vector<float>& h, double rho, const Eigen::MatrixXd& V) {
  const int K = static_cast<int>(V.cols());
  const int64_t n_items = items.rows(), m = static_cast<int64_t>(pairs.size());
  const Eigen::MatrixXf Vf = V.cast<float>();
  RowMatrixF Z(n_items, K);
  Z.noalias() = items * Vf;
  const int T = omp_get_max_threads();
  std::vector<RowMatrixF> scatter(T, RowMatrixF::Zero(n_items, K));
#pragma omp parallel if (m * K >= kParallelMinWork)
  {
    float* S = scatter[omp_get_thread_num()].data();
#pragma omp for schedule(static)
    for (int64_t j = 0; j < m; ++j) {
      const int64_t ia = pairs.first[j], ib = pairs.second[j];
      for (int k = 0; k < K; ++k) {
        const float hk = h[j * K + k];
        if (hk == 0) continue;
        const float t = hk * (Z(ia, k) - Z(ib, k));
        S[ia * K + k] += t;
        S[ib * K + k] -= t;
      }
    }
  }
  for (int t = 1; t < T; ++t) scatter[0] += scatter[t];
  Eigen::MatrixXf HV = items.transpose() * scatter[0];
  return HV.cast<double>() + 2.0 * rho * V;
}

/// Per-user ridge BT direction (unit vector, or zero when the user has no signal).
Eigen::VectorXd UserDirection(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
                              int64_t u) {
  const int64_t D = items.cols();
  const int64_t b = index.offsets[u], e = index.offsets[u + 1];
  Eigen::VectorXd theta = Eigen::VectorXd::Zero(D);
  auto diff = [&](size_t j) {
    return (items.row(pairs.first[j]) - items.row(pairs.second[j])).transpose().cast<double>();
  };
  if (D <= kStartNewtonMaxDim) {
    for (int it = 0; it < 5; ++it) {
      Eigen::VectorXd g = kStartRidge * theta;
      Eigen::MatrixXd H = kStartRidge * Eigen::MatrixXd::Identity(D, D);
      for (int64_t r = b; r < e; ++r) {
        const size_t j = index.order[r];
        const Eigen::VectorXd d = diff(j);
        const double s = math::Sigmoid(theta.dot(d)), c = pairs.weight[j];
        g += c * (s - pairs.label[j]) * d;
        H.noalias() += (c * s * (1 - s)) * d * d.transpose();
      }
      theta -= H.ldlt().solve(g);
    }
  } else {
    for (int64_t r = b; r < e; ++r) {
      const size_t j = index.order[r];
      theta += (pairs.weight[j] * (pairs.label[j] - 0.5)) * diff(j);
    }
  }
  const double n = theta.norm();
  if (n > 0 && std::isfinite(n)) theta /= n;
  return theta;
}

}  // namespace

UserPairs GroupByUser(const PairSet& pairs, int64_t n_users) {
  UserPairs ix;
  ix.n_users = n_users;
  ix.offsets.assign(n_users + 1, 0);
  for (int32_t u : pairs.user) {
    PREFMIX_ASSERT(u >= 0 && u < n_users, "pair user ", u, " outside [0, ", n_users, ")");
    ++ix.offsets[u + 1];
  }
  for (int64_t u = 0; u < n_users; ++u) {
    ix.n_active += ix.offsets[u + 1] > 0;
    ix.offsets[u + 1] += ix.offsets[u];
  }
  ix.order.resize(pairs.size());
  std::vector<int64_t> pos(ix.offsets.begin(), ix.offsets.end() - 1);
  for (size_t j = 0; j < pairs.size(); ++j) ix.order[pos[pairs.user[j]]++] = j;
  return ix;
}

RowMatrixF ItemHeadRewards(const RowMatrixF& items, const Eigen::MatrixXd& theta) {
  const Eigen::MatrixXf tf = theta.cast<float>();
  RowMatrixF R(items.rows(), theta.cols());
  R.noalias() = items * tf;
  return R;
}

EStepResult EStep(const RowMatrixF& rewards, const PairSet& pairs, const UserPairs& index,
                  const Eigen::VectorXd& pi, bool hard, bool use_prior, const std::string& device) {
  const int K = static_cast<int>(rewards.cols());
  PREFMIX_ASSERT(pi.size() == K, "pi has ", pi.size(), " entries, K = ", K);
  UserStepProblem p;
  p.K = K;
  p.n_users = index.n_users;
  p.offsets = index.offsets;
  const int64_t m = static_cast<int64_t>(index.order.size());
  p.q.resize(m * K);
  p.weight.resize(m);
  const float* R = rewards.data();
#pragma omp parallel for schedule(static) if (m * K >= kParallelMinWork)
  for (int64_t r = 0; r < m; ++r) {
    const size_t j = index.order[r];
    const float s = Sign(pairs, j);
    const float* ra = R + static_cast<int64_t>(pairs.first[j]) * K;
    const float* rb = R + static_cast<int64_t>(pairs.second[j]) * K;
    float* q = p.q.data() + r * K;
    for (int k = 0; k < K; ++k) q[k] = s * (ra[k] - rb[k]);
    p.weight[r] = pairs.weight[j];
  }
  if (use_prior) {
    p.prior.resize(K);
    for (int k = 0; k < K; ++k) p.prior[k] = static_cast<float>(std::log(pi[k]));
  }
  UserStepOptions so;
  so.hard = hard;
  UserStepResult us = RunUserStep(UserStepLink::kLoglik, p, so, device);
  EStepResult e;
  e.gamma = std::move(us.latent);
  e.loglik = std::move(us.loglik);
  e.evidence = std::move(us.objective);
  const Eigen::RowVectorXf pif = pi.transpose().cast<float>();
  for (int64_t u = 0; u < index.n_users; ++u) {
    if (index.offsets[u + 1] == index.offsets[u]) {
      e.gamma.row(u) = pif;
      continue;
    }
    e.data_term += hard ? static_cast<double>(e.loglik.row(u).maxCoeff()) : e.evidence[u];
  }
  return e;
}

double EmObjective(const EStepResult& e, const EmState& state, const EmOptions& o,
                   double total_weight) {
  double j = e.data_term - o.l2 * total_weight * state.theta.squaredNorm();
  if (o.use_prior)
    for (Eigen::Index k = 0; k < state.pi.size(); ++k) j += kPiPseudo * std::log(state.pi[k]);
  return j;
}

double MStep(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
             const RowMatrixF& gamma, const EmOptions& o, EmState* state) {
  const int K = static_cast<int>(gamma.cols());
  const int64_t m = static_cast<int64_t>(pairs.size());
  PREFMIX_ASSERT(state->theta.cols() == K && state->theta.rows() == items.cols(), "theta shape ",
                 state->theta.rows(), "x", state->theta.cols());
  const double W = TotalWeight(pairs);
  const double rho = o.l2 * W;
  std::vector<float> a(m * K);
#pragma omp parallel for schedule(static) if (m * K >= kParallelMinWork)
  for (int64_t j = 0; j < m; ++j)
    for (int k = 0; k < K; ++k) a[j * K + k] = pairs.weight[j] * gamma(pairs.user[j], k);

  Eigen::MatrixXd& theta = state->theta;
  std::vector<float> h;
  double last_dec = 0;
  for (int it = 0; it < o.newton_iters; ++it) {
    RowMatrixF R = ItemHeadRewards(items, theta);
    RowMatrixF gi;
    std::vector<double> F = HeadLosses(R, pairs, a, theta, rho, &gi, &h);
    Eigen::MatrixXf gf = items.transpose() * gi;
    Eigen::MatrixXd G = gf.cast<double>() + 2.0 * rho * theta;
    // Truncated Newton direction per head: conjugate gradients on H_k p_k = -G_k.
    Eigen::MatrixXd P = Eigen::MatrixXd::Zero(theta.rows(), K);
    Eigen::MatrixXd Res = -G, Dir = Res;
    Eigen::VectorXd rs = Res.colwise().squaredNorm().transpose();
    const Eigen::VectorXd b_norm = rs.cwiseSqrt();
    std::vector<char> active(K, 1);
    for (int k = 0; k < K; ++k) active[k] = b_norm[k] > 0;
    for (int c = 0; c < o.cg_iters; ++c) {
      bool any = false;
      for (int k = 0; k < K; ++k) any |= active[k] != 0;
      if (!any) break;
      Eigen::MatrixXd HD = HessianTimes(items, pairs, h, rho, Dir);
      for (int k = 0; k < K; ++k) {
        if (!active[k]) continue;
        const double curv = Dir.col(k).dot(HD.col(k));
        if (!(curv > 1e-300)) {
          active[k] = 0;
          continue;
        }
        const double alpha = rs[k] / curv;
        P.col(k) += alpha * Dir.col(k);
        Res.col(k) -= alpha * HD.col(k);
        const double rs_new = Res.col(k).squaredNorm();
        if (std::sqrt(rs_new) <= kCgTol * b_norm[k]) {
          active[k] = 0;
          continue;
        }
        Dir.col(k) = Res.col(k) + (rs_new / rs[k]) * Dir.col(k);
        rs[k] = rs_new;
      }
    }
    // Newton decrements; stop when every head has converged.
    // A head has converged when its decrement is below newton_tol * W or below the float32
    // rounding of its loss (a step that small cannot be told from noise).
    Eigen::VectorXd dec(K);
    std::vector<char> done(K, 0);
    bool all_done = true;
    for (int k = 0; k < K; ++k) {
      dec[k] = -G.col(k).dot(P.col(k));
      done[k] = !(dec[k] > std::max(o.newton_tol * std::max(W, 1.0), kLossRounding * F[k]));
      all_done &= done[k] != 0;
    }
    last_dec = dec.maxCoeff();
    if (all_done) break;
    // Armijo backtracking per head: a head whose step does not decrease F keeps its value.
    std::vector<double> step(K, 1.0);
    for (int ls = 0; ls < kMaxHalvings; ++ls) {
      bool all = true;
      for (int k = 0; k < K; ++k) all &= done[k] != 0;
      if (all) break;
      Eigen::MatrixXd trial = theta;
      for (int k = 0; k < K; ++k)
        if (!done[k]) trial.col(k) += step[k] * P.col(k);
      RowMatrixF Rt = ItemHeadRewards(items, trial);
      std::vector<double> Ft = HeadLosses(Rt, pairs, a, trial, rho, nullptr, nullptr);
      for (int k = 0; k < K; ++k) {
        if (done[k]) continue;
        if (std::isfinite(Ft[k]) && Ft[k] <= F[k] - kArmijo * step[k] * dec[k]) {
          theta.col(k) = trial.col(k);
          done[k] = 1;
        } else {
          step[k] *= 0.5;
        }
      }
    }
  }
  // pi: MAP under Dirichlet(1 + kPiPseudo), over the users with pairs.
  Eigen::VectorXd n = Eigen::VectorXd::Constant(K, kPiPseudo);
  for (int64_t u = 0; u < index.n_users; ++u)
    if (index.offsets[u + 1] > index.offsets[u]) n += gamma.row(u).transpose().cast<double>();
  state->pi = n / n.sum();
  return last_dec;
}

EmRun RunEm(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
            const EmOptions& o, EmState* state) {
  const double W = TotalWeight(pairs);
  EmRun run;
  run.last = EStep(ItemHeadRewards(items, state->theta), pairs, index, state->pi, o.hard,
                   o.use_prior, o.device);
  run.objective.push_back(EmObjective(run.last, *state, o, W));
  for (int r = 0; r < o.max_rounds; ++r) {
    ThrowIfCancelled();  // Python's Ctrl-C: stop within an epoch
    MStep(items, pairs, index, run.last.gamma, o, state);
    run.last = EStep(ItemHeadRewards(items, state->theta), pairs, index, state->pi, o.hard,
                     o.use_prior, o.device);
    const double j = EmObjective(run.last, *state, o, W);
    PREFMIX_CHECK_INPUT(std::isfinite(j), "em-bt: training diverged (objective ", j,
                        " in EM round ", r + 1, "); raise --l2");
    const double prev = run.objective.back();
    run.objective.push_back(j);
    run.rounds = r + 1;
    if (j - prev < o.tol * (1.0 + std::fabs(j))) break;
  }
  return run;
}

std::vector<int> KMeansStart(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
                             int K, uint64_t seed) {
  const int64_t U = index.n_users, D = items.cols();
  std::vector<int> labels(U, -1);
  std::vector<int64_t> active;
  for (int64_t u = 0; u < U; ++u)
    if (index.offsets[u + 1] > index.offsets[u]) active.push_back(u);
  const int64_t n = static_cast<int64_t>(active.size());
  if (n == 0) return labels;
  if (n <= K) {
    for (int64_t i = 0; i < n; ++i) labels[active[i]] = static_cast<int>(i % K);
    return labels;
  }
  RowMatrixD X(n, D);
#pragma omp parallel for schedule(dynamic, 8) if (n * D * D >= kParallelMinWork)
  for (int64_t i = 0; i < n; ++i) X.row(i) = UserDirection(items, pairs, index, active[i]);
  // k-means++ seeding.
  Rng rng(seed);
  RowMatrixD C(K, D);
  C.row(0) = X.row(static_cast<int64_t>(rng.Below(n)));
  Eigen::VectorXd d2(n);
  for (int64_t i = 0; i < n; ++i) d2[i] = (X.row(i) - C.row(0)).squaredNorm();
  for (int c = 1; c < K; ++c) {
    const double total = d2.sum();
    int64_t pick = static_cast<int64_t>(rng.Below(n));
    if (total > 0) {
      double t = rng.Uniform() * total, acc = 0;
      for (int64_t i = 0; i < n; ++i) {
        acc += d2[i];
        if (acc >= t) {
          pick = i;
          break;
        }
      }
    }
    C.row(c) = X.row(pick);
    for (int64_t i = 0; i < n; ++i) d2[i] = std::min(d2[i], (X.row(i) - C.row(c)).squaredNorm());
  }
  // Lloyd iterations.
  std::vector<int> lab(n, -1);
  for (int it = 0; it < 50; ++it) {
    bool changed = false;
    for (int64_t i = 0; i < n; ++i) {
      Eigen::Index best = 0;
      (C.rowwise() - X.row(i)).rowwise().squaredNorm().minCoeff(&best);
      changed |= best != lab[i];
      lab[i] = static_cast<int>(best);
    }
    if (!changed) break;
    RowMatrixD S = RowMatrixD::Zero(K, D);
    std::vector<int64_t> cnt(K, 0);
    for (int64_t i = 0; i < n; ++i) {
      S.row(lab[i]) += X.row(i);
      ++cnt[lab[i]];
    }
    for (int c = 0; c < K; ++c)
      if (cnt[c] > 0) C.row(c) = S.row(c) / static_cast<double>(cnt[c]);
  }
  for (int64_t i = 0; i < n; ++i) labels[active[i]] = lab[i];
  return labels;
}

EmState StateFromLabels(const RowMatrixF& items, const PairSet& pairs, const UserPairs& index,
                        const std::vector<int>& labels, int K, const EmOptions& o) {
  RowMatrixF gamma = RowMatrixF::Zero(index.n_users, K);
  for (int64_t u = 0; u < index.n_users; ++u)
    if (labels[u] >= 0) gamma(u, labels[u]) = 1.0f;
  EmState s;
  s.theta = Eigen::MatrixXd::Zero(items.cols(), K);
  s.pi = Eigen::VectorXd::Constant(K, 1.0 / K);
  EmOptions full = o;
  full.newton_iters = std::max(o.newton_iters, 20);
  MStep(items, pairs, index, gamma, full, &s);
  return s;
}

double MixtureLogLik(const RowMatrixF& rewards, const PairSet& pairs, const RowMatrixF& gamma) {
  const int K = static_cast<int>(rewards.cols());
  double s = 0, sw = 0;
  const int64_t m = static_cast<int64_t>(pairs.size());
#pragma omp parallel for reduction(+ : s, sw) schedule(static) if (m * K >= kParallelMinWork)
  for (int64_t j = 0; j < m; ++j) {
    double p = 0;
    for (int k = 0; k < K; ++k) {
      const double g = gamma(pairs.user[j], k);
      if (g == 0) continue;
      p += g * math::Sigmoid(static_cast<double>(rewards(pairs.first[j], k)) -
                             rewards(pairs.second[j], k));
    }
    if (pairs.label[j] < 0.5f) p = 1.0 - p;
    p = std::min(std::max(p, 1e-7), 1.0 - 1e-7);
    s += pairs.weight[j] * std::log(p);
    sw += pairs.weight[j];
  }
  return sw > 0 ? s / sw : 0.0;
}

double AdjustedRandIndex(const std::vector<int>& a, const std::vector<int>& b) {
  PREFMIX_ASSERT(a.size() == b.size(), "labelings of different sizes");
  std::map<std::pair<int, int>, int64_t> cell;
  std::map<int, int64_t> ra, rb;
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] < 0 || b[i] < 0) continue;
    ++cell[{a[i], b[i]}];
    ++ra[a[i]];
    ++rb[b[i]];
    ++n;
  }
  auto c2 = [](int64_t x) { return 0.5 * static_cast<double>(x) * (x - 1); };
  double sc = 0, sa = 0, sb = 0;
  for (const auto& kv : cell) sc += c2(kv.second);
  for (const auto& kv : ra) sa += c2(kv.second);
  for (const auto& kv : rb) sb += c2(kv.second);
  const double expected = n > 1 ? sa * sb / c2(n) : 0.0;
  const double max_index = 0.5 * (sa + sb);
  if (max_index == expected) return 1.0;  // both labelings trivial (one cluster / singletons)
  return (sc - expected) / (max_index - expected);
}

std::vector<int> HardAssignments(const RowMatrixF& gamma, const UserPairs& index) {
  std::vector<int> z(index.n_users, -1);
  for (int64_t u = 0; u < index.n_users; ++u) {
    if (index.offsets[u + 1] == index.offsets[u]) continue;
    Eigen::Index k = 0;
    gamma.row(u).maxCoeff(&k);
    z[u] = static_cast<int>(k);
  }
  return z;
}

double LargestClusterShare(const RowMatrixF& gamma, const UserPairs& index) {
  std::vector<int64_t> count(gamma.cols(), 0);
  int64_t n = 0;
  for (int k : HardAssignments(gamma, index))
    if (k >= 0) {
      ++count[k];
      ++n;
    }
  if (n == 0) return 1.0;
  return static_cast<double>(*std::max_element(count.begin(), count.end())) / n;
}

namespace {

constexpr uint64_t kStartStream = 0xe3b7;
/// Reference items for the calibrated Score() when the dataset has more items than this.
constexpr int64_t kScoreReference = 4096;

/// The em-bt model: EM over linear heads; latent = gamma_u in the simplex (LatentDim() = K).
class EmBtModel : public Model, public MultiHeadModel {
 public:
  explicit EmBtModel(const ModelOptions& o) : K_(o.Auto("k") ? 0 : o.Int("k")) {}
  std::string Family() const override { return "em-bt"; }
  int LatentDim() const override { return K_; }
  Eigen::VectorXf PopulationLatent() const override { return pi_.cast<float>(); }

  FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) override {
    PREFMIX_CHECK_INPUT(!train.empty(), ds.source, ": no training pairs");
    auto t0 = std::chrono::steady_clock::now();
    dim = ds.dim();
    embedding_model = ds.embedding_model;
    const int64_t U = ds.n_users();
    EmOptions eo = BaseOptions();
    const UserPairs tix = GroupByUser(train, U);
    PREFMIX_CHECK_INPUT(tix.n_active >= 1, ds.source, ": no user has training pairs");
    std::vector<int> ks;
    if (options_.Auto("k")) {
      for (int k = 1; k <= std::min<int64_t>(kAutoMaxK, tix.n_active); ++k) ks.push_back(k);
    } else {
      ks.push_back(options_.Int("k"));
    }
    const std::vector<double> l2_grid = options_.Real("l2") >= 0
                                            ? std::vector<double>{options_.Real("l2")}
                                            : std::vector<double>{1e-4, 1e-3, 1e-2};
    const double n_train = TotalWeight(train);
    FitReport rep;
    Json k_curve = Json::Array();
    struct Best {
      EmState state;
      double l2 = 0, score = -INFINITY, bic = INFINITY, share = 0;
      int k = 0;
      bool fell_back = false;
    };
    Best chosen;
    std::vector<Best> per_k;
    int64_t n_starts = 0, n_spread = 0;  // fits tried, and those that did not collapse
    for (int K : ks) {
      // The best start and the best one that did not collapse (kCollapseShare): a collapsed
      // winner gives way to the best start that found structure.
      Best best, best_spread;
      best.k = best_spread.k = K;
      Json starts = Json::Array();
      // The data-driven start selects l2; the other starts run at the chosen l2.
      for (int s = 0; s < options_.Int("restarts"); ++s) {
        std::vector<int> labels = StartLabels(ds, train, tix, K, s);
        const std::vector<double> grid = s == 0 ? l2_grid : std::vector<double>{best.l2};
        for (double l2 : grid) {
          EmOptions o = eo;
          o.l2 = l2;
          EmState st = StateFromLabels(ds.items, train, tix, labels, K, o);
          EmRun run = RunEm(ds.items, train, tix, o, &st);
          const double score = valid.empty() ? run.objective.back() / n_train
                                             : MixtureLogLik(ItemHeadRewards(ds.items, st.theta),
                                                             valid, run.last.gamma);
          Json e = Json::Object();
          e["start"] = s == 0 ? "kmeans++" : (IsRandomStart(s) ? "random" : "kmeans++");
          e["l2"] = l2;
          e["rounds"] = run.rounds;
          e["objective"] = run.objective.back();
          e[valid.empty() ? "train_objective_per_pair" : "valid_loglik"] = score;
          const double share = LargestClusterShare(run.last.gamma, tix);
          e["largest_cluster_share"] = share;
          starts.push_back(e);
          ++n_starts;
          n_spread += !Collapsed(share, K);
          // The data-driven start's grid picks l2 among all its fits, collapsed or not.
          if (score > best.score) {
            best.score = score;
            best.state = st;
            best.l2 = l2;
            best.share = share;
          }
          if (!Collapsed(share, K) && score > best_spread.score) {
            best_spread.score = score;
            best_spread.state = st;
            best_spread.l2 = l2;
            best_spread.share = share;
          }
        }
      }
      if (Collapsed(best.share, K) && best_spread.score > -INFINITY) {
        best_spread.fell_back = true;
        best = best_spread;
      }
      // BIC on the unpenalised marginal log-likelihood of the training pairs.
      EStepResult marg = EStep(ItemHeadRewards(ds.items, best.state.theta), train, tix,
                               best.state.pi, false, true, eo.device);
      const double n_params = static_cast<double>(K) * ds.dim() + (K - 1);
      best.bic = -2.0 * marg.data_term + n_params * std::log(std::max(n_train, 2.0));
      Json e = Json::Object();
      e["k"] = K;
      e["l2"] = best.l2;
      e[valid.empty() ? "train_objective_per_pair" : "valid_loglik"] = best.score;
      e["train_marginal_loglik"] = marg.data_term;
      e["bic"] = best.bic;
      e["largest_cluster_share"] = best.share;
      e["collapse_fallback"] = best.fell_back;
      e["starts"] = starts;
      k_curve.push_back(e);
      per_k.push_back(best);
    }
    // K: the lowest BIC (the validation log-likelihood of a few pairs per user is too noisy
    // to separate K from K + 1; both curves are reported).
    chosen = per_k[0];
    for (const auto& b : per_k)
      if (options_.Auto("k") ? b.bic < chosen.bic : b.score > chosen.score) chosen = b;
    K_ = chosen.k;
    EmOptions fo = eo;
    fo.l2 = chosen.l2;
    EmState st = chosen.state;
    PairSet fit_pairs = train;
    if (options_.Flag("refit") && !valid.empty()) fit_pairs = Concat(train, valid);
    const UserPairs fix = GroupByUser(fit_pairs, U);
    // Refit (train + validation) warm-started from the selected state: no relabelling.
    EmRun final_run = RunEm(ds.items, fit_pairs, fix, fo, &st);
    theta_ = st.theta;
    pi_ = st.pi;
    SetTrainLatents(ds, final_run.last.gamma);
    rep.details["em"] = eo.hard ? "hard" : "soft";
    rep.details["em_prior"] = eo.use_prior;
    rep.details["k"] = K_;
    if (options_.Auto("k")) rep.details["k_criterion"] = "bic";
    rep.details["k_selection"] = k_curve;
    rep.details["l2"] = chosen.l2;
    rep.details["restarts"] = options_.Int("restarts");
    rep.details["rounds"] = final_run.rounds;
    Json tr = Json::Array();
    for (double j : final_run.objective) tr.push_back(j);
    rep.details["objective_trace"] = tr;
    Json pi = Json::Array();
    for (int k = 0; k < K_; ++k) pi.push_back(pi_[k]);
    rep.details["pi"] = pi;
    rep.details["clusters"] = ClusterReport(ds, fit_pairs, fix, final_run.last.gamma);
    {
      // Collapse: (nearly) every user in one component, so the mixture predicts as one BT model.
      const double share = LargestClusterShare(final_run.last.gamma, fix);
      Json c = Json::Object();
      c["largest_cluster_share"] = share;
      c["threshold"] = kCollapseShare;
      c["collapsed"] = Collapsed(share, K_);
      c["fell_back"] = chosen.fell_back;
      c["starts_with_structure"] = n_spread;
      c["starts"] = n_starts;
      rep.details["collapse"] = c;
    }
    rep.epochs_run = final_run.rounds;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }

  RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                   const std::string& device) const override {
    // The group posterior from the support pairs (soft in both modes: from a few pairs the
    // uncertainty matters; users without pairs get pi, the population).
    const UserPairs ix = GroupByUser(support, n_users);
    return EStep(ItemHeadRewards(ds.items, theta_), support, ix, pi_, false,
                 options_.Flag("em_prior"), device)
        .gamma;
  }

  std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                  const RowMatrixF& latents) const override {
    const RowMatrixF R = ItemHeadRewards(ds.items, theta_);
    const int K = K_;
    std::vector<double> p(pairs.size());
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < static_cast<int64_t>(pairs.size()); ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) {
        const double g = latents(pairs.user[j], k);
        if (g != 0)
          s += g * math::Sigmoid(static_cast<double>(R(pairs.first[j], k)) - R(pairs.second[j], k));
      }
      p[j] = s;
    }
    return p;
  }

  /// A mixture has no single reward: the score of item e for latent gamma is
  /// sum_k gamma_k q_k(e), q_k the calibrated score of head k against every item (a fixed,
  /// seeded sample of kScoreReference items when there are more).
  RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const override {
    return latents * CalibratedItemScores(HeadRewards(ds),
                                          DeriveSeed(options_.seed, kScoreReferenceStream),
                                          kScoreReference);
  }

  RowMatrixF HeadRewards(const Dataset& ds) const override {
    return ItemHeadRewards(ds.items, theta_).transpose();
  }
  Eigen::VectorXd HeadWeights() const override { return pi_; }

  Json Params() const override {
    Json j = Json::Object();
    j["shared"] = static_cast<int64_t>(theta_.size() + std::max(K_ - 1, 0));
    j["per_user"] = K_;
    return j;
  }

  void SavePayload(std::ostream& os) const override {
    {
      cereal::PortableBinaryOutputArchive ar(os);
      int32_t k = K_;
      ar(k, theta_, pi_);
    }
    SaveBase(os);
  }
  void LoadPayload(std::istream& is) override {
    {
      cereal::PortableBinaryInputArchive ar(is);
      int32_t k = 0;
      ar(k, theta_, pi_);
      PREFMIX_CHECK_INPUT(k >= 1 && k <= math::kMaxK && theta_.rows() == dim &&
                              theta_.cols() == k && pi_.size() == k,
                          "model file: em-bt heads have shape [", theta_.rows(), ", ",
                          theta_.cols(), "] and ", pi_.size(), " weights, expected [", dim, ", ", k,
                          "] and ", k);
      K_ = k;
    }
    LoadBase(is);
  }

 private:
  static constexpr int kAutoMaxK = 6;  ///< --k auto tries K = 1..6

  EmOptions BaseOptions() const {
    EmOptions o;
    o.hard = options_.Text("em") == "hard";
    o.use_prior = options_.Flag("em_prior");
    o.max_rounds = options_.Int("epochs");
    o.device = options_.device;
    return o;
  }

  /// Start s of K: the last of three or more starts is a random partition (the MaxMin-RLHF
  /// style start, for diversity); the others are k-means++ with different seeds.
  bool IsRandomStart(int s) const {
    return options_.Int("restarts") >= 3 && s == options_.Int("restarts") - 1;
  }

  std::vector<int> StartLabels(const Dataset& ds, const PairSet& train, const UserPairs& ix, int K,
                               int s) const {
    const uint64_t seed = DeriveSeed(options_.seed, kStartStream, 1000 * K + s);
    if (!IsRandomStart(s)) return KMeansStart(ds.items, train, ix, K, seed);
    Rng rng(seed);
    std::vector<int> labels(ix.n_users, -1);
    for (int64_t u = 0; u < ix.n_users; ++u)
      if (ix.offsets[u + 1] > ix.offsets[u]) labels[u] = static_cast<int>(rng.Below(K));
    return labels;
  }

  /// Per cluster (argmax of gamma): size, pi, accuracy on its users' fitting pairs, composition
  /// by each user attribute (and by planted group on synthetic data).
  Json ClusterReport(const Dataset& ds, const PairSet& pairs, const UserPairs& ix,
                     const RowMatrixF& gamma) const {
    const std::vector<int> z = HardAssignments(gamma, ix);
    std::vector<double> p = PredictProb(ds, pairs, gamma);
    std::vector<double> hit(K_, 0), np(K_, 0);
    for (size_t j = 0; j < pairs.size(); ++j) {
      const int k = z[pairs.user[j]];
      const double pr = pairs.label[j] > 0.5f ? p[j] : 1.0 - p[j];
      hit[k] += pr > 0.5 ? 1.0 : (pr == 0.5 ? 0.5 : 0.0);
      np[k] += 1;
    }
    const std::vector<Attribute> attrs = ds.GroupAttributes();
    Json out = Json::Array();
    for (int k = 0; k < K_; ++k) {
      Json c = Json::Object();
      c["cluster"] = k;
      int64_t size = 0;
      for (int v : z) size += v == k;
      c["size"] = size;
      c["pi"] = pi_[k];
      if (np[k] > 0) c["train_accuracy"] = hit[k] / np[k];
      Json comp = Json::Object();
      for (const auto& a : attrs) {
        std::map<std::string, int64_t> counts;
        for (int64_t u = 0; u < ds.n_users(); ++u)
          if (z[u] == k) ++counts[a.Label(a.codes[u])];
        Json cj = Json::Object();
        for (const auto& kv : counts) cj[kv.first] = kv.second;
        comp[a.name] = cj;
      }
      c["composition"] = comp;
      out.push_back(c);
    }
    return out;
  }

  int K_ = 0;
  Eigen::MatrixXd theta_;  ///< [D, K] linear heads
  Eigen::VectorXd pi_;     ///< [K] mixing weights
};

std::vector<OptionSpec> EmBtOptions() {
  OptionSpec k = opt::K(4, true);
  k.max = math::kMaxK;
  k.rule = "or auto: chosen by BIC over K = 1..6";
  return {k,
          opt::Epochs(100, "EM rounds"),
          opt::L2("-1", "< 0: chosen on validation"),
          opt::Refit(),
          opt::Text("em", "soft", {"hard", "soft"},
                    "E-step: soft responsibilities, or hard assignments (MaxMin-RLHF's; with a "
                    "few pairs per user they tend to collapse into one component)"),
          opt::OnOff("em_prior", true, "add log pi_k in the E-step (off: MaxMin-RLHF's E-step)"),
          opt::Int("restarts", 4, "EM starts per K (k-means++ starts, plus a random one)", 1, 1e6)};
}

const bool kRegistered = RegisterFamily(
    {"em-bt",
     "MaxMin-RLHF: EM mixture of K linear BT heads (hard or soft), batched log-likelihood E-step",
     EmBtOptions(),
     [](const ModelOptions& o) { return std::make_unique<EmBtModel>(o); },
     2,
     {},
     ""});

}  // namespace
}  // namespace prefmix::mixture
