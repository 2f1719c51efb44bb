// prefmix_bench: entry point and the shared big dataset.
//
//   prefmix_bench [google-benchmark flags]   run the benches (bench_io.cpp, bench_lowrank.cpp)
//   prefmix_bench --make-data                create the big file if absent and print its path
//   prefmix_bench --peak-rss-load FILE [--with-pairs]
//                                            ReadDataset(FILE) (and AllPairs) in a fresh
//                                            process, then print the peak resident set size
//
// The peak-RSS mode is a separate process on purpose: inside the benchmark process the fixture
// already holds a copy of the data, and ru_maxrss never goes down.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "bench/bench_common.h"
#include "core/error.h"
#include "core/io/h5io.h"
#include "core/rng.h"

namespace prefmix::bench {
namespace {

Dataset MakeBigDataset() {
  Dataset ds;
  ds.description = "prefmix_bench synthetic: N(0,1) embeddings, random pairs";
  ds.items.resize(kItems, kDim);
  // One stream per row: the file does not depend on the thread count.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < kItems; ++i) {
    Rng rng(DeriveSeed(kSeed, 1, static_cast<uint64_t>(i)));
    float* row = ds.items.data() + i * kDim;
    for (int64_t c = 0; c < kDim; ++c) row[c] = static_cast<float>(rng.Normal());
  }
  ds.user_ids.reserve(kUsers);
  for (int64_t u = 0; u < kUsers; ++u) ds.user_ids.push_back("user" + std::to_string(u));
  ds.cmp_user.reserve(kComparisons);
  ds.cmp_chosen.reserve(kComparisons);
  ds.cmp_rejected.reserve(kComparisons);
  Rng rng(DeriveSeed(kSeed, 2));
  for (int64_t u = 0; u < kUsers; ++u) {
    for (int64_t j = 0; j < kPairsPerUser; ++j) {
      const int64_t a = static_cast<int64_t>(rng.Below(kItems));
      int64_t b = static_cast<int64_t>(rng.Below(kItems - 1));
      if (b >= a) ++b;  // a != b, uniform over the other items
      ds.cmp_user.push_back(u);
      ds.cmp_chosen.push_back(a);
      ds.cmp_rejected.push_back(b);
    }
  }
  return ds;
}

long MaxRssKiB() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

int PeakRssLoad(const std::string& path, bool with_pairs) {
  const long before = MaxRssKiB();
  const auto t0 = std::chrono::steady_clock::now();
  Dataset ds = ReadDataset(path);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long after_read = MaxRssKiB();
  size_t n_pairs = 0;
  if (with_pairs) n_pairs = ds.AllPairs().size();
  const long after = MaxRssKiB();
  const double model = 4.0 * ds.n_items() * ds.dim() + 24.0 * ds.n_comparisons();
  const double bound = 1.15 * model + 200e6;
  std::printf("file               %s\n", path.c_str());
  std::printf("items x dim        %lld x %lld, comparisons %lld\n", (long long)ds.n_items(),
              (long long)ds.dim(), (long long)ds.n_comparisons());
  std::printf("read seconds       %.3f\n", secs);
  std::printf("maxrss before      %ld KiB (%.1f MB: binary, libraries, HDF5)\n", before,
              before * 1024 / 1e6);
  std::printf("maxrss after read  %ld KiB (%.1f MB)\n", after_read, after_read * 1024 / 1e6);
  if (with_pairs)
    std::printf("maxrss +AllPairs   %ld KiB (%.1f MB, %zu pairs)\n", after, after * 1024 / 1e6,
                n_pairs);
  std::printf("payload 4ND+24m    %.1f MB\n", model / 1e6);
  std::printf("bound 1.15*payload+200MB  %.1f MB -> %s\n", bound / 1e6,
              after * 1024.0 <= bound ? "PASS" : "FAIL");
  return 0;
}

}  // namespace

std::string BigDatasetPath() {
  const char* dir = std::getenv("PREFMIX_BENCH_DIR");
  const std::string base = dir && *dir ? dir : "/tmp";
  const std::string path =
      base + "/prefmix_bench_100k_768_2000x500_s" + std::to_string(kSeed) + "_v1.h5";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    std::fprintf(stderr, "prefmix_bench: creating %s (once)...\n", path.c_str());
    WriteDataset(MakeBigDataset(), path);  // atomic: temp file + rename
  }
  return path;
}

const Dataset& BigDataset() {
  static const Dataset ds = ReadDataset(BigDatasetPath());
  return ds;
}

int64_t BigPayloadBytes() { return 4 * kItems * kDim + 24 * kComparisons; }

void DropFromPageCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

}  // namespace prefmix::bench

int main(int argc, char** argv) {
  try {
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--make-data") == 0) {
        std::printf("%s\n", prefmix::bench::BigDatasetPath().c_str());
        return 0;
      }
      if (std::strcmp(argv[i], "--peak-rss-load") == 0) {
        PREFMIX_CHECK_INPUT(i + 1 < argc, "--peak-rss-load: expected a file name");
        bool with_pairs = false;
        for (int j = 1; j < argc; ++j) with_pairs |= std::strcmp(argv[j], "--with-pairs") == 0;
        return prefmix::bench::PeakRssLoad(argv[i + 1], with_pairs);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prefmix_bench: %s\n", e.what());
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
