#pragma once
// The CPU loop's form of the linear link (never compiled by nvcc): the same active-set Newton
// solver (math::SolveLinearSimplexWith) reading a user's pairs transposed into doubles, so that
// each full pass runs four pairs per SIMD vector: margins, sigma and log sigma from a
// polynomial exp and log (below), the gradient and the face Hessian as dot products over pairs.
// Users with more than kLinearSimdMaxPairs pairs use the row form (math::LinearRowPairs).
//
// The vector code uses GCC's vector extensions: four doubles per vector, which the compiler maps
// to two SSE registers on x86-64-v2 and to one AVX2 register (with FMA) where the CPU loop is
// compiled for x86-64-v3 (user_step_cpu_v3.cpp).
#if defined(__CUDACC__)
#error "linear_cpu.h is host-only"
#endif
#include <cmath>
#include <cstdint>

#include "core/userstep/math.h"
#include "core/userstep/user_step_raw.h"

// The 32-byte vectors pass between inline functions only (no ABI boundary); GCC's note that
// their calling convention differs without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace prefmix::math {
PREFMIX_ISA_BEGIN  // math.h: each instruction-set build keeps its own copies

    /// Four doubles (one AVX2 register) and four 64-bit integers.
    typedef double Vec4d __attribute__((vector_size(32)));
typedef long long Vec4i __attribute__((vector_size(32)));

inline Vec4d Splat4(double x) { return Vec4d{x, x, x, x}; }
inline double Sum4(Vec4d v) { return (v[0] + v[1]) + (v[2] + v[3]); }
/// {Sum4(a), Sum4(b), Sum4(c), Sum4(d)} in six shuffles and adds.
inline Vec4d Sum4x4(Vec4d a, Vec4d b, Vec4d c, Vec4d d) {
  const Vec4d ab =
      __builtin_shuffle(a, b, Vec4i{0, 4, 2, 6}) + __builtin_shuffle(a, b, Vec4i{1, 5, 3, 7});
  const Vec4d cd =
      __builtin_shuffle(c, d, Vec4i{0, 4, 2, 6}) + __builtin_shuffle(c, d, Vec4i{1, 5, 3, 7});
  return __builtin_shuffle(ab, cd, Vec4i{0, 1, 4, 5}) +
         __builtin_shuffle(ab, cd, Vec4i{2, 3, 6, 7});
}

