// `lowrank` training speed on the big dataset (100k items x 768, 2,000 users x 500 pairs, K = 8):
// one full-batch pass (loss + gradients) against its floor.
//
// A pass projects every item once (P = E V, [n_items, K]), gathers/scatters per pair, and forms
// grad_V = E^T G: two skinny GEMMs that each stream the 307 MB item matrix once. The floor benches
// time those parts alone: BM_LowRankFloorRead (one read of E: the memory-bandwidth floor of one
// GEMM), BM_LowRankFloorGemmEigen (the two GEMMs as Eigen products, as lowrank.cpp writes them) and
// BM_LowRankFloorGemmBlas (the same two GEMMs through cblas_sgemm, i.e. the linked OpenBLAS).
// The argument is the thread count (prefmix::SetThreads; OpenBLAS's own count for the BLAS bench).
// Note: this file is compiled without the library's -march=x86-64-v2; for Eigen's float GEMM
// kernels SSE2 and SSE4.2 code is the same. Use 2-thread figures from an idle machine only.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>

#include "bench/bench_common.h"
#include "core/rng.h"
#include "core/threads.h"
#include "mixture/lowrank.h"

#if __has_include(<cblas.h>)
#include <cblas.h>
#define PREFMIX_BENCH_HAVE_CBLAS 1
// OpenBLAS's thread control; weak so that another CBLAS still links (the call is then skipped).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace prefmix::bench {
namespace {

constexpr double kL2 = 1e-4;

/// Fixed-seed parameters of the right shapes: V ~ N(0, 1/D), omega ~ N(0, 0.25).
struct LowRankParams {
  Eigen::MatrixXf V;
  RowMatrixF omega;
  LowRankParams() : V(kDim, kLowRankK), omega(kUsers, kLowRankK) {
    Rng rng(DeriveSeed(kSeed, 3));
    const float sv = 1.0f / std::sqrt(static_cast<float>(kDim));
    for (Eigen::Index i = 0; i < V.size(); ++i) V.data()[i] = sv * static_cast<float>(rng.Normal());
    for (Eigen::Index i = 0; i < omega.size(); ++i)
      omega.data()[i] = 0.5f * static_cast<float>(rng.Normal());
  }
};

/// A fixed-seed [n_items, K] matrix standing in for the per-item gradient G.
RowMatrixF RandomItemGrad() {
  RowMatrixF g(kItems, kLowRankK);
  Rng rng(DeriveSeed(kSeed, 4));
  for (Eigen::Index i = 0; i < g.size(); ++i)
    g.data()[i] = 1e-6f * static_cast<float>(rng.Normal());
  return g;
}

void SetItemBytesCounter(benchmark::State& state, double item_reads) {
  state.counters["item_bytes/s"] = benchmark::Counter(item_reads * 4.0 * kItems * kDim,
                                                      benchmark::Counter::kIsIterationInvariantRate,
                                                      benchmark::Counter::kIs1000);
}

void BM_LowRankPass(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  SetThreads(threads);
  const Dataset& ds = BigDataset();
  const PairSet pairs = ds.AllPairs();
  const LowRankParams p;
  // One workspace for every pass, as the epoch loop in LowRankModel::Train keeps one: the
  // per-thread accumulators are allocated (and their pages faulted in) once, not per pass.
  mixture::LowRankWorkspace ws;
  double loss = 0;
  for (auto _ : state) {
    mixture::LowRankPass out =
        mixture::LowRankLossAndGrad(ds.items, pairs, p.V, p.omega, kL2, nullptr, &ws);
    loss = out.loss;
    benchmark::DoNotOptimize(out.grad_v.data());
    benchmark::DoNotOptimize(out.grad_omega.data());
  }
  if (!std::isfinite(loss)) state.SkipWithError("non-finite loss");
  state.counters["pairs/s"] = benchmark::Counter(static_cast<double>(pairs.size()),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  SetItemBytesCounter(state, 2);
}
BENCHMARK(BM_LowRankPass)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_LowRankFloorRead(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  SetThreads(threads);
  const Dataset& ds = BigDataset();
  const float* e = ds.items.data();
  const int64_t n = ds.items.size();
  for (auto _ : state) {
    float s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) s += e[i];
    benchmark::DoNotOptimize(s);
  }
  SetItemBytesCounter(state, 1);
}
BENCHMARK(BM_LowRankFloorRead)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_LowRankFloorGemmEigen(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  SetThreads(threads);
  const Dataset& ds = BigDataset();
  const LowRankParams p;
  const RowMatrixF g = RandomItemGrad();
  RowMatrixF proj(ds.n_items(), kLowRankK);
  Eigen::MatrixXf grad_v(kDim, kLowRankK);
  for (auto _ : state) {
    proj.noalias() = ds.items * p.V;
    grad_v.noalias() = ds.items.transpose() * g;
    benchmark::DoNotOptimize(proj.data());
    benchmark::DoNotOptimize(grad_v.data());
  }
  SetItemBytesCounter(state, 2);
}
BENCHMARK(BM_LowRankFloorGemmEigen)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

#ifdef PREFMIX_BENCH_HAVE_CBLAS
void BM_LowRankFloorGemmBlas(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  SetThreads(threads);
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  const Dataset& ds = BigDataset();
  const LowRankParams p;
  const RowMatrixF v = p.V;  // row-major [D, K]
  const RowMatrixF g = RandomItemGrad();
  RowMatrixF proj(ds.n_items(), kLowRankK);
  RowMatrixF grad_v(kDim, kLowRankK);
  const int n = static_cast<int>(ds.n_items()), d = static_cast<int>(ds.dim()), k = kLowRankK;
  for (auto _ : state) {
    // P[n, K] = E[n, D] V[D, K]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, d, 1.0f, ds.items.data(), d,
                v.data(), k, 0.0f, proj.data(), k);
    // grad_V[D, K] = E^T[D, n] G[n, K]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, k, n, 1.0f, ds.items.data(), d,
                g.data(), k, 0.0f, grad_v.data(), k);
    benchmark::DoNotOptimize(proj.data());
    benchmark::DoNotOptimize(grad_v.data());
  }
  SetItemBytesCounter(state, 2);
}
BENCHMARK(BM_LowRankFloorGemmBlas)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
#endif

}  // namespace
}  // namespace prefmix::bench
