// Fairness benchmark (issue 8): per-group metrics against a hand count, bootstrap intervals,
// Kendall tau, the transitive-closure baseline, the Wilcoxon textbook example, the HTML report
// (with and without gnuplot, rendered by headless Chromium), `prefmix fairness` and
// `prefmix experiment --grid` end to end with every JSON validated against its schema.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "core/eval/fairness.h"
#include "core/eval/grid.h"
#include "core/eval/metrics.h"
#include "core/eval/report.h"
#include "core/eval/stats.h"
#include "core/io/h5io.h"
#include "core/io/json.h"
#include "core/rng.h"
#include "data/generate.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::Exists;
using testing::ReadFile;
using testing::RunCli;
using testing::TestDir;

/// Validates a JSON file against data/schema/<schema> (skips without python3-jsonschema).
void ExpectValidAgainst(const std::string& schema, const std::string& json_path) {
  if (!testing::PythonHas("jsonschema"))
    GTEST_SKIP() << "python3-jsonschema missing: apt-get install python3-jsonschema";
  std::string cmd = testing::Python() +
                    " " PREFMIX_SOURCE_DIR "/tests/validate_json.py " PREFMIX_SOURCE_DIR
                    "/data/schema/" +
                    schema + " " + json_path + " 2>" + json_path + ".err";
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(json_path + ".err");
}

/// Six users: gender f = {0, 1, 2}, m = {3, 4}, unknown = {5}.
Dataset TinyUsers() {
  Dataset ds;
  ds.source = "<tiny>";
  ds.items = RowMatrixF::Zero(6, 2);
  for (int u = 0; u < 6; ++u) ds.user_ids.push_back("u" + std::to_string(u));
  Attribute g;
  g.name = "gender";
  g.codes = {0, 0, 0, 1, 1, -1};
  g.labels = {"f", "m"};
  ds.attributes.push_back(g);
  return ds;
}

TEST(FairnessTest, PerGroupMetricsEqualAHandCount) {
  Dataset ds = TinyUsers();
  PairSet pairs;
  std::vector<double> prob;
  auto add = [&](int u, float label, double p) {
    pairs.Push(u, 0, 1, -1, 1.0f, label, std::nanf(""));
    prob.push_back(p);
  };
  // f: user 0 two right; user 1 one right one wrong; user 2 a tie (0.5 counts half).
  add(0, 1, 0.8);
  add(0, 0, 0.3);
  add(1, 1, 0.9);
  add(1, 1, 0.4);
  add(2, 1, 0.5);
  // m: user 3 wrong; user 4 right, right, wrong.
  add(3, 1, 0.2);
  add(4, 1, 0.7);
  add(4, 0, 0.1);
  add(4, 0, 0.6);
  // unknown: user 5 right.
  add(5, 1, 0.99);
  UserStats st;
  st.Add(pairs, prob, ds.n_users());
  FairnessOptions fo;
  fo.bootstrap = 200;
  Json b = GroupBreakdown(ds.attributes[0], st, 1, fo, 7);
  ASSERT_FALSE(b.is_null());
  const Json& f = b.at("groups").at("f");
  const Json& m = b.at("groups").at("m");
  const Json& unk = b.at("groups").at("unknown");
  // Hand count: f has 5 pairs, hits 1 + 1 + 1 + 0 + 0.5 = 3.5.
  EXPECT_DOUBLE_EQ(f.at("accuracy").number(), 3.5 / 5);
  EXPECT_EQ(f.at("n_users").number(), 3);
  EXPECT_EQ(f.at("n_pairs").number(), 5);
  const double f_ll =
      -(std::log(0.8) + std::log(0.7) + std::log(0.9) + std::log(0.4) + std::log(0.5)) / 5;
  EXPECT_NEAR(f.at("log_loss").number(), f_ll, 1e-12);
  // m: 4 pairs, hits 0 + 1 + 1 + 0 = 2.
  EXPECT_DOUBLE_EQ(m.at("accuracy").number(), 2.0 / 4);
  EXPECT_EQ(m.at("n_users").number(), 2);
  EXPECT_EQ(m.at("n_pairs").number(), 4);
  const double m_ll = -(std::log(0.2) + std::log(0.7) + std::log(0.9) + std::log(0.4)) / 4;
  EXPECT_NEAR(m.at("log_loss").number(), m_ll, 1e-12);
  EXPECT_DOUBLE_EQ(unk.at("accuracy").number(), 1.0);
  EXPECT_EQ(unk.at("n_users").number(), 1);
  // Worst / best / gap.
  EXPECT_EQ(b.at("worst").at("group").str(), "m");
  EXPECT_EQ(b.at("best").at("group").str(), "unknown");
  EXPECT_DOUBLE_EQ(b.at("gap").number(), 0.5);
  // Intervals bracket the estimate; a one-user group has a degenerate interval.
  const auto& ci = f.at("accuracy_ci").items();
  EXPECT_LE(ci[0].number(), 0.7);
  EXPECT_GE(ci[1].number(), 0.7);
  EXPECT_GE(ci[0].number(), 0.5 / 2);  // the worst resample: user 2 thrice (0.5 / 1 pair)
  EXPECT_DOUBLE_EQ(unk.at("accuracy_ci").items()[0].number(), 1.0);
  EXPECT_DOUBLE_EQ(unk.at("accuracy_ci").items()[1].number(), 1.0);
  // Seeded: the same seed gives the same intervals, another seed (generally) others.
  Json again = GroupBreakdown(ds.attributes[0], st, 1, fo, 7);
  EXPECT_EQ(again.Dump(), b.Dump());
  // min_group_users drops small groups; the same figures as core's PairMetrics.
  Json b2 = GroupBreakdown(ds.attributes[0], st, 2, fo, 7);
  EXPECT_FALSE(b2.at("groups").contains("unknown"));
  Json pm = PairMetrics(ds, pairs, prob, 2);
  EXPECT_DOUBLE_EQ(pm.at("per_group").at("gender").at("f").at("accuracy").number(),
                   f.at("accuracy").number());
  EXPECT_DOUBLE_EQ(pm.at("per_group").at("gender").at("m").at("log_loss").number(),
                   m.at("log_loss").number());
  // A NaN prediction is refused, never averaged in.
  UserStats bad;
  std::vector<double> nan_prob = prob;
  nan_prob[3] = std::nan("");
  EXPECT_THROW(bad.Add(pairs, nan_prob, ds.n_users()), Error);
}

