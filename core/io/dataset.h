#pragma once
// The in-memory dataset (docs/formats.md, schema v1).
//
// Conventions used throughout prefmix:
//  - item embeddings are rows: items(i, :) is item i's D-dim embedding (row-major float32);
//  - a comparison (u, a, b) means user u preferred item a ("chosen") over item b ("rejected");
//  - indices are 0-based; users and items keep file row order;
//  - rankings are CSR lists (best first) and expand into all C(n,2) ordered pairs (i<j positions).
#include <Eigen/Dense>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace prefmix {

using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A categorical user attribute: codes[u] in [-1, labels.size()), -1 = unknown.
struct Attribute {
  std::string name;
  std::vector<int32_t> codes;
  std::vector<std::string> labels;  ///< one per code; empty = the codes are their own labels
  /// Label of a code ("unknown" for -1).
  std::string Label(int32_t code) const;
  /// Number of distinct codes (labels.size(), or max code + 1).
  int32_t NumCodes() const;
};

/// A flat list of pairs used by training and evaluation. label[j] = 1 means
/// first[j] was preferred over second[j]; 0 means the opposite (subsample flips test pairs).
struct PairSet {
  std::vector<int32_t> user;
  std::vector<int32_t> first;
  std::vector<int32_t> second;
  std::vector<int32_t> context;  ///< -1 when none
  std::vector<float> weight;     ///< comparison weight (1 by default)
  std::vector<float> label;      ///< 1: first preferred, 0: second preferred
  std::vector<float> truth;      ///< true P(first > second); NaN when unknown

  size_t size() const { return user.size(); }
  bool empty() const { return user.empty(); }
  void Reserve(size_t n);
  /// Appends pair j of `other`.
  void PushFrom(const PairSet& other, size_t j);
  void Push(int32_t u, int32_t a, int32_t b, int32_t ctx, float w, float lab, float truth_prob);
  /// The subset given by indices into this set.
  PairSet Subset(const std::vector<size_t>& idx) const;
  /// Pair indices grouped by user: result[u] lists j with user[j] == u, in order.
  std::vector<std::vector<size_t>> ByUser(int64_t n_users) const;
};

/// The pairs of `a` followed by those of `b`.
PairSet Concat(const PairSet& a, const PairSet& b);

/// The whole dataset file in memory.
struct Dataset {
  std::string source;  ///< file path (for error messages); "<memory>" otherwise
  std::string embedding_model;
  std::string description;

  RowMatrixF items;                   ///< [n_items, D]
  std::vector<std::string> item_ids;  ///< optional, empty or n_items
  RowMatrixF contexts;                ///< [n_contexts, Dc]; 0 x 0 when absent
  bool has_contexts = false;

  std::vector<int64_t> cmp_user, cmp_chosen, cmp_rejected;
  std::vector<int64_t> cmp_context;  ///< optional (empty or m)
  std::vector<float> cmp_weight;     ///< optional (empty or m)

  std::vector<int64_t> rank_user, rank_offsets, rank_items;  ///< optional CSR (offsets n+1)

  std::vector<std::string> user_ids;
  std::vector<Attribute> attributes;
  RowMatrixF user_features;  ///< [n_users, Du] or 0 x 0

  std::vector<float> truth_pair_prob;     ///< [m] or empty
  std::vector<int32_t> truth_user_group;  ///< [n_users] or empty
  RowMatrixF truth_user_weights;          ///< [n_users, K] or 0 x 0
  RowMatrixF truth_group_item_reward;     ///< [K, n_items] or 0 x 0

  int64_t n_items() const { return items.rows(); }
  int64_t dim() const { return items.cols(); }
  int64_t n_users() const { return static_cast<int64_t>(user_ids.size()); }
  int64_t n_comparisons() const { return static_cast<int64_t>(cmp_user.size()); }
  int64_t n_rankings() const { return rank_offsets.empty() ? 0 : (int64_t)rank_offsets.size() - 1; }
  /// Number of pairs derived from the rankings (sum of C(n,2)).
  int64_t n_ranking_pairs() const;
  bool has_rankings() const { return n_rankings() > 0; }

  /// Checks every invariant of schema v1; throws prefmix::Error naming source, field and value.
  void Validate() const;
  /// Stored comparisons (file order), then ranking-derived pairs, as one PairSet (label 1).
  PairSet AllPairs() const;
  /// Index of attribute `name`, or -1.
  int FindAttribute(const std::string& name) const;
  /// The user groupings reports break results down by: every attribute, plus "planted_group"
  /// (from /truth/user_group) on synthetic data.
  std::vector<Attribute> GroupAttributes() const;
};

}  // namespace prefmix
