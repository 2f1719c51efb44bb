// prefmix train: fit a family on all pairs of a dataset (validation carved for selection).
#include <iostream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {

int RunTrain(int argc, char** argv) {
  po::options_description desc("train options");
  desc.add_options()("data", po::value<std::string>(), "dataset file (.h5)")(
      "model", po::value<std::string>(), "family (bt, lowrank, ...)")(
      "out", po::value<std::string>(), "model file to write")(
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
  PairSet train = ds.AllPairs(), valid;
  CarveValidation(&train, &valid, ds.n_users(), vf, mo.seed);
  auto model = MakeModel(mo);
  FitReport rep = model->Fit(ds, train, valid);
  SaveModel(*model, vm["out"].as<std::string>());
  if (!vm["quiet"].as<bool>())
    std::cerr << "trained " << mo.family << " on " << train.size() << " pairs (" << valid.size()
              << " for validation) in " << rep.seconds << " s -> " << vm["out"].as<std::string>()
              << "\n";
  return 0;
}

}  // namespace prefmix::apps
