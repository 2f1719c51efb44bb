// `--model auto` (core/eval/auto_model.h): the choice rule by hand, the chosen model saved as its
// own family, the budget, and bad candidate lists.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/error.h"
#include "core/eval/auto_model.h"
#include "core/eval/protocol.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "core/threads.h"
#include "data/generate.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

AutoCandidate Cand(const std::string& name, std::vector<double> loss, bool personalized,
                   bool degenerate = false) {
  AutoCandidate c;
  c.name = name;
  c.loss = std::move(loss);
  double s = 0;
  for (double x : c.loss) s += x;
  c.mean_loss = s / c.loss.size();
  c.personalized = personalized;
  c.degenerate = degenerate;
  return c;
}

TEST(AutoChoiceTest, LowestLossWinsAndStandardErrorsArePaired) {
  std::vector<AutoCandidate> c = {Cand("bt", {0.7, 0.5, 0.6, 0.6}, false),
                                  Cand("em-bt", {0.4, 0.2, 0.3, 0.3}, true)};
  std::string rule;
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 1);
  EXPECT_EQ(rule, "lowest validation log loss");
  // bt - em-bt is 0.3 on every pair: no spread, standard error 0.
  EXPECT_NEAR(c[0].se, 0.0, 1e-12);
  EXPECT_EQ(c[1].se, 0.0);
  // Differences 0.1, -0.1, 0.1, -0.1 around 0: sd = sqrt(0.04/3), se = sd / 2.
  c = {Cand("a", {0.5, 0.5, 0.5, 0.5}, true), Cand("b", {0.6, 0.4, 0.6, 0.4}, true)};
  ChooseAutoCandidate(&c, &rule);
  EXPECT_NEAR(c[1].se, std::sqrt(0.04 / 3) / 2, 1e-12);
}

TEST(AutoChoiceTest, DegenerateCandidatesLoseUnlessEveryOneIs) {
  std::vector<AutoCandidate> c = {Cand("bt", {0.6, 0.6}, false),
                                  Cand("em-bt", {0.3, 0.3}, true, /*degenerate=*/true),
                                  Cand("micro", {0.5, 0.5}, true)};
  std::string rule;
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 2);
  c = {Cand("em-bt", {0.3, 0.3}, true, true), Cand("micro", {0.5, 0.5}, true, true)};
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 0);
  c = {Cand("bt", {0.3}, false)};
  c[0].status = "stopped (budget)";
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), -1);
}

TEST(AutoChoiceTest, APersonalizedModelWithinOneStandardErrorOfPooledWins) {
  // em-bt is worse by 0.02 on average with differences +-0.2 (se 0.1): within noise.
  std::vector<AutoCandidate> c = {Cand("bt", {0.5, 0.5, 0.5, 0.5}, false),
                                  Cand("em-bt", {0.72, 0.32, 0.72, 0.32}, true)};
  std::string rule;
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 1);
  EXPECT_NE(rule.find("within one standard error of the lowest (bt)"), std::string::npos) << rule;
  // Worse by 0.3 on every pair: not within noise.
  c = {Cand("bt", {0.5, 0.5, 0.5, 0.5}, false), Cand("em-bt", {0.8, 0.8, 0.8, 0.8}, true)};
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 0);
  // Within noise but degenerate: pooled stays.
  c = {Cand("bt", {0.5, 0.5, 0.5, 0.5}, false),
       Cand("em-bt", {0.72, 0.32, 0.72, 0.32}, true, true)};
  EXPECT_EQ(ChooseAutoCandidate(&c, &rule), 0);
}

TEST(AutoChoiceTest, CandidateListsAreChecked) {
  EXPECT_EQ(ParseAutoFamilies("bt, em-bt,bt-mlp"),
            (std::vector<std::string>{"bt", "em-bt", "bt-mlp"}));
  for (const char* bad : {"bt,bt", "bt,,micro", "bt,nope", "auto", ""}) {
    const std::string msg = testing::ErrorOf([&] { ParseAutoFamilies(bad); });
    EXPECT_NE(msg.find("--auto-families"), std::string::npos) << "'" << bad << "': " << msg;
  }
}

