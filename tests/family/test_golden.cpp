// Model files of earlier format versions (data/golden/<family>-v<N>.pfmx; every family has a
// version-1 file, written before format 2 added payload versions) keep loading and scoring the
// same: data/golden/ holds a tiny synthetic dataset, one model file per registered family and, in
// expected.json, each file's scores at a few (user, item) cells (data/golden/make_golden.py wrote
// them; bt and lowrank date from before the Python package). A new family without a golden file
// fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/io/h5io.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

TEST(GoldenModelTest, EveryFamilysOlderFilesLoadAndScoreAsWritten) {
  const std::string dir = PREFMIX_SOURCE_DIR "/data/golden/";
  const Dataset ds = ReadDataset(dir + "tiny.h5");
  const Json expected = Json::Parse(testing::ReadFile(dir + "expected.json"));
  for (const std::string& family : FamilyNames()) {
    SCOPED_TRACE(family);
    int files = 0;
    for (uint32_t version = 1; version <= kModelFormatVersion; ++version) {
      const std::string file = family + "-v" + std::to_string(version) + ".pfmx";
      if (!testing::Exists(dir + file)) continue;
      ++files;
      // The file is of the format version its name says (the uint32 after the magic and the
      // archive's endianness byte).
      const std::string bytes = testing::ReadFile(dir + file);
      uint32_t written = 0;
      std::memcpy(&written, bytes.data() + 5, 4);
      EXPECT_EQ(written, version) << file;
      ASSERT_TRUE(expected.contains(file))
          << "no golden scores for " << file << " (data/golden/make_golden.py " << family << ")";
      auto m = LoadModel(dir + file);
      EXPECT_EQ(m->Family(), family);
      CheckCompatible(*m, ds);
      const RowMatrixF s = m->Score(ds, m->LatentsFor(ds));
      ASSERT_EQ(s.rows(), 12);
      ASSERT_EQ(s.cols(), 40);
      for (const Json& cell : expected.at(file).items()) {
        const auto& c = cell.items();
        const int u = static_cast<int>(c[0].number()), i = static_cast<int>(c[1].number());
        const double want = c[2].number();
        EXPECT_NEAR(s(u, i), want, 1e-5 * (1 + std::fabs(want)))
            << file << " [" << u << ", " << i << "]";
      }
    }
    EXPECT_GE(files, 1) << "no golden model file for " << family << " (data/golden/make_golden.py "
                        << family << ")";
  }
}

}  // namespace
}  // namespace prefmix
