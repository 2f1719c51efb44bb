// core's batched user step, per link, K in {2, 10, 32} and k in {5, 20, 100} support pairs per
// user (issue 7's grid), on CPU threads. Each case solves U users (U x k x K floats of q, about
// 64 MB per case, larger than the caches) to convergence: linear stops at a projected-gradient
// (KKT) residual <= 1e-5 (active-set Newton, max 200 iterations; the counter `unconverged`
// counts users that did not get there), mixture at a weight change <= 1e-6 (max 500 EM
// iterations), normalized at |dJ/do|_inf <= 1e-6 (BFGS from K + 1 starts, max 200 each),
// loglik is one pass. Counters: users/s, and the floor: the bytes the kernel must read once (q,
// weights and offsets: k (K + 1) 4 + 8 bytes per user) over the read bandwidth BM_ReadBandwidth
// measures on the same machine; `floor_users/s` is that bound and `of_floor` the measured fraction
// of it. Args: link (0 loglik, 1 linear, 2 mixture, 3 normalized), K, k, threads.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/user_step.h"

namespace prefmix::bench {
namespace {

/// Read bandwidth (bytes/s) of a 512 MB float array summed by all threads, measured once.
std::atomic<double> g_bandwidth{0};

void BM_ReadBandwidth(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const int64_t n = int64_t{128} << 20;  // 512 MB of floats
  std::vector<float> a(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) a[i] = static_cast<float>(i & 1023);
  double total = 0;
  for (auto _ : state) {
    double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += a[i];
    total += s;
    benchmark::DoNotOptimize(total);
  }
  const double bytes = static_cast<double>(n) * sizeof(float);
  state.counters["bytes/s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}
BENCHMARK(BM_ReadBandwidth)
    ->ArgName("threads")
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

/// Measures the bandwidth once if BM_ReadBandwidth has not (sum of a 512 MB array, 2 passes).
double Bandwidth() {
  if (g_bandwidth.load() > 0) return g_bandwidth.load();
  const int64_t n = int64_t{128} << 20;
  std::vector<float> a(n, 1.0f);
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += a[i];
    benchmark::DoNotOptimize(s);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n) * sizeof(float) / sec);
  }
  g_bandwidth = best;
  return best;
}

/// Peak double-precision flop rate (flops/s) of all threads, measured once: eight independent
/// multiply-add chains per thread on four-double vectors, with AVX2 + FMA where the CPU has them
/// (the x86-64-v3 build of the linear loop uses them), else the baseline's two-double SSE2.
typedef double Vec4dBench __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename V>
inline double FmaChains(int64_t iters) {
  V a[8], x, y;
  for (int i = 0; i < 8; ++i) a[i] = V{} + 0.5 + i;
  x = V{} + 0.999999;
  y = V{} + 1e-7;
  for (int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) a[i] = a[i] * x + y;
  double s = 0;
  for (int i = 0; i < 8; ++i)
    for (int l = 0; l < static_cast<int>(sizeof(V) / sizeof(double)); ++l) s += a[i][l];
  return s;
}
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) double FmaChainsAvx2(int64_t iters) {
  return FmaChains<Vec4dBench>(iters);
}
#endif
std::atomic<double> g_peak_flops{0};
double PeakFlops() {
  if (g_peak_flops.load() > 0) return g_peak_flops.load();
  const int64_t iters = 20000000;
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    auto t0 = std::chrono::steady_clock::now();
    double sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
#if defined(__x86_64__)
      if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        sink += FmaChainsAvx2(iters);
      else
#endif
        sink += FmaChains<Vec4dBench>(iters);
    }
    benchmark::DoNotOptimize(sink);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int threads = omp_get_max_threads();
    best = std::max(best, threads * 8.0 * 4 * 2 * iters / sec);  // 8 chains, 4 lanes, mul + add
  }
  g_peak_flops = best;
  return best;
}

UserStepProblem MakeProblem(int K, int k, int64_t users) {
  UserStepProblem p;
  p.K = K;
  p.n_users = users;
  p.offsets.resize(users + 1);
  for (int64_t u = 0; u <= users; ++u) p.offsets[u] = u * k;
  p.q.resize(static_cast<size_t>(users) * k * K);
  p.weight.assign(static_cast<size_t>(users) * k, 1.0f);
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < users; ++u) {
    Rng rng(DeriveSeed(20261127, 91, static_cast<uint64_t>(u)));
    // Per-user planted weights: margins mostly agree with one component, as in real data.
    for (int64_t j = u * k; j < (u + 1) * k; ++j)
      for (int c = 0; c < K; ++c) p.q[j * K + c] = static_cast<float>(1.5 * rng.Normal());
  }
  return p;
}