Dataset Sparse600() {
  data::GenerateOptions g = data::GenerateOptions::Preset(data::GenerateKind::kGroups, "sparse");
  g.n_users = 600;
  g.seed = 3;
  return data::Generate(g);
}

/// An unfitted auto model over `families` (with `budget` seconds when given) and the seen split
/// of `ds` it is to be fitted on.
struct AutoSetup {
  Split split;
  std::unique_ptr<Model> model;
};
AutoSetup MakeAuto(const Dataset& ds, const std::string& families, double budget = -1) {
  ModelOptions mo;
  mo.family = "auto";
  mo.Set("auto_families", families);
  if (budget >= 0) mo.Set("auto_budget", budget);
  return {MakeSeenSplit(ds, ds.AllPairs(), ProtocolOptions{}), MakeModel(mo)};
}

TEST(AutoModelTest, ChoosesOnValidationAndSavesTheChosenFamily) {
  const Dataset ds = Sparse600();
  auto [s, model] = MakeAuto(ds, "bt,em-bt,micro");
  EXPECT_EQ(model->Family(), "auto");
  const FitReport rep = model->Fit(ds, s.train, s.valid);
  const Json& a = rep.details.at("auto");
  std::printf("%s\n", a.Dump(1).c_str());
  ASSERT_EQ(a.at("candidates").size(), 3u);
  for (const Json& c : a.at("candidates").items()) {
    EXPECT_EQ(c.at("status").str(), "fitted");
    EXPECT_GT(c.at("valid_log_loss").number(), 0.0);
  }
  // Planted groups, 10 pairs each: a mixture predicts the held-out pairs better than bt.
  EXPECT_EQ(a.at("chosen").str(), "em-bt");
  EXPECT_EQ(model->Family(), "em-bt");
  const Json& g = a.at("personalization_gain");
  EXPECT_EQ(g.at("pooled").str(), "bt");
  EXPECT_GT(g.at("valid_log_loss_gain").number(), 2 * g.at("valid_log_loss_gain_se").number());
  EXPECT_TRUE(rep.details.at("chosen_fit").contains("collapse"));  // em-bt's own report

  const std::string path = ::testing::TempDir() + "/auto.pfmx";
  SaveModel(*model, path);
  auto loaded = LoadModel(path);
  EXPECT_EQ(loaded->Family(), "em-bt");
  EXPECT_EQ(loaded->options().Text("em"), "soft");  // the candidate's own defaults
  EXPECT_EQ(loaded->PredictProb(ds, s.test, loaded->TrainLatents()),
            model->PredictProb(ds, s.test, model->TrainLatents()));
  EXPECT_EQ(model->Fitted().Family(), "em-bt");
}

TEST(AutoModelTest, TheBudgetSkipsCandidatesButTheFirstAlwaysFinishes) {
  const Dataset ds = Sparse600();
  auto [s, model] = MakeAuto(ds, "bt,em-bt,micro", 1e-6);
  const Json a = model->Fit(ds, s.train, s.valid).details.at("auto");
  const auto& c = a.at("candidates").items();
  EXPECT_EQ(c[0].at("status").str(), "fitted");
  for (size_t i = 1; i < c.size(); ++i)
    EXPECT_EQ(c[i].at("status").str(), "skipped (budget)") << c[i].at("candidate").str();
  EXPECT_EQ(a.at("chosen").str(), "bt");
  EXPECT_TRUE(a.at("personalization_gain").is_null());  // bt is the pooled model itself
  EXPECT_EQ(model->Family(), "bt");
}

