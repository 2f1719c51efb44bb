// prefmix eval: metrics of a trained model on a dataset's pairs (users matched by id).
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/eval/experiment.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {

int RunEval(int argc, char** argv) {
  po::options_description desc("eval options");
  desc.add_options()("model-file", po::value<std::string>(), "trained model file")(
      "data", po::value<std::string>(), "dataset file (.h5)")(
      "json", po::value<std::string>(), "metrics output (.json, or - for stdout)")(
      "min-group-users", po::value<int>()->default_value(5), "per_group minimum users");
  AddUnknownUsersOption(desc);
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix eval --model-file MODEL --data D.h5 --json OUT.json", desc,
                        vm))
    return 0;
  Require(vm, "model-file");
  Require(vm, "data");
  Require(vm, "json");
  const std::string device = ApplyCommonOptions(vm);
  auto model = LoadModel(vm["model-file"].as<std::string>());
  const std::string data = vm["data"].as<std::string>();
  Dataset ds = ReadDataset(data);
  CheckCompatible(*model, ds);
  CheckOutputPath(vm["json"].as<std::string>());
  CheckUnknownUsers(vm, *model, ds, data);
  Json m = EvaluateModel(*model, ds, vm["min-group-users"].as<int>());
  Json opts = model->options().ToJson();
  opts["model_file"] = vm["model-file"].as<std::string>();
  m["provenance"] = Provenance(vm, data, device, opts);
  WriteJson(m, vm["json"].as<std::string>());
  return 0;
}

}  // namespace prefmix::apps
