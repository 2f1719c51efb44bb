// prefmix score: each user's reward of every item -> /scores [n_users, n_items].
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/h5io.h"

namespace prefmix::apps {

int RunScore(int argc, char** argv) {
  po::options_description desc("score options");
  desc.add_options()("model-file", po::value<std::string>(), "trained model file")(
      "data", po::value<std::string>(), "dataset file (.h5): items to score (and users)")(
      "users-file", po::value<std::string>(),
      "USERS.h5 from adapt (default: the dataset's users, "
      "matched by id to the training users)")("out", po::value<std::string>(),
                                              "output SCORES.h5 (/users/ids, /scores)");
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix score --model-file MODEL --data D.h5 [--users-file "
                        "USERS.h5] --out SCORES.h5",
                        desc, vm))
    return 0;
  Require(vm, "model-file");
  Require(vm, "data");
  Require(vm, "out");
  ApplyCommonOptions(vm);
  auto model = LoadModel(vm["model-file"].as<std::string>());
  Dataset ds = ReadDataset(vm["data"].as<std::string>());
  CheckCompatible(*model, ds);
  std::vector<std::string> ids;
  RowMatrixF lat;
  if (vm.count("users-file")) {
    const std::string uf = vm["users-file"].as<std::string>();
    ReadUserMatrix(uf, "/users/latent", &ids, &lat);
    PREFMIX_CHECK_INPUT(lat.cols() == model->LatentDim(), uf, ": /users/latent has ", lat.cols(),
                        " columns, the model's latent size is ", model->LatentDim());
  } else {
    ids = ds.user_ids;
    lat = model->LatentsFor(ds);
  }
  RowMatrixF scores = model->Score(ds, lat);
  WriteUserMatrix(vm["out"].as<std::string>(), ids, "/scores", scores);
  return 0;
}

}  // namespace prefmix::apps
