// bt and lowrank: gradients, save/load, adaptation hygiene, and recovery of planted truth.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/h5io.h"
#include "core/model/model.h"
#include "core/rng.h"
#include "core/userstep/math.h"
#include "data/generate.h"
#include "mixture/lowrank.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::TestDir;

TEST(LowRankTest, GradientMatchesFiniteDifferences) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kLowrank);
  g.n_users = 6;
  g.n_items = 30;
  g.dim = 5;
  g.k = 3;
  g.pairs_per_user = 7;
  Dataset ds = data::Generate(g);
  PairSet pairs = ds.AllPairs();
  pairs.label[3] = 0.0f;  // a flipped label exercises the y = 0 branch
  pairs.weight[2] = 2.5f;
  Rng rng(9);
  Eigen::MatrixXf V(5, 3);
  for (int i = 0; i < V.size(); ++i) V.data()[i] = static_cast<float>(0.5 * rng.Normal());
  RowMatrixF omega(6, 3);
  for (int i = 0; i < omega.size(); ++i) omega.data()[i] = static_cast<float>(rng.Normal());
  RowMatrixF P;
  P.resize(30, 3);
  const double l2 = 0.01;
  auto pass = mixture::LowRankLossAndGrad(ds.items, pairs, V, omega, l2, &P);
  auto loss = [&](const Eigen::MatrixXf& v, const RowMatrixF& o) {
    RowMatrixF scratch(30, 3);
    return mixture::LowRankLossAndGrad(ds.items, pairs, v, o, l2, &scratch).loss;
  };
  const float h = 1e-2f;
  for (int i = 0; i < V.size(); ++i) {
    Eigen::MatrixXf a = V, b = V;
    a.data()[i] += h;
    b.data()[i] -= h;
    double fd = (loss(a, omega) - loss(b, omega)) / (2 * h);
    EXPECT_NEAR(pass.grad_v.data()[i], fd, 2e-3 * (1 + std::fabs(fd))) << "V[" << i << "]";
  }
  for (int i = 0; i < omega.size(); ++i) {
    RowMatrixF a = omega, b = omega;
    a.data()[i] += h;
    b.data()[i] -= h;
    double fd = (loss(V, a) - loss(V, b)) / (2 * h);
    EXPECT_NEAR(pass.grad_omega.data()[i], fd, 2e-3 * (1 + std::fabs(fd))) << "omega[" << i << "]";
  }
}

/// Scores of every user and item, and pair probabilities, must survive save -> load exactly
/// (every family's default is checked by tests/family/test_contract.cpp; this covers variants).
void ExpectSaveLoadIdentical(const ModelOptions& mo) {
  const std::string dir = TestDir();
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = 40;
  Dataset ds = data::Generate(g);
  Split s = MakeSeenSplit(ds, ds.AllPairs(), ProtocolOptions{});
  auto model = MakeModel(mo);
  model->Fit(ds, s.train, s.valid);
  SaveModel(*model, dir + "/m.pfmx");
  auto loaded = LoadModel(dir + "/m.pfmx");
  EXPECT_EQ(loaded->Family(), mo.family);
  RowMatrixF a = model->Score(ds, model->LatentsFor(ds));
  RowMatrixF b = loaded->Score(ds, loaded->LatentsFor(ds));
  EXPECT_TRUE(a == b) << mo.family;
  EXPECT_EQ(model->PredictProb(ds, s.test, model->TrainLatents()),
            loaded->PredictProb(ds, s.test, loaded->TrainLatents()));
  // Adaptation from the loaded model gives the same latents.
  EXPECT_TRUE(model->Adapt(ds, s.test, ds.n_users(), "cpu") ==
              loaded->Adapt(ds, s.test, ds.n_users(), "cpu"));
  // A truncated file is a clear error.
  std::string bytes = testing::ReadFile(dir + "/m.pfmx");
  std::ofstream(dir + "/cut.pfmx", std::ios::binary).write(bytes.data(), bytes.size() - 9);
  EXPECT_THROW(LoadModel(dir + "/cut.pfmx"), Error);
  std::ofstream(dir + "/junk.pfmx") << "not a model";
  EXPECT_THROW(LoadModel(dir + "/junk.pfmx"), Error);
}

