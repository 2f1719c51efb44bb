// Dataset + HDF5 schema v1: round trip, cross-checks with the repository's h5py implementation
// (python/prefmix/schema.py), and bad files through `prefmix inspect`.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "core/io/dataset.h"
#include "core/io/h5io.h"
#include "data/generate.h"
#include "tests/test_util.h"

namespace prefmix {
namespace {

using testing::Exists;
using testing::Lines;
using testing::RunCli;
using testing::RunPython;
using testing::TestDir;

const char* kH5Schema = PREFMIX_SOURCE_DIR "/python/prefmix/schema.py";

Dataset SmallDataset() {
  Dataset ds;
  ds.source = "<memory>";
  ds.embedding_model = "unit-test";
  ds.description = "small";
  ds.items = RowMatrixF::Random(6, 3);
  ds.item_ids = {"a", "b", "c", "d", "e", "f"};
  ds.contexts = RowMatrixF::Random(2, 4);
  ds.has_contexts = true;
  ds.user_ids = {"alice", "bob", "carol"};
  ds.cmp_user = {0, 1, 2, 2};
  ds.cmp_chosen = {0, 1, 2, 5};
  ds.cmp_rejected = {1, 2, 3, 4};
  ds.cmp_context = {-1, 0, 1, 0};
  ds.cmp_weight = {1.0f, 2.0f, 0.5f, 1.0f};
  ds.rank_user = {0, 2};
  ds.rank_offsets = {0, 3, 5};
  ds.rank_items = {4, 0, 2, 1, 3};
  Attribute a;
  a.name = "region";
  a.codes = {0, 1, -1};
  a.labels = {"east", "west"};
  ds.attributes.push_back(a);
  ds.user_features = RowMatrixF::Random(3, 2);
  ds.truth_pair_prob = {0.9f, 0.6f, 0.5f, 0.7f};
  ds.truth_user_group = {0, 1, 1};
  ds.truth_user_weights = RowMatrixF::Random(3, 2);
  ds.truth_group_item_reward = RowMatrixF::Random(2, 6);
  return ds;
}

TEST(DatasetTest, AllPairsOrderIsStoredThenRankingPairs) {
  Dataset ds = SmallDataset();
  PairSet p = ds.AllPairs();
  ASSERT_EQ(p.size(), 4u + 3u + 1u);
  EXPECT_EQ(ds.n_ranking_pairs(), 4);
  // Ranking 0 of user 0: 4 > 0 > 2 -> (4,0), (4,2), (0,2) in lexicographic position order.
  EXPECT_EQ(p.first[4], 4);
  EXPECT_EQ(p.second[4], 0);
  EXPECT_EQ(p.first[5], 4);
  EXPECT_EQ(p.second[5], 2);
  EXPECT_EQ(p.first[6], 0);
  EXPECT_EQ(p.second[6], 2);
  EXPECT_EQ(p.user[7], 2);
  EXPECT_FLOAT_EQ(p.weight[1], 2.0f);
  EXPECT_EQ(p.context[1], 0);
  EXPECT_FLOAT_EQ(p.truth[0], 0.9f);
  EXPECT_TRUE(std::isnan(p.truth[5]));
}

TEST(DatasetTest, Hdf5RoundTripKeepsEverything) {
  const std::string dir = TestDir(), path = dir + "/d.h5";
  Dataset ds = SmallDataset();
  WriteDataset(ds, path);
  Dataset r = ReadDataset(path);
  EXPECT_EQ(r.embedding_model, ds.embedding_model);
  EXPECT_EQ(r.description, ds.description);
  EXPECT_TRUE(r.items == ds.items);
  EXPECT_EQ(r.item_ids, ds.item_ids);
  EXPECT_TRUE(r.has_contexts);
  EXPECT_TRUE(r.contexts == ds.contexts);
  EXPECT_EQ(r.user_ids, ds.user_ids);
  EXPECT_EQ(r.cmp_user, ds.cmp_user);
  EXPECT_EQ(r.cmp_chosen, ds.cmp_chosen);
  EXPECT_EQ(r.cmp_rejected, ds.cmp_rejected);
  EXPECT_EQ(r.cmp_context, ds.cmp_context);
  EXPECT_EQ(r.cmp_weight, ds.cmp_weight);
  EXPECT_EQ(r.rank_user, ds.rank_user);
  EXPECT_EQ(r.rank_offsets, ds.rank_offsets);
  EXPECT_EQ(r.rank_items, ds.rank_items);
  ASSERT_EQ(r.attributes.size(), 1u);
  EXPECT_EQ(r.attributes[0].codes, ds.attributes[0].codes);
  EXPECT_EQ(r.attributes[0].labels, ds.attributes[0].labels);
  EXPECT_TRUE(r.user_features == ds.user_features);
  EXPECT_EQ(r.truth_pair_prob, ds.truth_pair_prob);
  EXPECT_EQ(r.truth_user_group, ds.truth_user_group);
  EXPECT_TRUE(r.truth_user_weights == ds.truth_user_weights);
  EXPECT_TRUE(r.truth_group_item_reward == ds.truth_group_item_reward);
  // No temporary file left beside the output.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(DatasetTest, WriterOutputValidatesWithTheH5pyReference) {
  if (!testing::PythonHas("h5py"))
    GTEST_SKIP() << "python3-h5py missing: apt-get install python3-h5py";
  const std::string dir = TestDir();
  WriteDataset(SmallDataset(), dir + "/d.h5");
  data::GenerateOptions g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = 20;
  WriteDataset(data::Generate(g), dir + "/g.h5");
  for (const char* f : {"/d.h5", "/g.h5"}) {
    std::string cmd = testing::Python() + " " + kH5Schema + " validate " + dir + f +
                      " >/dev/null 2>" + dir + "/err";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << testing::ReadFile(dir + "/err");
  }
}

TEST(DatasetTest, FileWrittenByH5pyLoads) {
  if (!testing::PythonHas("h5py"))
    GTEST_SKIP() << "python3-h5py missing: apt-get install python3-h5py";
  const std::string dir = TestDir(), path = dir + "/example.h5";
  std::string cmd = testing::Python() + " " + kH5Schema + " example " + path + " 7 >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  Dataset ds = ReadDataset(path);
  EXPECT_EQ(ds.n_items(), 30);
  EXPECT_EQ(ds.dim(), 8);
  EXPECT_EQ(ds.n_users(), 6);
  EXPECT_EQ(ds.n_comparisons(), 40);
  EXPECT_EQ(ds.n_ranking_pairs(), 18);
  EXPECT_EQ(ds.embedding_model, "example");
  EXPECT_EQ(ds.item_ids[3], "item3");
  ASSERT_EQ(ds.attributes.size(), 1u);
  EXPECT_EQ(ds.attributes[0].labels, (std::vector<std::string>{"east", "west"}));
  EXPECT_EQ(ds.user_features.cols(), 3);
  EXPECT_EQ(ds.AllPairs().size(), 58u);
  // And the CLI agrees.
  auto r = RunCli("inspect " + path, dir);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("comparisons:  58"), std::string::npos) << r.out;
}

// Strings written the common h5py way, as fixed-length numpy bytes (dtype 'S'), keep every
// character: the last one used to be dropped ('new0_g0' -> 'new0_g'), which also made distinct
// ids collide as "duplicate user id".
TEST(DatasetTest, FixedLengthStringsKeepEveryCharacter) {
  if (!testing::PythonHas("h5py"))
    GTEST_SKIP() << "python3-h5py missing: apt-get install python3-h5py";
  const std::string dir = TestDir(), path = dir + "/fixed.h5";
  std::string cmd = testing::Python() + " " + kH5Schema + " example " + path + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string code = std::string("import h5py, numpy as np\nf = h5py.File('") + path +
                           "', 'r+')\n"
                           "del f['users/ids']\n"
                           "f['users/ids'] = np.array([b'new0_g0', b'new0_g1', b'u2', b'u3', "
                           "b'u4', b'u5'])\n"
                           "del f['items/ids']\n"
                           "f['items/ids'] = np.array([('item%d' % i).encode() for i in "
                           "range(30)])\n"
                           "a = f['users/attributes/region']\n"
                           "a.attrs['labels'] = np.array([b'east', b'west'])\n"
                           "f.close()\n";
  std::string err;
  ASSERT_EQ(RunPython(code, dir, &err), 0) << err;
  const Dataset ds = ReadDataset(path);
  EXPECT_EQ(ds.user_ids[0], "new0_g0");
  EXPECT_EQ(ds.user_ids[1], "new0_g1");
  EXPECT_EQ(ds.user_ids[5], "u5");
  EXPECT_EQ(ds.item_ids[29], "item29");
  EXPECT_EQ(ds.item_ids[3], "item3");
  EXPECT_EQ(ds.attributes[0].labels, (std::vector<std::string>{"east", "west"}));
}

/// A bad file: python code mutating the h5py example `f` (opened r+), and what the one-line
/// error must contain.
struct BadFile {
  const char* name;
  const char* mutate;
  std::vector<std::string> expect;
};

/// gtest prints the case's name instead of its bytes.
void PrintTo(const BadFile& b, std::ostream* os) { *os << b.name; }

class BadDatasetTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(BadDatasetTest, InspectFailsWithOneClearLine) {
  if (!testing::PythonHas("h5py"))
    GTEST_SKIP() << "python3-h5py missing: apt-get install python3-h5py";
  const BadFile& b = GetParam();
  const std::string dir = TestDir(), path = dir + "/bad.h5";
  std::string cmd = testing::Python() + " " + kH5Schema + " example " + path + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::string code = std::string("import h5py, numpy as np\nf = h5py.File('") + path +
                     "', 'r+')\n" + b.mutate + "\nf.close()\n";
  std::string err;
  ASSERT_EQ(RunPython(code, dir, &err), 0) << err;
  auto r = RunCli("inspect " + path, dir);
  EXPECT_EQ(r.rc, 1) << r.out << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  for (const auto& s : b.expect)
    EXPECT_NE(r.err.find(s), std::string::npos) << "missing '" << s << "' in: " << r.err;
  // And training on it writes nothing.
  auto t = RunCli("train --data " + path + " --model bt --out " + dir + "/m.pfmx", dir);
  EXPECT_EQ(t.rc, 1) << t.err;
  EXPECT_FALSE(Exists(dir + "/m.pfmx"));
}

INSTANTIATE_TEST_SUITE_P(
    Schema, BadDatasetTest,
    ::testing::Values(
        BadFile{
            "missing_embeddings", "del f['items/embeddings']", {"/items/embeddings", "missing"}},
        BadFile{"nan_embedding",
                "e = f['items/embeddings']; x = e[()]; x[3, 2] = np.nan; e[...] = x",
                {"/items/embeddings[3, 2]", "nan"}},
        BadFile{"inf_embedding",
                "e = f['items/embeddings']; x = e[()]; x[0, 1] = np.inf; e[...] = x",
                {"/items/embeddings[0, 1]", "inf"}},
        BadFile{"item_out_of_range",
                "c = f['comparisons/chosen']; x = c[()]; x[5] = 999; c[...] = x",
                {"/comparisons/chosen[5]", "999"}},
        BadFile{"negative_user",
                "c = f['comparisons/user']; x = c[()]; x[2] = -4; c[...] = x",
                {"/comparisons/user[2]", "-4"}},
        BadFile{"length_mismatch",
                "x = f['comparisons/rejected'][()][:-3]; del f['comparisons/rejected']; "
                "f['comparisons/rejected'] = x",
                {"/comparisons/rejected", "37", "40"}},
        BadFile{"wrong_version", "f.attrs['format_version'] = 2", {"format_version", "2"}},
        BadFile{
            "wrong_format", "f.attrs['format'] = 'something.else'", {"format", "something.else"}},
        BadFile{"duplicate_user",
                "ids = f['users/ids']; x = ids[()]; x[4] = x[1]; ids[...] = x",
                {"/users/ids[4]", "user1", "duplicate"}},
        BadFile{"int_embeddings",
                "x = f['items/embeddings'][()]; del f['items/embeddings']; f['items/embeddings'] = "
                "x.astype(np.int32)",
                {"/items/embeddings", "integer", "float32"}},
        BadFile{"3d_embeddings",
                "x = f['items/embeddings'][()]; del f['items/embeddings']; f['items/embeddings'] = "
                "x.reshape(30, 2, 4)",
                {"/items/embeddings", "[30, 2, 4]", "2-D"}},
        BadFile{"offsets_not_at_zero",
                "o = f['rankings/offsets']; x = o[()]; x[0] = 1; o[...] = x",
                {"/rankings/offsets", "start at 0", "1"}},
        BadFile{"negative_weight",
                "w = f['comparisons/weight']; x = w[()]; x[7] = -0.5; w[...] = x",
                {"/comparisons/weight[7]", "-0.5"}},
        BadFile{"self_comparison",
                "c = f['comparisons/chosen']; r = f['comparisons/rejected'][()]; x = c[()]; x[9] = "
                "r[9]; c[...] = x",
                {"/comparisons/chosen[9]", "itself"}},
        BadFile{"attribute_code_out_of_labels",
                "a = f['users/attributes/region']; x = a[()]; x[0] = 5; a[...] = x",
                {"/users/attributes/region[0]", "5"}},
        BadFile{"missing_user_ids", "del f['users/ids']", {"/users/ids", "missing"}},
        BadFile{"absurd_declared_size",
                "del f['comparisons/weight']; "
                "f.create_dataset('comparisons/weight', shape=(10**13,), dtype='f4')",
                {"/comparisons/weight", "declares shape [10000000000000]", "memory"}},
        BadFile{"context_out_of_range",
                "c = f['comparisons/context']; x = c[()]; x[1] = 3; c[...] = x",
                {"/comparisons/context[1]", "3"}}),
    [](const ::testing::TestParamInfo<BadFile>& i) { return std::string(i.param.name); });

TEST(BadDatasetFileTest, NonHdf5TruncatedAndMissingFiles) {
  const std::string dir = TestDir();
  std::ofstream(dir + "/text.h5") << "user,chosen,rejected\n1,2,3\n";
  auto r = RunCli("inspect " + dir + "/text.h5", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("not an HDF5 file"), std::string::npos) << r.err;

  r = RunCli("inspect " + dir + "/nope.h5", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find(dir + "/nope.h5: no such file"), std::string::npos) << r.err;

  // Truncated: a valid file cut in half.
  data::GenerateOptions g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = 30;
  WriteDataset(data::Generate(g), dir + "/full.h5");
  std::string bytes = testing::ReadFile(dir + "/full.h5");
  std::ofstream(dir + "/cut.h5", std::ios::binary).write(bytes.data(), bytes.size() / 2);
  r = RunCli("inspect " + dir + "/cut.h5", dir);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(dir + "/cut.h5"), std::string::npos) << r.err;
}

