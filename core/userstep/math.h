#pragma once
// The maths of the user step, written once for the CPU loop and the CUDA kernel.
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
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define PREFMIX_HOST_DEVICE __host__ __device__
#else
#define PREFMIX_HOST_DEVICE
#endif

// A translation unit compiled for another instruction set (the CPU loop's x86-64-v3 build,
// core/userstep/user_step_cpu_v3.cpp) defines PREFMIX_ISA_NAMESPACE before including this header:
// the inline functions below then live in an inline namespace of that name, so that the linker
// never swaps one build's copy of a function for the other's.
#if defined(PREFMIX_ISA_NAMESPACE)
#define PREFMIX_ISA_BEGIN inline namespace PREFMIX_ISA_NAMESPACE {
#define PREFMIX_ISA_END }
#else
#define PREFMIX_ISA_BEGIN
#define PREFMIX_ISA_END
#endif

namespace prefmix::math {
PREFMIX_ISA_BEGIN

/// Largest K the fixed-size user-step solvers handle.
constexpr int kMaxK = 32;

/// A scratch array with a stride: element i at p[i * s]. The linear solver's Hessians and
/// gradients are indexed through their pointer type, so that the CPU passes plain arrays and a
/// CUDA block passes its shared memory interleaved by thread (element i of thread t at
/// sh[i * blockDim + t]: consecutive threads, consecutive words, no bank conflict).
template <typename T>
struct Strided {
  T* p;
  int s;
  PREFMIX_HOST_DEVICE T& operator[](int i) const { return p[static_cast<int64_t>(i) * s]; }
};

/// log sigma(x) without overflow for any finite x.
PREFMIX_HOST_DEVICE inline double LogSigmoid(double x) {
  return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

/// log sigma(x) in single precision for the GPU's E-step, which is bound by memory bandwidth
/// only if it is not bound by double-precision transcendentals: on a CUDA device the hardware
/// exp2 / log2 approximations (__expf, __logf; absolute error below 1e-6 per pair), elsewhere
/// the double formula rounded to float (the CPU twin used by tests).
PREFMIX_HOST_DEVICE inline float LogSigmoidFast(float x) {
#if defined(__CUDA_ARCH__)
  // Two special-function-unit operations per call: exp2 and log2. log1p(t) for small t by its
  // series (error below t^4 / 4 < 3e-9), where log(1 + t) would lose t's low bits.
  const float t = __expf(-fabsf(x));
  const float l1p = t < 0.01f ? t * (1.0f - t * (0.5f - t * (1.0f / 3.0f))) : __logf(1.0f + t);
  return fminf(x, 0.0f) - l1p;
#else
  return static_cast<float>(LogSigmoid(x));
#endif
}

/// log(1 + t) for t in [0, 1] as t P(t), P the degree-7 Chebyshev interpolant of log(1 + t) / t,
/// evaluated in single precision: absolute error below 2.0e-7 and relative error below 3.2e-7
/// over [0, 1] (tests/test_math.cpp), exact at t = 0, no special-function operation.
PREFMIX_HOST_DEVICE inline float Log1pPoly01(float t) {
  float p = -8.371152552e-03f;
  p = p * t + 4.349389982e-02f;
  p = p * t - 1.068500286e-01f;
  p = p * t + 1.768747670e-01f;
  p = p * t - 2.447477418e-01f;
  p = p * t + 3.327192838e-01f;
  p = p * t - 4.999717452e-01f;
  p = p * t + 9.999997808e-01f;
  return p * t;
}

/// log sigma(x) in single precision with one special-function operation (exp) and a polynomial
/// log1p (Log1pPoly01): min(x, 0) - log(1 + e^-|x|). On a CUDA device exp is the hardware
/// exp2 approximation (__expf); on the host, expf (the host tests of the formula).
PREFMIX_HOST_DEVICE inline float LogSigmoidPoly(float x) {
#if defined(__CUDA_ARCH__)
  const float t = __expf(-fabsf(x));
#else
  const float t = expf(-fabsf(x));
#endif
  return fminf(x, 0.0f) - Log1pPoly01(t);
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

/// Euclidean projection of v[0..K) onto the probability simplex (Duchi et al. 2008), in place:
/// v = max(v - theta, 0) with theta from the sorted entries (no division but the last).
/// KM is the capacity of the scratch arrays (K <= KM).
template <int KM = kMaxK>
PREFMIX_HOST_DEVICE inline void ProjectSimplex(double* v, int K) {
  double s[KM];
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
  double cum = 0, top = 0;
  int rho = 1;
  for (int i = 0; i < K; ++i) {
    cum += s[i];
    if ((i + 1) * s[i] > cum - 1.0) {
      rho = i + 1;
      top = cum;
    }
  }
  const double theta = (top - 1.0) / rho;
  for (int i = 0; i < K; ++i) v[i] = v[i] - theta > 0 ? v[i] - theta : 0.0;
}

/// ProjectSimplex from a guess of the projection's support, S = {k : hint_k > 0}: theta_S =
/// (sum over S of v - 1) / |S| is the projection's threshold exactly when {k : v_k > theta_S} = S
/// (then sum_k max(v_k - theta_S, 0) = 1). Up to four rounds of S <- {k : v_k > theta_S}, each
/// one branch-light pass; the sort when S has not settled by then. The linear solver's
/// projections of w + step mostly keep w's support or change it by a few entries, so they
/// rarely sort.
template <int KM = kMaxK>
PREFMIX_HOST_DEVICE inline void ProjectSimplexWithHint(double* v, int K, const double* hint) {
  bool in[KM];
  for (int k = 0; k < K; ++k) in[k] = hint[k] > 0;
  for (int round = 0; round < 4; ++round) {
    double sum = 0;
    int count = 0;
    for (int k = 0; k < K; ++k) {
      sum += in[k] ? v[k] : 0.0;
      count += in[k] ? 1 : 0;
    }
    if (count == 0) break;
    const double theta = (sum - 1.0) / count;
    bool same = true;
    for (int k = 0; k < K; ++k) {
      const bool now = v[k] > theta;
      same = same && now == in[k];
      in[k] = now;
    }
    if (same) {
      for (int k = 0; k < K; ++k) v[k] = v[k] - theta > 0 ? v[k] - theta : 0.0;
      return;
    }
  }
  ProjectSimplex<KM>(v, K);
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

/// The linear link's prior term -lambda/2 |w - w0|^2 (w0 null: the uniform 1/K), and, unless g
/// is nullptr, the gradient's start g = -lambda (w - w0) (g: double* or Strided<double>).
template <typename GP>
PREFMIX_HOST_DEVICE inline double LinearPrior(const double* w, const float* w0, double lambda,
                                              int K, GP g) {
  double f = 0;
  for (int k = 0; k < K; ++k) {
    const double d = w[k] - (w0 ? w0[k] : 1.0 / K);
    f -= 0.5 * lambda * d * d;
    if constexpr (!std::is_same_v<GP, std::nullptr_t>) g[k] = -lambda * d;
  }
  return f;
}

/// Objective (and gradient when grad != null) of the linear link at w.
PREFMIX_HOST_DEVICE inline double LinearObjective(const float* q, const float* offset,
                                                  const float* weight, int64_t n, int K,
                                                  const double* w, const float* w0, double lambda,
                                                  double* grad) {
  double f = grad ? LinearPrior(w, w0, lambda, K, grad) : LinearPrior(w, w0, lambda, K, nullptr);
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

/// The linear link's Lipschitz bound L = 1/4 sum_j c_j |q_j|^2 + lambda (at least 1e-12) from
/// the sum S = sum_j c_j |q_j|^2; the step 1/L of its projected-gradient steps and KKT residual.
PREFMIX_HOST_DEVICE inline double LinearLipschitzFromSum(double S, double lambda) {
  const double L = 0.25 * S + lambda;
  return L <= 1e-12 ? 1e-12 : L;
}

/// LinearLipschitzFromSum over a user's pairs, row-major q [n, K].
PREFMIX_HOST_DEVICE inline double LinearLipschitz(const float* q, const float* weight, int64_t n,
                                                  int K, double lambda) {
  double S = 0;
  for (int64_t j = 0; j < n; ++j) {
    double c = weight ? weight[j] : 1.0, s = 0;
    for (int k = 0; k < K; ++k) s += (double)q[j * K + k] * q[j * K + k];
    S += c * s;
  }
  return LinearLipschitzFromSum(S, lambda);
}

/// Projected-gradient (KKT) residual on the simplex at w with gradient g (ascent) and step 1/L:
/// L |w - P(w + g/L)|_inf; zero exactly at a maximiser of a concave objective.
template <int KM = kMaxK, typename GP = const double*>
PREFMIX_HOST_DEVICE inline double SimplexKktResidual(const double* w, GP g, int K, double L) {
  double pr[KM], res = 0;
  for (int k = 0; k < K; ++k) pr[k] = w[k] + g[k] / L;
  ProjectSimplexWithHint<KM>(pr, K, w);
  for (int k = 0; k < K; ++k) {
    const double d = fabs(pr[k] - w[k]) * L;
    res = d > res ? d : res;
  }
  return res;
}

/// Result of one simplex solve.
struct SimplexSolveInfo {
  double objective;
  double residual;  ///< projected-gradient (KKT) residual L * |w - P(w + grad/L)|_inf
  int iterations;
};

/// Maximises the linear-link objective over the simplex by FISTA with adaptive restart (the
/// first solver of the user step; kept as the reference the Newton solver is tested against).
/// w holds the start on entry (projected first) and the solution on exit.
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveLinearSimplexFista(
    const float* q, const float* offset, const float* weight, int64_t n, int K, const float* w0,
    double lambda, int max_iter, double tol, double* w) {
  const double L = LinearLipschitz(q, weight, n, K, lambda);
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
    info.residual = SimplexKktResidual(w, g, K, L);
    if (info.residual < tol) break;
  }
  info.objective = fw;
  return info;
}

/// Index of (a, b), b <= a, in a packed row-major lower triangle.
PREFMIX_HOST_DEVICE constexpr int Tri(int a, int b) { return a * (a + 1) / 2 + b; }

/// Solves A x = b1 and A x = b2 at once (the linear solver's Newton step and its constraint
/// direction) for a symmetric positive definite n x n matrix A given as its packed lower triangle
/// (Tri), which is overwritten by its LDL' factor (unit L below the diagonal, D on it): no square
/// root, one division per pivot, the two substitutions interleaved. A pivot below `floor` is
/// replaced by `floor` (the matrix is regularised, never NaN).
template <int KM, typename P>
PREFMIX_HOST_DEVICE inline void LdltSolveTwo(const P& A, int n, double floor, double* b1,
                                             double* b2) {
  double inv[KM], l[KM];
  for (int j = 0; j < n; ++j) {
    // Row j below the diagonal holds L_jp D_p (p < j) until now: l_p = L_jp.
    double d = A[Tri(j, j)];
    for (int p = 0; p < j; ++p) {
      l[p] = A[Tri(j, p)] * inv[p];
      d -= A[Tri(j, p)] * l[p];
    }
    d = d > floor ? d : floor;
    A[Tri(j, j)] = d;
    inv[j] = 1.0 / d;
    for (int p = 0; p < j; ++p) A[Tri(j, p)] = l[p];
    for (int i = j + 1; i < n; ++i) {  // L_ij D_j = A_ij - sum_p (L_ip D_p) L_jp
      double s = A[Tri(i, j)];
      for (int p = 0; p < j; ++p) s -= A[Tri(i, p)] * l[p];
      A[Tri(i, j)] = s;
    }
  }
  for (int i = 0; i < n; ++i) {  // L y = b
    double s1 = b1[i], s2 = b2[i];
    for (int p = 0; p < i; ++p) {
      const double l = A[Tri(i, p)];
      s1 -= l * b1[p];
      s2 -= l * b2[p];
    }
    b1[i] = s1;
    b2[i] = s2;
  }
  for (int i = n - 1; i >= 0; --i) {  // D L' x = y
    double s1 = b1[i] * inv[i], s2 = b2[i] * inv[i];
    for (int p = i + 1; p < n; ++p) {
      const double l = A[Tri(p, i)];
      s1 -= l * b1[p];
      s2 -= l * b2[p];
    }
    b1[i] = s1;
    b2[i] = s2;
  }
}

/// One projected-gradient step of the linear link from w towards P(w + g/L), backtracked until
/// f does not decrease (with L a Lipschitz bound of the gradient the full step already
/// ascends). Updates w and returns the new f (or f when no ascent is left).
template <int KM, typename Pairs, typename GP>
PREFMIX_HOST_DEVICE inline double LinearProjectedGradientStep(const Pairs& pairs, int K,
                                                              const float* w0, double lambda,
                                                              double L, GP g, double f, double* w) {
  double step[KM], wn[KM];
  for (int k = 0; k < K; ++k) step[k] = w[k] + g[k] / L;
  ProjectSimplexWithHint<KM>(step, K, w);
  double alpha = 1.0;
  for (int ls = 0; ls < 40; ++ls, alpha *= 0.5) {
    for (int k = 0; k < K; ++k) wn[k] = w[k] + alpha * (step[k] - w[k]);
    const double fn = pairs.Objective(wn, w0, lambda);
    if (fn >= f) {
      for (int k = 0; k < K; ++k) w[k] = wn[k];
      return fn;
    }
  }
  return f;
}

/// The linear link's margin of one pair: b + w.q_j.
PREFMIX_HOST_DEVICE inline double LinearPairMargin(const float* qj, const double* w, int K,
                                                   double b) {
  double x = b;
  for (int k = 0; k < K; ++k) x += w[k] * qj[k];
  return x;
}

/// One pair's terms at margin x with weight c: adds c log sigma(x) to *f; *r = c (1 - sigma),
/// the gradient weight, and *h = c sigma (1 - sigma), the Hessian weight. One exp, one log.
PREFMIX_HOST_DEVICE inline void LinearPairTerms(double x, double c, double* f, double* r,
                                                double* h) {
  const double e = exp(-fabs(x));
  const double s = x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);  // sigma(x)
  // log(1 + e) rather than log1p(e): e <= 1, so the absolute error stays below 2.3e-16
  // (f is compared in absolute terms), and log is the cheaper call.
  *f += c * ((x < 0 ? x : 0.0) - log(1.0 + e));
  *r = c * (1.0 - s);
  *h = c * s * (1.0 - s);
}

/// One pair's updates: g += r q_j, and A += h q_F q_F' on the face F (packed triangle, Tri).
template <int KM, typename GP, typename HP>
PREFMIX_HOST_DEVICE inline void LinearPairUpdate(const float* qj, int K, const int* F, int m,
                                                 double r, double h, GP g, HP H) {
  for (int k = 0; k < K; ++k) g[k] += r * qj[k];
  if (h <= 0) return;
  double qf[KM];  // the row on the face, gathered once: the update below is contiguous
  for (int a = 0; a < m; ++a) qf[a] = qj[F[a]];
  int row = 0;  // row a of the packed triangle starts at Tri(a, 0)
  for (int a = 0; a < m; ++a) {
    const double ha = h * qf[a];
    for (int b = 0; b <= a; ++b) H[row + b] += ha * qf[b];
    row += a + 1;
  }
}

/// One pass over a user's pairs for the linear link at w: returns f(w) and writes its gradient g
/// and the negative Hessian on the face F = {k : w_k > 0} (its indices to F, their count to *m),
/// A = sum_j c_j s_j (1 - s_j) q_F q_F' + lambda I (packed lower triangle, Tri), with
/// one exp and one log per pair.
template <int KM = kMaxK, typename GP = double*, typename HP = double*>
PREFMIX_HOST_DEVICE inline double LinearFullPass(const float* q, const float* offset,
                                                 const float* weight, int64_t n, int K,
                                                 const double* w, const float* w0, double lambda,
                                                 int* F, int* m_out, GP g, HP H) {
  int m = 0;
  for (int k = 0; k < K; ++k)
    if (w[k] > 0) F[m++] = k;
  *m_out = m;
  double f = LinearPrior(w, w0, lambda, K, g);
  for (int a = 0; a < m; ++a)
    for (int b = 0; b <= a; ++b) H[Tri(a, b)] = a == b ? lambda : 0.0;
      // Per pair: the margin x = b_j + w.q_j, then sigma and log sigma from one exp and one log,
      // then the gradient and face-Hessian updates (LinearPairMargin / Terms / Update).
#if defined(__CUDA_ARCH__)
  for (int64_t j = 0; j < n; ++j) {
    double r, h;
    const float* qj = q + j * K;
    LinearPairTerms(LinearPairMargin(qj, w, K, offset ? offset[j] : 0.0), weight ? weight[j] : 1.0,
                    &f, &r, &h);
    LinearPairUpdate<KM>(qj, K, F, m, r, h, g, H);
  }
#else
  // The same operations in the same order per pair (bit-identical to the device branch), on
  // chunks of pairs in three loops: margins, then exp and log, then the updates. The two
  // call-free loops overlap across pairs (out-of-order execution) instead of waiting on each
  // pair's exp / log.
  constexpr int kChunk = 32;
  double xs[kChunk], rs[kChunk], hs[kChunk];
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int nc = n - j0 < kChunk ? static_cast<int>(n - j0) : kChunk;
    const float* qc = q + j0 * K;
    for (int i = 0; i < nc; ++i)
      xs[i] = LinearPairMargin(qc + i * K, w, K, offset ? offset[j0 + i] : 0.0);
    for (int i = 0; i < nc; ++i)
      LinearPairTerms(xs[i], weight ? weight[j0 + i] : 1.0, &f, &rs[i], &hs[i]);
    for (int i = 0; i < nc; ++i) LinearPairUpdate<KM>(qc + i * K, K, F, m, rs[i], hs[i], g, H);
  }
#endif
  return f;
}

/// A user's pairs as the linear solver reads them (its `Pairs` policy): q row-major [n, K], the
/// offsets b_j and weights c_j (null: 0 and 1). The CUDA kernels and the CPU fallback use this
/// one; the CPU loop's SIMD form is LinearTransposedPairs (linear_cpu.h).
struct LinearRowPairs {
  const float* q;
  const float* offset;
  const float* weight;
  int64_t n;
  int K;
  PREFMIX_HOST_DEVICE double Lipschitz(double lambda) const {
    return LinearLipschitz(q, weight, n, K, lambda);
  }
  PREFMIX_HOST_DEVICE double Objective(const double* w, const float* w0, double lambda) const {
    return LinearObjective(q, offset, weight, n, K, w, w0, lambda, nullptr);
  }
  template <int KM, typename GP, typename HP>
  PREFMIX_HOST_DEVICE double FullPass(const double* w, const float* w0, double lambda, int* F,
                                      int* m, GP g, HP H) const {
    return LinearFullPass<KM>(q, offset, weight, n, K, w, w0, lambda, F, m, g, H);
  }
};

/// The linear solver's early-entry ratio (see SolveLinearSimplexWith): of 0.1, 0.2, 0.3, 0.5 and
/// 1, 0.5 took the least time on the user-step benchmark (K = 10, k = 20: 5.1 iterations a user
/// against 6.6 without early entry; 1 took 5.0 but longer per iteration).
constexpr double kLinearEarlyEntry = 0.5;
/// Early entries per user at most (see SolveLinearSimplexWith). Without a budget, users with
/// saturated margins (|q| ~ 30) took up to 443 iterations (K = 32) instead of 75; budgets of
/// 1-4 keep them at 44-77 and the benchmark at 5.1-5.3 iterations, 4 the fastest.
constexpr int kLinearEarlyEntries = 4;

/// Maximises the linear-link objective
///   f(w) = sum_j c_j log sigma(b_j + w.q_j) - lambda/2 |w - w0|^2   over the simplex
/// by a primal active-set Newton method: on the face F = {k : w_k > 0} it takes the Newton step
/// d of the equality-constrained quadratic model (1'd = 0, d_k = 0 off F); when w + d leaves the
/// simplex it first tries the projected step P(w + d) (several coordinates leave F at once; the
/// Armijo condition along the projection arc), and otherwise, or once that has failed for the
/// user, shortens d to stay feasible (the blocking coordinate leaves F) with Armijo
/// backtracking (f is concave, so d ascends); when F is stationary, the coordinate off F with the
/// largest gradient above the face's multiplier enters F. Stops when the projected-gradient
/// (KKT) residual, measured as in SolveLinearSimplexFista (step 1/L with
/// L = 1/4 sum_j c_j |q_j|^2 + lambda), is below tol. Quadratic convergence near the solution,
/// typically 3-8 iterations from the uniform start (K = 10). w holds the start on entry (projected
/// first) and the solution on exit.
/// This form reads the pairs through `pairs` (LinearRowPairs, or the CPU's LinearTransposedPairs)
/// and takes the caller's scratch: two gradients (K each) and two packed Hessian triangles
/// (K (K + 1) / 2 each), of pointer type GP / HP (double* or Strided<double>).
template <int KM, typename Pairs, typename GP, typename HP>
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveLinearSimplexWith(const Pairs& pairs, int K,
                                                                   const float* w0, double lambda,
                                                                   int max_iter, double tol,
                                                                   double* w, GP g0, GP g1, HP H0,
                                                                   HP H1) {
  const double L = pairs.Lipschitz(lambda);
  ProjectSimplexWithHint<KM>(w, K, w);  // the start is usually on the simplex already
  // Two sets of (gradient, face, Hessian): the current point's and the trial point's; a trial
  // point's full pass is what the Armijo test reads, and an accepted trial becomes the current
  // point without another pass.
  double d[KM], y2[KM], wn[KM];
  int Fbuf[2][KM];
  GP g = g0, gn = g1;
  HP H = H0, Hn = H1;
  int *F = Fbuf[0], *Fn = Fbuf[1], m = 0, mn = 0;
  SimplexSolveInfo info{0.0, 0.0, 0};
  bool try_projected = true;  // until a projected Newton step first fails
  // Early entries left: a budget, since at saturated margins a coordinate let in early can leave
  // again and be let in again, a cycle that the stationary rule alone never enters.
  int early_left = kLinearEarlyEntries;
  double f = pairs.template FullPass<KM>(w, w0, lambda, F, &m, g, H);
  for (int it = 0;; ++it) {
    info.objective = f;
    info.residual = SimplexKktResidual<KM>(w, g, K, L);
    if (info.residual < tol || it >= max_iter) break;
    info.iterations = it + 1;
    // Early entry: where the gradient's spread on the face (zero at the face's own optimum) is
    // below kLinearEarlyEntry times the largest ascent off it, the face is not the solution's and
    // converging on it is wasted: the best coordinate off the face enters now (the branch below,
    // with no Newton step) instead of once the face is stationary.
    // mean_f is also the face's multiplier estimate that the entering rule below reads.
    double mean_f = 0;
    for (int a = 0; a < m; ++a) mean_f += g[F[a]];
    mean_f /= (m > 0 ? m : 1);
    bool early = false;
    if (early_left > 0 && m < K) {  // a full face has no coordinate to let in
      double spread = 0, ascent = 0;
      for (int a = 0; a < m; ++a)
        spread = fabs(g[F[a]] - mean_f) > spread ? fabs(g[F[a]] - mean_f) : spread;
      for (int k = 0; k < K; ++k)
        if (w[k] <= 0 && g[k] - mean_f > ascent) ascent = g[k] - mean_f;
      early = ascent > 0 && spread < kLinearEarlyEntry * ascent;
      early_left -= early ? 1 : 0;
    }
    double slope = 0, dmax = 0;
    if (!early) {
      // A relative ridge keeps the factorisation finite where saturated margins leave A
      // (near-)singular; the ratio test below then bounds the long steps along its null space.
      double trace = 0;
      for (int a = 0; a < m; ++a) trace += H[Tri(a, a)];
      const double ridge = 1e-9 * (trace / (m > 0 ? m : 1)) + 1e-300;
      for (int a = 0; a < m; ++a) H[Tri(a, a)] += ridge;
      const double floor = ridge;
      // d = A^-1 g_F - nu A^-1 1 with nu chosen so that 1'd = 0.
      for (int a = 0; a < m; ++a) {
        d[a] = g[F[a]];
        y2[a] = 1.0;
      }
      LdltSolveTwo<KM>(H, m, floor, d, y2);  // H now holds the factor
      double s1 = 0, s2 = 0;
      for (int a = 0; a < m; ++a) {
        s1 += d[a];
        s2 += y2[a];
      }
      const double nu = s1 / s2;
      for (int a = 0; a < m; ++a) {
        d[a] -= nu * y2[a];
        slope += g[F[a]] * d[a];
        dmax = fabs(d[a]) > dmax ? fabs(d[a]) : dmax;
      }
    }
    if (!(fabs(slope) <= 1.7e308) || !(dmax <= 1.7e308)) {  // NaN or inf
      // The Newton system overflowed: a projected-gradient step instead.
      const double fp = LinearProjectedGradientStep<KM>(pairs, K, w0, lambda, L, g, f, w);
      if (!(fp > f)) break;
      f = pairs.template FullPass<KM>(w, w0, lambda, F, &m, g, H);
    } else if (early || m <= 1 || dmax < 1e-14 || slope <= 1e-15 * (1.0 + fabs(f))) {
      // Early entry, or the face is stationary (the Newton step would gain less than f's
      // rounding): let the best coordinate off the face enter (KKT: g_k <= nu).
      int enter = -1;
      double best = 0;
      for (int k = 0; k < K; ++k)
        if (w[k] <= 0 && g[k] - mean_f > best) {
          best = g[k] - mean_f;
          enter = k;
        }
      if (enter < 0) break;  // KKT holds up to rounding
      // Move mass along the projected gradient, which lets the entering coordinate in.
      LinearProjectedGradientStep<KM>(pairs, K, w0, lambda, L, g, f, w);
      f = pairs.template FullPass<KM>(w, w0, lambda, F, &m, g, H);
    } else {
      // Longest feasible step, then Armijo backtracking; each trial is a full pass.
      double alpha = 1.0;
      int block = -1;
      for (int a = 0; a < m; ++a)
        if (d[a] < 0 && w[F[a]] + alpha * d[a] < 0) {  // -w / d < alpha, without the division
          alpha = -w[F[a]] / d[a];
          block = F[a];
        }
      double fn = f;
      // When the step is blocked, first the projected full step P(w + d): several coordinates
      // may leave the face at once (d sums to 0 on the face, so the projection only clips and
      // shifts), accepted on the Armijo condition along the projection arc. Where it fails
      // (saturated margins: the quadratic model is poor far from w) the user goes on with the
      // ratio test alone, so a failure costs one pass per user at most.
      bool projected = false;
      if (block >= 0 && try_projected) {
        for (int k = 0; k < K; ++k) wn[k] = w[k];
        for (int a = 0; a < m; ++a) wn[F[a]] = w[F[a]] + d[a];
        ProjectSimplexWithHint<KM>(wn, K, w);
        double slope_p = 0;
        for (int a = 0; a < m; ++a) slope_p += g[F[a]] * (wn[F[a]] - w[F[a]]);
        fn = pairs.template FullPass<KM>(wn, w0, lambda, Fn, &mn, gn, Hn);
        projected = fn > f && fn >= f + 1e-4 * slope_p;
        if (!projected) {
          fn = f;
          try_projected = false;
        }
      }
      for (int ls = 0; ls < 60 && !projected; ++ls) {
        for (int k = 0; k < K; ++k) wn[k] = w[k];
        for (int a = 0; a < m; ++a) {
          const double v = w[F[a]] + alpha * d[a];
          wn[F[a]] = v > 0 ? v : 0.0;
        }
        if (block >= 0 && ls == 0) wn[block] = 0.0;
        double z = 0;
        for (int k = 0; k < K; ++k) z += wn[k];
        for (int k = 0; k < K; ++k) wn[k] /= z;
        fn = pairs.template FullPass<KM>(wn, w0, lambda, Fn, &mn, gn, Hn);
        if (fn >= f + 1e-4 * alpha * slope) break;
        alpha *= 0.5;
        block = -1;
      }
      if (fn > f) {  // strict: a step that gains nothing (f flat to rounding) must not repeat
        for (int k = 0; k < K; ++k) w[k] = wn[k];
        f = fn;
        GP t = g;
        g = gn;
        gn = t;
        HP th = H;
        H = Hn;
        Hn = th;
        int* ti = F;
        F = Fn;
        Fn = ti;
        m = mn;
      } else {
        // The Newton model failed (a singular Hessian where margins saturate, or a face that is
        // stationary to rounding while the KKT residual is not small): a projected-gradient
        // step, which ascends and lets coordinates off the face enter.
        const double fp = LinearProjectedGradientStep<KM>(pairs, K, w0, lambda, L, g, f, w);
        if (!(fp > f)) break;  // no ascent left at machine precision
        f = pairs.template FullPass<KM>(w, w0, lambda, F, &m, g, H);
      }
    }
  }
  return info;
}

/// SolveLinearSimplex with scratch arrays of capacity KM on the stack (the CPU loop's solver).
template <int KM = kMaxK>
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveLinearSimplex(const float* q, const float* offset,
                                                               const float* weight, int64_t n,
                                                               int K, const float* w0,
                                                               double lambda, int max_iter,
                                                               double tol, double* w) {
  double gbuf[2][KM], Hbuf[2][KM * (KM + 1) / 2];
  const LinearRowPairs pairs{q, offset, weight, n, K};
  return SolveLinearSimplexWith<KM>(pairs, K, w0, lambda, max_iter, tol, w, gbuf[0], gbuf[1],
                                    Hbuf[0], Hbuf[1]);
}

/// Objective of the `normalized` link (to be minimised), in softmax coordinates w = softmax(o):
///   J(o) = -sum_j c_j log sigma(b_j + s w.q_j / sqrt(w'Gw + eps)) + lambda/2 |o - o0|^2,
/// G a K x K Gram matrix (row-major). This is pal-b's user objective without contexts
/// (q_jk = (f(e_a)/|f(e_a)| - f(e_b)/|f(e_b)|).p_k, G = P P'). Writes dJ/do to grad when non-null.
PREFMIX_HOST_DEVICE inline double NormalizedObjective(const float* q, const float* offset,
                                                      const float* weight, int64_t n, int K,
                                                      const float* G, double scale, double eps,
                                                      const double* o, const float* o0,
                                                      double lambda, double* grad) {
  double w[kMaxK], Gw[kMaxK], mx = o[0], z = 0;
  for (int k = 1; k < K; ++k) mx = o[k] > mx ? o[k] : mx;
  for (int k = 0; k < K; ++k) z += (w[k] = exp(o[k] - mx));
  for (int k = 0; k < K; ++k) w[k] /= z;
  double wGw = eps;
  for (int a = 0; a < K; ++a) {
    double s = 0;
    for (int b = 0; b < K; ++b) s += (double)G[a * K + b] * w[b];
    Gw[a] = s;
    wGw += w[a] * s;
  }
  const double nrm = sqrt(wGw > 1e-300 ? wGw : 1e-300);
  double J = 0, s1[kMaxK], s2 = 0;
  for (int k = 0; k < K; ++k) s1[k] = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double c = weight ? weight[j] : 1.0;
    const float* qj = q + j * K;
    double a = 0;
    for (int k = 0; k < K; ++k) a += w[k] * qj[k];
    const double x = (offset ? offset[j] : 0.0) + scale * a / nrm;
    J -= c * LogSigmoid(x);
    if (grad) {
      const double r = c * Sigmoid(-x);  // -dJ/dx
      for (int k = 0; k < K; ++k) s1[k] += r * qj[k];
      s2 += r * a;
    }
  }
  double reg = 0;
  for (int k = 0; k < K; ++k) {
    const double dk = o[k] - (o0 ? o0[k] : 0.0);
    reg += dk * dk;
  }
  J += 0.5 * lambda * reg;
  if (grad) {
    // dJ/dw = -s (s1 / n - s2 G w / n^3); dJ/do = w (dJ/dw - w.dJ/dw) + lambda (o - o0).
    double gw[kMaxK], dot = 0;
    for (int k = 0; k < K; ++k) {
      gw[k] = -scale * (s1[k] / nrm - s2 * Gw[k] / (nrm * nrm * nrm));
      dot += w[k] * gw[k];
    }
    for (int k = 0; k < K; ++k)
      grad[k] = w[k] * (gw[k] - dot) + lambda * (o[k] - (o0 ? o0[k] : 0.0));
  }
  return J;
}

/// Longest BFGS step in any logit of the normalized link's solver.
constexpr double kMaxLogitStep = 0.5;

/// BFGS on NormalizedObjective from o (in place) with Armijo backtracking, at most max_iter
/// iterations, until |dJ/do|_inf < tol. Returns J at the end; *iters and *res get the count and
/// the final gradient norm.
PREFMIX_HOST_DEVICE inline double MinimiseNormalized(const float* q, const float* offset,
                                                     const float* weight, int64_t n, int K,
                                                     const float* G, double scale, double eps,
                                                     const float* o0, double lambda, int max_iter,
                                                     double tol, double* o, int* iters,
                                                     double* res) {
  double g[kMaxK], gn[kMaxK], on[kMaxK], p[kMaxK], B[kMaxK * kMaxK];  // B: inverse Hessian
  for (int a = 0; a < K; ++a)
    for (int b = 0; b < K; ++b) B[a * kMaxK + b] = a == b ? 1.0 : 0.0;
  double J = NormalizedObjective(q, offset, weight, n, K, G, scale, eps, o, o0, lambda, g);
  double gmax = 0;
  for (int k = 0; k < K; ++k) gmax = fabs(g[k]) > gmax ? fabs(g[k]) : gmax;
  int it = 0;
  for (; it < max_iter && gmax >= tol; ++it) {
    double slope = 0;
    for (int a = 0; a < K; ++a) {
      double s = 0;
      for (int b = 0; b < K; ++b) s -= B[a * kMaxK + b] * g[b];
      p[a] = s;
      slope += s * g[a];
    }
    if (!(slope < 0)) {  // not a descent direction: restart from steepest descent
      for (int a = 0; a < K; ++a) {
        for (int b = 0; b < K; ++b) B[a * kMaxK + b] = a == b ? 1.0 : 0.0;
        p[a] = -g[a];
      }
      slope = 0;
      for (int a = 0; a < K; ++a) slope -= g[a] * g[a];
    }
    // Keep a step of at most kMaxLogitStep in the logits: a long first step could jump from a
    // start into another basin (each start is meant to find its own).
    double pmax = 0, alpha = 1.0;
    for (int k = 0; k < K; ++k) pmax = fabs(p[k]) > pmax ? fabs(p[k]) : pmax;
    if (pmax > kMaxLogitStep) alpha = kMaxLogitStep / pmax;
    double Jn = J;
    bool ok = false;
    for (int ls = 0; ls < 50; ++ls, alpha *= 0.5) {
      for (int k = 0; k < K; ++k) on[k] = o[k] + alpha * p[k];
      Jn = NormalizedObjective(q, offset, weight, n, K, G, scale, eps, on, o0, lambda, gn);
      if (Jn <= J + 1e-4 * alpha * slope) {
        ok = true;
        break;
      }
    }
    if (!ok) break;  // no descent left at machine precision
    double s[kMaxK], y[kMaxK], sy = 0;
    for (int k = 0; k < K; ++k) {
      s[k] = on[k] - o[k];
      y[k] = gn[k] - g[k];
      sy += s[k] * y[k];
      o[k] = on[k];
      g[k] = gn[k];
    }
    J = Jn;
    if (sy > 1e-12) {  // BFGS update of the inverse Hessian (skipped without curvature)
      double By[kMaxK], yBy = 0;
      for (int a = 0; a < K; ++a) {
        double t = 0;
        for (int b = 0; b < K; ++b) t += B[a * kMaxK + b] * y[b];
        By[a] = t;
        yBy += y[a] * t;
      }
      const double c1 = (1.0 + yBy / sy) / sy;
      for (int a = 0; a < K; ++a)
        for (int b = 0; b < K; ++b)
          B[a * kMaxK + b] += c1 * s[a] * s[b] - (By[a] * s[b] + s[a] * By[b]) / sy;
    }
    gmax = 0;
    for (int k = 0; k < K; ++k) gmax = fabs(g[k]) > gmax ? fabs(g[k]) : gmax;
  }
  *iters = it;
  *res = gmax;
  return J;
}

/// The `normalized` link's user step: minimises NormalizedObjective over the logits o (w =
/// softmax(o) on exit in w, the logits in o_out when non-null). With lambda > 0 and K > 1 the
/// objective is not convex in o (pal-b's cosine reward has several basins), so it runs BFGS to
/// convergence from the prior's centre o0 and from each corner o0 + 4 e_k (the starts pal-b's
/// Adam step probed) and keeps the lowest. Without a prior (lambda = 0) it starts at o0 only
/// (the minimiser may lie at infinity; the iteration cap then bounds it). `iterations` counts
/// the BFGS iterations of all starts.
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveNormalizedSimplex(
    const float* q, const float* offset, const float* weight, int64_t n, int K, const float* G,
    double scale, double eps, const float* o0, double lambda, int max_iter, double tol, double* w,
    double* o_out) {
  double o[kMaxK], best_o[kMaxK], best = 0, best_res = 0;
  int iters = 0, total = 0;
  double res = 0;
  const int starts = lambda > 0 && K > 1 && n > 0 ? K + 1 : 1;
  for (int c = -1; c < starts - 1; ++c) {
    for (int k = 0; k < K; ++k) o[k] = (o0 ? o0[k] : 0.0) + (k == c ? 4.0 : 0.0);
    const double J = MinimiseNormalized(q, offset, weight, n, K, G, scale, eps, o0, lambda,
                                        max_iter, tol, o, &iters, &res);
    total += iters;
    if (c < 0 || J < best) {
      best = J;
      best_res = res;
      for (int k = 0; k < K; ++k) best_o[k] = o[k];
    }
  }
  double mx = best_o[0], z = 0;
  for (int k = 1; k < K; ++k) mx = best_o[k] > mx ? best_o[k] : mx;
  for (int k = 0; k < K; ++k) z += (w[k] = exp(best_o[k] - mx));
  for (int k = 0; k < K; ++k) {
    w[k] /= z;
    if (o_out) o_out[k] = best_o[k];
  }
  return SimplexSolveInfo{-best, best_res, total};
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

/// log Phi(x), Phi the standard normal CDF, without underflow for any finite x (the asymptotic
/// series below -30, where erfc underflows).
PREFMIX_HOST_DEVICE inline double LogNormalCdf(double x) {
  if (x > -30) return log(0.5 * erfc(-x * 0.7071067811865476));
  return -0.5 * x * x - log(-x) - 0.9189385332046728;
}

/// The inverse Mills ratio phi(x) / Phi(x) = d/dx log Phi(x), for any finite x.
PREFMIX_HOST_DEVICE inline double NormalHazard(double x) {
  if (x > -30)
    return 0.3989422804014327 * exp(-0.5 * x * x) / (0.5 * erfc(-x * 0.7071067811865476));
  return -x - 1.0 / x + 2.0 / (x * x * x);
}

/// The Gaussian link's likelihood term log F(z) (F = Phi for probit, sigma for logistic) and
/// its first and negated second derivatives.
struct LinkTerm {
  double value, slope, curvature;
};
PREFMIX_HOST_DEVICE inline LinkTerm GaussianLinkTerm(double z, bool probit) {
  if (probit) {
    // Phi(z) once for both the value and the hazard (the helpers above, fused).
    const double cdf = z > -30 ? 0.5 * erfc(-z * 0.7071067811865476) : 0.0;
    const double h = z > -30 ? 0.3989422804014327 * exp(-0.5 * z * z) / cdf : NormalHazard(z);
    const double c = h * (z + h);
    return {z > -30 ? log(cdf) : LogNormalCdf(z), h, c > 0 ? c : 0.0};
  }
  const double s = 1.0 / (1.0 + exp(-z));  // sigma(z)
  return {LogSigmoid(z), 1.0 - s, s * (1.0 - s)};
}

/// Doubles of scratch the Gaussian link needs per user: the Hessian (K x K) and four K-vectors.
PREFMIX_HOST_DEVICE inline int64_t GaussianWorkDoubles(int K) {
  return static_cast<int64_t>(K) * K + 4 * static_cast<int64_t>(K);
}

/// In-place Cholesky factor of the n x n matrix at H with row stride ld (its lower triangle);
/// false when it is not positive definite.
PREFMIX_HOST_DEVICE inline bool CholeskyInPlace(double* H, int n, int ld) {
  for (int j = 0; j < n; ++j) {
    double d = H[j * ld + j];
    for (int k = 0; k < j; ++k) d -= H[j * ld + k] * H[j * ld + k];
    if (!(d > 0)) return false;
    d = sqrt(d);
    H[j * ld + j] = d;
    for (int i = j + 1; i < n; ++i) {
      double s = H[i * ld + j];
      for (int k = 0; k < j; ++k) s -= H[i * ld + k] * H[j * ld + k];
      H[i * ld + j] = s / d;
    }
  }
  return true;
}

/// diag((L L')^-1) = the squared column norms of L^-1, for the n x n factor at L (row stride
/// ld): one forward substitution per column, with `col` (n doubles) as scratch.
PREFMIX_HOST_DEVICE inline void InverseDiagonal(const double* L, int n, int ld, double* col,
                                                double* out) {
  for (int k = 0; k < n; ++k) {
    col[k] = 1.0 / L[k * ld + k];
    double s = col[k] * col[k];
    for (int i = k + 1; i < n; ++i) {
      double v = 0;
      for (int m = k; m < i; ++m) v -= L[i * ld + m] * col[m];
      col[i] = v / L[i * ld + i];
      s += col[i] * col[i];
    }
    out[k] = s;
  }
}

/// Solves L L' x = b in place (L from CholeskyInPlace).
PREFMIX_HOST_DEVICE inline void CholeskySolveInPlace(const double* L, int K, double* x) {
  for (int i = 0; i < K; ++i) {
    double s = x[i];
    for (int k = 0; k < i; ++k) s -= L[i * K + k] * x[k];
    x[i] = s / L[i * K + i];
  }
  for (int i = K - 1; i >= 0; --i) {
    double s = x[i];
    for (int k = i + 1; k < K; ++k) s -= L[k * K + i] * x[k];
    x[i] = s / L[i * K + i];
  }
}

/// The Gaussian link's objective at x: sum_j c_j log F(b_j + q_j.x) - 1/2 (x - x0)' P (x - x0).
PREFMIX_HOST_DEVICE inline double GaussianObjective(const float* q, const float* offset,
                                                    const float* weight, int64_t n, int K,
                                                    const float* x0, const double* P, bool probit,
                                                    const double* x) {
  double f = 0;
  for (int64_t j = 0; j < n; ++j) {
    double z = offset ? offset[j] : 0.0;
    for (int k = 0; k < K; ++k) z += q[j * K + k] * x[k];
    f += (weight ? weight[j] : 1.0) * (probit ? LogNormalCdf(z) : LogSigmoid(z));
  }
  for (int a = 0; a < K; ++a) {
    const double da = x[a] - (x0 ? x0[a] : 0.0);
    double row = 0;
    for (int b = 0; b < K; ++b) row += P[a * K + b] * (x[b] - (x0 ? x0[b] : 0.0));
    f -= 0.5 * da * row;
  }
  return f;
}

/// The Gaussian link's gradient g and Hessian H (lower triangle) at x; returns |g|_inf.
PREFMIX_HOST_DEVICE inline double GaussianDerivatives(const float* q, const float* offset,
                                                      const float* weight, int64_t n, int K,
                                                      const float* x0, const double* P, bool probit,
                                                      const double* x, double* g, double* H) {
  for (int a = 0; a < K; ++a) {
    double row = 0;
    for (int b = 0; b < K; ++b) {
      row += P[a * K + b] * (x[b] - (x0 ? x0[b] : 0.0));
      H[a * K + b] = P[a * K + b];
    }
    g[a] = -row;
  }
  for (int64_t j = 0; j < n; ++j) {
    const float* qj = q + j * K;
    double z = offset ? offset[j] : 0.0;
    for (int k = 0; k < K; ++k) z += qj[k] * x[k];
    const double c = weight ? weight[j] : 1.0;
    const LinkTerm t = GaussianLinkTerm(z, probit);
    for (int a = 0; a < K; ++a) {
      g[a] += c * t.slope * qj[a];
      const double ca = c * t.curvature * qj[a];
      for (int b = 0; b <= a; ++b) H[a * K + b] += ca * qj[b];
    }
  }
  double r = 0;
  for (int a = 0; a < K; ++a) r = fabs(g[a]) > r ? fabs(g[a]) : r;
  return r;
}

/// The Gaussian link (a Laplace posterior): maximises
///   f(x) = sum_j c_j log F(b_j + q_j.x) - 1/2 (x - x0)' P (x - x0)
/// over R^K by Newton's method with a backtracking (Armijo) line search; f is strictly concave
/// for P positive definite. On exit x holds the mode and var (when non-null) the diagonal of
/// H^-1, H = P + sum_j c_j lambda_j q_j q_j' (lambda_j = -d2/dz2 log F at the mode): the
/// Laplace posterior N(x, H^-1)'s marginal variances; with 0 < split < K instead those of its
/// mean-field version over the blocks [0, split) and [split, K) (the inverses of H's two
/// diagonal blocks). `work` holds GaussianWorkDoubles(K) doubles. Residual: |grad f|_inf at
/// the mode; iterations -1 when P is not positive definite (x then stays at its start and the
/// objective is NaN).
PREFMIX_HOST_DEVICE inline SimplexSolveInfo SolveGaussianLaplace(
    const float* q, const float* offset, const float* weight, int64_t n, int K, const float* x0,
    const double* P, bool probit, int max_iter, double tol, double* x, double* var, double* work,
    int split = 0) {
  double* H = work;
  double* g = H + static_cast<int64_t>(K) * K;
  double* step = g + K;
  double* trial = step + K;
  double* col = trial + K;
  SimplexSolveInfo info{0.0, 0.0, 0};
  double f = GaussianObjective(q, offset, weight, n, K, x0, P, probit, x);
  for (int it = 0;; ++it) {
    info.residual = GaussianDerivatives(q, offset, weight, n, K, x0, P, probit, x, g, H);
    if (!CholeskyInPlace(H, K, K)) {
      info.objective = NAN;
      info.iterations = -1;
      return info;
    }
    if (info.residual < tol || it >= max_iter) break;
    for (int a = 0; a < K; ++a) step[a] = g[a];
    CholeskySolveInPlace(H, K, step);
    double slope = 0;
    for (int a = 0; a < K; ++a) slope += g[a] * step[a];
    double t = 1.0, ft = f;
    for (int ls = 0; ls < 60; ++ls, t *= 0.5) {
      for (int a = 0; a < K; ++a) trial[a] = x[a] + t * step[a];
      ft = GaussianObjective(q, offset, weight, n, K, x0, P, probit, trial);
      if (ft >= f + 1e-4 * t * slope) break;
    }
    if (!(ft >= f)) break;  // no ascent left at double precision
    for (int a = 0; a < K; ++a) x[a] = trial[a];
    f = ft;
    info.iterations = it + 1;
  }
  info.objective = f;
  if (var) {
    if (split > 0 && split < K) {
      // Mean-field marginals: the inverses of H's two diagonal blocks at the mode.
      GaussianDerivatives(q, offset, weight, n, K, x0, P, probit, x, g, H);
      double* H2 = H + static_cast<int64_t>(split) * K + split;
      if (!CholeskyInPlace(H, split, K) || !CholeskyInPlace(H2, K - split, K)) {
        info.objective = NAN;
        info.iterations = -1;
        return info;
      }
      InverseDiagonal(H, split, K, col, var);
      InverseDiagonal(H2, K - split, K, col, var + split);
    } else {
      InverseDiagonal(H, K, K, col, var);
    }
  }
  return info;
}

PREFMIX_ISA_END
}  // namespace prefmix::math
