#pragma once
// HDF5 schema v1 reader and writer (docs/formats.md).
#include <string>

#include "core/io/dataset.h"

namespace prefmix {

/// Reads and validates a dataset file. Throws prefmix::Error naming the file, the field and the
/// value for any violation (missing dataset, wrong shape/type/version, NaN, index out of range).
Dataset ReadDataset(const std::string& path);

/// Writes `ds` as schema v1. Writes to a temporary file beside `path` and renames it into
/// place, so a failure never leaves a partial file behind.
void WriteDataset(const Dataset& ds, const std::string& path);

/// SHA-256 of a file's bytes, lowercase hex.
std::string FileSha256(const std::string& path);

}  // namespace prefmix

namespace prefmix {

/// Writes /users/ids and `dataset` (float32 [n_users, L], e.g. "/users/latent" or "/scores")
/// atomically: the output of `adapt` and `score`.
void WriteUserMatrix(const std::string& path, const std::vector<std::string>& ids,
                     const std::string& dataset, const RowMatrixF& m);

/// Reads what WriteUserMatrix wrote (checked: shapes, finiteness, unique ids).
void ReadUserMatrix(const std::string& path, const std::string& dataset,
                    std::vector<std::string>* ids, RowMatrixF* m);

}  // namespace prefmix
