#pragma once
// Evaluation protocols (docs/protocols.md): seen, unseen (shots curve) and subsample.
// All splits are deterministic given the seed; model selection uses `valid`, carved from the
// training pairs, never test/query pairs.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/dataset.h"

namespace prefmix {

/// Protocol options with their documented defaults (the CLI's come from here).
struct ProtocolOptions {
  std::string name = "seen";     ///< seen | unseen | subsample
  double test_fraction = 0.2;    ///< seen: share of each user's pairs held out (rounded down)
  double unseen_fraction = 0.2;  ///< unseen: share of users held out entirely
  std::vector<int> shots = {1, 2, 5, 10, 20};  ///< unseen: support sizes (0 = cold start)
  int users = 100;       ///< subsample: users drawn per repeat (0: all eligible)
  int train_pairs = 20;  ///< subsample: training pairs per user
  int test_pairs = 25;   ///< subsample: test pairs per user
  int repeats = 25;      ///< subsample: repeats
  int first_repeat = 0;  ///< grid: index of the block's first repeat (split a grid across runs)
  double valid_fraction = 0.2;  ///< share of each training user's pairs carved for validation
  int min_group_users = 5;      ///< per_group lists groups with at least this many users
  bool online = false;  ///< unseen: also run the online user step over each held-out user's pairs
  std::string online_estimator = "map";  ///< the family's sequential estimator
  uint64_t seed = 1;
};

/// One train/evaluate unit. Pair users are dataset rows.
struct Split {
  PairSet train;  ///< fitting pairs
  PairSet valid;  ///< model selection (from training users' pairs)
  PairSet test;   ///< seen / subsample: test pairs (subsample: half of them flipped, label 0)
  // unseen only:
  std::vector<int32_t> heldout_users;  ///< dataset rows of the held-out users in the curve
  std::vector<std::vector<size_t>> heldout_pairs;  ///< per held-out user: permuted indices into all
  int64_t n_heldout_total = 0;                     ///< users held out (in the curve or not)
  int64_t n_left_out = 0;  ///< held-out users with fewer than max k + 1 pairs
};

/// Checks option values; throws prefmix::Error naming the flag.
void ValidateProtocolOptions(const ProtocolOptions& o);
/// seen: per user, test_fraction of the (seeded-permuted) pairs to test, at least one kept.
Split MakeSeenSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o);
/// unseen: unseen_fraction of users held out; their pairs permuted once.
Split MakeUnseenSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o);
/// subsample, repeat r: users drawn among those with >= train+test pairs.
Split MakeSubsampleSplit(const Dataset& ds, const PairSet& all, const ProtocolOptions& o, int r);
/// unseen: the first k pairs of each held-out user (user = dataset row).
/// Every user's pairs in the order online adaptation consumes them (docs/protocols.md: each
/// user's pairs permuted once with the seed, as for a held-out user of `unseen`), grouped by user.
PairSet OnlineStream(const PairSet& all, int64_t n_users, uint64_t seed);

PairSet UnseenSupport(const PairSet& all, const Split& s, int k);
/// unseen: the pairs after the largest k of each held-out user.
PairSet UnseenQueries(const PairSet& all, const Split& s, int max_k);
/// Moves valid_fraction (rounded down) of each user's pairs in `train` to a validation set,
/// keeping at least one training pair per user. Deterministic in seed.
void CarveValidation(PairSet* train, PairSet* valid, int64_t n_users, double fraction,
                     uint64_t seed);

}  // namespace prefmix
