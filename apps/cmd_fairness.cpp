// prefmix fairness: train/evaluate several families under the same split and report, per user
// group, how well each serves it: DIR/fairness.json (data/schema/fairness.schema.json) and a
// self-contained DIR/report.html.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/eval/fairness.h"
#include "core/eval/report.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {
namespace {

/// Writes DIR/report.html from a fairness.json written earlier.
int RenderOnly(const std::string& json_path, const std::string& dir) {
  std::ifstream in(json_path, std::ios::binary);
  PREFMIX_CHECK_INPUT(in, "--from-json: cannot open '", json_path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  Json f;
  try {
    f = Json::Parse(ss.str());
  } catch (const Error& e) {
    throw Error(Cat("--from-json: ", json_path, ": ", e.what()));
  }
  PREFMIX_CHECK_INPUT(f.is_object() && f.contains("format") && f.at("format").is_string() &&
                          f.at("format").str() == "prefmix.fairness",
                      "--from-json: ", json_path,
                      ": field 'format' is not \"prefmix.fairness\" (not a fairness.json)");
  for (const char* key : {"dataset", "protocol", "groupings", "bootstrap", "models"})
    PREFMIX_CHECK_INPUT(f.contains(key), "--from-json: ", json_path, ": missing field '", key, "'");
  CreateOutputDir(dir);
  std::vector<std::string> warnings;
  const std::string gnuplot = FindGnuplot();
  const std::string html = FairnessReportHtml(f, gnuplot, &warnings);
  for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
  if (gnuplot.empty())
    std::cerr << "note: gnuplot not found (Debian: gnuplot-nox); report.html has tables only\n";
  WriteTextFileAtomic(dir + "/report.html", html);
  return 0;
}

}  // namespace

int RunFairness(int argc, char** argv) {
  FairnessOptions d;
  po::options_description desc("fairness options");
  desc.add_options()("data", po::value<std::string>(), "dataset file (.h5)")(
      "models", po::value<std::string>(), "comma-separated families, or 'all' (every registered)")(
      "by", po::value<std::string>(), "attributes to break down by (default: every attribute)")(
      "out", po::value<std::string>(), "output directory (created if needed)")(
      "bootstrap", po::value<int>()->default_value(d.bootstrap),
      "bootstrap resamples over users for the intervals (0: none)")(
      "ci-level", po::value<double>()->default_value(d.ci_level, "0.95"), "interval level")(
      "hist-bins", po::value<int>()->default_value(d.hist_bins), "per-user histogram bins")(
      "no-closure", po::bool_switch(), "leave out the transitive-closure baseline")(
      "from-json", po::value<std::string>(),
      "only (re)draw DIR/report.html from an existing fairness.json (no training)");
  AddModelOptions(desc);
  AddProtocolOptions(desc);
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix fairness --data D.h5 --models F1,F2,... --protocol P "
                        "[--by attr1,attr2] --out DIR [options]",
                        desc, vm))
    return 0;
  Require(vm, "out");
  if (vm.count("from-json"))
    return RenderOnly(vm["from-json"].as<std::string>(), vm["out"].as<std::string>());
  Require(vm, "data");
  Require(vm, "models");
  const std::string device = ApplyCommonOptions(vm);
  std::vector<std::string> families = SplitList(vm["models"].as<std::string>(), "models");
  if (families.size() == 1 && families[0] == "all") families = FamilyNames();
  PREFMIX_CHECK_INPUT(!families.empty(), "--models: empty list");
  ProtocolOptions proto = ReadProtocolOptions(vm);
  std::vector<ModelOptions> mos;
  for (const auto& f : families) mos.push_back(ReadModelOptions(vm, f));
  FairnessOptions fo;
  if (vm.count("by")) {
    fo.by = SplitList(vm["by"].as<std::string>(), "by");
    PREFMIX_CHECK_INPUT(!fo.by.empty(), "--by: empty list");
  }
  fo.bootstrap = vm["bootstrap"].as<int>();
  fo.ci_level = vm["ci-level"].as<double>();
  fo.hist_bins = vm["hist-bins"].as<int>();
  fo.closure = !vm["no-closure"].as<bool>();
  const std::string data = vm["data"].as<std::string>();
  const std::string dir = vm["out"].as<std::string>();
  Dataset ds = ReadDataset(data);
  const auto groupings = FairnessGroupings(ds, fo.by);  // checks --by before any training
  CreateOutputDir(dir);
  const ProgressFn progress = StderrProgress(vm);
  ModelHook hook = [&](const Model& m, const Dataset& d2) {
    return SelectionWinRates(m, d2, groupings, proto.min_group_users, proto.seed);
  };
  Json out = prefmix::RunFairness(ds, mos, proto, fo, progress, hook);
  Json opts = Json::Object();
  Json fams = Json::Array();
  for (const auto& mo : mos) fams.push_back(mo.ToJson());
  opts["models"] = fams;
  opts["protocol"] = proto.name;
  opts["bootstrap"] = fo.bootstrap;
  opts["ci_level"] = fo.ci_level;
  out["provenance"] = Provenance(vm, data, device, opts);
  const std::string gnuplot = FindGnuplot();
  std::vector<std::string> warnings;
  const std::string html = FairnessReportHtml(out, gnuplot, &warnings);
  for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
  if (gnuplot.empty())
    std::cerr << "note: gnuplot not found (Debian: gnuplot-nox); report.html has tables only\n";
  WriteJson(out, dir + "/fairness.json");
  WriteTextFileAtomic(dir + "/report.html", html);
  if (progress) std::cerr << "wrote " << dir << "/fairness.json and " << dir << "/report.html\n";
  return 0;
}

}  // namespace prefmix::apps