// User matrices (adapt's and score's outputs read back) get the dataset reader's path checks.
TEST(BadDatasetFileTest, UserMatrixPathsAreCheckedAsDatasets) {
  const std::string dir = TestDir();
  std::ofstream(dir + "/text.h5") << "not hdf5\n";
  std::vector<std::string> ids;
  RowMatrixF m;
  auto read = [&](const std::string& p) {
    return testing::ErrorOf([&] { ReadUserMatrix(p, "/users/latent", &ids, &m); });
  };
  EXPECT_EQ(read(dir + "/nope.h5"), dir + "/nope.h5: no such file");
  EXPECT_EQ(read(dir), dir + ": not a regular file");
  EXPECT_EQ(read(dir + "/text.h5"), dir + "/text.h5: not an HDF5 file (no HDF5 signature)");
}

// The same dataset written twice, a second apart, gives the same bytes (HDF5 object headers
// carry no modification times), so files regenerated from the same seed compare equal.
TEST(DatasetTest, SameDatasetGivesIdenticalBytes) {
  const std::string dir = TestDir();
  data::GenerateOptions g = data::GenerateOptions::Preset(data::GenerateKind::kGroups);
  g.n_users = 20;
  const Dataset ds = data::Generate(g);
  WriteDataset(ds, dir + "/a.h5");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  WriteDataset(data::Generate(g), dir + "/b.h5");
  EXPECT_EQ(testing::ReadFile(dir + "/a.h5"), testing::ReadFile(dir + "/b.h5"));
  auto r = RunCli("generate --kind lowrank --users 15 --seed 4 --out " + dir + "/c.h5", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  r = RunCli("generate --kind lowrank --users 15 --seed 4 --out " + dir + "/d.h5", dir);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(testing::ReadFile(dir + "/c.h5"), testing::ReadFile(dir + "/d.h5"));
}

TEST(DatasetTest, WriteToMissingDirectoryFailsCleanly) {
  Dataset ds = SmallDataset();
  EXPECT_THROW(WriteDataset(ds, "/nonexistent-dir/x.h5"), Error);
}

}  // namespace
}  // namespace prefmix
