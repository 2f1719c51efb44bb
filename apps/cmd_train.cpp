// prefmix train: fit a family on all pairs of a dataset (validation carved for selection).
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {
namespace {

/// --model auto's table on stderr: every candidate's validation score and the choice.
void PrintAutoChoice(const Json& a) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4);
  os << "auto: validation log loss / accuracy ("
     << static_cast<int64_t>(a.at("n_valid_pairs").number()) << " pairs):\n";
  for (const Json& c : a.at("candidates").items()) {
    os << "  " << std::left << std::setw(8) << c.at("candidate").str() << " ";
    if (c.contains("valid_log_loss"))
      os << c.at("valid_log_loss").number() << " / " << c.at("valid_accuracy").number()
         << std::setprecision(1) << "  (" << c.at("seconds").number() << " s)"
         << std::setprecision(4);
    else
      os << c.at("status").str();
    if (c.contains("degenerate") && c.at("degenerate").boolean()) os << "  degenerate";
    os << "\n";
  }
  os << "  chosen: " << a.at("chosen").str() << " (" << a.at("rule").str() << ")";
  const Json& g = a.at("personalization_gain");
  if (g.is_object())
    os << "; over pooled " << g.at("pooled").str() << ": log loss -"
       << g.at("valid_log_loss_gain").number() << ", accuracy +"
       << g.at("valid_accuracy_gain").number();
  std::cerr << os.str() << "\n";
}

}  // namespace

int RunTrain(int argc, char** argv) {
  po::options_description desc("train options");
  desc.add_options()("data", po::value<std::string>(), "dataset file (.h5)")(
      "model", po::value<std::string>(), "family (bt, lowrank, ...)")(
      "out", po::value<std::string>(), "model file to write")(
      "json", po::value<std::string>(),
      "also write the fit report (.json, or - for stdout): the family's choices on validation; "
      "for --model auto every candidate's validation score")(
      "valid-fraction", po::value<double>()->default_value(0.2),
      "share of each user's pairs used for model selection");
  AddModelOptions(desc);
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix train --data D.h5 --model FAMILY [options] --out MODEL",
                        desc, vm))
    return 0;
  Require(vm, "data");
  Require(vm, "model");
  Require(vm, "out");
  ApplyCommonOptions(vm);
  ModelOptions mo = ReadModelOptions(vm, vm["model"].as<std::string>());
  const double vf = vm["valid-fraction"].as<double>();
  PREFMIX_CHECK_INPUT(vf >= 0 && vf < 1, "--valid-fraction: ", vf, " is not in [0, 1)");
  Dataset ds = ReadDataset(vm["data"].as<std::string>());
  CheckOutputPath(vm["out"].as<std::string>());  // before training, not after
  if (vm.count("json")) CheckOutputPath(vm["json"].as<std::string>());
  PairSet train = ds.AllPairs(), valid;
  CarveValidation(&train, &valid, ds.n_users(), vf, mo.seed);
  auto model = MakeModel(mo);
  FitReport rep = model->Fit(ds, train, valid);
  // Both outputs or neither (and an older file at either path kept when a write fails).
  const std::string out = vm["out"].as<std::string>();
  Json j;
  if (vm.count("json")) {
    j = Json::Object();
    j["model"] = model->Family();
    j["requested"] = mo.family;
    j["n_train_pairs"] = static_cast<int64_t>(train.size());
    j["n_valid_pairs"] = static_cast<int64_t>(valid.size());
    j["fit"] = rep.details;
    j["timing"] = Json::Object();
    j["timing"]["train_seconds"] = rep.seconds;
    j["params"] = model->Params();
    j["provenance"] = Provenance(vm, vm["data"].as<std::string>(), mo.device, mo.ToJson());
  }
  {
    OutputGroup outputs;
    SaveModel(*model, out);
    if (vm.count("json")) WriteJson(j, vm["json"].as<std::string>());
    outputs.Commit();
  }
  if (!vm["quiet"].as<bool>()) {
    if (rep.details.contains("auto")) PrintAutoChoice(rep.details.at("auto"));
    std::cerr << "trained " << model->Family()
              << (model->Family() != mo.family ? " (chosen by " + mo.family + ")" : std::string())
              << " on " << train.size() << " pairs (" << valid.size() << " for validation) in "
              << rep.seconds << " s -> " << out << "\n";
  }
  return 0;
}

}  // namespace prefmix::apps