/// exp(t) for t <= 0 (lanes below -708 give exp(-708) ~ 3e-308 instead of a smaller number or 0):
/// Cody-Waite reduction t = n ln 2 + r, |r| <= ln 2 / 2, and the degree-13 Taylor polynomial of
/// exp(r) (truncation below 5e-18 relative); relative error within a few units in the last place
/// (tests/unit/test_math.cpp checks it against libm).
inline Vec4d ExpNonPositive4(Vec4d t) {
  t = t < Splat4(-708.0) ? Splat4(-708.0) : t;
  const Vec4d magic = Splat4(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
  const Vec4d kd = t * Splat4(1.4426950408889634) + magic;
  const Vec4d n = kd - magic;
  const Vec4d r =
      (t - n * Splat4(6.93147180369123816490e-01)) - n * Splat4(1.90821492927058770002e-10);
  // Estrin's scheme (a shorter dependency chain than Horner's): sum_i r^i / i!, i = 0..13.
  const Vec4d r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const Vec4d p01 = Splat4(1.0) + r, p23 = Splat4(0.5) + r * Splat4(1.0 / 6.0);
  const Vec4d p45 = Splat4(1.0 / 24.0) + r * Splat4(1.0 / 120.0);
  const Vec4d p67 = Splat4(1.0 / 720.0) + r * Splat4(1.0 / 5040.0);
  const Vec4d p89 = Splat4(1.0 / 40320.0) + r * Splat4(1.0 / 362880.0);
  const Vec4d p1011 = Splat4(1.0 / 3628800.0) + r * Splat4(1.0 / 39916800.0);
  const Vec4d p1213 = Splat4(1.0 / 479001600.0) + r * Splat4(1.0 / 6227020800.0);
  const Vec4d p03 = p01 + r2 * p23, p47 = p45 + r2 * p67, p811 = p89 + r2 * p1011;
  const Vec4d p = (p03 + r4 * p47) + r8 * (p811 + r4 * p1213);
  // 2^n from n's bits in kd's low mantissa (n in [-1022, 0]).
  // (A cast between vector types of one size reinterprets the bits.)
  const Vec4i scale = ((Vec4i)kd + 1023) << 52;
  return p * (Vec4d)scale;
}

/// log(1 + e) for e in [0, 1]: y = 1 + e halved above sqrt 2 (adding ln 2), then
/// log y = 2 atanh(s), s = (y - 1) / (y + 1), |s| <= 0.1716, by its series to s^23 (truncation
/// below 1e-18 relative). As the scalar path's log(1 + e), e's bits below 1's last place are lost
/// (absolute error below 2.3e-16).
inline Vec4d Log1pUnit4(Vec4d e) {
  Vec4d y = Splat4(1.0) + e;
  const auto big = y > Splat4(1.4142135623730951);
  y = big ? y * Splat4(0.5) : y;
  const Vec4d add = big ? Splat4(0.6931471805599453) : Splat4(0.0);
  const Vec4d s = (y - Splat4(1.0)) / (y + Splat4(1.0));
  const Vec4d s2 = s * s;
  // Estrin's scheme: sum_i s2^i / (2 i + 1), i = 0..11.
  const Vec4d s4 = s2 * s2, s8 = s4 * s4;
  const Vec4d a01 = Splat4(1.0) + s2 * Splat4(1.0 / 3),
              a23 = Splat4(1.0 / 5) + s2 * Splat4(1.0 / 7);
  const Vec4d a45 = Splat4(1.0 / 9) + s2 * Splat4(1.0 / 11);
  const Vec4d a67 = Splat4(1.0 / 13) + s2 * Splat4(1.0 / 15);
  const Vec4d a89 = Splat4(1.0 / 17) + s2 * Splat4(1.0 / 19);
  const Vec4d a1011 = Splat4(1.0 / 21) + s2 * Splat4(1.0 / 23);
  const Vec4d p = (a01 + s4 * a23) + s8 * ((a45 + s4 * a67) + s8 * (a89 + s4 * a1011));
  return Splat4(2.0) * s * p + add;
}

/// One block of four pairs at margins x with weights c: log sigma(x) (to *lf), c (1 - sigma) and
/// c sigma (1 - sigma), from one exp and one log, as math::LinearPairTerms per lane.
inline void LinearPairTerms4(Vec4d x, Vec4d c, Vec4d* lf, Vec4d* r, Vec4d* h) {
  const auto pos = x >= Splat4(0.0);
  const Vec4d e = ExpNonPositive4(pos ? -x : x);  // exp(-|x|)
  const Vec4d inv = Splat4(1.0) / (Splat4(1.0) + e);
  const Vec4d s = pos ? inv : e * inv;  // sigma(x)
  const Vec4d t = pos ? e * inv : inv;  // 1 - sigma(x)
  *lf = (pos ? Splat4(0.0) : x) - Log1pUnit4(e);
  *r = c * t;
  *h = c * s * t;
}

/// Largest user (pairs) the transposed form takes; larger users use the row form.
constexpr int kLinearSimdMaxPairs = 128;

/// A user's pairs transposed into doubles, four pairs per vector: qt[k][block] holds component k
/// of pairs 4 block .. 4 block + 3; padding pairs have weight 0 (they add nothing). The `Pairs`
/// policy of math::SolveLinearSimplexWith.
template <int KM>
struct LinearTransposedPairs {
  static constexpr int kBlocks = kLinearSimdMaxPairs / 4;
  Vec4d qt[KM][kBlocks];
  Vec4d b[kBlocks], c[kBlocks];
  int K = 0, blocks = 0;
  double weighted_sq_sum = 0;  // sum_j c_j |q_j|^2 (LinearLipschitzFromSum)

  /// Fills from a user's rows (n <= kLinearSimdMaxPairs).
  void Load(const float* q, const float* offset, const float* weight, int64_t n, int K_) {
    K = K_;
    blocks = static_cast<int>((n + 3) / 4);
    double* qd = reinterpret_cast<double*>(qt);
    double* bd = reinterpret_cast<double*>(b);
    double* cd = reinterpret_cast<double*>(c);
    const int np = blocks * 4;
    for (int j = 0; j < np; ++j) {
      const bool in = j < n;
      bd[j] = in && offset ? offset[j] : 0.0;
      cd[j] = in ? (weight ? weight[j] : 1.0) : 0.0;
      for (int k = 0; k < K; ++k) qd[k * kBlocks * 4 + j] = in ? q[j * K + k] : 0.0;
    }
    Vec4d lip = Splat4(0.0);
    for (int blk = 0; blk < blocks; ++blk) {
      Vec4d s = Splat4(0.0);
      for (int k = 0; k < K; ++k) s += qt[k][blk] * qt[k][blk];
      lip += c[blk] * s;
    }
    weighted_sq_sum = Sum4(lip);
  }

  double Lipschitz(double lambda) const { return LinearLipschitzFromSum(weighted_sq_sum, lambda); }

  Vec4d Margin(const double* w, int blk) const {
    Vec4d x = b[blk];
    for (int k = 0; k < K; ++k) x += Splat4(w[k]) * qt[k][blk];
    return x;
  }

  double Objective(const double* w, const float* w0, double lambda) const {
    Vec4d acc = Splat4(0.0);
    for (int blk = 0; blk < blocks; ++blk) {
      Vec4d lf, r, h;
      LinearPairTerms4(Margin(w, blk), c[blk], &lf, &r, &h);
      acc += c[blk] * lf;
    }
    return LinearPrior(w, w0, lambda, K, nullptr) + Sum4(acc);
  }

  /// As math::LinearFullPass: f(w), its gradient g and the face Hessian A (packed, Tri) on the
  /// face F = {k : w_k > 0}.
  template <int KM_, typename GP, typename HP>
  double FullPass(const double* w, const float* w0, double lambda, int* F, int* m_out, GP g,
                  HP H) const {
    int m = 0;
    for (int k = 0; k < K; ++k) {  // branch-free: F[m] is overwritten until w_k > 0
      F[m] = k;
      m += w[k] > 0;
    }
    *m_out = m;
    double f = LinearPrior(w, w0, lambda, K, g);
    Vec4d rs[kBlocks], hs[kBlocks], acc = Splat4(0.0);
    for (int blk = 0; blk < blocks; ++blk) {
      Vec4d lf;
      LinearPairTerms4(Margin(w, blk), c[blk], &lf, &rs[blk], &hs[blk]);
      acc += c[blk] * lf;
    }
    f += Sum4(acc);
    int k = 0;
    for (; k + 4 <= K; k += 4) {  // four components at a time, one reduction for the four
      Vec4d s0 = Splat4(0.0), s1 = s0, s2 = s0, s3 = s0;
      for (int blk = 0; blk < blocks; ++blk) {
        s0 += rs[blk] * qt[k][blk];
        s1 += rs[blk] * qt[k + 1][blk];
        s2 += rs[blk] * qt[k + 2][blk];
        s3 += rs[blk] * qt[k + 3][blk];
      }
      const Vec4d t = Sum4x4(s0, s1, s2, s3);
      for (int i = 0; i < 4; ++i) g[k + i] += t[i];
    }
    for (; k < K; ++k) {
      Vec4d s = Splat4(0.0);
      for (int blk = 0; blk < blocks; ++blk) s += rs[blk] * qt[k][blk];
      g[k] += Sum4(s);
    }
    Vec4d hq[kBlocks];
    int row = 0;
    for (int a = 0; a < m; ++a) {
      const Vec4d* qa = qt[F[a]];
      for (int blk = 0; blk < blocks; ++blk) hq[blk] = hs[blk] * qa[blk];
      int bb = 0;
      for (; bb + 4 <= a + 1; bb += 4) {  // four entries of the row, one reduction for the four
        const Vec4d *q0 = qt[F[bb]], *q1 = qt[F[bb + 1]], *q2 = qt[F[bb + 2]], *q3 = qt[F[bb + 3]];
        Vec4d s0 = Splat4(0.0), s1 = s0, s2 = s0, s3 = s0;
        for (int blk = 0; blk < blocks; ++blk) {
          s0 += hq[blk] * q0[blk];
          s1 += hq[blk] * q1[blk];
          s2 += hq[blk] * q2[blk];
          s3 += hq[blk] * q3[blk];
        }
        const Vec4d t = Sum4x4(s0, s1, s2, s3);
        for (int i = 0; i < 4; ++i) H[row + bb + i] = t[i];
      }
      for (; bb <= a; ++bb) {
        const Vec4d* qb = qt[F[bb]];
        Vec4d s = Splat4(0.0);
        for (int blk = 0; blk < blocks; ++blk) s += hq[blk] * qb[blk];
        H[row + bb] = Sum4(s);
      }
      H[row + a] += lambda;
      row += a + 1;
    }
    return f;
  }
};

/// The CPU loop's linear link for user u: the transposed SIMD form for users with at most
/// kLinearSimdMaxPairs pairs, else the row form (raw::SolveLinearUser). Scratch on the stack.
template <int KM>
inline void SolveLinearUserCpu(const raw::UserStepArgs& a, int64_t u) {
  const LinearRowPairs rows = raw::LinearPairsOf(a, u);
  if (rows.n > kLinearSimdMaxPairs) {
    raw::SolveLinearUser<KM>(a, u);
    return;
  }
  LinearTransposedPairs<KM> pairs;
  pairs.Load(rows.q, rows.offset, rows.weight, rows.n, rows.K);
  double v[KM], gbuf[2][KM], Hbuf[2][KM * (KM + 1) / 2];
  raw::StartLatent(a, u, v);
  const SimplexSolveInfo info = SolveLinearSimplexWith<KM>(
      pairs, rows.K, a.prior, a.lambda, a.max_iter, a.tol, v, gbuf[0], gbuf[1], Hbuf[0], Hbuf[1]);
  raw::WriteUser(a, u, v, info.objective, info.residual, info.iterations);
}

PREFMIX_ISA_END
}  // namespace prefmix::math
