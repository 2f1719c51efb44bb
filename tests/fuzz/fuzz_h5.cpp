// libFuzzer harness of the HDF5 dataset reader (core/io/h5io.h): ReadDataset, schema v1 checks
// and Dataset::Validate. ReadDataset turns off HDF5's automatic error-stack printing itself
// (SilenceHdf5 in h5io.cpp); the harness does it once more up front so that nothing is printed
// per input even if that changes.
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

#include "core/error.h"
#include "core/io/h5io.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5_serial.so\n"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const prefmix::fuzz::TempFile file(prefmix::fuzz::TempPath("h5", ".h5"));
  prefmix::fuzz::WriteFile(file.path(), data, size);
  try {
    const prefmix::Dataset ds = prefmix::ReadDataset(file.path());
    ds.Validate();  // what loaded passes validation again (no state the reader fixed up)
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
  }
  const ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open_ids != 0) {
    std::fprintf(stderr, "fuzz_h5: %zd HDF5 identifier(s) left open by ReadDataset\n", open_ids);
    std::abort();
  }
  return 0;
}