TEST(FairnessTest, BootstrapIntervalCoversAndNarrowsWithUsers) {
  // Users with accuracy 0 or 1 (one pair each), half and half: the CI of the pooled accuracy
  // is about 0.5 +- 1.96 * 0.5 / sqrt(n).
  for (int n : {40, 400}) {
    UserStats st;
    st.hits.resize(n);
    st.nll.assign(n, 0.0);
    st.n.assign(n, 1);
    std::vector<int32_t> mem(n);
    for (int u = 0; u < n; ++u) {
      st.hits[u] = u % 2;
      mem[u] = u;
    }
    auto ci = BootstrapUsersCi(st, mem, 2000, 0.95, 3);
    const double half = 1.96 * 0.5 / std::sqrt(n);
    EXPECT_NEAR(ci[0], 0.5 - half, 0.35 * half) << n;
    EXPECT_NEAR(ci[1], 0.5 + half, 0.35 * half) << n;
  }
}

TEST(FairnessTest, KendallTauByHand) {
  Dataset ds = TinyUsers();
  ds.items = RowMatrixF::Zero(4, 2);
  // User 0 ranks 0 > 1 > 2; user 1 ranks 3 > 2 > 1 > 0 and 0 > 1.
  ds.rank_user = {0, 1, 1};
  ds.rank_offsets = {0, 3, 7, 9};
  ds.rank_items = {0, 1, 2, 3, 2, 1, 0, 0, 1};
  RowMatrixF scores(2, 4);
  scores.row(0) << 3, 3, 1, 0;  // (0,1) tie, (0,2) and (1,2) concordant: tau-b = 2 / sqrt(3*2)
  scores.row(1) << 0, 1, 2, 3;  // ranking 2 perfectly concordant (tau 1), ranking 3 reversed
  TauAccumulator acc;
  acc.Add(ds, {0, 1}, scores);
  Json t = acc.Result();
  const double tau0 = 2.0 / std::sqrt(6.0);
  const double tau1 = (1.0 + -1.0) / 2;
  EXPECT_NEAR(t.at("mean_user").number(), (tau0 + tau1) / 2, 1e-12);
  // Pooled: C - D over all ranking pairs = (2 - 0) + (6 - 0) + (0 - 1) over 3 + 6 + 1.
  EXPECT_NEAR(t.at("pooled").number(), 7.0 / 10, 1e-12);
  EXPECT_EQ(t.at("n_users").number(), 2);
  EXPECT_EQ(t.at("n_rankings").number(), 3);
  // All predicted scores tied: tau 0 (a constant model ranks nothing).
  TauAccumulator flat;
  flat.Add(ds, {0}, RowMatrixF::Zero(1, 4));
  EXPECT_DOUBLE_EQ(flat.Result().at("mean_user").number(), 0.0);
}

