// em-bt on planted truth: ARI, seen accuracy and the minority group against their oracles on
// the groups preset (seeds 1-10), and --k auto for K = 2, 3, 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/json.h"
#include "core/model/maxmin.h"
#include "core/model/model.h"
#include "core/userstep/math.h"
#include "data/generate.h"
#include "mixture/em_bt.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using mixture::EmOptions;
using mixture::EmState;

/// The acceptance on the groups preset: ARI, seen accuracy and the minority group
/// against their oracles, seeds 1-10.
TEST(EmBtRecoveryTest, GroupsPresetSeeds1To10) {
  int ari_ok = 0, acc_ok = 0, minority_ok = 0, all_ok = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    Dataset ds = data::Generate(g);
    ProtocolOptions po;
    po.seed = seed;
    Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
    ModelOptions mo;
    mo.family = "em-bt";
    mo.Set("k", 3);
    mo.seed = seed;
    auto model = MakeModel(mo);
    model->Fit(ds, s.train, s.valid);
    const double ari =
        mixture::AdjustedRandIndex(Argmax(model->TrainLatents()), ds.truth_user_group);
    Json m = PairMetrics(ds, s.test, model->PredictProb(ds, s.test, model->TrainLatents()),
                         po.min_group_users);
    const double acc = m.at("accuracy").number(), oracle = m.at("oracle_accuracy").number();
    // Minority: the planted group with the fewest users.
    std::vector<int> count(3, 0);
    for (int32_t z : ds.truth_user_group) ++count[z];
    const int minority =
        static_cast<int>(std::min_element(count.begin(), count.end()) - count.begin());
    const Json& mg = m.at("per_group").at("planted_group").at(std::to_string(minority));
    const double macc = mg.at("accuracy").number(), moracle = mg.at("oracle_accuracy").number();
    const bool a1 = ari >= 0.9, a2 = acc >= oracle - 0.015, a3 = macc >= moracle - 0.03;
    ari_ok += a1;
    acc_ok += a2;
    minority_ok += a3;
    all_ok += a1 && a2 && a3;
    std::printf(
        "seed %2d: ARI %.4f  seen acc %.4f oracle %.4f (gap %+.4f)  minority(g%d) %.4f oracle "
        "%.4f (gap %+.4f)\n",
        static_cast<int>(seed), ari, acc, oracle, acc - oracle, minority, macc, moracle,
        macc - moracle);
  }
  std::printf("ARI>=0.9: %d/10, acc within 1.5: %d/10, minority within 3: %d/10, all: %d/10\n",
              ari_ok, acc_ok, minority_ok, all_ok);
  EXPECT_GE(all_ok, 9);
}

/// --k auto on the groups preset with K in {2, 3, 4} (equal sizes for K = 2 and 4), seeds 1-10.
void ExpectKAuto(int K) {
  int hits = 0;
  std::string chosen;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    g.k = K;
    if (K != 3) g.group_sizes.clear();  // equal sizes (as equal as possible)
    Dataset ds = data::Generate(g);
    ProtocolOptions po;
    po.seed = seed;
    Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
    ModelOptions mo;
    mo.family = "em-bt";
    mo.Set("k", "auto");
    mo.seed = seed;
    mo.Set("restarts", 2);
    mo.Set("l2", 1e-3);
    auto model = MakeModel(mo);
    FitReport rep = model->Fit(ds, s.train, s.valid);
    const int k = static_cast<int>(rep.details.at("k").number());
    EXPECT_EQ(rep.details.at("k_selection").size(), 6u);
    hits += k == K;
    chosen += std::to_string(k) + " ";
  }
  std::printf("--k auto on K = %d: chosen %s-> %d/10 exact\n", K, chosen.c_str(), hits);
  EXPECT_GE(hits, 8);
}

TEST(EmBtKAutoTest, TwoGroups) { ExpectKAuto(2); }
TEST(EmBtKAutoTest, ThreeGroups) { ExpectKAuto(3); }
TEST(EmBtKAutoTest, FourGroups) { ExpectKAuto(4); }

}  // namespace
}  // namespace prefmix
