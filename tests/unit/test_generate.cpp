// Tests of the synthetic generators (data/generate.h) and `prefmix generate`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io/dataset.h"
#include "core/io/h5io.h"
#include "data/generate.h"
#include "tests/test_util.h"

namespace prefmix::data {
namespace {

namespace fs = std::filesystem;

constexpr GenerateKind kAllKinds[] = {GenerateKind::kGroups, GenerateKind::kLowrank,
                                      GenerateKind::kIdealPoint};

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// A small instance of a kind, for tests that need many runs.
GenerateOptions Small(GenerateKind kind, uint64_t seed = 7) {
  GenerateOptions o = GenerateOptions::Preset(kind);
  o.seed = seed;
  o.n_users = 40;
  o.pairs_per_user = 10;
  o.n_items = 60;
  o.dim = 8;
  return o;
}

// A fresh directory under gtest's temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::path(::testing::TempDir()) /
            ("prefmix_gen_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void ExpectSameDataset(const Dataset& a, const Dataset& b) {
  EXPECT_EQ(a.embedding_model, b.embedding_model);
  EXPECT_EQ(a.description, b.description);
  EXPECT_TRUE(a.items == b.items);
  EXPECT_EQ(a.item_ids, b.item_ids);
  EXPECT_EQ(a.user_ids, b.user_ids);
  EXPECT_EQ(a.cmp_user, b.cmp_user);
  EXPECT_EQ(a.cmp_chosen, b.cmp_chosen);
  EXPECT_EQ(a.cmp_rejected, b.cmp_rejected);
  EXPECT_EQ(a.truth_pair_prob, b.truth_pair_prob);
  EXPECT_EQ(a.truth_user_group, b.truth_user_group);
  EXPECT_TRUE(a.truth_user_weights == b.truth_user_weights);
  EXPECT_TRUE(a.truth_group_item_reward == b.truth_group_item_reward);
  // Attributes compare by name: a reader may list them in another order.
  ASSERT_EQ(a.attributes.size(), b.attributes.size());
  for (const Attribute& x : a.attributes) {
    SCOPED_TRACE(x.name);
    const int i = b.FindAttribute(x.name);
    ASSERT_GE(i, 0);
    EXPECT_EQ(x.codes, b.attributes[i].codes);
    EXPECT_EQ(x.labels, b.attributes[i].labels);
  }
}

// theta_k recovered by least squares from R[k, :] = theta_k' e_i (columns of the result).
Eigen::MatrixXd RecoverDirections(const Dataset& ds) {
  const Eigen::MatrixXd e = ds.items.cast<double>();
  const Eigen::MatrixXd r = ds.truth_group_item_reward.cast<double>().transpose();  // n x K
  return e.householderQr().solve(r);                                                // D x K
}

// ----------------------------------------------------------------------------------------------

TEST(GenerateDeterminism, SameSeedIdenticalDifferentSeedDifferent) {
  for (GenerateKind kind : kAllKinds) {
    SCOPED_TRACE(KindName(kind));
    const Dataset a = Generate(Small(kind, 11));
    const Dataset b = Generate(Small(kind, 11));
    ExpectSameDataset(a, b);
    const Dataset c = Generate(Small(kind, 12));
    EXPECT_FALSE(a.items == c.items);
    EXPECT_NE(a.cmp_chosen, c.cmp_chosen);
    EXPECT_NE(a.truth_pair_prob, c.truth_pair_prob);
    EXPECT_FALSE(a.truth_group_item_reward == c.truth_group_item_reward);
  }
}

TEST(GeneratePreset, DefaultShapes) {
  struct Want {
    GenerateKind kind;
    int64_t pairs_per_user, k;
  };
  for (const Want& w : {Want{GenerateKind::kGroups, 40, 3}, Want{GenerateKind::kLowrank, 60, 4},
                        Want{GenerateKind::kIdealPoint, 60, 3}}) {
    SCOPED_TRACE(KindName(w.kind));
    const Dataset ds = Generate(GenerateOptions::Preset(w.kind));
    EXPECT_NO_THROW(ds.Validate());
    EXPECT_EQ(ds.n_users(), 300);
    EXPECT_EQ(ds.n_items(), 1000);
    EXPECT_EQ(ds.dim(), 24);
    EXPECT_EQ(ds.n_comparisons(), 300 * w.pairs_per_user);
    EXPECT_EQ(ds.truth_pair_prob.size(), static_cast<size_t>(300 * w.pairs_per_user));
    EXPECT_EQ(ds.truth_user_group.size(), 300u);
    EXPECT_EQ(ds.truth_user_weights.rows(), 300);
    EXPECT_EQ(ds.truth_user_weights.cols(), w.k);
    EXPECT_EQ(ds.truth_group_item_reward.rows(), w.k);
    EXPECT_EQ(ds.truth_group_item_reward.cols(), 1000);
    EXPECT_EQ(ds.user_ids.front(), "u0000");
    EXPECT_EQ(ds.user_ids.back(), "u0299");
    EXPECT_EQ(ds.embedding_model, std::string("synthetic-") + KindName(w.kind));
    EXPECT_NE(ds.description.find(KindName(w.kind)), std::string::npos) << ds.description;
    EXPECT_NE(ds.description.find("scale="), std::string::npos) << ds.description;
    // Every user has exactly pairs_per_user pairs; pairs are of two distinct items.
    std::vector<int64_t> per_user(300, 0);
    for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
      ++per_user[ds.cmp_user[j]];
      ASSERT_NE(ds.cmp_chosen[j], ds.cmp_rejected[j]);
    }
    for (int64_t c : per_user) EXPECT_EQ(c, w.pairs_per_user);
    // Weights are on the simplex and user_group is their argmax.
    for (int64_t u = 0; u < 300; ++u) {
      EXPECT_NEAR(ds.truth_user_weights.row(u).sum(), 1.0, 1e-5);
      EXPECT_GE(ds.truth_user_weights.row(u).minCoeff(), 0.0f);
      Eigen::Index best = 0;
      ds.truth_user_weights.row(u).maxCoeff(&best);
      EXPECT_EQ(ds.truth_user_group[u], best);
    }
    ASSERT_GE(ds.FindAttribute("segment"), 0);
    ASSERT_GE(ds.FindAttribute("cohort"), 0);
    EXPECT_EQ(ds.attributes[ds.FindAttribute("segment")].labels.size(), static_cast<size_t>(w.k));
  }
}

TEST(GeneratePreset, SparseIsManyPeopleWithTenPairsEach) {
  for (GenerateKind kind : {GenerateKind::kGroups, GenerateKind::kLowrank}) {
    SCOPED_TRACE(KindName(kind));
    GenerateOptions o = GenerateOptions::Preset(kind, "sparse");
    GenerateOptions standard = GenerateOptions::Preset(kind, "standard");
    EXPECT_EQ(o.n_users, 5000);
    EXPECT_EQ(o.pairs_per_user, 10);
    EXPECT_EQ(standard.n_users, GenerateOptions::Preset(kind).n_users);
    EXPECT_EQ(o.k, standard.k);
    EXPECT_EQ(o.scale, standard.scale);
  }
  const Dataset ds = Generate(GenerateOptions::Preset(GenerateKind::kGroups, "sparse"));
  EXPECT_EQ(ds.n_users(), 5000);
  EXPECT_EQ(ds.n_comparisons(), 50000);
  // Whole numbers print as integers in the description.
  EXPECT_NE(ds.description.find("group_sizes=70,20,10"), std::string::npos) << ds.description;
  const std::string msg =
      testing::ErrorOf([] { GenerateOptions::Preset(GenerateKind::kGroups, "dense"); });
  EXPECT_NE(msg.find("--preset: 'dense'"), std::string::npos) << msg;
}

TEST(GenerateGroups, DefaultSizesAre210_60_30) {
  const Dataset ds = Generate(GenerateOptions::Preset(GenerateKind::kGroups));
  std::vector<int> count(3, 0);
  for (int32_t g : ds.truth_user_group) ++count.at(g);
  EXPECT_EQ(count, (std::vector<int>{210, 60, 30}));
  // Shuffled: the first 210 users are not all group 0.
  int first_block = 0;
  for (int u = 0; u < 210; ++u) first_block += ds.truth_user_group[u] == 0;
  EXPECT_LT(first_block, 200);
}

TEST(GenerateGroups, SizesRoundToUserCount) {
  GenerateOptions o = Small(GenerateKind::kGroups);
  o.n_users = 7;  // 4.9 / 1.4 / 0.7 -> largest remainders: 5 / 1 / 1
  const Dataset ds = Generate(o);
  std::vector<int> count(3, 0);
  for (int32_t g : ds.truth_user_group) ++count.at(g);
  EXPECT_EQ(count, (std::vector<int>{5, 1, 1}));
  o.k = 4;
  o.group_sizes.clear();  // equal sizes: 7 = 2 + 2 + 2 + 1
  const Dataset eq = Generate(o);
  std::vector<int> c4(4, 0);
  for (int32_t g : eq.truth_user_group) ++c4.at(g);
  EXPECT_EQ(c4, (std::vector<int>{2, 2, 2, 1}));
}

TEST(GenerateGroups, CosineEqualsGroupSimilarity) {
  struct Case {
    int64_t k;
    double s;
  };
  for (const Case& c : {Case{3, 0.3}, Case{3, 0.0}, Case{3, 0.8}, Case{3, -0.4}, Case{3, -0.5},
                        Case{5, -0.25}, Case{2, -1.0}, Case{4, 0.95}}) {
    SCOPED_TRACE(::testing::Message() << "k=" << c.k << " s=" << c.s);
    GenerateOptions o = GenerateOptions::Preset(GenerateKind::kGroups);
    o.k = c.k;
    o.group_sizes.clear();
    o.group_similarity = c.s;
    o.n_users = 20;
    const Dataset ds = Generate(o);
    const Eigen::MatrixXd theta = RecoverDirections(ds);
    for (int64_t a = 0; a < c.k; ++a) {
      EXPECT_NEAR(theta.col(a).norm(), o.scale, 1e-4 * o.scale);
      for (int64_t b = a + 1; b < c.k; ++b) {
        const double cos =
            theta.col(a).dot(theta.col(b)) / (theta.col(a).norm() * theta.col(b).norm());
        EXPECT_NEAR(cos, c.s, 1e-4) << "groups " << a << ", " << b;
      }
    }
  }
}

TEST(GenerateLowrank, DirectionsOrthogonalWithNormScale) {
  const GenerateOptions o = GenerateOptions::Preset(GenerateKind::kLowrank);
  const Eigen::MatrixXd theta = RecoverDirections(Generate(o));
  const Eigen::MatrixXd gram = theta.transpose() * theta / (o.scale * o.scale);
  EXPECT_TRUE(gram.isApprox(Eigen::MatrixXd::Identity(o.k, o.k), 1e-4)) << gram;
}

TEST(GenerateGroups, PairProbMatchesGroupReward) {
  const Dataset ds = Generate(GenerateOptions::Preset(GenerateKind::kGroups));
  const auto& r = ds.truth_group_item_reward;
  double worst = 0;
  for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
    const int32_t g = ds.truth_user_group[ds.cmp_user[j]];
    const double p = Sigmoid(double(r(g, ds.cmp_chosen[j])) - r(g, ds.cmp_rejected[j]));
    worst = std::max(worst, std::fabs(p - ds.truth_pair_prob[j]));
  }
  EXPECT_LT(worst, 1e-5);
}

