// Model files of format version 1 written by earlier builds keep loading and scoring the same:
// data/golden/ holds a tiny synthetic dataset, one model file per registered family and, in
// expected.json, each file's scores at a few (user, item) cells (data/golden/make_golden.py wrote
// them; bt and lowrank date from before the Python package). A new family without a golden file
// fails here.
#include <gtest/gtest.h>

#include <cmath>

#include "core/io/h5io.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

TEST(GoldenModelTest, EveryFamilysVersionOneFileLoadsAndScoresAsWritten) {
  const std::string dir = PREFMIX_SOURCE_DIR "/data/golden/";
  const Dataset ds = ReadDataset(dir + "tiny.h5");
  const Json expected = Json::Parse(testing::ReadFile(dir + "expected.json"));
  for (const std::string& family : FamilyNames()) {
    SCOPED_TRACE(family);
    const std::string file = family + "-v1.pfmx";
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
}

}  // namespace
}  // namespace prefmix