TEST(FairnessTest, TransitiveClosureBaseline) {
  PairSet train, test;
  // User 0: 1 > 2, 2 > 3 and (label 0) 4 > 3 stored as (3, 4).
  train.Push(0, 1, 2, -1, 1, 1, NAN);
  train.Push(0, 2, 3, -1, 1, 1, NAN);
  train.Push(0, 3, 4, -1, 1, 0, NAN);
  // User 1: a cycle 1 > 2 > 1.
  train.Push(1, 1, 2, -1, 1, 1, NAN);
  train.Push(1, 2, 1, -1, 1, 1, NAN);
  test.Push(0, 1, 3, -1, 1, 1, NAN);  // implied first
  test.Push(0, 3, 1, -1, 1, 0, NAN);  // implied second
  test.Push(0, 4, 2, -1, 1, 1, NAN);  // 4 > 3 and 2 > 3: not implied
  test.Push(0, 1, 9, -1, 1, 1, NAN);  // unseen item
  test.Push(1, 1, 2, -1, 1, 1, NAN);  // contradictory
  test.Push(2, 1, 2, -1, 1, 1, NAN);  // user without training pairs
  test.Push(0, 4, 3, -1, 1, 1, NAN);  // the label-0 training pair read the right way round
  auto p = TransitiveClosurePredict(train, test, 3);
  std::vector<double> want = {1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0};
  EXPECT_EQ(p, want);
}

TEST(FairnessTest, WilcoxonTextbookExample) {
  // Hollander & Wolfe (1973, p. 29), the example of R's ?wilcox.test: Hamilton depression
  // scale before (x) and after (y) tranquilizer. R: V = 40, one-sided p = 0.01953 (exact),
  // so two-sided p = 2 * 10 / 512 = 0.0390625.
  std::vector<double> x = {1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30};
  std::vector<double> y = {0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29};
  PairedTest t = WilcoxonSignedRank(y, x);
  EXPECT_EQ(t.n, 9);
  EXPECT_DOUBLE_EQ(t.statistic, 40);
  EXPECT_NEAR(t.p_value, 0.0390625, 1e-12);
}

/// A small planted-groups dataset converted to rankings: each user ranks `per_user` random
/// items of n_items by their group's true reward plus Gumbel noise (Plackett-Luce).
Dataset RankingData(int users, int n_items, int per_user, uint64_t seed) {
  data::GenerateOptions o = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  o.n_users = users;
  o.n_items = n_items;
  o.pairs_per_user = 2;
  o.seed = seed;
  Dataset g = data::Generate(o);
  Dataset ds = g;
  ds.cmp_user.clear();
  ds.cmp_chosen.clear();
  ds.cmp_rejected.clear();
  ds.cmp_context.clear();
  ds.cmp_weight.clear();
  ds.truth_pair_prob.clear();
  ds.rank_offsets = {0};
  Rng rng(seed);
  for (int u = 0; u < users; ++u) {
    std::vector<int> items(n_items);
    for (int i = 0; i < n_items; ++i) items[i] = i;
    for (int i = 0; i < per_user; ++i) std::swap(items[i], items[i + rng.Below(n_items - i)]);
    std::vector<std::pair<double, int>> keyed;
    for (int i = 0; i < per_user; ++i) {
      const double gumbel = -std::log(-std::log(std::max(rng.Uniform(), 1e-12)));
      keyed.emplace_back(g.truth_group_item_reward(g.truth_user_group[u], items[i]) + gumbel,
                         items[i]);
    }
    std::sort(keyed.rbegin(), keyed.rend());
    ds.rank_user.push_back(u);
    for (const auto& kv : keyed) ds.rank_items.push_back(kv.second);
    ds.rank_offsets.push_back(static_cast<int64_t>(ds.rank_items.size()));
  }
  ds.Validate();
  return ds;
}