TEST(GenerateLowrank, PairProbMatchesWeightedReward) {
  const Dataset ds = Generate(GenerateOptions::Preset(GenerateKind::kLowrank));
  const Eigen::MatrixXd r = ds.truth_group_item_reward.cast<double>();
  double worst = 0;
  for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
    const Eigen::VectorXd w = ds.truth_user_weights.row(ds.cmp_user[j]).cast<double>().transpose();
    const double gap = w.dot(r.col(ds.cmp_chosen[j]) - r.col(ds.cmp_rejected[j]));
    worst = std::max(worst, std::fabs(Sigmoid(gap) - ds.truth_pair_prob[j]));
  }
  EXPECT_LT(worst, 1e-5);
}

// With a tiny Dirichlet alpha almost every user sits on one prototype (weight 1 - 1e-6 or more),
// so its reward is that prototype's row of group_item_reward: checks the ideal-point truth end
// to end (the ideal point moves by at most 1e-6 x the prototype spread, far below the tolerance).
TEST(GenerateIdealPoint, OneHotUsersFollowPrototypeReward) {
  GenerateOptions o = GenerateOptions::Preset(GenerateKind::kIdealPoint);
  o.alpha = 0.001;
  o.n_users = 60;
  const Dataset ds = Generate(o);
  const auto& r = ds.truth_group_item_reward;
  double worst = 0;
  std::vector<bool> checked(ds.n_users(), false);
  for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
    const int64_t u = ds.cmp_user[j];
    const int32_t g = ds.truth_user_group[u];
    if (ds.truth_user_weights(u, g) < 1 - 1e-6) continue;
    checked[u] = true;
    const double p = Sigmoid(double(r(g, ds.cmp_chosen[j])) - r(g, ds.cmp_rejected[j]));
    worst = std::max(worst, std::fabs(p - ds.truth_pair_prob[j]));
  }
  EXPECT_GE(std::count(checked.begin(), checked.end(), true), 48);
  EXPECT_LT(worst, 1e-5);
  // The reward of an ideal-point user is a negative distance, maximal (0 at best) near p_k.
  EXPECT_LE(r.maxCoeff(), 0.0f);
}