void BM_UserStep(benchmark::State& state) {
  const int link = static_cast<int>(state.range(0));
  const int K = static_cast<int>(state.range(1));
  const int k = static_cast<int>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const double bandwidth = Bandwidth();
  SetThreads(threads);
  // ~64 MB of q per case.
  // (The normalized link's multi-start solve is ~100x costlier per user: at most 100,000.)
  const int64_t users = std::min<int64_t>(
      link == 3 ? 100000 : INT64_MAX,
      std::max<int64_t>(2000, (int64_t{16} << 20) / (static_cast<int64_t>(k) * K)));
  UserStepProblem p = MakeProblem(K, k, users);
  UserStepOptions opt;
  UserStepLink l = UserStepLink::kLoglik;
  if (link == 1) {
    l = UserStepLink::kLinear;
    p.lambda = 0.1;
    opt.max_iter = 200;
    opt.tol = 1e-5;
  } else if (link == 2) {
    l = UserStepLink::kMixture;
    p.lambda = 1.0;
    opt.max_iter = 500;
    opt.tol = 1e-6;
  } else if (link == 3) {
    l = UserStepLink::kNormalized;
    p.lambda = 1.0;
    p.gram.assign(static_cast<size_t>(K) * K, 0.05f);
    for (int a = 0; a < K; ++a) p.gram[a * K + a] = 1.0f + 0.1f * a;
    p.scale = 2.0;
    p.norm_eps = 1e-8;
    opt.max_iter = 200;
    opt.tol = 1e-6;
  }
  // The linear link's flop floor: the peak rate over the arithmetic the solver must do for the
  // iterations it took: per pass (iterations + 1) and pair, 2K for the margin, 2K for the
  // gradient, m (m + 2) for the face Hessian (m = the solution's face size) and 60 for sigma and
  // log sigma (the polynomial exp and log of core/userstep/linear_cpu.h: 27 multiply-adds, two
  // divisions, a few selects); per iteration m^3 / 3 + 4 m^2 for the Newton solve.
  const double peak = link == 1 ? PeakFlops() : 0.0;
  double face = 0;
  int64_t unconverged = 0;
  double iters = 0;
  for (auto _ : state) {
    UserStepResult r = RunUserStep(l, p, opt, "cpu");
    benchmark::DoNotOptimize(r.latent.data());
    unconverged = 0;
    iters = 0;
    face = 0;
    for (int64_t u = 0; u < users; ++u) {
      iters += r.iterations[u];
      for (int c = 0; c < K; ++c) face += r.latent(u, c) > 0;
      if (link == 1 || link == 3) unconverged += r.residual[u] > opt.tol;
      if (link == 2) unconverged += r.iterations[u] >= opt.max_iter;
    }
  }
  const double bytes_per_user = k * (K + 1) * 4.0 + 8.0;
  const double floor = bandwidth / bytes_per_user;
  state.counters["users/s"] =
      benchmark::Counter(static_cast<double>(users), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["floor_users/s"] = floor;
  state.counters["of_floor"] = benchmark::Counter(static_cast<double>(users) / floor,
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["mean_iters"] = iters / users;
  if (link == 1) {
    const double it = iters / users, m = face / users;
    const double flops =
        (it + 1) * k * (4.0 * K + m * (m + 2) + 60) + it * (m * m * m / 3 + 4 * m * m);
    state.counters["flops/user"] = flops;
    state.counters["flop_floor_users/s"] = peak / flops;
    state.counters["of_flop_floor"] = benchmark::Counter(
        static_cast<double>(users) * flops / peak, benchmark::Counter::kIsIterationInvariantRate);
  }
  state.counters["unconverged"] = static_cast<double>(unconverged);
  static const char* names[] = {"loglik", "linear", "mixture", "normalized"};
  state.SetLabel(names[link]);
}

void UserStepArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"link", "K", "k", "threads"});
  for (int link : {0, 1, 2, 3})
    for (int K : {2, 10, 32})
      for (int k : {5, 20, 100}) b->Args({link, K, k, 2});
}
BENCHMARK(BM_UserStep)->Apply(UserStepArgs)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace prefmix::bench
