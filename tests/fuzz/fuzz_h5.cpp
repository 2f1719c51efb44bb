// libFuzzer harness of the HDF5 dataset reader (core/io/h5io.h): ReadDataset as the CLI runs it,
// with libhdf5 decoding each file in a child process first (ProbeInChild), then schema v1 checks
// and Dataset::Validate in this process.
// - A child that crashes, loops or runs out of memory inside libhdf5 1.10.8 (which does on some
//   corrupt files: bench/results/2026-12-fuzz.md) is a ProbeAborted error: the guard working,
//   counted, not a finding. PREFMIX_READ_TIMEOUT (0.5 s here, below) bounds the child.
// - A file the child rejects with a prefmix::Error is read again without the guard
//   (ReadDatasetUnguarded), so that the reader's own checks run here, under the sanitizers and
//   with coverage; both readers must give the same message.
// ReadDataset turns off HDF5's automatic error-stack printing itself (SilenceHdf5 in h5io.cpp);
// the harness does it once more up front so that nothing is printed per input even if that
// changes.
//
// Leaks: libhdf5 1.10.8 itself leaks metadata-cache objects on some corrupt files (an object
// header that fails to load inside H5Dopen2 leaks 424 bytes with nothing but the C API involved;
// bench/results/2026-12-fuzz.md). Debian's libhdf5 has no frame pointers, so LeakSanitizer sees
// only the allocating frame, inside libhdf5: the suppression below covers every allocation made
// by libhdf5. What prefmix could leak through HDF5, an identifier it fails to close, is checked
// directly instead: no HDF5 identifier may stay open after ReadDataset returns or throws.
#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "core/io/child_probe.h"
#include "core/io/h5io.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5_serial.so\n"; }

// The CLI's child gets an address-space cap (2 GiB + 16x the file), under which libhdf5's
// gigabyte allocations on corrupt size fields fail at once; under AddressSanitizer there is no
// such cap, so the harness gets the same effect from ASan's allocator: an allocation above
// 1 GiB returns NULL (inputs are at most a few tens of KB; no valid one needs that much).
extern "C" const char* __asan_default_options() {
  return "allocator_may_return_null=1:max_allocation_size_mb=1024";
}

// A valid input of this size reads in milliseconds, even under the sanitizers; a child still
// reading after 0.5 s is in one of libhdf5's loops (the CLI allows 10 s).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (!std::getenv("PREFMIX_READ_TIMEOUT")) setenv("PREFMIX_READ_TIMEOUT", "0.5", 1);
  return 0;
}

namespace {

void CheckNoOpenIds(const char* where) {
  const ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open_ids != 0) {
    std::fprintf(stderr, "fuzz_h5: %zd HDF5 identifier(s) left open by %s\n", open_ids, where);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const prefmix::fuzz::TempFile file(prefmix::fuzz::TempPath("h5", ".h5"));
  prefmix::fuzz::WriteFile(file.path(), data, size);
  std::string guarded;
  try {
    const prefmix::Dataset ds = prefmix::ReadDataset(file.path());
    ds.Validate();  // what loaded passes validation again (no state the reader fixed up)
    CheckNoOpenIds("ReadDataset");
    return 0;
  } catch (const prefmix::ProbeAborted& e) {
    prefmix::fuzz::Rejected(e);  // libhdf5 did not survive the file; the child took it
    CheckNoOpenIds("ReadDataset");
    return 0;
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
    guarded = e.what();
  }
  CheckNoOpenIds("ReadDataset");
  std::string unguarded = "(no error)";
  try {
    prefmix::ReadDatasetUnguarded(file.path());
  } catch (const prefmix::Error& e) {
    unguarded = e.what();
  }
  if (unguarded != guarded) {
    std::fprintf(stderr, "fuzz_h5: the readers disagree:\n  guarded:   %s\n  unguarded: %s\n",
                 guarded.c_str(), unguarded.c_str());
    std::abort();
  }
  CheckNoOpenIds("ReadDatasetUnguarded");
  return 0;
}
