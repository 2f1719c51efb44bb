// Inputs with which the libFuzzer harnesses (tests/fuzz, bench/fuzz.sh) made a loader crash,
// throw something other than prefmix::Error, or allocate without bound. Each file under
// tests/fuzz/regressions/ goes through the same loader as its harness and must be rejected with
// a prefmix::Error that names the file and says what is wrong. Findings and fixes:
// bench/results/2026-12-fuzz.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/eval/grid.h"
#include "core/io/importers.h"
#include "core/io/json.h"
#include "core/io/npy.h"
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

// The options JSON held a lone '-' as a number: std::stod threw std::invalid_argument.
TEST(FuzzRegressions, ModelOptionsJsonMalformedNumber) {
  ExpectRejected("model_json_number.pfmx", LoadModel, "malformed or out-of-range number");
}

// The header's dim was 0x50000000000060: bt built a torch Linear of that width before checking
// the stored weights (a 1.4e17-byte allocation; c10::Error escaped without sanitizers).
TEST(FuzzRegressions, ModelBtDimBeyondTheStoredWeights) {
  ExpectRejected("model_bt_dim.pfmx", LoadModel, "does not match the 6 parameter values stored");
}

// Found by reading the loader while fixing the findings above (the fuzzer had not produced these
// inputs in its first minutes), each confirmed on the code before its fix: a UBSan report under
// the fuzz harness, or a crash of the CLI (prefmix score --model-file FILE).

// The options JSON's "k" was 1e300: static_cast<int> of it is undefined behaviour (UBSan:
// float-cast-overflow); every integer option is now checked against its type's range.
TEST(FuzzRegressions, ModelOptionsIntegerOutOfRange) {
  ExpectRejected("model_options_k_range.pfmx", LoadModel,
                 "options: 'k' = 1e+300 is not an integer");
}

// gppl with no inverse length-scale: the Matern kernel read inv_ls[0] of an empty vector while
// building the kernel matrix (UBSan: reference binding to null pointer; the CLI: SIGSEGV).
TEST(FuzzRegressions, ModelGpplWithoutLengthScales) {
  ExpectRejected("model_gppl_inv_ls_empty.pfmx", LoadModel, "0 inverse length-scales");
}

// Options of 30000 '[': Json::Parse recursed once per nesting level without a limit, and the
// CLI died of a stack overflow (SIGSEGV) on this file.
TEST(FuzzRegressions, ModelOptionsJsonNestedTooDeep) {
  ExpectRejected("model_json_deep.pfmx", LoadModel, "nested too deep");
}

// The same parser on its own: nesting, \u escapes and number ranges.
TEST(FuzzRegressions, JsonParseErrorsArePrefmixErrors) {
  EXPECT_THROW(Json::Parse(std::string(100000, '[')), Error);
  EXPECT_NO_THROW(Json::Parse(std::string(200, '[') + std::string(200, ']')));
  EXPECT_THROW(Json::Parse("{\"k\": \"\\uzz12\"}"), Error);  // was std::invalid_argument
  EXPECT_THROW(Json::Parse("[1e999]"), Error);               // was std::out_of_range
}

// --- grid files (fuzz_grid): found by review, not by the fuzzer (the overflow is in RunGrid,
// after the reader the harness calls) ---

// first-repeat = 2^31 - 1 with repeats = 25 was accepted, and RunGrid's repeat loop
// (r < first_repeat + repeats, in int) overflowed: undefined behaviour. Now rejected on reading.
TEST(FuzzRegressions, GridFirstRepeatPlusRepeatsOverflows) {
  ExpectRejected(
      "grid_repeat_overflow.ini",
      [](const std::string& p) { return ReadGridFile(p, ProtocolOptions()); },
      "first-repeat 2147483647 + repeats 25 is beyond 2147483647");
}

// --- .npy files (fuzz_npy) ---

// 'shape': (0, 2101043536): a valid empty array, which ReadNpy returns at once; the harness's own
// allFinite check then walked 2.1e9 empty columns (a 13-s timeout). The importers, ReadNpy's only
// callers, refuse an array without rows or columns, naming the file.
TEST(FuzzRegressions, NpyEmptyButVeryWide) {
  const std::string path = Regression("npy_empty_wide.npy");
  const RowMatrixF m = ReadNpy(path);
  EXPECT_EQ(m.rows(), 0);
  EXPECT_EQ(m.cols(), 2101043536);
  const std::string pairs = ::testing::TempDir() + "/npy_empty_wide_pairs.csv";
  std::ofstream(pairs) << "user,chosen,rejected\nu1,0,1\n";
  ImportPairsOptions opts;
  opts.items = path;
  opts.pairs = pairs;
  ExpectRejected(
      "npy_empty_wide.npy", [&](const std::string&) { ImportPairs(opts); },
      "expected at least one row and one column");
}

}  // namespace
}  // namespace prefmix
