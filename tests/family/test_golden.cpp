// Model files of format version 1 written by an earlier build keep loading and scoring the same
//: data/golden/ holds a tiny synthetic dataset and one model file per family.
#include <gtest/gtest.h>

#include "core/io/h5io.h"
#include "core/model/model.h"

namespace prefmix {
namespace {

struct Golden {
  const char* file;
  float s00, s01, s02, s5_10, s5_11;  ///< scores [user 0, items 0..2] and [user 5, items 10..11]
};

TEST(GoldenModelTest, VersionOneFilesLoadAndScoreAsWritten) {
  const std::string dir = PREFMIX_SOURCE_DIR "/data/golden/";
  Dataset ds = ReadDataset(dir + "tiny.h5");
  for (const Golden& g :
       {Golden{"bt-v1.pfmx", 0.20462030f, -0.93298244f, -1.26056778f, 0.82400399f, -0.00076185f},
        Golden{"lowrank-v1.pfmx", -0.06057644f, -2.22092676f, -2.58621573f, 1.73414373f,
               -0.71153337f}}) {
    auto m = LoadModel(dir + g.file);
    CheckCompatible(*m, ds);
    RowMatrixF s = m->Score(ds, m->LatentsFor(ds));
    ASSERT_EQ(s.rows(), 12);
    ASSERT_EQ(s.cols(), 40);
    EXPECT_NEAR(s(0, 0), g.s00, 1e-5) << g.file;
    EXPECT_NEAR(s(0, 1), g.s01, 1e-5) << g.file;
    EXPECT_NEAR(s(0, 2), g.s02, 1e-5) << g.file;
    EXPECT_NEAR(s(5, 10), g.s5_10, 1e-5) << g.file;
    EXPECT_NEAR(s(5, 11), g.s5_11, 1e-5) << g.file;
  }
}

}  // namespace
}  // namespace prefmix
