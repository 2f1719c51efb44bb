#include "core/eval/protocol.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"

namespace prefmix {
namespace {
constexpr uint64_t kSeenStream = 11, kUnseenUsers = 12, kUnseenPairs = 13, kSubUsers = 14,
                   kSubPairs = 15, kSubFlip = 16, kValidStream = 17;

std::vector<size_t> Permuted(const std::vector<size_t>& v, uint64_t seed) {
  std::vector<size_t> p = v;
  Rng rng(seed);
  rng.Shuffle(p);
  return p;
}
}  // namespace

void ValidateProtocolOptions(const ProtocolOptions& o) {
  PREFMIX_CHECK_INPUT(o.name == "seen" || o.name == "unseen" || o.name == "subsample",
                      "--protocol: '", o.name, "' is not one of seen, unseen, subsample");
  PREFMIX_CHECK_INPUT(o.test_fraction > 0 && o.test_fraction < 1,
                      "--test-fraction: ", o.test_fraction, " is not in (0, 1)");
  PREFMIX_CHECK_INPUT(o.unseen_fraction > 0 && o.unseen_fraction < 1,
                      "--unseen-fraction: ", o.unseen_fraction, " is not in (0, 1)");
  PREFMIX_CHECK_INPUT(o.valid_fraction >= 0 && o.valid_fraction < 1,
                      "--valid-fraction: ", o.valid_fraction, " is not in [0, 1)");
  PREFMIX_CHECK_INPUT(!o.shots.empty(), "--shots: empty list");
  for (int k : o.shots) PREFMIX_CHECK_INPUT(k >= 0, "--shots: ", k, " is negative");
  PREFMIX_CHECK_INPUT(o.users >= 0, "--users: ", o.users, " is negative");
  PREFMIX_CHECK_INPUT(o.train_pairs >= 1, "--train-pairs: ", o.train_pairs, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.test_pairs >= 1, "--test-pairs: ", o.test_pairs, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.repeats >= 1, "--repeats: ", o.repeats, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.min_group_users >= 1, "--min-group-users: ", o.min_group_users,
                      " must be >= 1");
  PREFMIX_CHECK_INPUT(!o.online || o.name == "unseen",
                      "--online: applies to --protocol unseen, not '", o.name, "'");
}

void CarveValidation(PairSet* train, PairSet* valid, int64_t n_users, double fraction,
                     uint64_t seed) {
  if (fraction <= 0) return;
  auto by = train->ByUser(n_users);
  std::vector<char> to_valid(train->size(), 0);
  for (int64_t u = 0; u < n_users; ++u) {
    const auto& idx = by[u];
    if (idx.size() < 2) continue;
    size_t n_valid = static_cast<size_t>(std::floor(fraction * idx.size()));
    n_valid = std::min(n_valid, idx.size() - 1);
    auto p = Permuted(idx, DeriveSeed(seed, kValidStream, u));
    for (size_t i = 0; i < n_valid; ++i) to_valid[p[i]] = 1;
  }
  PairSet keep;
  keep.Reserve(train->size());
  for (size_t j = 0; j < train->size(); ++j) {
    if (to_valid[j])
      valid->PushFrom(*train, j);
    else
      keep.PushFrom(*train, j);
  }
  *train = std::move(keep);
}

Split MakeSeenSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o) {
  Split s;
  auto by = all.ByUser(ds.n_users());
  std::vector<char> is_test(all.size(), 0);
  for (int64_t u = 0; u < ds.n_users(); ++u) {
    const auto& idx = by[u];
    if (idx.empty()) continue;
    size_t n_test = static_cast<size_t>(std::floor(o.test_fraction * idx.size()));
    n_test = std::min(n_test, idx.size() - 1);
    auto p = Permuted(idx, DeriveSeed(o.seed, kSeenStream, u));
    for (size_t i = 0; i < n_test; ++i) is_test[p[i]] = 1;
  }
  for (size_t j = 0; j < all.size(); ++j) (is_test[j] ? s.test : s.train).PushFrom(all, j);
  CarveValidation(&s.train, &s.valid, ds.n_users(), o.valid_fraction, o.seed);
  return s;
}

