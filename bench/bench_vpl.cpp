// `vpl` adaptation throughput: new users' latents from k = 8 support pairs each, D = 768, latent
// 64, hidden 256, no gradient steps, batched over users. adapt:0 is VPL's amortized encoder,
// z = mu(q(z | C)) (the pair encoder, the self-attention over the 8 pairs and the
// precision-weighted pooling); adapt:1 the default population posterior mean over the training
// users' encoded mu (one GEMM for the rewards of the used items under every training mu, then
// the pairs' log-likelihoods per new user and training user). The model is fitted for one epoch
// on a fixed-seed dataset of kVplTrainUsers users with the same dimension (the weights' values do
// not change the cost; the number of training users does, for adapt:1). Users: 4,096 new users
// on 20,000 items. Arguments: thread count, adaptation.
#include <benchmark/benchmark.h>

#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"

namespace prefmix::bench {
namespace {

constexpr int64_t kVplDim = 768;
constexpr int64_t kVplItems = 20000;
constexpr int64_t kVplUsers = 4096;
constexpr int kVplShots = 8;
constexpr int64_t kVplTrainUsers = 1000;

Dataset RandomData(int64_t n_items, int64_t n_users, int pairs, uint64_t seed) {
  Dataset ds;
  Rng rng(seed);
  ds.items.resize(n_items, kVplDim);
  for (Eigen::Index i = 0; i < ds.items.size(); ++i) ds.items.data()[i] = (float)rng.Normal();
  for (int64_t u = 0; u < n_users; ++u) {
    ds.user_ids.push_back("u" + std::to_string(u));
    for (int j = 0; j < pairs; ++j) {
      const int64_t a = (int64_t)rng.Below(n_items);
      int64_t b = (int64_t)rng.Below(n_items - 1);
      if (b >= a) ++b;
      ds.cmp_user.push_back(u);
      ds.cmp_chosen.push_back(a);
      ds.cmp_rejected.push_back(b);
    }
  }
  return ds;
}

void BM_VplAdapt(benchmark::State& state) {
  SetThreads(static_cast<int>(state.range(0)));
  static const Dataset train = RandomData(2000, kVplTrainUsers, 8, 11);
  static const Dataset fresh = RandomData(kVplItems, kVplUsers, kVplShots, 12);
  static std::unique_ptr<Model> model = [] {
    ModelOptions o;
    o.family = "vpl";
    o.Set("dim", 64);
    o.Set("hidden", 256);
    o.Set("epochs", 1);
    o.Set("lr", 0);
    o.Set("refit", false);
    auto m = MakeModel(o);
    const PairSet all = train.AllPairs();
    m->Fit(train, all, PairSet());
    return m;
  }();
  ModelOptions o = model->options();
  o.Set("vpl_adapt", state.range(1) ? "population" : "encoder");
  model->set_options(o);
  const PairSet support = fresh.AllPairs();
  for (auto _ : state) {
    RowMatrixF z = model->Adapt(fresh, support, fresh.n_users(), "cpu");
    benchmark::DoNotOptimize(z.data());
  }
  state.counters["users/s"] = benchmark::Counter(static_cast<double>(kVplUsers),
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["pairs/s"] = benchmark::Counter(static_cast<double>(kVplUsers * kVplShots),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_VplAdapt)
    ->ArgNames({"threads", "adapt"})
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace prefmix::bench