TEST(GeneratePreset, OracleAccuracyInRange) {
  for (GenerateKind kind : kAllKinds) {
    for (uint64_t seed : {1, 2, 3}) {
      GenerateOptions o = GenerateOptions::Preset(kind);
      o.seed = seed;
      const double acc = OracleAccuracy(Generate(o).truth_pair_prob);
      EXPECT_GE(acc, 0.8) << KindName(kind) << " seed " << seed;
      EXPECT_LE(acc, 0.93) << KindName(kind) << " seed " << seed;
    }
  }
}

TEST(GenerateOracleAccuracy, CountsTiesAsHalf) {
  EXPECT_DOUBLE_EQ(OracleAccuracy({0.7f, 0.3f, 0.5f, 0.9f}), 2.5 / 4);
  EXPECT_TRUE(std::isnan(OracleAccuracy({})));
}

TEST(GenerateAttributes, SegmentFollowsGroupCohortDoesNot) {
  for (GenerateKind kind : kAllKinds) {
    SCOPED_TRACE(KindName(kind));
    const Dataset ds = Generate(GenerateOptions::Preset(kind));
    const Attribute& seg = ds.attributes[ds.FindAttribute("segment")];
    const Attribute& coh = ds.attributes[ds.FindAttribute("cohort")];
    EXPECT_EQ(seg.labels.front(), "s0");
    EXPECT_EQ(coh.labels, (std::vector<std::string>{"c0", "c1", "c2"}));
    int agree = 0, cohort_agree = 0;
    for (int64_t u = 0; u < ds.n_users(); ++u) {
      agree += seg.codes[u] == ds.truth_user_group[u];
      cohort_agree += coh.codes[u] == ds.truth_user_group[u] % 3;
    }
    const double frac = double(agree) / ds.n_users();
    EXPECT_GE(frac, 0.85);
    EXPECT_LE(frac, 0.95);
    // Independent of the group: agreement near 1/3 (binomial sd 0.027 at 300 users).
    EXPECT_NEAR(double(cohort_agree) / ds.n_users(), 1.0 / 3, 0.1);
  }
  GenerateOptions o = Small(GenerateKind::kGroups);
  o.attribute_correlation = 1.0;
  Dataset ds = Generate(o);
  EXPECT_EQ(ds.attributes[ds.FindAttribute("segment")].codes, ds.truth_user_group);
  o.attribute_correlation = 0.0;
  ds = Generate(o);
  const auto& codes = ds.attributes[ds.FindAttribute("segment")].codes;
  for (int64_t u = 0; u < ds.n_users(); ++u) {
    EXPECT_NE(codes[u], ds.truth_user_group[u]);
    EXPECT_GE(codes[u], 0);
    EXPECT_LT(codes[u], o.k);
  }
}

