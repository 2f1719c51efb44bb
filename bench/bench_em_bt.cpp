// `em-bt` E-step throughput on the big dataset (100k items x 768, 2,000 users x 500 pairs =
// 1M comparisons), K = 10 heads.
//
// BM_EmBtEStep is one full E-step as the EM loop runs it: the per-item rewards R = E Theta are
// computed once ([n_items, K], one skinny GEMM streaming the 307 MB item matrix), then every
// comparison gathers its two rows of R and core's batched user step (`kLoglik` link, OpenMP over
// users) forms l_uk and the hard posterior. BM_EmBtUserStep times the gather + user step alone
// (R precomputed), i.e. the part that scales with comparisons rather than with items.
// The argument is the thread count.
#include <benchmark/benchmark.h>

#include <cmath>

#include "bench/bench_common.h"
#include "core/rng.h"
#include "core/threads.h"
#include "mixture/em_bt.h"

namespace prefmix::bench {
namespace {

constexpr int kEmK = 10;

/// Fixed-seed heads Theta ~ N(0, 1/D) and uniform pi.
struct EmParams {
  Eigen::MatrixXd theta;
  Eigen::VectorXd pi;
  EmParams() : theta(kDim, kEmK), pi(Eigen::VectorXd::Constant(kEmK, 1.0 / kEmK)) {
    Rng rng(DeriveSeed(kSeed, 5));
    const double s = 1.0 / std::sqrt(static_cast<double>(kDim));
    for (Eigen::Index i = 0; i < theta.size(); ++i) theta.data()[i] = s * rng.Normal();
  }
};

void SetCounters(benchmark::State& state, int64_t n_users, int64_t n_pairs) {
  state.counters["users/s"] = benchmark::Counter(static_cast<double>(n_users),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["comparisons/s"] = benchmark::Counter(
      static_cast<double>(n_pairs), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_EmBtEStep(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const Dataset& ds = BigDataset();
  const PairSet pairs = ds.AllPairs();
  const mixture::UserPairs index = mixture::GroupByUser(pairs, ds.n_users());
  const EmParams p;
  double term = 0;
  for (auto _ : state) {
    const RowMatrixF R = mixture::ItemHeadRewards(ds.items, p.theta);
    mixture::EStepResult e = mixture::EStep(R, pairs, index, p.pi, /*hard=*/true, true);
    term = e.data_term;
    benchmark::DoNotOptimize(e.gamma.data());
  }
  if (!std::isfinite(term)) state.SkipWithError("non-finite objective");
  SetCounters(state, ds.n_users(), static_cast<int64_t>(pairs.size()));
}
BENCHMARK(BM_EmBtEStep)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_EmBtUserStep(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const Dataset& ds = BigDataset();
  const PairSet pairs = ds.AllPairs();
  const mixture::UserPairs index = mixture::GroupByUser(pairs, ds.n_users());
  const EmParams p;
  const RowMatrixF R = mixture::ItemHeadRewards(ds.items, p.theta);
  double term = 0;
  for (auto _ : state) {
    mixture::EStepResult e = mixture::EStep(R, pairs, index, p.pi, /*hard=*/true, true);
    term = e.data_term;
    benchmark::DoNotOptimize(e.gamma.data());
  }
  if (!std::isfinite(term)) state.SkipWithError("non-finite objective");
  SetCounters(state, ds.n_users(), static_cast<int64_t>(pairs.size()));
}
BENCHMARK(BM_EmBtUserStep)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace prefmix::bench
