// Inputs with which the libFuzzer harnesses (tests/fuzz, bench/fuzz.sh) made a loader crash,
// throw something other than prefmix::Error, or allocate without bound. Each file under
// tests/fuzz/regressions/ goes through the same loader as its harness and must be rejected with
// a prefmix::Error that names the file and says what is wrong. Findings and fixes:
// bench/results/2026-12-fuzz.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/model/model.h"

namespace prefmix {
namespace {

std::string Regression(const std::string& name) {
  return std::string(PREFMIX_SOURCE_DIR) + "/tests/fuzz/regressions/" + name;
}

/// Runs `load` on the regression input `name`; expects a prefmix::Error whose message names
/// the file and contains `what`.
template <typename Load>
void ExpectRejected(const std::string& name, Load load, const std::string& what) {
  const std::string path = Regression(name);
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  try {
    load(path);
    FAIL() << name << ": loaded without an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

// --- model files (fuzz_model) ---

// The eighth training-user id declared 2^64 - 1 bytes: cereal resized the string to the
// declared length before reading a byte (std::length_error escaped LoadModel; the CLI reported
// "internal error: basic_string::_M_replace_aux").
TEST(FuzzRegressions, ModelStringLengthBeyondTheFile) {
  ExpectRejected("model_string_length.pfmx", LoadModel, "truncated or corrupt");
}

}  // namespace
}  // namespace prefmix