// Label calibration. Each pair is oriented by item index (first = the lower index), which does
// not depend on the outcome, so y = 1[first won] is a coin with P(y = 1) = q, q derived from
// pair_prob. Two statistics, each about N(0, 1) or chi^2 under the truth:
//  - binned calibration (Hosmer-Lemeshow): 10 bins of q, sum (O - E)^2 / Var over bins;
//  - log-likelihood of the labels against its expectation (the negative entropy), as a z-score.
// Labels that ignore the probabilities (argmax labels) or follow another temperature fail.
struct LabelCheck {
  double chi2 = 0;
  int bins = 0;
  double chi2_limit = 0;  // the 1e-4 upper quantile of chi^2(bins)
  double z_loglik = 0;
  bool Ok() const { return chi2 < chi2_limit && std::fabs(z_loglik) < 4.0; }
};

LabelCheck CheckLabels(const std::vector<double>& q, const std::vector<int>& y) {
  constexpr int kBins = 10;
  std::vector<double> obs(kBins, 0), expct(kBins, 0), var(kBins, 0);
  double ll = 0, ll_mean = 0, ll_var = 0;
  for (size_t j = 0; j < q.size(); ++j) {
    const double p = std::min(std::max(q[j], 1e-7), 1 - 1e-7);
    const int b = std::min(kBins - 1, static_cast<int>(p * kBins));
    obs[b] += y[j];
    expct[b] += p;
    var[b] += p * (1 - p);
    const double logit = std::log(p / (1 - p));
    ll += y[j] ? std::log(p) : std::log(1 - p);
    ll_mean += p * std::log(p) + (1 - p) * std::log(1 - p);
    ll_var += p * (1 - p) * logit * logit;
  }
  LabelCheck c;
  for (int b = 0; b < kBins; ++b) {
    if (var[b] < 5) continue;  // too few pairs for the normal approximation
    c.chi2 += (obs[b] - expct[b]) * (obs[b] - expct[b]) / var[b];
    ++c.bins;
  }
  // Wilson-Hilferty approximation of the chi^2 quantile; z = 3.719 is the 1e-4 normal quantile.
  const double k = c.bins, h = 2.0 / (9.0 * k);
  c.chi2_limit = k * std::pow(1 - h + 3.719 * std::sqrt(h), 3);
  c.z_loglik = (ll - ll_mean) / std::sqrt(ll_var);
  return c;
}

