// prefmix score: each user's reward of every item -> /scores [n_users, n_items].
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
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
  AddUnknownUsersOption(desc);
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
  const std::string model_file = vm["model-file"].as<std::string>();
  auto model = LoadModel(model_file);
  const std::string model_sha = FileSha256(model_file);
  Dataset ds = ReadDataset(vm["data"].as<std::string>());
  CheckCompatible(*model, ds);
  CheckOutputPath(vm["out"].as<std::string>());
  std::vector<std::string> ids;
  RowMatrixF lat;
  if (vm.count("users-file")) {
    const std::string uf = vm["users-file"].as<std::string>();
    UserMatrixProvenance from;
    ReadUserMatrix(uf, "/users/latent", &ids, &lat, &from);
    // Latents mean something only under the model that produced them.
    PREFMIX_CHECK_INPUT(from.family.empty() || from.family == model->Family(), uf,
                        ": latents of family '", from.family, "', the model file is family '",
                        model->Family(), "'; run adapt with this model first");
    PREFMIX_CHECK_INPUT(from.model_sha256.empty() || from.model_sha256 == model_sha, uf,
                        ": latents adapted with another model file (sha256 ",
                        from.model_sha256.substr(0, 12), "), not ", model_file, " (sha256 ",
                        model_sha.substr(0, 12), "); run adapt with this model first");
    PREFMIX_CHECK_INPUT(lat.cols() == model->LatentDim(), uf, ": /users/latent has ", lat.cols(),
                        " columns, the model's latent size is ", model->LatentDim());
  } else {
    CheckUnknownUsers(vm, *model, ds, vm["data"].as<std::string>());
    ids = ds.user_ids;
    lat = model->LatentsFor(ds);
  }
  RowMatrixF scores = model->Score(ds, lat);
  UserMatrixProvenance prov;
  prov.family = model->Family();
  prov.model_sha256 = model_sha;
  if (!ds.item_ids.empty()) prov.item_ids_sha256 = StringsSha256(ds.item_ids);
  WriteUserMatrix(vm["out"].as<std::string>(), ids, "/scores", scores, prov);
  return 0;
}

}  // namespace prefmix::apps
