// libFuzzer harness of the .npy reader (core/io/npy.h): ReadNpy, which reads the header with
// ReadNpyHeader, then checks descr, shape and order and reads the data.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/io/npy.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const prefmix::fuzz::TempFile file(prefmix::fuzz::TempPath("npy", ".npy"));
  prefmix::fuzz::WriteFile(file.path(), data, size);
  try {
    const prefmix::RowMatrixF m = prefmix::ReadNpy(file.path());
    // A matrix that loaded is 2-D, finite and as large as the data that was there. (An empty one
    // is not scanned: Eigen's allFinite walks every column of a 0 x 2e9 matrix, which took the
    // harness 13 s on one input; ReadNpy itself returned at once, and the importers reject
    // empty arrays.)
    if (static_cast<size_t>(m.size()) * sizeof(float) > size || (m.size() > 0 && !m.allFinite()))
      std::abort();
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
  }
  return 0;
}