TEST(GenerateLabels, FrequenciesMatchPairProb) {
  for (GenerateKind kind : kAllKinds) {
    SCOPED_TRACE(KindName(kind));
    const Dataset ds = Generate(GenerateOptions::Preset(kind));
    std::vector<double> q(ds.n_comparisons()), logit(ds.n_comparisons());
    std::vector<int> y(ds.n_comparisons());
    double mean_q = 0, mean_y = 0;
    for (int64_t j = 0; j < ds.n_comparisons(); ++j) {
      const bool chosen_first = ds.cmp_chosen[j] < ds.cmp_rejected[j];
      y[j] = chosen_first;
      q[j] = chosen_first ? ds.truth_pair_prob[j] : 1.0 - ds.truth_pair_prob[j];
      logit[j] = std::log(q[j] / (1 - q[j]));
      mean_q += q[j];
      mean_y += y[j];
    }
    const double m = ds.n_comparisons();
    EXPECT_NEAR(mean_y / m, mean_q / m, 4 * 0.5 / std::sqrt(m));
    const LabelCheck ok = CheckLabels(q, y);
    EXPECT_GE(ok.bins, 6);
    EXPECT_TRUE(ok.Ok()) << "chi2 " << ok.chi2 << " (limit " << ok.chi2_limit << ", " << ok.bins
                         << " bins), log-likelihood z " << ok.z_loglik;

    // The check has power: deterministic labels, and the right labels judged against a softer
    // or a sharper temperature, all fail.
    std::vector<int> argmax(y.size());
    for (size_t j = 0; j < y.size(); ++j) argmax[j] = q[j] > 0.5;
    EXPECT_FALSE(CheckLabels(q, argmax).Ok());
    for (double t : {0.7, 1.4}) {
      std::vector<double> q_t(q.size());
      for (size_t j = 0; j < q.size(); ++j) q_t[j] = Sigmoid(t * logit[j]);
      const LabelCheck bad = CheckLabels(q_t, y);
      EXPECT_FALSE(bad.Ok()) << "temperature x" << t << ": chi2 " << bad.chi2 << " z "
                             << bad.z_loglik;
    }
  }
}

