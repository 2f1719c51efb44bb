// The grid file reader (core/eval/grid.h): INI with comments on their own lines or after a value.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/eval/grid.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

// The example at the top of core/eval/grid.h, inline comments included, must read as it says.
TEST(GridFile, InlineCommentsAfterValuesAndSectionsAreComments) {
  const std::string path = testing::TestDir() + "/g.ini";
  std::ofstream(path)
      << "# a grid\n"
         "models = bt,lowrank          ; optional: the command line's --models wins\n"
         "repeats = 25                 ; optional defaults for every block\n"
         "[Sushi-A-small]              ; one block per section, in file order\n"
         "data = /tmp/sushi_a.h5\n"
         "protocol = subsample\t# seen | unseen | subsample\n"
         "  ; an indented comment line\n"
         "users = 100\n"
         "train-pairs = 5\n"
         "test-pairs = 25\n"
         "[B]\r\n"
         "data = /tmp/run#2;final.h5 ; '#' and ';' inside a word are kept\r\n";
  const GridSpec spec = ReadGridFile(path, ProtocolOptions());
  EXPECT_EQ(spec.models, (std::vector<std::string>{"bt", "lowrank"}));
  ASSERT_EQ(spec.blocks.size(), 2u);
  EXPECT_EQ(spec.blocks[0].name, "Sushi-A-small");
  EXPECT_EQ(spec.blocks[0].data, "/tmp/sushi_a.h5");
  EXPECT_EQ(spec.blocks[0].protocol.name, "subsample");
  EXPECT_EQ(spec.blocks[0].protocol.users, 100);
  EXPECT_EQ(spec.blocks[0].protocol.train_pairs, 5);
  EXPECT_EQ(spec.blocks[0].protocol.repeats, 25);
  EXPECT_EQ(spec.blocks[1].name, "B");
  EXPECT_EQ(spec.blocks[1].data, "/tmp/run#2;final.h5");
}

// A syntax error names the file and the line it is on (comments stripped, lines kept).
TEST(GridFile, SyntaxErrorNamesFileAndLine) {
  const std::string path = testing::TestDir() + "/bad.ini";
  std::ofstream(path) << "models = bt ; comment\n\n[A\ndata = x.h5\n";
  const std::string msg = testing::ErrorOf([&] { ReadGridFile(path, ProtocolOptions()); });
  EXPECT_NE(msg.find(path + "(3)"), std::string::npos) << msg;
  EXPECT_EQ(testing::ErrorOf([&] {
              ReadGridFile(path + ".missing", ProtocolOptions());
            }).find(path + ".missing"),
            0u + std::string("--grid: ").size());
}

}  // namespace
}  // namespace prefmix
