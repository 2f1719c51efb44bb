// prefmix import pairs|sushi: build a dataset file (docs/formats.md).
#include <filesystem>
#include <iostream>
#include <string>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"
#include "core/io/importers.h"

namespace prefmix::apps {
namespace {

constexpr char kPairsUsage[] =
    "usage: prefmix import pairs --items ITEMS.npy --pairs PAIRS.csv [--users USERS.csv]\n"
    "         [--user-features FEAT.npy] [--contexts CTX.npy] [--embedding-model NAME] --out D.h5\n"
    "PAIRS.csv header: user,chosen,rejected[,context][,weight]; USERS.csv header: "
    "user,<attribute>...";
constexpr char kSushiUsage[] =
    "usage: prefmix import sushi --dir DIR --set a|b --out D.h5\n"
    "DIR holds Kamishima's SUSHI3 files (sushi3.idata, sushi3.udata, sushi3[ab].5000.10.order)";

// Fails early, before any work, when --out cannot be written: its directory must exist.
void CheckOutPath(const std::string& out) {
  namespace fs = std::filesystem;
  PREFMIX_CHECK_INPUT(!out.empty(), "--out: empty path");
  const fs::path path(out);
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ec;
  PREFMIX_CHECK_INPUT(fs::is_directory(dir, ec), "--out ", out, ": directory '", dir.string(),
                      "' does not exist");
  PREFMIX_CHECK_INPUT(!fs::is_directory(path, ec), "--out ", out,
                      ": is a directory; expected a file path");
}

void PrintSummary(const char* source, const Dataset& ds, const std::string& out) {
  std::cerr << "prefmix import " << source << ": wrote " << out << ": " << ds.n_users()
            << " users, " << ds.n_items() << " items (dim " << ds.dim() << "), "
            << ds.n_comparisons() << " comparisons, " << ds.n_rankings() << " rankings ("
            << ds.n_comparisons() + ds.n_ranking_pairs() << " pairs in all), "
            << ds.attributes.size() << " user attributes";
  if (ds.user_features.size() > 0) std::cerr << ", user features dim " << ds.user_features.cols();
  if (ds.has_contexts) std::cerr << ", " << ds.contexts.rows() << " contexts";
  std::cerr << "\n";
}

std::string Get(const po::variables_map& vm, const char* name) {
  return vm.count(name) ? vm[name].as<std::string>() : std::string();
}

int RunImportPairs(int argc, char** argv) {
  po::options_description desc("import pairs options");
  desc.add_options()("items", po::value<std::string>(), "ITEMS.npy: [n_items, D] float32/float64")(
      "pairs", po::value<std::string>(), "PAIRS.csv: user,chosen,rejected[,context][,weight]")(
      "users", po::value<std::string>(), "USERS.csv: user,<attribute>... (categorical)")(
      "user-features", po::value<std::string>(), "FEAT.npy: one row per USERS.csv row")(
      "contexts", po::value<std::string>(), "CTX.npy: [n_contexts, Dc] context embeddings")(
      "embedding-model", po::value<std::string>(), "name stored as the embedding_model attribute")(
      "out", po::value<std::string>(), "output dataset file (.h5)")("quiet", po::bool_switch(),
                                                                    "no summary on stderr");
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv, kPairsUsage, desc, vm)) return 0;
  Require(vm, "items");
  Require(vm, "pairs");
  Require(vm, "out");
  const std::string out = Get(vm, "out");
  CheckOutPath(out);
  ImportPairsOptions opts;
  opts.items = Get(vm, "items");
  opts.pairs = Get(vm, "pairs");
  opts.users = Get(vm, "users");
  opts.user_features = Get(vm, "user-features");
  opts.contexts = Get(vm, "contexts");
  opts.embedding_model = Get(vm, "embedding-model");
  const Dataset ds = ImportPairs(opts);
  CheckOutputPath(out);
  WriteDataset(ds, out);
  if (!vm["quiet"].as<bool>()) PrintSummary("pairs", ds, out);
  return 0;
}

int RunImportSushi(int argc, char** argv) {
  po::options_description desc("import sushi options");
  desc.add_options()("dir", po::value<std::string>(), "directory of the SUSHI3 files")(
      "set", po::value<std::string>(), "item set: a (10 items) or b (100 items)")(
      "out", po::value<std::string>(), "output dataset file (.h5)")("quiet", po::bool_switch(),
                                                                    "no summary on stderr");
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv, kSushiUsage, desc, vm)) return 0;
  Require(vm, "dir");
  Require(vm, "set");
  Require(vm, "out");
  const std::string set = Get(vm, "set");
  PREFMIX_CHECK_INPUT(set == "a" || set == "b" || set == "A" || set == "B", "--set: '", set,
                      "' is not a SUSHI item set (a: 10 items, b: 100 items)");
  const std::string out = Get(vm, "out");
  CheckOutPath(out);
  const Dataset ds = ImportSushi(Get(vm, "dir"), set[0]);
  CheckOutputPath(out);
  WriteDataset(ds, out);
  if (!vm["quiet"].as<bool>()) PrintSummary("sushi", ds, out);
  return 0;
}

}  // namespace

int RunImport(int argc, char** argv) {
  const std::string source = argc >= 2 ? argv[1] : "";
  if (source == "--help" || source == "-h") {
    std::cout << kPairsUsage << "\n" << kSushiUsage << "\n";
    return 0;
  }
  // argv + 1: the source name stands where Boost expects the program name.
  if (source == "pairs") return RunImportPairs(argc - 1, argv + 1);
  if (source == "sushi") return RunImportSushi(argc - 1, argv + 1);
  throw Error(Cat("import: source '", source,
                  "' is not 'pairs' or 'sushi' (prefmix import pairs|sushi --help)"));
}

}  // namespace prefmix::apps