TEST(AutoModelTest, ACandidateStillRunningWhenTheBudgetEndsIsStopped) {
  const Dataset ds = Sparse600();
  auto [s, model] = MakeAuto(ds, "bt,em-bt", 1.0);  // bt: a fraction of a second; em-bt: seconds
  Json a;
  ASSERT_NO_THROW(a = model->Fit(ds, s.train, s.valid).details.at("auto"));
  const auto& c = a.at("candidates").items();
  EXPECT_EQ(c[0].at("status").str(), "fitted");
  // Stopped at its next epoch (or, on a slow machine, never started).
  EXPECT_TRUE(c[1].at("status").str() == "stopped (budget)" ||
              c[1].at("status").str() == "skipped (budget)")
      << c[1].at("status").str();
  EXPECT_LT(c[1].at("seconds").number(), 1.5);
  EXPECT_EQ(a.at("chosen").str(), "bt");
  EXPECT_FALSE(DeadlinePassed());  // no deadline left behind
}

TEST(AutoModelTest, FewValidationPairsChooseByCrossValidation) {
  // The rounds: every pair held out in exactly one, each round's three parts the whole set,
  // the selection part the next round's held-out part, and every user with at least k pairs in
  // every round's fitting and held-out parts.
  const Dataset ds = Sparse600();
  auto [s, model] = MakeAuto(ds, "bt,em-bt");
  ASSERT_LT(static_cast<int64_t>(s.valid.size()), kAutoCvBelowPairs);
  const auto folds = MakeAutoFolds(s.train, s.valid, ds.n_users(), 5, 7);
  ASSERT_EQ(folds.size(), 5u);
  const size_t all = s.train.size() + s.valid.size();
  size_t held = 0;
  const auto tr0 = s.train.ByUser(ds.n_users()), va0 = s.valid.ByUser(ds.n_users());
  for (size_t f = 0; f < folds.size(); ++f) {
    const AutoFold& r = folds[f];
    EXPECT_EQ(r.fit.size() + r.select.size() + r.held.size(), all);
    EXPECT_EQ(r.select.size(), folds[(f + 1) % 5].held.size());
    EXPECT_EQ(r.select.user, folds[(f + 1) % 5].held.user);
    EXPECT_EQ(r.select.first, folds[(f + 1) % 5].held.first);
    held += r.held.size();
    const auto in_fit = r.fit.ByUser(ds.n_users()), in_held = r.held.ByUser(ds.n_users());
    for (int64_t u = 0; u < ds.n_users(); ++u)
      if (tr0[u].size() + va0[u].size() >= 5) {
        EXPECT_FALSE(in_fit[u].empty()) << "user " << u;
        EXPECT_FALSE(in_held[u].empty()) << "user " << u;
      }
  }
  EXPECT_EQ(held, all);
  // The choice: by 5-fold cross-validation over every pair; with --auto-folds 0 on the
  // validation pairs as before.
  const Json a = model->Fit(ds, s.train, s.valid).details.at("auto");
  EXPECT_EQ(a.at("selection").str().rfind("5-fold cross-validation over " + std::to_string(all), 0),
            0u)
      << a.at("selection").str();
  EXPECT_EQ(a.at("chosen").str(), "em-bt");
  ModelOptions mo;
  mo.family = "auto";
  mo.Set("auto_families", "bt,em-bt");
  mo.Set("auto_folds", 0);
  auto single = MakeModel(mo);
  EXPECT_EQ(single->Fit(ds, s.train, s.valid).details.at("auto").at("selection").str(),
            "validation pairs");
}

TEST(AutoModelTest, NoValidationPairsIsAClearError) {
  const Dataset ds = Sparse600();
  ModelOptions mo;
  mo.family = "auto";
  auto model = MakeModel(mo);
  const std::string msg = testing::ErrorOf([&] { model->Fit(ds, ds.AllPairs(), PairSet()); });
  EXPECT_NE(msg.find("--model auto chooses on validation pairs"), std::string::npos) << msg;
  // An unfitted auto model has nothing to save or score.
  EXPECT_THROW(SaveModel(*model, ::testing::TempDir() + "/never.pfmx"), Error);
}

}  // namespace
}  // namespace prefmix
