// Loading the big dataset: prefmix::ReadDataset against the same arrays read with plain HDF5 C
// calls (the target: ReadDataset within 2x of the plain read).
//
// Arguments: cold = 1 drops the file from the page cache before each iteration (outside the
// timed region), so the read comes from disk; cold = 0 reads from the page cache. For the plain
// read, prealloc = 1 reads into buffers allocated (and already touched) once outside the loop,
// prealloc = 0 allocates them in each iteration (uninitialised, as a loader must).
// Both reads are single-threaded (HDF5 reads serially), so there is no thread-count argument.
// The peak resident memory of a load is measured in a fresh process: prefmix_bench --peak-rss-load.
#include <benchmark/benchmark.h>
#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/io/h5io.h"

namespace prefmix::bench {
namespace {

struct PlainBuffers {
  std::unique_ptr<float[]> items;
  std::unique_ptr<int64_t[]> user, chosen, rejected;
  std::vector<std::string> user_ids;

  void Allocate() {
    items.reset(new float[kItems * kDim]);
    user.reset(new int64_t[kComparisons]);
    chosen.reset(new int64_t[kComparisons]);
    rejected.reset(new int64_t[kComparisons]);
  }
};

void ReadOne(hid_t file, const char* name, hid_t memtype, void* buf) {
  hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
  if (d < 0 || H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    throw std::runtime_error(std::string("plain HDF5 read failed: ") + name);
  H5Dclose(d);
}

/// The minimum a reader of the schema must do: open, read the five arrays, close.
void PlainHdf5Read(const std::string& path, PlainBuffers* b) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) throw std::runtime_error("cannot open " + path);
  ReadOne(file, "/items/embeddings", H5T_NATIVE_FLOAT, b->items.get());
  ReadOne(file, "/comparisons/user", H5T_NATIVE_INT64, b->user.get());
  ReadOne(file, "/comparisons/chosen", H5T_NATIVE_INT64, b->chosen.get());
  ReadOne(file, "/comparisons/rejected", H5T_NATIVE_INT64, b->rejected.get());
  // Variable-length UTF-8 strings, as h5py writes them.
  hid_t d = H5Dopen2(file, "/users/ids", H5P_DEFAULT);
  hid_t mem = H5Tcopy(H5T_C_S1);
  H5Tset_size(mem, H5T_VARIABLE);
  H5Tset_cset(mem, H5T_CSET_UTF8);
  std::vector<char*> raw(kUsers, nullptr);
  if (d < 0 || H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
    throw std::runtime_error("plain HDF5 read failed: /users/ids");
  b->user_ids.assign(raw.begin(), raw.end());
  hsize_t n = kUsers;
  hid_t space = H5Screate_simple(1, &n, nullptr);
  H5Dvlen_reclaim(mem, space, H5P_DEFAULT, raw.data());
  H5Sclose(space);
  H5Tclose(mem);
  H5Dclose(d);
  H5Fclose(file);
}

void SetIoCounters(benchmark::State& state) {
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(BigPayloadBytes()),
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.counters["comparisons/s"] = benchmark::Counter(
      static_cast<double>(kComparisons), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ReadDataset(benchmark::State& state) {
  const bool cold = state.range(0) != 0;
  const std::string path = BigDatasetPath();
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      DropFromPageCache(path);
      state.ResumeTiming();
    }
    Dataset ds = ReadDataset(path);
    benchmark::DoNotOptimize(ds.items.data());
    if (ds.n_comparisons() != kComparisons) state.SkipWithError("unexpected file contents");
  }
  SetIoCounters(state);
}
BENCHMARK(BM_ReadDataset)
    ->ArgName("cold")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_PlainHdf5Read(benchmark::State& state) {
  const bool prealloc = state.range(0) != 0;
  const bool cold = state.range(1) != 0;
  const std::string path = BigDatasetPath();
  PlainBuffers b;
  if (prealloc) {
    b.Allocate();
    PlainHdf5Read(path, &b);  // touch every page once, outside the timed loop
  }
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      DropFromPageCache(path);
      state.ResumeTiming();
    }
    if (!prealloc) b.Allocate();
    PlainHdf5Read(path, &b);
    benchmark::DoNotOptimize(b.items.get());
  }
  SetIoCounters(state);
}
BENCHMARK(BM_PlainHdf5Read)
    ->ArgNames({"prealloc", "cold"})
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace prefmix::bench
