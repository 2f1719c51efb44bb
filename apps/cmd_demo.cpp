// prefmix demo: the main job on an embedded default. Generates the planted `groups` preset
// (no outside data), trains every registered family under the seen and unseen protocols, and
// prints one comparison table plus a JSON file.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/model/model.h"
#include "data/generate.h"

namespace prefmix::apps {

int RunDemo(int argc, char** argv) {
  po::options_description desc("demo options");
  desc.add_options()("kind", po::value<std::string>()->default_value("groups"),
                     "planted preset: groups | lowrank | ideal-point")(
      "models", po::value<std::string>()->default_value("all"),
      "families to run (default: every registered one)")(
      "json", po::value<std::string>()->default_value("prefmix-demo.json"),
      "where to write the JSON")("users", po::value<int64_t>(),
                                 "users in the planted dataset (default: the preset's 300)");
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(
          argc, argv,
          "usage: prefmix demo [--kind groups] [--models all] [--users N] [--json FILE]", desc, vm))
    return 0;
  const std::string device = ApplyCommonOptions(vm);
  const uint64_t seed = vm["seed"].as<uint64_t>();
  data::GenerateOptions go =
      data::GenerateOptions::Preset(data::ParseKind(vm["kind"].as<std::string>()));
  go.seed = seed;
  if (vm.count("users")) {
    go.n_users = vm["users"].as<int64_t>();
    if (go.n_users < 20)
      throw Error("--users: " + std::to_string(go.n_users) +
                  " (the demo needs at least 20 users: 20 % of them are held out as new users)");
  }
  Dataset ds = data::Generate(go);
  ds.source = "<demo:" + std::string(data::KindName(go.kind)) + ">";
  std::vector<std::string> families = vm["models"].as<std::string>() == "all"
                                          ? FamilyNames()
                                          : SplitList(vm["models"].as<std::string>(), "models");
  for (const auto& f : families) FindFamily(f);  // fail early on a typo
  const bool quiet = vm["quiet"].as<bool>();
  const bool tty = isatty(2);
  std::cerr << "prefmix demo: " << go.Describe() << "\n";
  Json results = Json::Array();
  struct Row {
    std::string family;
    double seen, unseen, worst, seconds, oracle;
    std::string worst_group;
  };
  std::vector<Row> rows;
  for (const auto& f : families) {
    ModelOptions mo;
    mo.family = f;
    mo.seed = seed;
    mo.threads = vm["threads"].as<int>();
    mo.device = device;
    const FamilyInfo& info = FindFamily(f);
    // The demo knows the planted number of components.
    for (const auto& s : info.options)
      if (s.key == "k") mo.Set("k", static_cast<int>(go.k));
    if (info.demo_budget) info.demo_budget(mo, static_cast<int>(go.k));
    ProtocolOptions seen;
    seen.seed = seed;
    ProtocolOptions unseen = seen;
    unseen.name = "unseen";
    unseen.shots = {0, 1, 2, 5, 10, 20};
    if (!quiet) std::cerr << "  " << f << ": seen protocol...\n";
    Json s = RunExperiment(
        ds, mo, seen,
        tty && !quiet ? ProgressFn([](const std::string& m) { std::cerr << "    " << m << "\n"; })
                      : ProgressFn());
    if (!quiet) std::cerr << "  " << f << ": unseen protocol...\n";
    Json u = RunExperiment(ds, mo, unseen);
    Json r = Json::Object();
    r["model"] = f;
    r["seen"] = s;
    r["unseen"] = u;
    results.push_back(r);
    Row row{f,
            s.at("accuracy").number(),
            u.at("accuracy").number(),
            s.contains("worst_group") ? s.at("worst_group").at("accuracy").number() : NAN,
            s.at("timing").at("train_seconds").number(),
            s.contains("oracle_accuracy") ? s.at("oracle_accuracy").number() : NAN,
            s.contains("worst_group") ? s.at("worst_group").at("attribute").str() + "=" +
                                            s.at("worst_group").at("group").str()
                                      : "-"};
    rows.push_back(row);
  }
  Json out = Json::Object();
  out["dataset"] = go.Describe();
  out["results"] = results;
  Json opts = Json::Object();
  opts["kind"] = data::KindName(go.kind);
  opts["seed"] = static_cast<uint64_t>(seed);
  out["provenance"] = Provenance(vm, "", device, opts);
  const std::string json_path = vm["json"].as<std::string>();
  WriteJson(out, json_path);
  std::printf("\n%-10s %8s %8s %14s  %-22s %9s\n", "family", "seen", "unseen", "worst-group",
              "(group)", "train s");
  for (const auto& r : rows)
    std::printf("%-10s %8.3f %8.3f %14.3f  %-22s %9.2f\n", r.family.c_str(), r.seen, r.unseen,
                r.worst, r.worst_group.c_str(), r.seconds);
  if (!rows.empty() && !std::isnan(rows[0].oracle))
    std::printf("%-10s %8.3f   (accuracy of the true probabilities on the seen test pairs)\n",
                "oracle", rows[0].oracle);
  std::printf(
      "\nseen = held-out pairs of training users; unseen = new users adapted from 20 pairs;\n"
      "worst-group = lowest per-group accuracy (seen) over all attributes.\n");
  for (const auto& r : rows)
    if (!FindFamily(r.family).demo_note.empty())
      std::printf("%s\n", FindFamily(r.family).demo_note.c_str());
  std::printf("JSON: %s\n", json_path.c_str());
  return 0;
}

}  // namespace prefmix::apps
