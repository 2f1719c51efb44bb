// prefmix experiment: train + evaluate one or more families under one protocol.
#include <unistd.h>

#include <iostream>

#include "apps/adapt_active.h"
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/eval/stats.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {
namespace {

/// For several families under subsample: each model against every other one, paired over the
/// repeats (same splits for every family) with the Wilcoxon signed-rank test.
void AddPairedTests(Json* results) {
  std::vector<std::vector<double>> acc;
  for (const auto& m : results->items()) {
    std::vector<double> a;
    for (const auto& r : m.at("repeats").items()) a.push_back(r.at("accuracy").number());
    acc.push_back(a);
  }
  Json updated = Json::Array();
  for (size_t i = 0; i < acc.size(); ++i) {
    Json m = results->items()[i];
    Json paired = Json::Array();
    for (size_t j = 0; j < acc.size(); ++j) {
      if (i == j) continue;
      PairedTest t = WilcoxonSignedRank(acc[j], acc[i]);
      Json e = Json::Object();
      e["model"] = results->items()[j].at("model");
      e["test"] = "wilcoxon-signed-rank";
      e["mean_accuracy_diff"] = t.mean_diff;
      e["p_value"] = t.p_value;
      e["n_nonzero"] = t.n;
      paired.push_back(e);
    }
    m["paired"] = paired;
    updated.push_back(m);
  }
  *results = updated;
}

}  // namespace

int RunExperiment(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)  // models x blocks x repeats: apps/cmd_grid.cpp
    if (std::string(argv[i]) == "--grid" || std::string(argv[i]).rfind("--grid=", 0) == 0)
      return RunGridExperiment(argc, argv);
  for (int i = 1; i < argc; ++i)  // one table from several grid runs: apps/cmd_grid.cpp
    if (std::string(argv[i]) == "--merge" || std::string(argv[i]).rfind("--merge=", 0) == 0)
      return RunGridMerge(argc, argv);
  po::options_description desc("experiment options");
  desc.add_options()("data", po::value<std::string>(), "dataset file (.h5)")(
      "model", po::value<std::string>(), "family (bt, lowrank, ...)")(
      "models", po::value<std::string>(), "comma-separated families (one JSON object per family)")(
      "json", po::value<std::string>(), "metrics output (.json, or - for stdout)")(
      "grid", po::value<std::string>(),
      "grid file: models x blocks x repeats into --out DIR (see prefmix experiment --grid G "
      "--help)")("merge", po::value<std::string>(),
                 "comma-separated grid table.json files: one table into --out DIR");
  AddModelOptions(desc);
  AddProtocolOptions(desc);
  AddCommonOptions(desc);
  AddExperimentActiveOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix experiment --data D.h5 --model FAMILY --protocol P "
                        "[options] --json OUT.json",
                        desc, vm))
    return 0;
  Require(vm, "data");
  Require(vm, "json");
  PREFMIX_CHECK_INPUT(vm.count("model") || vm.count("models"),
                      "missing required option --model (or --models)");
  std::vector<std::string> families = vm.count("models")
                                          ? SplitList(vm["models"].as<std::string>(), "models")
                                          : std::vector<std::string>{vm["model"].as<std::string>()};
  PREFMIX_CHECK_INPUT(!families.empty(), "--models: empty list");
  const std::string device = ApplyCommonOptions(vm);
  ProtocolOptions proto = ReadProtocolOptions(vm);
  const auto active = ExperimentActiveExtra(vm, proto);
  std::vector<ModelOptions> mos;
  for (const auto& f : families) mos.push_back(ReadModelOptions(vm, f));
  const std::string data = vm["data"].as<std::string>();
  Dataset ds = ReadDataset(data);
  if (vm.count("json")) CheckOutputPath(vm["json"].as<std::string>());
  const ProgressFn progress = StderrProgress(vm);
  Json out = Json::Array();
  for (const auto& mo : mos) {
    Json m = prefmix::RunExperiment(ds, mo, proto, progress, active.get());
    Json opts = mo.ToJson();
    opts["protocol"] = proto.name;
    m["provenance"] = Provenance(vm, data, device, opts);
    out.push_back(m);
  }
  if (out.size() > 1 && proto.name == "subsample") AddPairedTests(&out);
  WriteJson(out.size() == 1 ? out.items()[0] : out, vm["json"].as<std::string>());
  return 0;
}

}  // namespace prefmix::apps
