// Model options as tables (core/model/options.h): parsing, checks, defaults, the model-file JSON
// and the generated docs, for every registered family.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/model/model.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::ErrorOf;

TEST(OptionsTest, EveryFamilyDeclaresEachKeyOnceWithAParsableDefault) {
  for (const auto& family : FamilyNames(true)) {
    std::set<std::string> keys;
    for (const auto& s : FamilyOptions(family)) {
      EXPECT_TRUE(keys.insert(s.key).second) << family << " declares " << s.key << " twice";
      EXPECT_FALSE(s.help.empty()) << family << " " << s.key;
      if (s.type != OptionType::kSwitch) {
        // The default parses and passes the family's own check.
        Json v;
        EXPECT_NO_THROW(v = s.Parse(s.value)) << family << " " << s.key << " = " << s.value;
        EXPECT_NO_THROW(s.Check(v, family)) << family << " " << s.key << " = " << s.value;
      }
    }
  }
}

TEST(OptionsTest, ResolveFillsTheFamilyDefaults) {
  ModelOptions o;
  o.family = "bt";
  ResolveOptions(o);
  EXPECT_EQ(o.Int("epochs"), 300);
  EXPECT_EQ(o.Text("arch"), "linear");
  EXPECT_TRUE(o.Flag("refit"));
  EXPECT_EQ(o.Real("l2"), -1.0);
  ModelOptions v;
  v.family = "vpl";
  ResolveOptions(v);
  EXPECT_EQ(v.Int("epochs"), 200);
  EXPECT_EQ(v.Int("batch"), 512);
  EXPECT_DOUBLE_EQ(v.Real("beta"), 1e-4);
  EXPECT_EQ(v.Text("vpl_adapt"), "auto");
  // The defaults differ per family and each family gets its own.
  ModelOptions l;
  l.family = "lowrank";
  ResolveOptions(l);
  EXPECT_EQ(l.Int("epochs"), 500);
  EXPECT_DOUBLE_EQ(l.Real("lr"), 0.05);
}

TEST(OptionsTest, ZeroAndNegativeMeanTheFamilyDefaultWhereDeclaredSo) {
  ModelOptions o;
  o.family = "vpl";
  o.Set("epochs", 0).Set("lr", 0.0).Set("batch", 0).Set("l2", -1.0).Set("beta", -1.0);
  ResolveOptions(o);
  EXPECT_EQ(o.Int("epochs"), 200);
  EXPECT_DOUBLE_EQ(o.Real("lr"), 3e-3);
  EXPECT_EQ(o.Int("batch"), 512);
  EXPECT_DOUBLE_EQ(o.Real("l2"), 1e-3);
  EXPECT_DOUBLE_EQ(o.Real("beta"), 1e-4);
  // Where a negative value has its own meaning (choose on validation) it is kept.
  ModelOptions b;
  b.family = "bt";
  b.Set("l2", -1.0);
  ResolveOptions(b);
  EXPECT_EQ(b.Real("l2"), -1.0);
}