TEST(GenerateOptionsTest, BadKnobsThrowNamingTheFlag) {
  struct Bad {
    const char* flag;
    GenerateKind kind;
    std::function<void(GenerateOptions&)> mutate;
  };
  const std::vector<Bad> cases = {
      {"--k", GenerateKind::kLowrank, [](GenerateOptions& o) { o.k = 0; }},
      {"--users", GenerateKind::kGroups, [](GenerateOptions& o) { o.n_users = 0; }},
      {"--users", GenerateKind::kLowrank, [](GenerateOptions& o) { o.n_users = -5; }},
      {"--pairs-per-user", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.pairs_per_user = -1; }},
      {"--items", GenerateKind::kGroups, [](GenerateOptions& o) { o.n_items = 1; }},
      {"--dim", GenerateKind::kIdealPoint, [](GenerateOptions& o) { o.dim = 0; }},
      {"--dim", GenerateKind::kGroups, [](GenerateOptions& o) { o.dim = 3; }},  // needs k + 1
      {"--latent-dim", GenerateKind::kIdealPoint, [](GenerateOptions& o) { o.latent_dim = 0; }},
      {"--group-sizes", GenerateKind::kGroups,
       [](GenerateOptions& o) {
         o.group_sizes = {70, 20, 5};
       }},
      {"--group-sizes", GenerateKind::kGroups,
       [](GenerateOptions& o) {
         o.group_sizes = {80, 20};
       }},
      {"--group-sizes", GenerateKind::kGroups,
       [](GenerateOptions& o) {
         o.group_sizes = {110, -20, 10};
       }},
      {"--group-similarity", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.group_similarity = 1.0; }},
      {"--group-similarity", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.group_similarity = -0.6; }},  // below -1/(K-1) = -0.5
      {"--group-similarity", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.group_similarity = std::nan(""); }},
      {"--attribute-correlation", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.attribute_correlation = 1.5; }},
      {"--alpha", GenerateKind::kLowrank, [](GenerateOptions& o) { o.alpha = 0; }},
      {"--alpha", GenerateKind::kIdealPoint, [](GenerateOptions& o) { o.alpha = -1; }},
      {"--scale", GenerateKind::kIdealPoint, [](GenerateOptions& o) { o.scale = 0; }},
      {"--scale", GenerateKind::kGroups,
       [](GenerateOptions& o) { o.scale = std::numeric_limits<double>::infinity(); }},
  };
  for (const Bad& c : cases) {
    GenerateOptions o = GenerateOptions::Preset(c.kind);
    c.mutate(o);
    try {
      Generate(o);
      ADD_FAILURE() << "no error for bad " << c.flag << " with kind " << KindName(c.kind);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.flag), std::string::npos)
          << "message does not name " << c.flag << ": " << e.what();
    }
  }
  EXPECT_THROW(ParseKind("gropus"), Error);
  EXPECT_EQ(ParseKind("ideal-point"), GenerateKind::kIdealPoint);
  // Knobs of other kinds are ignored, not rejected.
  GenerateOptions o = Small(GenerateKind::kLowrank);
  o.group_sizes = {1, 2};
  o.group_similarity = 7;
  EXPECT_NO_THROW(Generate(o));
}