TEST(FairnessTest, RunFairnessGenericOverFamilies) {
  const std::string dir = TestDir();
  Dataset ds = RankingData(60, 30, 8, 5);
  ProtocolOptions po;
  po.name = "seen";
  po.seed = 2;
  FairnessOptions fo;
  fo.bootstrap = 100;
  std::vector<ModelOptions> mos;
  for (const auto& f : FamilyNames()) {  // every registered family, new ones included
    ModelOptions m;
    m.family = f;
    SetIfDeclared(m, "k", 3);
    SetIfDeclared(m, "epochs", 40);
    SetIfDeclared(m, "restarts", 1);
    mos.push_back(m);
  }
  Json out = RunFairness(ds, mos, po, fo);
  const auto& ms = out.at("models").items();
  ASSERT_EQ(ms.size(), mos.size() + 1);  // + the closure baseline
  for (size_t i = 0; i < mos.size(); ++i) {
    EXPECT_EQ(ms[i].at("model").str(), mos[i].family);
    EXPECT_TRUE(ms[i].contains("kendall_tau")) << mos[i].family;
    EXPECT_TRUE(ms[i].at("per_group").contains("planted_group")) << mos[i].family;
    // The pooled accuracy is the pair-weighted mean of the groups of any grouping.
    double s = 0, n = 0;
    for (const auto& kv : ms[i].at("per_group").at("planted_group").at("groups").members()) {
      s += kv.second.at("accuracy").number() * kv.second.at("n_pairs").number();
      n += kv.second.at("n_pairs").number();
    }
    EXPECT_NEAR(s / n, ms[i].at("accuracy").number(), 1e-12);
  }
  EXPECT_EQ(ms.back().at("model").str(), "closure");
  EXPECT_GT(ms.back().at("implied_fraction").number(), 0.0);
  // A model with planted-group structure beats chance on these rankings.
  EXPECT_GT(ms[0].at("accuracy").number(), 0.6);
  std::ofstream(dir + "/f.json") << out.Dump(2);
  ExpectValidAgainst("fairness.schema.json", dir + "/f.json");
}

class FairnessCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDir();
    WriteDataset(RankingData(80, 40, 8, 11), dir_ + "/r.h5");
  }
  std::string dir_;
};

/// Renders report.html in headless Chromium; returns false (with a reason) when it cannot run.
struct Rendered {
  bool ran = false;
  std::string dom, log;
};
Rendered RenderInChromium(const std::string& html_path, const std::string& dir) {
  Rendered r;
  std::string chromium;
  for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (Exists(c)) {
      chromium = c;
      break;
    }
  if (chromium.empty()) return r;
  // A copy of the page with a probe that writes each plot's rendered size into the DOM (the
  // report itself has no script).
  std::string page = ReadFile(html_path);
  const std::string probe =
      "<script>window.addEventListener('load',function(){var o=[];"
      "document.querySelectorAll('figure.plot svg').forEach(function(s){"
      "var b=s.getBoundingClientRect();o.push(s.parentNode.id+' '+Math.round(b.width)+' '+"
      "Math.round(b.height)+' '+s.querySelectorAll('path,rect,line,polyline,circle,use')"
      ".length);});var p=document.createElement('pre');p.id='probe';p.textContent=o.join('\\n');"
      "document.body.appendChild(p);});</script>";
  page.insert(page.rfind("</body>"), probe);
  const std::string probed = dir + "/probed.html";
  std::ofstream(probed) << page;
  const std::string cmd = chromium +
                          " --headless --disable-gpu --no-sandbox --no-first-run "
                          "--user-data-dir=" +
                          dir +
                          "/chrome-profile --enable-logging=stderr --v=0 "
                          "--virtual-time-budget=5000 --dump-dom file://" +
                          probed + " >" + dir + "/dom.html 2>" + dir + "/chrome.log";
  int status = std::system(cmd.c_str());
  r.ran = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  r.dom = ReadFile(dir + "/dom.html");
  r.log = ReadFile(dir + "/chrome.log");
  return r;
}

/// Console errors in Chromium's log: lines of the console (CONSOLE) at error level or uncaught
/// exceptions.
std::vector<std::string> ConsoleErrors(const std::string& log) {
  std::vector<std::string> out;
  std::stringstream ss(log);
  std::string line;
  while (std::getline(ss, line))
    if (line.find("CONSOLE") != std::string::npos &&
        (line.find("ERROR") != std::string::npos || line.find("Uncaught") != std::string::npos ||
         line.find("rror") != std::string::npos))
      out.push_back(line);
  return out;
}