TEST(OptionsTest, BadValuesAreRefusedNamingTheFlagAndValue) {
  struct Case {
    std::string family, key;
    Json value;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"em-bt", "em", Json("firm"), "--em: 'firm' is not one of hard, soft"},
      {"bt", "patience", Json(0), "--patience: 0 must be >= 1"},
      {"bt", "l2", Json(std::nan("")), "--l2: nan is not a number"},
      {"lowrank", "k", Json("auto"), "--k: 'auto' is not supported by lowrank"},
      {"lowrank", "k", Json(0), "--k: 0 must be >= 1"},
      {"em-bt", "k", Json(2.5), "--k: 2.5 is not an integer"},
      {"gppl", "ls_factor", Json(0), "--ls-factor: 0 must be > 0"},
      {"vpl", "anneal_floor", Json(1.5), "--anneal-floor: 1.5 must be <= 1"},
      {"em-bt", "em_prior", Json("yes"), "--em-prior: \"yes\" is not one of on, off"},
  };
  for (const auto& c : cases) {
    ModelOptions o;
    o.family = c.family;
    o.values[c.key] = c.value;
    const std::string msg = ErrorOf([&] { ResolveOptions(o); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.family << " " << c.key << ": " << msg;
  }
  // An option the family does not declare is refused, naming the family's options.
  ModelOptions o;
  o.family = "bt";
  o.Set("router", "context");
  const std::string msg = ErrorOf([&] { ResolveOptions(o); });
  EXPECT_NE(msg.find("option 'router' does not apply to family 'bt'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("epochs"), std::string::npos) << msg;
}

TEST(OptionsTest, ParseIsStrict) {
  const OptionSpec& k = FamilyOptions("em-bt")[0];
  ASSERT_EQ(k.key, "k");
  EXPECT_EQ(k.Parse("3").number(), 3);
  EXPECT_EQ(k.Parse("auto").str(), "auto");
  for (const char* bad : {"", "3x", "2,3", " 3", "1e2", "99999999999"})
    EXPECT_THROW(k.Parse(bad), Error) << "'" << bad << "'";
  const OptionSpec l2 = opt::L2("-1", "");
  EXPECT_DOUBLE_EQ(l2.Parse("1e-3").number(), 1e-3);
  for (const char* bad : {"", "nan", "inf", "0.1.2", "1e-3x"})
    EXPECT_THROW(l2.Parse(bad), Error) << "'" << bad << "'";
}

TEST(OptionsTest, JsonRoundTripsEveryFamilyInDeclarationOrder) {
  for (const auto& family : FamilyNames(true)) {
    ModelOptions o;
    o.family = family;
    o.seed = 12345678901234ULL;
    ResolveOptions(o);
    const Json j = o.ToJson();
    std::vector<std::string> keys;
    for (const auto& kv : j.members()) keys.push_back(kv.first);
    ASSERT_EQ(keys.size(), FamilyOptions(family).size() + 4) << family;
    EXPECT_EQ(keys.front(), "family");
    for (size_t i = 0; i < FamilyOptions(family).size(); ++i)
      EXPECT_EQ(keys[i + 1], FamilyOptions(family)[i].key) << family;
    ModelOptions back = ModelOptions::FromJson(Json::Parse(j.Dump(-1)));
    ResolveOptions(back);
    EXPECT_EQ(back.ToJson().Dump(-1), j.Dump(-1)) << family;
  }
}

TEST(OptionsTest, OldModelFileOptionsReadWithLegacyValues) {
  // The options object as the first model files wrote it: every family's keys, 0 / -1 for
  // "family default", no vpl_adapt.
  const Json old = Json::Parse(
      R"({"family":"vpl","k":4,"dim":0,"epochs":0,"lr":0,"batch":0,"l2":-1,"arch":"linear",)"
      R"("hidden":64,"patience":20,"user_prior":-1,"refit":true,"seed":1,"threads":2,)"
      R"("device":"cpu"})");
  ModelOptions o = ModelOptions::FromJson(old);
  ResolveOptions(o);
  EXPECT_EQ(o.Text("vpl_adapt"), "encoder");
  EXPECT_EQ(o.Int("epochs"), 200);
  EXPECT_DOUBLE_EQ(o.Real("l2"), 1e-3);
  EXPECT_FALSE(o.Has("k"));  // another family's key is not carried over
}

TEST(OptionsTest, DocsOptionsPageIsTheGeneratedOne) {
  const std::string path = std::string(PREFMIX_SOURCE_DIR) + "/docs/options.md";
  std::ifstream f(path);
  ASSERT_TRUE(f) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const std::string gen = OptionsMarkdown();
  EXPECT_NE(doc.find(gen), std::string::npos)
      << "docs/options.md is out of date: regenerate its tables with "
         "`build/prefmix options --markdown` (see the page's header)";
}

TEST(OptionsTest, TrainHelpListsEveryFamilysDefault) {
  const testing::CliResult r = testing::RunCli("train --help", testing::TestDir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string& out = r.out;
  // One line each, wrapped by the option printer: whitespace runs become one space, a flag is
  // followed by one (so --inducing is not found inside --inducing-users), and each entry is
  // compared without whitespace.
  std::string flat;
  for (char c : out) {
    const bool space = std::isspace(static_cast<unsigned char>(c));
    if (!space)
      flat += c;
    else if (!flat.empty() && flat.back() != ' ')
      flat += ' ';
  }
  for (const auto& family : FamilyNames(true))
    for (const auto& s : FamilyOptions(family)) {
      const size_t at = flat.find("--" + s.Flag() + " ");
      EXPECT_NE(at, std::string::npos) << s.Flag();
      if (s.type == OptionType::kSwitch || at == std::string::npos) continue;
      // "[bt, pal-a: 300; ...]": the family's name is followed, within its group, by its value.
      const size_t end = flat.find(']', at);
      std::string line;
      for (char c : flat.substr(at, end - at))
        if (c != ' ') line += c;
      EXPECT_NE(line.find(family), std::string::npos) << s.Flag() << " lacks " << family;
      EXPECT_NE(line.find(":" + s.value), std::string::npos)
          << s.Flag() << " lacks " << family << "'s default " << s.value << " in " << line;
    }
}

}  // namespace
}  // namespace prefmix