TEST(GenerateIo, RoundTripKeepsTruth) {
  TempDir dir;
  for (GenerateKind kind : kAllKinds) {
    SCOPED_TRACE(KindName(kind));
    const Dataset ds = Generate(Small(kind));
    const std::string path = dir.File(std::string(KindName(kind)) + ".h5");
    WriteDataset(ds, path);
    const Dataset back = ReadDataset(path);
    ExpectSameDataset(ds, back);
  }
}

int RunCli(const std::string& args, const std::string& err_file) {
  const std::string cmd = std::string(PREFMIX_CLI) + " " + args + " 2> " + err_file;
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(GenerateCli, WritesDatasetAndRejectsBadFlags) {
  TempDir dir;
  const std::string out = dir.File("gen.h5"), err = dir.File("err.txt");
  ASSERT_EQ(RunCli("generate --kind lowrank --users 25 --pairs-per-user 8 --items 50 --dim 6 --k 3 "
                   "--alpha 0.5 --seed 4 --out " +
                       out,
                   err),
            0)
      << ReadText(err);
  EXPECT_NE(ReadText(err).find("oracle_accuracy="), std::string::npos) << ReadText(err);
  GenerateOptions o = Small(GenerateKind::kLowrank, 4);
  o.n_users = 25;
  o.pairs_per_user = 8;
  o.n_items = 50;
  o.dim = 6;
  o.k = 3;
  o.alpha = 0.5;
  ExpectSameDataset(ReadDataset(out), Generate(o));

  // --k other than the preset's without --group-sizes: equal groups. A foreign knob: a note.
  const std::string out2 = dir.File("groups.h5");
  ASSERT_EQ(RunCli("generate --kind groups --k 2 --users 10 --alpha 3 --out " + out2, err), 0)
      << ReadText(err);
  EXPECT_NE(ReadText(err).find("--alpha does not apply"), std::string::npos) << ReadText(err);
  const Dataset two = ReadDataset(out2);
  EXPECT_EQ(std::count(two.truth_user_group.begin(), two.truth_user_group.end(), 0), 5);

  const std::string bad = dir.File("bad.h5");
  EXPECT_EQ(RunCli("generate --kind groups --group-sizes 70,20,5 --out " + bad, err), 1);
  EXPECT_NE(ReadText(err).find("--group-sizes"), std::string::npos) << ReadText(err);
  EXPECT_EQ(RunCli("generate --kind groups --group-sizes 70,x,10 --out " + bad, err), 1);
  EXPECT_EQ(RunCli("generate --kind blobs --out " + bad, err), 1);
  EXPECT_NE(ReadText(err).find("--kind"), std::string::npos) << ReadText(err);
  EXPECT_EQ(RunCli("generate --kind groups", err), 1);  // --out is required
  EXPECT_FALSE(fs::exists(bad));
}

}  // namespace
}  // namespace prefmix::data
