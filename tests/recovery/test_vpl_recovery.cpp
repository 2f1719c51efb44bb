// vpl on planted truth: latent clustering (ARI), seen accuracy and the shots curve on the groups
// preset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/eval/active.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/h5io.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/userstep/math.h"
#include "data/generate.h"
#include "mixture/em_bt.h"
#include "personalization/vpl.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

/// Lloyd's k-means with k-means++ starts (best of `restarts` by inertia).
std::vector<int> KMeans(const RowMatrixF& x, int K, uint64_t seed, int restarts = 10) {
  const Eigen::Index n = x.rows();
  Rng rng(seed);
  std::vector<int> best;
  double best_in = INFINITY;
  for (int r = 0; r < restarts; ++r) {
    RowMatrixF c(K, x.cols());
    c.row(0) = x.row(rng.Below(n));
    for (int k = 1; k < K; ++k) {
      std::vector<double> d(n);
      double tot = 0;
      for (Eigen::Index i = 0; i < n; ++i) {
        double m = INFINITY;
        for (int j = 0; j < k; ++j) m = std::min(m, (double)(x.row(i) - c.row(j)).squaredNorm());
        d[i] = m;
        tot += m;
      }
      double t = rng.Uniform() * tot;
      Eigen::Index pick = n - 1;
      for (Eigen::Index i = 0; i < n; ++i)
        if ((t -= d[i]) <= 0) {
          pick = i;
          break;
        }
      c.row(k) = x.row(pick);
    }
    std::vector<int> lab(n, 0);
    double inertia = 0;
    for (int it = 0; it < 100; ++it) {
      inertia = 0;
      for (Eigen::Index i = 0; i < n; ++i) {
        double m = INFINITY;
        for (int k = 0; k < K; ++k) {
          const double dd = (x.row(i) - c.row(k)).squaredNorm();
          if (dd < m) {
            m = dd;
            lab[i] = k;
          }
        }
        inertia += m;
      }
      RowMatrixF nc = RowMatrixF::Zero(K, x.cols());
      std::vector<int> cnt(K, 0);
      for (Eigen::Index i = 0; i < n; ++i) {
        nc.row(lab[i]) += x.row(i);
        ++cnt[lab[i]];
      }
      for (int k = 0; k < K; ++k)
        if (cnt[k])
          nc.row(k) /= (float)cnt[k];
        else
          nc.row(k) = c.row(k);
      if ((nc - c).squaredNorm() < 1e-12) break;
      c = nc;
    }
    if (inertia < best_in) {
      best_in = inertia;
      best = lab;
    }
  }
  return best;
}

int SeedsFromEnv(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v ? std::max(1, std::atoi(v)) : dflt;
}

/// One recovery run on a groups dataset: the seen protocol (accuracy vs oracle, k-means on the
/// training users' mu vs the planted groups) and the unseen protocol with 8 shots (accuracy vs
/// oracle, and, with `active`, the default criterion's (bald) curve against random selection for 8
/// questions, the code path of `prefmix experiment --protocol unseen --shots 8 --active 8`).
struct Recovery {
  double seen, oracle, unseen, unseen_oracle, ari;
  int latent, active_units;
  Json active;
};

Recovery RunRecovery(const Dataset& ds, const ModelOptions& mo, uint64_t seed, bool active) {
  Recovery r;
  ProtocolOptions po;
  po.seed = seed;
  Split s = MakeSeenSplit(ds, ds.AllPairs(), po);
  auto model = MakeModel(mo);
  FitReport rep = model->Fit(ds, s.train, s.valid);
  Json m = PairMetrics(ds, s.test, model->PredictProb(ds, s.test, model->TrainLatents()),
                       po.min_group_users);
  r.seen = m.at("accuracy").number();
  r.oracle = m.at("oracle_accuracy").number();
  // k-means on the users' encoded mu (with --vpl-adapt population the seen latents are posterior
  // means over those mu instead).
  PairSet fitted = s.train;
  if (mo.Flag("refit"))
    for (size_t j = 0; j < s.valid.size(); ++j) fitted.PushFrom(s.valid, j);
  const RowMatrixF mu =
      Amortized(*model).Encode(ds, UserContextSets(fitted, ds.n_users(), kMaxContext)).mu;
  r.ari = mixture::AdjustedRandIndex(KMeans(mu, 3, seed), ds.truth_user_group);
  r.latent = (int)rep.details.at("latent").number();
  r.active_units = (int)rep.details.at("active_units").number();
  ProtocolOptions pu = po;
  pu.name = "unseen";
  pu.shots = {8};
  UnseenExtra extra{"active",
                    [&](const Model& m, const Dataset& d, const PairSet& all, const Split& sp) {
                      ActiveOptions ao;
                      ao.queries = 8;
                      ao.seed = seed;
                      return ActiveCurve(m, d, all, sp, 8, ao);
                    }};
  Json u = RunExperiment(ds, mo, pu, nullptr, active ? &extra : nullptr);
  r.unseen = u.at("accuracy").number();
  r.unseen_oracle = u.at("oracle_accuracy").number();
  if (active) r.active = u.at("active");
  std::printf(
      "seed %d: seen %.4f oracle %.4f (%+.4f)  unseen@8 %.4f oracle %.4f (%+.4f)  ARI %.3f  "
      "latent %d active units %d\n",
      (int)seed, r.seen, r.oracle, r.seen - r.oracle, r.unseen, r.unseen_oracle,
      r.unseen - r.unseen_oracle, r.ari, r.latent, r.active_units);
  return r;
}

