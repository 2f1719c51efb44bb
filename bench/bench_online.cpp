// micro's stage-2 online routing and its batched routing.
//
// BM_OnlineLabel: latency of one online update, as a user's stream is consumed one label at a
// time: 2,000 users x 20 labels run through routing::RunOnlineMixture on ONE thread; the
// reported time per label is the total over the 40,000 labels (each prediction + update).
// map re-solves the MAP of the labels so far (warm-started EM, <= 50 iterations, tol 1e-6), so
// its cost grows with the labels seen; quasi-bayes is O(K) per label. Args: estimator (0 map,
// 1 quasi-bayes), K.
// BM_RouterThroughput: the router pi(x) = softmax(W x + b) for 100,000 inputs (e.g. contexts or
// user attribute vectors) of dimension Dx = 768 or 29, K = 10 heads; inputs/s. Arg: Dx, threads.
// BM_BatchRoutingAdapt: the batch user step (`mixture` link) for 2,000 users x 20 labels,
// K = 10; users/s. Arg: threads.
#include <benchmark/benchmark.h>

#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/user_step.h"
#include "routing/micro.h"
#include "routing/online.h"

namespace prefmix::bench {
namespace {

UserStepProblem Stream(int64_t users, int n, int K) {
  Rng rng(DeriveSeed(20261127, 77));
  UserStepProblem p;
  p.K = K;
  p.n_users = users;
  p.offsets.push_back(0);
  for (int64_t u = 0; u < users; ++u) {
    for (int j = 0; j < n; ++j)
      for (int k = 0; k < K; ++k) p.q.push_back(static_cast<float>(2.0 * rng.Normal()));
    p.offsets.push_back(p.offsets.back() + n);
  }
  return p;
}

RowMatrixF Prior(int64_t users, int K) {
  return RowMatrixF::Constant(users, K, 1.0f / static_cast<float>(K));
}

void BM_OnlineLabel(benchmark::State& state) {
  SetThreads(1);
  const auto est =
      state.range(0) == 0 ? routing::OnlineEstimator::kMap : routing::OnlineEstimator::kQuasiBayes;
  const int K = static_cast<int>(state.range(1));
  const int64_t users = 2000;
  const int n = 20;
  const UserStepProblem p = Stream(users, n, K);
  const RowMatrixF prior = Prior(users, K);
  for (auto _ : state) {
    auto r = routing::RunOnlineMixture(p, prior, 2.0, est, 50, 1e-6);
    benchmark::DoNotOptimize(r.prob.data());
  }
  state.SetLabel(state.range(0) == 0 ? "map" : "quasi-bayes");
  state.counters["us/label"] = benchmark::Counter(
      static_cast<double>(users * n) * 1e-6,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_OnlineLabel)
    ->ArgNames({"estimator", "K"})
    ->Args({0, 3})
    ->Args({0, 10})
    ->Args({1, 3})
    ->Args({1, 10})
    ->Unit(benchmark::kMillisecond);

void BM_RouterThroughput(benchmark::State& state) {
  const int64_t dx = state.range(0);
  SetThreads(static_cast<int>(state.range(1)));
  const int64_t n = 100000;
  const int K = 10;
  Rng rng(DeriveSeed(20261127, 78));
  RowMatrixD x(n, dx);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.Normal();
  routing::MicroParams params;
  params.w.resize(K, dx);
  params.b = Eigen::VectorXd::Zero(K);
  for (Eigen::Index i = 0; i < params.w.size(); ++i) params.w.data()[i] = 0.05 * rng.Normal();
  for (auto _ : state) {
    RowMatrixD pi = routing::MicroRoute(x, params);
    benchmark::DoNotOptimize(pi.data());
  }
  state.counters["inputs/s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_RouterThroughput)
    ->ArgNames({"Dx", "threads"})
    ->Args({29, 1})
    ->Args({29, 2})
    ->Args({768, 1})
    ->Args({768, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_BatchRoutingAdapt(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  const int K = 10;
  const int64_t users = 2000;
  UserStepProblem p = Stream(users, 20, K);
  p.lambda = 2.0;
  const RowMatrixF prior = Prior(users, K);
  UserStepOptions opt;
  opt.max_iter = 50;
  opt.tol = 1e-6;
  for (auto _ : state) {
    auto r = RunUserStep(UserStepLink::kMixture, p, opt, "cpu", &prior);
    benchmark::DoNotOptimize(r.latent.data());
  }
  state.counters["users/s"] =
      benchmark::Counter(static_cast<double>(users), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_BatchRoutingAdapt)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace prefmix::bench
