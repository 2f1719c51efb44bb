#pragma once
// Importers (docs/formats.md#import): pairs (.npy embeddings + CSV comparisons) and Kamishima's
// SUSHI3 files. Both return a Dataset that passes Dataset::Validate(); every input defect throws
// prefmix::Error with one line naming the file, the row/field and the offending value.
#include <string>

#include "core/io/dataset.h"

namespace prefmix {

/// Inputs of `prefmix import pairs`. Empty paths mean "not given".
struct ImportPairsOptions {
  std::string items;            ///< ITEMS.npy [n_items, D] (required)
  std::string pairs;            ///< PAIRS.csv: user,chosen,rejected[,context][,weight] (required)
  std::string users;            ///< USERS.csv: user,<attribute>... (optional)
  std::string user_features;    ///< FEAT.npy [rows of USERS.csv, Du] (optional, needs `users`)
  std::string contexts;         ///< CTX.npy [n_contexts, Dc] (optional)
  std::string embedding_model;  ///< stored as the root attribute `embedding_model` when not empty
};

/// Builds a dataset from pairs. Users get rows in order of first appearance in PAIRS.csv, then
/// users found only in USERS.csv in that file's order; attribute labels in order of first
/// appearance in USERS.csv (an empty value is code -1, unknown).
Dataset ImportPairs(const ImportPairsOptions& opts);

/// Builds a dataset from the SUSHI3 files in `dir` (sushi3.idata, sushi3.udata and
/// sushi3a.5000.10.order or sushi3b.5000.10.order); `set` is 'a' (10 items) or 'b' (100 items).
/// 18 item features, one ranking per user (best first), user attributes and features.
Dataset ImportSushi(const std::string& dir, char set);

}  // namespace prefmix