Split MakeUnseenSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o) {
  Split s;
  const int64_t U = ds.n_users();
  std::vector<size_t> users(U);
  std::iota(users.begin(), users.end(), 0);
  auto perm = Permuted(users, DeriveSeed(o.seed, kUnseenUsers));
  const int64_t n_out = static_cast<int64_t>(std::floor(o.unseen_fraction * U));
  PREFMIX_CHECK_INPUT(n_out >= 1 && n_out < U, "--unseen-fraction ", o.unseen_fraction, " of ", U,
                      " users holds out ", n_out,
                      " users; need at least one held-out and one training user");
  std::vector<char> out(U, 0);
  for (int64_t i = 0; i < n_out; ++i) out[perm[i]] = 1;
  std::sort(perm.begin(), perm.begin() + n_out);
  auto by = all.ByUser(U);
  const int max_k = *std::max_element(o.shots.begin(), o.shots.end());
  s.n_heldout_total = n_out;
  for (int64_t i = 0; i < n_out; ++i) {
    const size_t u = perm[i];
    if (static_cast<int64_t>(by[u].size()) < max_k + 1) {
      ++s.n_left_out;
      continue;
    }
    s.heldout_users.push_back(static_cast<int32_t>(u));
    s.heldout_pairs.push_back(Permuted(by[u], DeriveSeed(o.seed, kUnseenPairs, u)));
  }
  for (size_t j = 0; j < all.size(); ++j)
    if (!out[all.user[j]]) s.train.PushFrom(all, j);
  CarveValidation(&s.train, &s.valid, U, o.valid_fraction, o.seed);
  return s;
}

PairSet OnlineStream(const PairSet& all, int64_t n_users, uint64_t seed) {
  auto by = all.ByUser(n_users);
  PairSet p;
  for (int64_t u = 0; u < n_users; ++u)
    for (size_t j : Permuted(by[u], DeriveSeed(seed, kUnseenPairs, u))) p.PushFrom(all, j);
  return p;
}

PairSet UnseenSupport(const PairSet& all, const Split& s, int k) {
  PairSet p;
  for (const auto& idx : s.heldout_pairs)
    for (int i = 0; i < k && i < (int)idx.size(); ++i) p.PushFrom(all, idx[i]);
  return p;
}

PairSet UnseenQueries(const PairSet& all, const Split& s, int max_k) {
  PairSet p;
  for (const auto& idx : s.heldout_pairs)
    for (size_t i = max_k; i < idx.size(); ++i) p.PushFrom(all, idx[i]);
  return p;
}

Split MakeSubsampleSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o, int r) {
  // Ranking-derived pairs only (the protocol of Simpson & Gurevych 2020); fall back to all pairs
  // when the file has no rankings.
  const int64_t first_derived = ds.has_rankings() ? ds.n_comparisons() : 0;
  std::vector<std::vector<size_t>> by(ds.n_users());
  for (size_t j = first_derived; j < all.size(); ++j) by[all.user[j]].push_back(j);
  const size_t need = static_cast<size_t>(o.train_pairs + o.test_pairs);
  std::vector<size_t> eligible;
  for (int64_t u = 0; u < ds.n_users(); ++u)
    if (by[u].size() >= need) eligible.push_back(u);
  PREFMIX_CHECK_INPUT(!eligible.empty(), ds.source,
                      ": no user has --train-pairs + --test-pairs = ", need,
                      " pairs for the subsample protocol");
  const size_t n_users = o.users == 0 ? eligible.size() : static_cast<size_t>(o.users);
  PREFMIX_CHECK_INPUT(n_users <= eligible.size(), "--users: ", o.users, " but only ",
                      eligible.size(), " users have ", need, " pairs in ", ds.source);
  auto chosen = Permuted(eligible, DeriveSeed(o.seed, kSubUsers, r));
  chosen.resize(n_users);
  std::sort(chosen.begin(), chosen.end());
  Split s;
  for (size_t u : chosen) {
    auto p = Permuted(by[u], DeriveSeed(DeriveSeed(o.seed, kSubPairs, r), kSubPairs, u));
    for (int i = 0; i < o.train_pairs; ++i) s.train.PushFrom(all, p[i]);
    for (int i = 0; i < o.test_pairs; ++i) s.test.PushFrom(all, p[o.train_pairs + i]);
  }
  // Flip a random half of the test pairs so the labels are balanced.
  std::vector<size_t> idx(s.test.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto flip = Permuted(idx, DeriveSeed(o.seed, kSubFlip, r));
  for (size_t i = 0; i < flip.size() / 2; ++i) {
    size_t j = flip[i];
    std::swap(s.test.first[j], s.test.second[j]);
    s.test.label[j] = 1.0f - s.test.label[j];
    if (!std::isnan(s.test.truth[j])) s.test.truth[j] = 1.0f - s.test.truth[j];
  }
  CarveValidation(&s.train, &s.valid, ds.n_users(), o.valid_fraction, DeriveSeed(o.seed, r));
  return s;
}

}  // namespace prefmix
