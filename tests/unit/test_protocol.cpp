// Protocols: deterministic, disjoint splits; validation carved from training pairs only.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "core/error.h"
#include "core/eval/protocol.h"
#include "data/generate.h"

namespace prefmix {
namespace {

Dataset Planted(int users = 60) {
  auto g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = users;
  return data::Generate(g);
}

using Key = std::tuple<int32_t, int32_t, int32_t>;

std::multiset<Key> Keys(const PairSet& p) {
  std::multiset<Key> s;
  for (size_t j = 0; j < p.size(); ++j) s.insert({p.user[j], p.first[j], p.second[j]});
  return s;
}

bool SameSet(const PairSet& a, const PairSet& b) { return Keys(a) == Keys(b); }

TEST(ProtocolTest, SeenSplitIsDeterministicDisjointAndComplete) {
  Dataset ds = Planted();
  PairSet all = ds.AllPairs();
  ProtocolOptions o;
  o.seed = 4;
  Split a = MakeSeenSplit(ds, all, o), b = MakeSeenSplit(ds, all, o);
  EXPECT_TRUE(SameSet(a.train, b.train) && SameSet(a.test, b.test) && SameSet(a.valid, b.valid));
  EXPECT_EQ(a.train.size() + a.valid.size() + a.test.size(), all.size());
  // Per user: floor(0.2 * 40) = 8 test pairs, floor(0.2 * 32) = 6 validation pairs.
  auto bt = a.test.ByUser(ds.n_users()), bv = a.valid.ByUser(ds.n_users()),
       btr = a.train.ByUser(ds.n_users());
  for (int64_t u = 0; u < ds.n_users(); ++u) {
    EXPECT_EQ(bt[u].size(), 8u);
    EXPECT_EQ(bv[u].size(), 6u);
    EXPECT_EQ(btr[u].size(), 26u);
  }
  // Disjoint by position: rebuild the union and compare with all pairs.
  PairSet u = a.train;
  for (size_t j = 0; j < a.valid.size(); ++j) u.PushFrom(a.valid, j);
  for (size_t j = 0; j < a.test.size(); ++j) u.PushFrom(a.test, j);
  EXPECT_TRUE(SameSet(u, all));
  o.seed = 5;
  Split c = MakeSeenSplit(ds, all, o);
  EXPECT_FALSE(SameSet(a.test, c.test));
}

TEST(ProtocolTest, SeenKeepsOneTrainingPairForUsersWithOnePair) {
  Dataset ds = Planted(5);
  // User 0 keeps one pair only.
  std::vector<int64_t> u, c, r;
  bool kept = false;
  for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
    if (ds.cmp_user[j] == 0) {
      if (kept) continue;
      kept = true;
    }
    u.push_back(ds.cmp_user[j]);
    c.push_back(ds.cmp_chosen[j]);
    r.push_back(ds.cmp_rejected[j]);
  }
  ds.cmp_user = u;
  ds.cmp_chosen = c;
  ds.cmp_rejected = r;
  ds.truth_pair_prob.clear();
  Split s = MakeSeenSplit(ds, ds.AllPairs(), ProtocolOptions{});
  EXPECT_EQ(s.train.ByUser(5)[0].size(), 1u);
  EXPECT_TRUE(s.test.ByUser(5)[0].empty());
}

TEST(ProtocolTest, UnseenUsersNeverTrainAndShotsArePrefixes) {
  Dataset ds = Planted(100);
  PairSet all = ds.AllPairs();
  ProtocolOptions o;
  o.name = "unseen";
  o.shots = {0, 1, 5, 20};
  Split s = MakeUnseenSplit(ds, all, o);
  EXPECT_EQ(s.n_heldout_total, 20);
  EXPECT_EQ(s.heldout_users.size(), 20u);
  EXPECT_EQ(s.n_left_out, 0);
  std::set<int32_t> held(s.heldout_users.begin(), s.heldout_users.end());
  for (int32_t u : s.train.user) EXPECT_EQ(held.count(u), 0u);
  for (int32_t u : s.valid.user) EXPECT_EQ(held.count(u), 0u);
  PairSet q = UnseenQueries(all, s, 20);
  EXPECT_EQ(q.size(), 20u * 20u);
  PairSet s5 = UnseenSupport(all, s, 5), s20 = UnseenSupport(all, s, 20);
  EXPECT_EQ(UnseenSupport(all, s, 0).size(), 0u);
  EXPECT_EQ(s5.size(), 100u);
  // The k = 5 support is the start of the k = 20 support, user by user.
  auto b5 = s5.ByUser(ds.n_users()), b20 = s20.ByUser(ds.n_users());
  for (int32_t u : s.heldout_users)
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(s5.first[b5[u][i]], s20.first[b20[u][i]]);
      EXPECT_EQ(s5.second[b5[u][i]], s20.second[b20[u][i]]);
    }
  // Support and queries are disjoint.
  std::multiset<Key> sk = Keys(s20), qk = Keys(q), all_k = Keys(all);
  size_t overlap = 0;
  for (const auto& k : sk) overlap += qk.count(k);
  // Exact repeated judgments can occur in random pairs; compare counts against the data.
  for (const auto& k : sk) EXPECT_LE(qk.count(k) + sk.count(k), all_k.count(k));
  (void)overlap;
  // Users with too few pairs are left out and counted.
  o.shots = {39};
  Split t = MakeUnseenSplit(ds, all, o);
  EXPECT_EQ(t.heldout_users.size(), 20u);
  o.shots = {40};
  Split v = MakeUnseenSplit(ds, all, o);
  EXPECT_EQ(v.heldout_users.size(), 0u);
  EXPECT_EQ(v.n_left_out, 20);
}

TEST(ProtocolTest, SubsampleDrawsDisjointBalancedDeterministicSplits) {
  Dataset ds = Planted(50);
  PairSet all = ds.AllPairs();
  ProtocolOptions o;
  o.name = "subsample";
  o.users = 30;
  o.train_pairs = 10;
  o.test_pairs = 9;
  Split a = MakeSubsampleSplit(ds, all, o, 0), b = MakeSubsampleSplit(ds, all, o, 0);
  Split c = MakeSubsampleSplit(ds, all, o, 1);
  EXPECT_TRUE(SameSet(a.test, b.test));
  EXPECT_FALSE(SameSet(a.test, c.test));
  EXPECT_EQ(a.test.size(), 270u);
  EXPECT_EQ(a.train.size() + a.valid.size(), 300u);
  std::set<int32_t> users(a.test.user.begin(), a.test.user.end());
  EXPECT_EQ(users.size(), 30u);
  int flipped = 0;
  for (float l : a.test.label) flipped += l == 0.0f;
  EXPECT_EQ(flipped, 135);
  // A flipped pair keeps its true probability consistent with its orientation.
  for (size_t j = 0; j < a.test.size(); ++j)
    if (a.test.label[j] == 0.0f) EXPECT_LT(a.test.truth[j], 1.0f);
  o.users = 51;
  EXPECT_THROW(MakeSubsampleSplit(ds, all, o, 0), Error);
}

TEST(ProtocolTest, BadOptionsAreRejected) {
  ProtocolOptions o;
  o.name = "loo";
  EXPECT_THROW(ValidateProtocolOptions(o), Error);
  o = ProtocolOptions{};
  o.test_fraction = 1.5;
  EXPECT_THROW(ValidateProtocolOptions(o), Error);
  o = ProtocolOptions{};
  o.shots = {-1};
  EXPECT_THROW(ValidateProtocolOptions(o), Error);
}

}  // namespace
}  // namespace prefmix
