// libFuzzer harness of the model-file loader (core/model/model.h): LoadModel reads the header
// (magic, version, family, options JSON, dims) and hands the payload to the family's
// LoadPayload. Every family registers itself from a static initialiser, so the harness links
// the whole prefmix archive (tests/fuzz/CMakeLists.txt) and checks that they are all there.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/model/model.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto names = prefmix::FamilyNames();
  std::fprintf(stderr, "fuzz_model: %zu families registered:", names.size());
  for (const auto& n : names) std::fprintf(stderr, " %s", n.c_str());
  std::fprintf(stderr, "\n");
  if (names.size() < 2) std::abort();  // linked without the family objects
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const prefmix::fuzz::TempFile file(prefmix::fuzz::TempPath("model", ".pfmx"));
  prefmix::fuzz::WriteFile(file.path(), data, size);
  try {
    const auto model = prefmix::LoadModel(file.path());
    if (!model) std::abort();
  } catch (const prefmix::Error& e) {
    prefmix::fuzz::Rejected(e);
  }
  return 0;
}
