// The main job (`prefmix demo`) on a small budget: every registered family has its row in the
// table and its entry in the JSON, with accuracies in range and the table agreeing with the JSON.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>

#include "core/io/json.h"
#include "core/model/model.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::ReadFile;
using testing::RunCli;
using testing::TestDir;

/// The table row of `family`: seen, unseen, worst-group accuracy, train seconds.
bool TableRow(const std::string& out, const std::string& family, double v[4]) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string name, group;
    if (!(row >> name) || name != family) continue;
    return static_cast<bool>(row >> v[0] >> v[1] >> v[2] >> group >> v[3]);
  }
  return false;
}

TEST(DemoTest, EveryFamilyHasItsRowAndAccuraciesInRange) {
  const std::string dir = TestDir();
  auto r = RunCli("demo --users 100 --quiet --json " + dir + "/demo.json", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  const Json j = Json::Parse(ReadFile(dir + "/demo.json"));
  const std::vector<std::string> families = FamilyNames();
  ASSERT_EQ(j.at("results").size(), families.size()) << r.out;
  double oracle = NAN;
  {
    std::istringstream in(r.out);
    std::string line, name;
    while (std::getline(in, line))
      if (line.rfind("oracle", 0) == 0) std::istringstream(line) >> name >> oracle;
  }
  EXPECT_GT(oracle, 0.75) << r.out;
  EXPECT_LE(oracle, 1.0) << r.out;
  double bt_seen = NAN, best_seen = 0;
  for (size_t i = 0; i < families.size(); ++i) {
    const std::string& f = families[i];
    SCOPED_TRACE(f);
    const Json& e = j.at("results").items()[i];
    ASSERT_EQ(e.at("model").str(), f);
    const double seen = e.at("seen").at("accuracy").number();
    const double unseen = e.at("unseen").at("accuracy").number();
    // Every family learns the planted preferences (chance is 0.5) and none beats the truth by
    // more than sampling noise on a few hundred test pairs.
    EXPECT_GT(seen, 0.6);
    EXPECT_GT(unseen, 0.6);
    EXPECT_LE(seen, oracle + 0.05);
    EXPECT_GT(e.at("seen").at("timing").at("train_seconds").number(), 0.0);
    ASSERT_TRUE(e.at("seen").contains("worst_group"));
    const double worst = e.at("seen").at("worst_group").at("accuracy").number();
    EXPECT_GE(worst, 0.0);
    EXPECT_LE(worst, 1.0);
    double v[4];
    ASSERT_TRUE(TableRow(r.out, f, v)) << r.out;
    EXPECT_NEAR(v[0], seen, 5e-4);
    EXPECT_NEAR(v[1], unseen, 5e-4);
    EXPECT_NEAR(v[2], worst, 5e-4);
    if (f == "bt") bt_seen = seen;
    best_seen = std::max(best_seen, seen);
  }
  // On planted taste groups some personalized family beats the one-reward baseline.
  EXPECT_GT(best_seen, bt_seen + 0.03) << r.out;
  EXPECT_NE(j.at("dataset").str().find("users=100"), std::string::npos) << j.at("dataset").str();

  r = RunCli("demo --users 5 --json " + dir + "/small.json", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--users: 5"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::Exists(dir + "/small.json"));
}

}  // namespace
}  // namespace prefmix
