#pragma once
// The maths of the user step, written once for the CPU loop and the CUDA kernel (STYLE.md 3).
//
// Conventions: a pair j of user u has a K-vector q_j (per-component margins, e.g.
// q_jk = r_k(a_j) - r_k(b_j)), an optional offset b_j and weight c_j.
//  - loglik link:  l_k = sum_j c_j log sigma(q_jk)  (+ log prior_k)
//  - linear link:  maximise f(w) = sum_j c_j log sigma(b_j + w.q_j) - lambda/2 |w - w0|^2 over the
//    simplex, by accelerated projected gradient (FISTA) with step 1/L,
//    L = 1/4 sum_j c_j |q_j|^2 + lambda (a valid Lipschitz bound of the gradient).
//  - mixture link: maximise sum_j c_j log sum_k w_k sigma(q_jk) + s sum_k w0_k log w_k over the
//    simplex (MAP mixture weights under a Dirichlet pull of strength s to w0), by EM.
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define PREFMIX_HOST_DEVICE __host__ __device__
#else
#define PREFMIX_HOST_DEVICE
#endif

namespace prefmix::math {

/// Largest K the fixed-size user-step solvers handle.
constexpr int kMaxK = 32;

/// log sigma(x) without overflow for any finite x.
PREFMIX_HOST_DEVICE inline double LogSigmoid(double x) {
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/// sigma(x), stable for large |x|.
PREFMIX_HOST_DEVICE inline double Sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/// BT negative log-likelihood of one pair with margin x = r(a) - r(b) and label y in {0,1}
/// (y = 1: a preferred). Its derivative with respect to x is BtLossGrad = sigma(x) - y.
PREFMIX_HOST_DEVICE inline double BtLoss(double x, double y) {
  return -(y * LogSigmoid(x) + (1.0 - y) * LogSigmoid(-x));
}
PREFMIX_HOST_DEVICE inline double BtLossGrad(double x, double y) { return Sigmoid(x) - y; }

/// BtLoss and BtLossGrad together from one exp and one log1p (hot loops):
/// loss = softplus(x) - y x, *grad = sigma(x) - y.
PREFMIX_HOST_DEVICE inline double BtLossAndGrad(double x, double y, double* grad) {
  const double e = exp(-fabs(x));
  *grad = (x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e)) - y;
  return (x > 0 ? x : 0.0) + log1p(e) - y * x;
}

/// Euclidean projection of v[0..K) onto the probability simplex (Duchi et al. 2008), in place.
PREFMIX_HOST_DEVICE inline void ProjectSimplex(double* v, int K) {
  double s[kMaxK];
  for (int i = 0; i < K; ++i) s[i] = v[i];
  for (int i = 1; i < K; ++i) {  // insertion sort, descending (K is small)
    double x = s[i];
    int j = i - 1;
    while (j >= 0 && s[j] < x) {
      s[j + 1] = s[j];
      --j;
    }
    s[j + 1] = x;
  }
  double cum = 0, theta = 0;
  for (int i = 0; i < K; ++i) {
    cum += s[i];
    double t = (cum - 1.0) / (i + 1);
    if (s[i] - t > 0) theta = t;
  }
  for (int i = 0; i < K; ++i) v[i] = v[i] - theta > 0 ? v[i] - theta : 0.0;
}

/// Per-component log-likelihoods of one user: out[k] = log_prior[k] + sum_j c_j log sigma(q_jk).
/// q is row-major [n, K]; weight may be null (all 1); log_prior may be null (no prior).
PREFMIX_HOST_DEVICE inline void UserLoglik(const float* q, const float* weight, int64_t n, int K,
                                           const float* log_prior, double* out) {
  for (int k = 0; k < K; ++k) out[k] = log_prior ? log_prior[k] : 0.0;
  for (int64_t j = 0; j < n; ++j) {
    double c = weight ? weight[j] : 1.0;
    for (int k = 0; k < K; ++k) out[k] += c * LogSigmoid(q[j * K + k]);
  }
}

/// Turns log-likelihoods l[0..K) into posterior probabilities in place (soft), or a one-hot
/// argmax (hard; ties go to the lowest index).
PREFMIX_HOST_DEVICE inline void Posterior(double* l, int K, bool hard) {
  int best = 0;
  for (int k = 1; k < K; ++k)
    if (l[k] > l[best]) best = k;
  if (hard) {
    for (int k = 0; k < K; ++k) l[k] = k == best ? 1.0 : 0.0;
    return;
  }
  double m = l[best], z = 0;
  for (int k = 0; k < K; ++k) z += exp(l[k] - m);
  for (int k = 0; k < K; ++k) l[k] = exp(l[k] - m) / z;
}

/// Objective (and gradient when grad != null) of the linear link at w.
PREFMIX_HOST_DEVICE inline double LinearObjective(const float* q, const float* offset,
                                                  const float* weight, int64_t n, int K,
                                                  const double* w, const float* w0, double lambda,
                                                  double* grad) {
  double f = 0;
  for (int k = 0; k < K; ++k) {
    double d = w[k] - (w0 ? w0[k] : 1.0 / K);
    f -= 0.5 * lambda * d * d;
    if (grad) grad[k] = -lambda * d;
  }
  for (int64_t j = 0; j < n; ++j) {
    double c = weight ? weight[j] : 1.0;
    double x = offset ? offset[j] : 0.0;
    for (int k = 0; k < K; ++k) x += w[k] * q[j * K + k];
    f += c * LogSigmoid(x);
    if (grad) {
      double s = c * Sigmoid(-x);
      for (int k = 0; k < K; ++k) grad[k] += s * q[j * K + k];
    }
  }
  return f;
}

/// Result of one simplex solve.
struct SimplexSolveInfo {
  double objective;
  double residual;  ///< projected-gradient (KKT) residual L * |w - P(w + grad/L)|_inf
  int iterations;
};

/// Maximises the linear-link objective over the simplex by FISTA with adaptive restart.
/// w holds the start on entry (projected first) and the solution on exit.
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveLinearSimplex(const float* q, const float* offset,
                                                               const float* weight, int64_t n,
                                                               int K, const float* w0,
                                                               double lambda, int max_iter,
                                                               double tol, double* w) {
  double L = lambda;
  for (int64_t j = 0; j < n; ++j) {
    double c = weight ? weight[j] : 1.0, s = 0;
    for (int k = 0; k < K; ++k) s += (double)q[j * K + k] * q[j * K + k];
    L += 0.25 * c * s;
  }
  if (L <= 1e-12) L = 1e-12;
  ProjectSimplex(w, K);
  double y[kMaxK], g[kMaxK], wn[kMaxK], t = 1.0;
  for (int k = 0; k < K; ++k) y[k] = w[k];
  double fw = LinearObjective(q, offset, weight, n, K, w, w0, lambda, nullptr);
  SimplexSolveInfo info{fw, 0.0, 0};
  for (int it = 0; it < max_iter; ++it) {
    info.iterations = it + 1;
    LinearObjective(q, offset, weight, n, K, y, w0, lambda, g);
    for (int k = 0; k < K; ++k) wn[k] = y[k] + g[k] / L;
    ProjectSimplex(wn, K);
    double fn = LinearObjective(q, offset, weight, n, K, wn, w0, lambda, nullptr);
    if (fn < fw) {  // adaptive restart (O'Donoghue & Candes): momentum off, keep w
      t = 1.0;
      for (int k = 0; k < K; ++k) y[k] = w[k];
      continue;
    }
    double tn = 0.5 * (1.0 + sqrt(1.0 + 4.0 * t * t));
    for (int k = 0; k < K; ++k) {
      y[k] = wn[k] + ((t - 1.0) / tn) * (wn[k] - w[k]);
      w[k] = wn[k];
    }
    t = tn;
    fw = fn;
    // KKT residual at the current iterate.
    LinearObjective(q, offset, weight, n, K, w, w0, lambda, g);
    double pr[kMaxK], res = 0;
    for (int k = 0; k < K; ++k) pr[k] = w[k] + g[k] / L;
    ProjectSimplex(pr, K);
    for (int k = 0; k < K; ++k) {
      double d = fabs(pr[k] - w[k]) * L;
      res = d > res ? d : res;
    }
    info.residual = res;
    if (res < tol) break;
  }
  info.objective = fw;
  return info;
}

/// Result of one mixture-weight solve.
struct MixtureSolveInfo {
  double objective;  ///< MAP objective at the solution (see SolveMixtureSimplex)
  double residual;   ///< max |w_new - w| of the last EM step
  int iterations;
};

/// MAP mixture weights of one user (the `mixture` link, MiCRo's routing): maximises
///   g(w) = sum_j c_j log sum_k w_k sigma(q_jk) + s sum_k w0_k log w_k   over the simplex,
/// i.e. a Dirichlet(1 + s w0) prior centred on w0 (the router's prior). EM: responsibilities
/// gamma_jk = w_k sigma(q_jk) / sum_k' w_k' sigma(q_jk'), then
/// w_k = (sum_j c_j gamma_jk + s w0_k) / (sum_j c_j + s); g never decreases. w0 == null means
/// uniform. w holds the start on entry (normalised first) and the solution on exit; with no
/// pairs and s > 0 the solution is w0 itself.
PREFMIX_HOST_DEVICE inline MixtureSolveInfo SolveMixtureSimplex(const float* q, const float* weight,
                                                                int64_t n, int K, const float* w0,
                                                                double s, int max_iter, double tol,
                                                                double* w) {
  constexpr double kFloor = 1e-12;
  double centre[kMaxK], z = 0;
  for (int k = 0; k < K; ++k) {
    centre[k] = w0 ? (w0[k] > kFloor ? w0[k] : kFloor) : 1.0 / K;
    z += centre[k];
  }
  for (int k = 0; k < K; ++k) centre[k] /= z;
  z = 0;
  for (int k = 0; k < K; ++k) z += (w[k] = w[k] > kFloor ? w[k] : kFloor);
  for (int k = 0; k < K; ++k) w[k] /= z;
  double total = s;
  for (int64_t j = 0; j < n; ++j) total += weight ? weight[j] : 1.0;
  MixtureSolveInfo info{0.0, 0.0, 0};
  // No pairs and no prior: every point is optimal; the start is kept.
  for (int it = 0; total > 0 && it < max_iter; ++it) {
    double acc[kMaxK];
    for (int k = 0; k < K; ++k) acc[k] = s * centre[k];
    for (int64_t j = 0; j < n; ++j) {
      const double c = weight ? weight[j] : 1.0;
      double p[kMaxK], sum = 0;
      for (int k = 0; k < K; ++k) sum += (p[k] = w[k] * Sigmoid(q[j * K + k]));
      if (sum <= 0) continue;
      for (int k = 0; k < K; ++k) acc[k] += c * p[k] / sum;
    }
    double delta = 0;
    for (int k = 0; k < K; ++k) {
      double nw = acc[k] / total;
      nw = nw > kFloor ? nw : kFloor;
      double d = fabs(nw - w[k]);
      delta = d > delta ? d : delta;
      w[k] = nw;
    }
    info.iterations = it + 1;
    info.residual = delta;
    if (delta < tol) break;
  }
  double g = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double c = weight ? weight[j] : 1.0;
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += w[k] * Sigmoid(q[j * K + k]);
    g += c * log(sum > 1e-300 ? sum : 1e-300);
  }
  for (int k = 0; k < K; ++k) g += s * centre[k] * log(w[k]);
  info.objective = g;
  return info;
}

}  // namespace prefmix::math