// A guard for the suite (about 10 s per seed on one core): the groups preset with a short
// schedule (the demo's budget: latent 4, hidden 32, 40 epochs, lr 0.01, no refit) on seeds 1-4.
// The bars need the full schedule (DISABLED_GroupsPresetSeeds1To10 below); the guard's
// are looser: seen and unseen@8 within 4 points of the oracle on every seed (measured with the
// default population adaptation: seen -0.9 to -2.6, unseen -0.7 to -3.2), k-means on
// mu recovering the planted groups (ARI >= 0.8) on at least 3 of the 4 (seed 4 merges two groups
// under this schedule: ARI 0.44). A collapsed posterior (every user the same z) fails all of
// them: it scores like a single BT model (0.79 on seed 1) and k-means on mu finds no groups.
TEST(VplRecoveryTest, GroupsPresetShortScheduleGuard) {
  SetThreads(1);
  int clustered = 0;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = seed;
    Dataset ds = data::Generate(g);
    ModelOptions mo = VplOptions(seed);
    mo.Set("dim", 4);
    mo.Set("hidden", 32);
    mo.Set("epochs", 40);
    mo.Set("lr", 0.01);
    mo.Set("refit", false);
    const Recovery r = RunRecovery(ds, mo, seed, false);
    EXPECT_GE(r.seen, r.oracle - 0.04) << "seed " << seed;
    EXPECT_GE(r.unseen, r.unseen_oracle - 0.04) << "seed " << seed;
    EXPECT_GE(r.active_units, 2) << "seed " << seed;  // 3 groups need 2 directions
    clustered += r.ari >= 0.8;
  }
  EXPECT_GE(clustered, 3);
}

// The acceptance on the groups preset (300 users x 40 pairs, 1,000 items, D = 24): seen
// accuracy within 2 points of the oracle, unseen users with 8 context pairs within 3 points,
// k-means on the users' mu recovers the planted groups with ARI >= 0.8, on >= 90% of seeds; and
// the active (entropy) vs random curve for 8 questions, mean over seeds. Family defaults except
// a fixed latent size of 8 (--dim 0 would select among 4, 8, 16: 3x the time). Minutes per seed
// on one core, hence DISABLED in the suite; run it with
//   PREFMIX_VPL_SEEDS=10 build/prefmix_tests --gtest_also_run_disabled_tests \
//     --gtest_filter='VplRecoveryTest.DISABLED_*'
// (PREFMIX_VPL_SEED_FROM = the first seed, default 1). Figures: bench/RESULTS.md section 7.
TEST(VplRecoveryTest, DISABLED_GroupsPresetSeeds1To10) {
  // One thread for torch and OpenBLAS: OpenBLAS's own pool (2 threads) spins in sched_yield
  // between the many small GEMMs and starves on a shared machine.
  SetThreads(1);
  const int n = SeedsFromEnv("PREFMIX_VPL_SEEDS", 10);
  const int first = SeedsFromEnv("PREFMIX_VPL_SEED_FROM", 1);
  int ok = 0;
  std::vector<double> mean_rem, mean_rnd;
  for (int seed = first; seed < first + n; ++seed) {
    auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
    g.seed = (uint64_t)seed;
    Dataset ds = data::Generate(g);
    ModelOptions mo = VplOptions((uint64_t)seed);
    mo.Set("dim", 8);
    const Recovery r = RunRecovery(ds, mo, (uint64_t)seed, true);
    const auto& curve = r.active.at("curve").items();
    if (mean_rem.empty()) mean_rem.assign(curve.size(), 0), mean_rnd.assign(curve.size(), 0);
    std::printf("seed %d active %s (remaining / random):", seed,
                r.active.at("criterion").str().c_str());
    for (size_t q = 0; q < curve.size(); ++q) {
      const double a = curve[q].at("accuracy_remaining").number();
      const double b = curve[q].at("random_accuracy_remaining").number();
      mean_rem[q] += a / n;
      mean_rnd[q] += b / n;
      std::printf(" %d:%.4f/%.4f", (int)curve[q].at("queries").number(), a, b);
    }
    std::printf("\n");
    const bool pass =
        r.seen >= r.oracle - 0.02 && r.unseen >= r.unseen_oracle - 0.03 && r.ari >= 0.8;
    std::printf("seed %d: %s\n", seed, pass ? "ok" : "MISS");
    std::fflush(stdout);
    ok += pass;
  }
  std::printf("mean over %d seeds, accuracy on the remaining pairs (active / random):", n);
  int match = -1;
  for (size_t q = 0; q < mean_rem.size(); ++q) {
    std::printf(" %d:%.4f/%.4f", (int)q, mean_rem[q], mean_rnd[q]);
    if (match < 0 && mean_rem[q] >= mean_rnd.back()) match = (int)q;
  }
  std::printf("\nactive reaches random's %d-query accuracy with %d queries\n",
              (int)mean_rem.size() - 1, match);
  std::printf("%d/%d seeds meet all three bars\n", ok, n);
  EXPECT_GE(ok, (9 * n + 9) / 10);
  EXPECT_GE(match, 0);
  EXPECT_LE(match, 5);
}

}  // namespace
}  // namespace prefmix
