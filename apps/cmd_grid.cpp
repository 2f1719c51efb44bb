// prefmix experiment --grid grid.ini --out DIR: models x blocks x repeats in one run, written as
// DIR/table.md, DIR/table.csv and DIR/table.json (data/schema/grid.schema.json).
// prefmix experiment --merge A/table.json,B/table.json --out DIR: one table from grid runs that
// split the repeats (first-repeat) or the families between them.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/eval/grid.h"
#include "core/io/atomic_file.h"

namespace prefmix::apps {
namespace {

/// DIR/table.json, table.md and table.csv of a grid table (each written atomically).
void WriteGridTable(const Json& table, const std::string& dir) {
  WriteJson(table, dir + "/table.json");
  WriteTextFileAtomic(dir + "/table.md", GridMarkdown(table));
  WriteTextFileAtomic(dir + "/table.csv", GridCsv(table));
}

}  // namespace

int RunGridExperiment(int argc, char** argv) {
  po::options_description desc("experiment --grid options");
  desc.add_options()("grid", po::value<std::string>(),
                     "grid file (INI): top-level models / protocol defaults, one [block] per "
                     "dataset with data = D.h5 and protocol keys")(
      "out", po::value<std::string>(), "output directory (created if needed)")(
      "models", po::value<std::string>(),
      "comma-separated families, or 'all' (wins over the grid file's models)");
  AddModelOptions(desc);
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix experiment --grid grid.ini --out DIR [--models F1,F2] "
                        "[model options]\n\ngrid.ini:\n  models = bt,lowrank\n  repeats = 25\n"
                        "  [Sushi-A-small]\n  data = sushi_a.h5\n  protocol = subsample\n"
                        "  users = 100\n  train-pairs = 5\n  test-pairs = 25",
                        desc, vm))
    return 0;
  Require(vm, "grid");
  Require(vm, "out");
  const std::string device = ApplyCommonOptions(vm);
  ProtocolOptions defaults;
  defaults.seed = vm["seed"].as<uint64_t>();
  const std::string grid = vm["grid"].as<std::string>();
  GridSpec spec = ReadGridFile(grid, defaults);
  std::vector<std::string> families =
      vm.count("models") ? SplitList(vm["models"].as<std::string>(), "models") : spec.models;
  if (families.size() == 1 && families[0] == "all") families = FamilyNames();
  PREFMIX_CHECK_INPUT(!families.empty(), grid,
                      ": no models (give --models or a top-level 'models = bt,lowrank')");
  std::vector<ModelOptions> mos;
  for (const auto& f : families) mos.push_back(ReadModelOptions(vm, f));
  const std::string dir = vm["out"].as<std::string>();
  CreateOutputDir(dir);
  const ProgressFn progress = StderrProgress(vm);
  Json table = RunGrid(spec, mos, progress);
  Json opts = Json::Object();
  Json fams = Json::Array();
  for (const auto& mo : mos) fams.push_back(mo.ToJson());
  opts["models"] = fams;
  opts["grid"] = grid;
  table["provenance"] = Provenance(vm, "", device, opts);
  WriteGridTable(table, dir);
  return 0;
}

int RunGridMerge(int argc, char** argv) {
  po::options_description desc("experiment --merge options");
  desc.add_options()("merge", po::value<std::string>(),
                     "comma-separated grid tables (DIR/table.json of prefmix experiment --grid)")(
      "out", po::value<std::string>(), "output directory (created if needed)");
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix experiment --merge A/table.json,B/table.json --out DIR\n\n"
                        "Blocks match by name (same dataset and protocol); a repeat found twice "
                        "must carry the same figures; every row needs the same repeats.",
                        desc, vm))
    return 0;
  Require(vm, "merge");
  Require(vm, "out");
  const std::string device = ApplyCommonOptions(vm);
  const std::vector<std::string> files = SplitList(vm["merge"].as<std::string>(), "merge");
  PREFMIX_CHECK_INPUT(!files.empty(), "--merge: no table given");
  std::vector<Json> tables;
  for (const auto& f : files) {
    std::ifstream in(f);
    NoteInput(f);
    PREFMIX_CHECK_INPUT(in, "--merge: cannot open '", f, "'");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      tables.push_back(Json::Parse(ss.str()));
    } catch (const Error& e) {
      throw Error(Cat("--merge: ", f, ": ", e.what()));
    }
  }
  Json table = MergeGridTables(tables, files);  // validates before anything is written
  const std::string dir = vm["out"].as<std::string>();
  CreateOutputDir(dir);
  Json opts = Json::Object();
  Json jf = Json::Array();
  for (const auto& f : files) jf.push_back(f);
  opts["merge"] = jf;
  table["provenance"] = Provenance(vm, "", device, opts);
  WriteGridTable(table, dir);
  return 0;
}

}  // namespace prefmix::apps
