#pragma once
// HDF5 schema v1 reader and writer (docs/formats.md).
#include <string>

#include "core/io/dataset.h"

namespace prefmix {

/// Reads and validates a dataset file. Throws prefmix::Error naming the file, the field and the
/// value for any violation (missing dataset, wrong shape/type/version, NaN, index out of range).
/// libhdf5 1.10.8 crashes, loops or allocates gigabytes on some corrupt files, so the file is
/// read once in a child process first (ProbeInChild, core/io/child_probe.h: time and memory
/// limits by size); what goes wrong there is a ProbeAborted error naming the file. The guard
/// costs one more read of the file (about 0.8 s for a 350 MB dataset).
Dataset ReadDataset(const std::string& path);

/// ReadDataset without the child process: libhdf5 decodes the file in this process, with the
/// risks above. For the fuzz harness, which checks that both readers agree.
Dataset ReadDatasetUnguarded(const std::string& path);

/// Writes `ds` as schema v1. Writes to a temporary file beside `path` and renames it into
/// place, so a failure never leaves a partial file behind.
void WriteDataset(const Dataset& ds, const std::string& path);

/// SHA-256 of a file's bytes, lowercase hex.
std::string FileSha256(const std::string& path);

}  // namespace prefmix

namespace prefmix {

/// Where a user matrix came from: root attributes of the file (empty fields are not written).
struct UserMatrixProvenance {
  std::string family;           ///< the model's family
  std::string model_sha256;     ///< SHA-256 of the model file
  std::string item_ids_sha256;  ///< score: SHA-256 of the item ids in column order
};

/// Writes /users/ids and `dataset` (float32 [n_users, L], e.g. "/users/latent" or "/scores")
/// atomically, with its provenance: the output of `adapt` and `score`.
void WriteUserMatrix(const std::string& path, const std::vector<std::string>& ids,
                     const std::string& dataset, const RowMatrixF& m,
                     const UserMatrixProvenance& prov = {});

/// Reads what WriteUserMatrix wrote (checked: shapes, finiteness, unique ids); the provenance
/// when `prov` is given (empty fields for files written without it).
void ReadUserMatrix(const std::string& path, const std::string& dataset,
                    std::vector<std::string>* ids, RowMatrixF* m,
                    UserMatrixProvenance* prov = nullptr);

/// SHA-256 (hex) of a list of strings (each followed by a NUL byte).
std::string StringsSha256(const std::vector<std::string>& s);

}  // namespace prefmix
