// micro on planted truth: routing accuracy and seen accuracy against the oracle on the groups
// preset (seeds 1-5) with and without load balancing, and cold start from attributes vs bt.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/device.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "core/userstep/user_step.h"
#include "data/generate.h"
#include "routing/micro.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using routing::MicroLossAndGrad;
using routing::MicroParams;
using routing::MicroPass;

/// Fraction of users whose argmax latent equals their planted group, after matching heads to
/// groups by the permutation maximising the summed correlation of head and planted rewards.
double RoutingAccuracy(const RowMatrixF& heads, const RowMatrixF& truth, const RowMatrixF& lat,
                       const std::vector<int32_t>& group) {
  const int K = static_cast<int>(heads.rows());
  auto corr = [](Eigen::VectorXd a, Eigen::VectorXd b) {
    a.array() -= a.mean();
    b.array() -= b.mean();
    return a.dot(b) / (a.norm() * b.norm());
  };
  std::vector<int> perm(K), best;
  std::iota(perm.begin(), perm.end(), 0);
  double best_sum = -1e9;
  do {  // perm[g] = head matched to group g
    double s = 0;
    for (int g = 0; g < K; ++g)
      s += corr(heads.row(perm[g]).transpose().cast<double>(),
                truth.row(g).transpose().cast<double>());
    if (s > best_sum) {
      best_sum = s;
      best = perm;
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  int hit = 0;
  for (Eigen::Index u = 0; u < lat.rows(); ++u) {
    Eigen::Index k = 0;
    lat.row(u).maxCoeff(&k);
    hit += k == best[group[u]];
  }
  return static_cast<double>(hit) / lat.rows();
}

/// Routing accuracy and seen accuracy on the groups preset with --router attributes, seeds
/// 1-5, at load-balancing weight `balance`; returns the number of seeds with routing accuracy
/// >= `min_route` and seen accuracy within `max_gap` of the oracle.
int GroupsPresetAttributeRouting(double balance, double min_route, double max_gap) {
  int ok = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    Dataset ds = data::Generate(g);
    ProtocolOptions po;
    po.seed = seed;
    Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
    ModelOptions mo = MicroOptions(seed);
    mo.Set("balance", balance);
    auto model = MakeModel(mo);
    model->Fit(ds, s.train, s.valid);
    const auto* mh = dynamic_cast<const MultiHeadModel*>(model.get());
    if (!mh) ADD_FAILURE() << "micro is not a MultiHeadModel";
    if (!mh) return 0;
    const RowMatrixF heads = mh->HeadRewards(ds);
    const double route = RoutingAccuracy(heads, ds.truth_group_item_reward, model->TrainLatents(),
                                         ds.truth_user_group);
    const double route_prior =
        RoutingAccuracy(heads, ds.truth_group_item_reward,
                        model->Adapt(ds, PairSet(), ds.n_users(), "cpu"), ds.truth_user_group);
    Json m = PairMetrics(ds, s.test, model->PredictProb(ds, s.test, model->TrainLatents()),
                         po.min_group_users);
    const double acc = m.at("accuracy").number(), oracle = m.at("oracle_accuracy").number();
    std::printf(
        "balance %.2f seed %d: routing acc (user step) %.4f  router-only %.4f  seen acc %.4f "
        "oracle %.4f (gap %+.4f)\n",
        balance, static_cast<int>(seed), route, route_prior, acc, oracle, acc - oracle);
    ok += route >= min_route && acc >= oracle - max_gap;
  }
  return ok;
}

// Without load balancing (the planted groups are 70/20/10, which a uniform-routing pull fights)
// both bars hold on every seed (measured: routing 1.000 on seeds 1-5, gaps -0.2 to -1.7 points).
TEST(MicroRecoveryTest, GroupsPresetAttributeRoutingNoBalance) {
  EXPECT_EQ(GroupsPresetAttributeRouting(0.0, 0.9, 0.02), 5);
}

// At MiCRo's default balance 0.5 the batch-entropy term pulls the mean routing to uniform and a
// head is spent splitting the 70% group, so the bars above are out of reach (measured on seeds
// 1-5: routing 0.63-0.89, gaps -2.1 to -3.8 points; better defaults for this case are issue 22's
// work). What must hold meanwhile: routing well above chance (1/3) and within 5 points of the
// oracle on every seed.
TEST(MicroRecoveryTest, GroupsPresetAttributeRoutingDefaultBalance) {
  EXPECT_EQ(GroupsPresetAttributeRouting(0.5, 0.6, 0.05), 5);
}

/// Cold start (unseen users, 0 shots): attribute routing against bt, seeds 1-5.
TEST(MicroRecoveryTest, ColdStartAttributeRoutingBeatsBt) {
  int wins = 0;
  double sum_micro = 0, sum_bt = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    Dataset ds = data::Generate(g);
    ProtocolOptions po;
    po.name = "unseen";
    po.shots = {0};
    po.seed = seed;
    Json mm = RunExperiment(ds, MicroOptions(seed), po);
    ModelOptions bo;
    bo.family = "bt";
    bo.seed = seed;
    Json mb = RunExperiment(ds, bo, po);
    const double am = mm.at("accuracy").number(), ab = mb.at("accuracy").number();
    std::printf("seed %d: cold start micro(attributes) %.4f  bt %.4f  (%+.4f)\n",
                static_cast<int>(seed), am, ab, am - ab);
    wins += am > ab;
    sum_micro += am;
    sum_bt += ab;
  }
  std::printf("micro wins %d/5, mean %.4f vs %.4f\n", wins, sum_micro / 5, sum_bt / 5);
  EXPECT_GE(wins, 4);
  EXPECT_GT(sum_micro, sum_bt);
}

}  // namespace
}  // namespace prefmix
