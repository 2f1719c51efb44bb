#pragma once
// Shared setup for prefmix_bench: the large synthetic dataset of the performance targets
// (100,000 items x 768 dims float32, 2,000 users x 500 random pairs = 1M comparisons), written
// once per machine with a fixed seed into $PREFMIX_BENCH_DIR (default /tmp), never into the repo.
#include <cstdint>
#include <string>

#include "core/io/dataset.h"

namespace prefmix::bench {

constexpr int64_t kItems = 100000;
constexpr int64_t kDim = 768;
constexpr int64_t kUsers = 2000;
constexpr int64_t kPairsPerUser = 500;
constexpr int64_t kComparisons = kUsers * kPairsPerUser;
constexpr uint64_t kSeed = 20261127;
constexpr int kLowRankK = 8;

/// Path of the big file ($PREFMIX_BENCH_DIR or /tmp); creates it when absent (~330 MB, seconds).
std::string BigDatasetPath();

/// The big dataset, read once per process and kept for the training benches.
const Dataset& BigDataset();

/// Bytes of array payload in the big file: 4*items*D + 3*8*comparisons (+ the user id strings).
int64_t BigPayloadBytes();

/// Drops the file's pages from the OS page cache (posix_fadvise DONTNEED) for cold-cache runs.
void DropFromPageCache(const std::string& path);

}  // namespace prefmix::bench
