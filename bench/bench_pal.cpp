// pal-a / pal-b speed on the big dataset (100k items x 768 dims, 2,000 users x 500 pairs) at
// d = 128, K = 8 (projector hidden width 128):
//  - BM_PalTrain: one epoch of the LibTorch shared step (mini-batches of 4,096 pairs, Adam) over
//    the first 65,536 comparisons; counter comparisons/s. Arguments: threads, pal-b (0/1).
//  - BM_PalAdapt: the batched user step for 2,000 new users with k = 10 support pairs each
//    (items projected once, then per-user Adam on omega_u); counter users/s. Arguments: threads,
//    the setting (0: PAL's early-stopped Adam, lambda 0 and 100 steps; 1: the MAP step, lambda 1,
//    300 steps plus the K corner probes of 30 steps).
#include <benchmark/benchmark.h>

#include <cmath>

#include "bench/bench_common.h"
#include "core/threads.h"
#include "mixture/pal.h"
#include "mixture/pal_train.h"

namespace prefmix::bench {
namespace {

constexpr int kPalK = 8;
constexpr int kPalDim = 128;
constexpr int64_t kTrainPairs = 65536;
constexpr int kShots = 10;

mixture::PalTrainConfig Config(bool cosine) {
  mixture::PalTrainConfig c;
  c.cosine = cosine;
  c.k = kPalK;
  c.dim = kPalDim;
  c.hidden = kPalDim;
  c.epochs = 1;
  c.batch = 4096;
  c.seed = kSeed;
  return c;
}

PairSet FirstPairs(const PairSet& all, int64_t n) {
  PairSet p;
  for (int64_t j = 0; j < n && j < static_cast<int64_t>(all.size()); ++j) p.PushFrom(all, j);
  return p;
}

void BM_PalTrain(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const Dataset& ds = BigDataset();
  const PairSet pairs = FirstPairs(ds.AllPairs(), kTrainPairs);
  const mixture::PalTrainConfig c = Config(state.range(1) != 0);
  for (auto _ : state) {
    mixture::PalTrainResult r = mixture::TrainPal(ds, pairs, nullptr, c);
    benchmark::DoNotOptimize(r.omega.data());
  }
  state.counters["comparisons/s"] = benchmark::Counter(
      static_cast<double>(pairs.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PalTrain)
    ->ArgNames({"threads", "pal_b"})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);

void BM_PalAdapt(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const Dataset& ds = BigDataset();
  const PairSet all = ds.AllPairs();
  // Shared parameters from a short training run (their values do not change the cost).
  mixture::PalTrainConfig c = Config(false);
  c.batch = 8192;
  const mixture::PalParams params = mixture::TrainPal(ds, FirstPairs(all, 8192), nullptr, c).params;
  const auto by = all.ByUser(ds.n_users());
  PairSet support;
  for (const auto& idx : by)
    for (int i = 0; i < kShots && i < static_cast<int>(idx.size()); ++i)
      support.PushFrom(all, idx[i]);
  mixture::PalUserStepOptions o;
  if (state.range(1) == 0) {
    o.lambda = 0;
    o.steps = 100;
  } else {
    o.lambda = 1;
    o.steps = 300;
  }
  const Eigen::VectorXd omega0 = Eigen::VectorXd::Zero(kPalK);
  for (auto _ : state) {
    RowMatrixD om = mixture::PalUserStep(params, ds, support, ds.n_users(), omega0, o);
    benchmark::DoNotOptimize(om.data());
  }
  state.counters["users/s"] = benchmark::Counter(static_cast<double>(ds.n_users()),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PalAdapt)
    ->ArgNames({"threads", "map"})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace prefmix::bench