TEST_F(FairnessCliTest, FairnessJsonReportAndChromium) {
  auto r = RunCli("fairness --data " + dir_ +
                      "/r.h5 --models bt,lowrank,em-bt --k 3 "
                      "--epochs 40 --restarts 1 --protocol unseen --shots 0,2,5 "
                      "--unseen-fraction 0.3 --bootstrap 200 --out " +
                      dir_ + "/out --quiet",
                  dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(Exists(dir_ + "/out/fairness.json"));
  ASSERT_TRUE(Exists(dir_ + "/out/report.html"));
  ExpectValidAgainst("fairness.schema.json", dir_ + "/out/fairness.json");
  Json f = Json::Parse(ReadFile(dir_ + "/out/fairness.json"));
  const auto& ms = f.at("models").items();
  ASSERT_EQ(ms.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(ms[i].at("shots").size(), 3u);
    EXPECT_TRUE(ms[i].at("shots").items()[0].at("per_group").contains("segment"));
  }
  EXPECT_TRUE(ms[1].contains("latent_groups"));   // lowrank: w_u on the simplex
  EXPECT_FALSE(ms[0].contains("latent_groups"));  // bt: no latent
  EXPECT_TRUE(ms[2].contains("selection"));       // em-bt: MaxMin vs utilitarian
  EXPECT_TRUE(ms[2].at("selection").at("picks").at("egalitarian").contains("per_group"));
  EXPECT_EQ(f.at("provenance").at("dataset_sha256").str().size(), 64u);

  const std::string html = ReadFile(dir_ + "/out/report.html");
  if (FindGnuplot().empty()) {
    EXPECT_NE(html.find("id=\"no-plots\""), std::string::npos);
  } else {
    for (const char* id : {"plot-scatter", "plot-bars-segment", "plot-shots", "plot-hist"})
      EXPECT_NE(html.find(id), std::string::npos) << id;
  }
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org"))  // self-contained
      << "report.html refers to an outside resource";

  Rendered page = RenderInChromium(dir_ + "/out/report.html", dir_);
  if (!page.ran && page.log.empty())
    GTEST_SKIP() << "chromium not installed (Debian: apt-get install chromium); report not "
                    "rendered";
  ASSERT_TRUE(page.ran) << page.log.substr(0, 2000);
  EXPECT_TRUE(ConsoleErrors(page.log).empty()) << ConsoleErrors(page.log)[0];
  EXPECT_NE(page.dom.find("prefmix fairness report"), std::string::npos);
  std::smatch m;
  const std::string dom = page.dom;
  auto pos = dom.find("<pre id=\"probe\">");
  ASSERT_NE(pos, std::string::npos) << "the probe did not run";
  std::string probe = dom.substr(pos + 16, dom.find("</pre>", pos) - pos - 16);
  if (FindGnuplot().empty()) GTEST_SKIP() << "gnuplot not installed: no plots to inspect";
  std::stringstream ss(probe);
  std::string id;
  int w = 0, h = 0, shapes = 0, n = 0;
  while (ss >> id >> w >> h >> shapes) {
    EXPECT_GT(w, 100) << id;
    EXPECT_GT(h, 100) << id;
    EXPECT_GT(shapes, 5) << id << ": an empty plot";
    ++n;
  }
  EXPECT_GE(n, 4) << probe;
}

TEST_F(FairnessCliTest, ChromiumConsoleCheckCatchesAnError) {
  // The console check can fail: a page with a script error is caught.
  const std::string bad = dir_ + "/bad.html";
  std::ofstream(bad) << "<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();"
                        "</script></body></html>";
  Rendered page = RenderInChromium(bad, dir_);
  if (!page.ran && page.log.empty()) GTEST_SKIP() << "chromium not installed";
  EXPECT_FALSE(ConsoleErrors(page.log).empty()) << page.log.substr(0, 2000);
}

TEST_F(FairnessCliTest, ReportDegradesToTablesWithoutGnuplot) {
  auto r = RunCli("fairness --data " + dir_ +
                      "/r.h5 --models bt --epochs 30 --by segment "
                      "--bootstrap 50 --out " +
                      dir_ + "/out",
                  dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  // Same run, gnuplot hidden.
  const std::string cmd = "PREFMIX_GNUPLOT=none " PREFMIX_CLI " fairness --data " + dir_ +
                          "/r.h5 --models bt --epochs 30 --by segment --bootstrap 50 --out " +
                          dir_ + "/out3 2>" + dir_ + "/err3";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << ReadFile(dir_ + "/err3");
  const std::string html = ReadFile(dir_ + "/out3/report.html");
  EXPECT_NE(html.find("id=\"no-plots\""), std::string::npos);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<table>"), std::string::npos);
  EXPECT_NE(ReadFile(dir_ + "/err3").find("gnuplot not found"), std::string::npos);
  // The JSON does not depend on the plotting tool.
  Json a = Json::Parse(ReadFile(dir_ + "/out/fairness.json"));
  Json b = Json::Parse(ReadFile(dir_ + "/out3/fairness.json"));
  for (size_t i = 0; i < a.at("models").size(); ++i)
    for (const char* key : {"accuracy", "accuracy_ci", "per_group", "per_user"})
      EXPECT_EQ(a.at("models").items()[i].at(key).Dump(), b.at("models").items()[i].at(key).Dump())
          << key;
  // --from-json redraws the same report from the JSON alone.
  const std::string redraw = "PREFMIX_GNUPLOT=none " PREFMIX_CLI " fairness --from-json " + dir_ +
                             "/out3/fairness.json --out " + dir_ + "/out4 2>/dev/null";
  ASSERT_EQ(std::system(redraw.c_str()), 0);
  EXPECT_EQ(ReadFile(dir_ + "/out4/report.html"), html);
  // Only the requested grouping.
  EXPECT_EQ(a.at("groupings").size(), 1u);
}

TEST_F(FairnessCliTest, BadInputExitsOneWithoutOutput) {
  auto r = RunCli("fairness --data " + dir_ + "/r.h5 --models bt --by nosuch --out " + dir_ + "/o",
                  dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("segment"), std::string::npos) << r.err;  // lists the known ones
  EXPECT_FALSE(Exists(dir_ + "/o/fairness.json"));
  r = RunCli("fairness --data " + dir_ + "/r.h5 --models nosuch --out " + dir_ + "/o", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  r = RunCli("fairness --from-json " + dir_ + "/r.h5 --out " + dir_ + "/o", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("r.h5"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/o/report.html"));
  std::ofstream(dir_ + "/g.ini") << "models = bt\n[A]\ndata = " << dir_ << "/r.h5\nfoo = 1\n";
  r = RunCli("experiment --grid " + dir_ + "/g.ini --out " + dir_ + "/go", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("[A]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'foo'"), std::string::npos) << r.err;
  std::ofstream(dir_ + "/g2.ini") << "[A]\ndata = " << dir_ << "/r.h5\nrepeats = x\n";
  r = RunCli("experiment --grid " + dir_ + "/g2.ini --models bt --out " + dir_ + "/go", dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("'x'"), std::string::npos) << r.err;
  EXPECT_FALSE(Exists(dir_ + "/go/table.json"));
}

TEST_F(FairnessCliTest, GridTableWithSignificance) {
  data::GenerateOptions o = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  o.n_users = 50;
  o.n_items = 200;
  o.seed = 4;
  WriteDataset(data::Generate(o), dir_ + "/g.h5");
  std::ofstream(dir_ + "/grid.ini") << "# two blocks\nmodels = bt,lowrank\nrepeats = 3\n"
                                    << "[rank-sub]\ndata = " << dir_ << "/r.h5\n"
                                    << "protocol = subsample\nusers = 40\ntrain-pairs = 10\n"
                                    << "test-pairs = 5\n"
                                    << "[groups-seen]\ndata = " << dir_ << "/g.h5\n"
                                    << "protocol = seen\nrepeats = 2\n";
  auto r = RunCli(
      "experiment --grid " + dir_ + "/grid.ini --out " + dir_ + "/grid --k 3 --epochs 40 --quiet",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidAgainst("grid.schema.json", dir_ + "/grid/table.json");
  Json t = Json::Parse(ReadFile(dir_ + "/grid/table.json"));
  const auto& blocks = t.at("blocks").items();
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].at("name").str(), "rank-sub");
  const auto& rows0 = blocks[0].at("rows").items();
  ASSERT_EQ(rows0.size(), 3u);  // bt, lowrank, closure (rankings)
  EXPECT_EQ(rows0[2].at("model").str(), "closure");
  EXPECT_EQ(rows0[0].at("repeats").size(), 3u);
  EXPECT_TRUE(rows0[0].contains("tau"));
  EXPECT_EQ(blocks[1].at("rows").size(), 2u);  // no rankings: no closure row
  EXPECT_EQ(blocks[1].at("rows").items()[0].at("repeats").size(), 2u);
  // Exactly one best per block; the others carry the Wilcoxon test against it, and the mean
  // difference is recomputed from the repeats.
  for (const auto& b : blocks) {
    int best = 0;
    const Json* best_row = nullptr;
    for (const auto& row : b.at("rows").items())
      if (row.contains("best")) {
        ++best;
        best_row = &row;
      }
    ASSERT_EQ(best, 1);
    for (const auto& row : b.at("rows").items()) {
      if (row.contains("best")) continue;
      std::vector<double> a, c;
      for (const auto& e : best_row->at("repeats").items()) a.push_back(e.at("accuracy").number());
      for (const auto& e : row.at("repeats").items()) c.push_back(e.at("accuracy").number());
      PairedTest pt = WilcoxonSignedRank(a, c);
      EXPECT_DOUBLE_EQ(row.at("vs_best").at("p_value").number(), pt.p_value);
    }
  }
  const std::string md = ReadFile(dir_ + "/grid/table.md");
  EXPECT_NE(md.find("rank-sub: acc / log loss / τ"), std::string::npos) << md;
  EXPECT_NE(md.find("| closure |"), std::string::npos) << md;
  EXPECT_EQ(testing::Lines(ReadFile(dir_ + "/grid/table.csv")), 1 + 3 + 2);
}

TEST_F(FairnessCliTest, GridSplitByFirstRepeatMergesIntoTheWholeTable) {
  // The whole grid in one run ...
  const std::string block = "[rank-sub]\ndata = " + dir_ +
                            "/r.h5\nprotocol = subsample\nusers = 40\ntrain-pairs = 10\n"
                            "test-pairs = 5\n";
  std::ofstream(dir_ + "/all.ini") << "models = bt,lowrank\nrepeats = 3\n" << block;
  const std::string opts = " --k 3 --epochs 40 --quiet";
  auto r = RunCli("experiment --grid " + dir_ + "/all.ini --out " + dir_ + "/all" + opts, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  // ... and split: bt's repeat 0, bt's repeats 1-2, lowrank's repeats 0-2 in three runs.
  std::ofstream(dir_ + "/p1.ini") << "models = bt\nrepeats = 1\n" << block;
  std::ofstream(dir_ + "/p2.ini") << "models = bt\nrepeats = 2\nfirst-repeat = 1\n" << block;
  std::ofstream(dir_ + "/p3.ini") << "models = lowrank\nrepeats = 3\n" << block;
  for (const char* p : {"p1", "p2", "p3"}) {
    r = RunCli(Cat("experiment --grid ", dir_, "/", p, ".ini --out ", dir_, "/", p, opts), dir_);
    ASSERT_EQ(r.rc, 0) << p << ": " << r.err;
  }
  Json p2 = Json::Parse(ReadFile(dir_ + "/p2/table.json"));
  EXPECT_EQ(p2.at("blocks").items()[0].at("protocol").at("first_repeat").number(), 1);
  EXPECT_EQ(p2.at("blocks")
                .items()[0]
                .at("rows")
                .items()[0]
                .at("repeats")
                .items()[0]
                .at("repeat")
                .number(),
            1);
  const std::string parts =
      dir_ + "/p3/table.json," + dir_ + "/p2/table.json," + dir_ + "/p1/table.json";
  r = RunCli("experiment --merge " + parts + " --out " + dir_ + "/merged", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidAgainst("grid.schema.json", dir_ + "/merged/table.json");
  Json whole = Json::Parse(ReadFile(dir_ + "/all/table.json"));
  Json merged = Json::Parse(ReadFile(dir_ + "/merged/table.json"));
  EXPECT_EQ(merged.at("merged_from").size(), 3u);
  // Merging a merged table lists the runs behind it too.
  r = RunCli("experiment --merge " + dir_ + "/merged/table.json --out " + dir_ + "/merged2", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ExpectValidAgainst("grid.schema.json", dir_ + "/merged2/table.json");
  const Json twice = Json::Parse(ReadFile(dir_ + "/merged2/table.json"));
  ASSERT_EQ(twice.at("merged_from").size(), 4u);
  EXPECT_EQ(twice.at("merged_from").items()[3].at("via").str(), dir_ + "/merged/table.json");
  EXPECT_EQ(twice.at("blocks").Dump(), merged.at("blocks").Dump());
  const Json& wb = whole.at("blocks").items()[0];
  const Json& mb = merged.at("blocks").items()[0];
  EXPECT_EQ(mb.at("best").str(), wb.at("best").str());
  EXPECT_EQ(mb.at("protocol").at("repeats").number(), 3);
  EXPECT_FALSE(mb.at("protocol").contains("first_repeat"));
  ASSERT_EQ(mb.at("rows").size(), 3u);  // lowrank (first seen), bt, closure last
  EXPECT_EQ(mb.at("rows").items()[2].at("model").str(), "closure");
  for (const auto& wr : wb.at("rows").items()) {
    const Json* mr = nullptr;
    for (const auto& x : mb.at("rows").items())
      if (x.at("model").str() == wr.at("model").str()) mr = &x;
    ASSERT_NE(mr, nullptr) << wr.at("model").str();
    // Figures are identical per repeat; summaries and tests are recomputed from them.
    for (const char* key : {"accuracy", "log_loss", "tau", "pooled_tau"}) {
      ASSERT_EQ(mr->contains(key), wr.contains(key)) << wr.at("model").str() << key;
      if (wr.contains(key))
        EXPECT_DOUBLE_EQ(mr->at(key).number(), wr.at(key).number()) << wr.at("model").str() << key;
    }
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(mr->at("repeats").items()[i].at("repeat").number(), i);
      EXPECT_EQ(mr->at("repeats").items()[i].at("accuracy").number(),
                wr.at("repeats").items()[i].at("accuracy").number());
    }
    EXPECT_EQ(mr->contains("vs_best"), wr.contains("vs_best"));
    if (wr.contains("vs_best"))
      EXPECT_DOUBLE_EQ(mr->at("vs_best").at("p_value").number(),
                       wr.at("vs_best").at("p_value").number());
  }
  // A refused merge: exit 1, the message, and no table written.
  auto refused = [&](const std::string& inputs, const std::string& out, const std::string& msg) {
    auto rr = RunCli("experiment --merge " + inputs + " --out " + dir_ + "/" + out, dir_);
    EXPECT_EQ(rr.rc, 1) << out;
    EXPECT_NE(rr.err.find(msg), std::string::npos) << rr.err;
    EXPECT_FALSE(Exists(dir_ + "/" + out + "/table.json")) << out;
  };
  // A repeat missing from one row.
  refused(dir_ + "/p3/table.json," + dir_ + "/p2/table.json", "bad1", "model bt lacks repeat 0");
  // The same repeat with other figures: refused, naming the file and the repeat.
  std::string text = ReadFile(dir_ + "/p1/table.json");
  std::string acc = Cat("\"accuracy\": ", whole.at("blocks")
                                              .items()[0]
                                              .at("rows")
                                              .items()[0]
                                              .at("repeats")
                                              .items()[0]
                                              .at("accuracy")
                                              .Dump());
  while (!acc.empty() && std::isspace(static_cast<unsigned char>(acc.back()))) acc.pop_back();
  // bt's row: its mean first, then its one repeat's figure, which is the one to change.
  const size_t at = text.find(acc, text.find(acc) + 1);
  ASSERT_NE(at, std::string::npos) << acc;
  text.replace(at, acc.size(), "\"accuracy\": 0.123");
  std::ofstream(dir_ + "/p1x.json") << text;
  refused(dir_ + "/all/table.json," + dir_ + "/p1x.json", "bad2",
          "p1x.json: block [rank-sub] model bt: repeat 0 has accuracy 0.123");
  // Another protocol under the same block name: refused.
  std::ofstream(dir_ + "/p4.ini") << "models = bt\nrepeats = 1\n"
                                  << std::string(block).replace(block.find("users = 40"), 10,
                                                                "users = 30");
  r = RunCli("experiment --grid " + dir_ + "/p4.ini --out " + dir_ + "/p4" + opts, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  refused(dir_ + "/all/table.json," + dir_ + "/p4/table.json", "bad3", "field 'protocol'");
  // Not a grid table.
  refused(dir_ + "/r.h5", "bad4", "r.h5");
}

}  // namespace
}  // namespace prefmix