TEST(ModelFileTest, BtMlpSaveLoadIdentical) {
  ModelOptions o;
  o.family = "bt";
  o.Set("arch", "mlp");
  o.Set("hidden", 16);
  o.Set("epochs", 40);
  o.Set("l2", 1e-4);
  ExpectSaveLoadIdentical(o);
}

TEST(ModelFileTest, FutureVersionIsRefused) {
  const std::string dir = TestDir();
  ModelOptions o;
  o.family = "bt";
  o.Set("epochs", 5);
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = 10;
  Dataset ds = data::Generate(g);
  auto m = MakeModel(o);
  m->Fit(ds, ds.AllPairs(), PairSet());
  SaveModel(*m, dir + "/m.pfmx");
  std::string bytes = testing::ReadFile(dir + "/m.pfmx");
  bytes[5] = 99;  // the uint32 format version follows the magic (portable binary, little endian)
  std::ofstream(dir + "/future.pfmx", std::ios::binary).write(bytes.data(), bytes.size());
  std::string msg = testing::ErrorOf([&] { LoadModel(dir + "/future.pfmx"); });
  EXPECT_NE(msg.find("model format version 99 is newer than this prefmix reads (" +
                     std::to_string(kModelFormatVersion) + ")"),
            std::string::npos)
      << msg;
  // A payload version above the family's: refused naming both. The header after the magic:
  // the archive's endianness byte, the format version, four strings (uint64 length + bytes),
  // two int64 dimensions, then the uint32 payload version.
  bytes = testing::ReadFile(dir + "/m.pfmx");
  size_t pos = 4 + 1 + 4;
  for (int i = 0; i < 4; ++i) {
    uint64_t n = 0;
    std::memcpy(&n, bytes.data() + pos, 8);
    pos += 8 + n;
  }
  pos += 16;
  uint32_t pv = 0;
  std::memcpy(&pv, bytes.data() + pos, 4);
  EXPECT_EQ(pv, FindFamily("bt").payload_version);
  bytes[pos] = 7;
  std::ofstream(dir + "/future_payload.pfmx", std::ios::binary).write(bytes.data(), bytes.size());
  msg = testing::ErrorOf([&] { LoadModel(dir + "/future_payload.pfmx"); });
  EXPECT_NE(msg.find("bt payload version 7 is newer than this prefmix reads (" +
                     std::to_string(FindFamily("bt").payload_version) + ")"),
            std::string::npos)
      << msg;
}

TEST(BtTest, RecoversASinglePlantedReward) {
  // One group: every user shares the reward; bt is then the right model.
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.k = 1;
  g.group_sizes = {100};
  ModelOptions o;
  o.family = "bt";
  for (uint64_t seed : {1, 2}) {
    g.seed = seed;
    Dataset ds = data::Generate(g);
    Json m = RunExperiment(ds, o, ProtocolOptions{});
    const double acc = m.at("accuracy").number(), oracle = m.at("oracle_accuracy").number();
    EXPECT_GT(acc, oracle - 0.015) << "seed " << seed;
  }
}

TEST(LowRankTest, AdaptationUsesOnlySupportPairs) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kLowrank);
  g.n_users = 60;
  Dataset ds = data::Generate(g);
  ModelOptions o;
  o.family = "lowrank";
  o.Set("epochs", 80);
  o.Set("l2", 1e-3);
  auto m = MakeModel(o);
  PairSet all = ds.AllPairs();
  m->Fit(ds, all, PairSet());
  PairSet support = all.Subset({0, 1, 2, 3, 4, 60, 61, 62});
  RowMatrixF a = m->Adapt(ds, support, ds.n_users(), "cpu");
  // Users without support get the population latent.
  EXPECT_TRUE(a.row(5).transpose().isApprox(m->PopulationLatent()));
  // Poisoning support labels changes the latents of those users only.
  PairSet poisoned = support;
  for (auto& l : poisoned.label) l = 1.0f - l;
  RowMatrixF b = m->Adapt(ds, poisoned, ds.n_users(), "cpu");
  EXPECT_FALSE(a.row(0).isApprox(b.row(0)));
  EXPECT_TRUE(a.row(7) == b.row(7));
}

}  // namespace
}  // namespace prefmix
