// libFuzzer harness of the experiment-grid reader (core/eval/grid.h): ReadGridFile on an INI
// file, with the command line's default protocol options.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "core/eval/grid.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const prefmix::fuzz::TempFile file(prefmix::fuzz::TempPath("grid", ".ini"));
  prefmix::fuzz::WriteFile(file.path(), data, size);
  try {
    const prefmix::GridSpec spec = prefmix::ReadGridFile(file.path(), prefmix::ProtocolOptions());
    if (spec.blocks.empty()) std::abort();  // documented: at least one block or an Error
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
  }
  return 0;
}
