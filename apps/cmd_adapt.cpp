// prefmix adapt: the user step for (new) users from all their pairs in a dataset, shared
// parameters frozen; writes /users/ids and /users/latent.
#include <chrono>
#include <iostream>

#include "apps/adapt_active.h"
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/h5io.h"

namespace prefmix::apps {

int RunAdapt(int argc, char** argv) {
  po::options_description desc("adapt options");
  desc.add_options()("model-file", po::value<std::string>(), "trained model file")(
      "data", po::value<std::string>(), "the new users' comparisons (.h5)")(
      "out", po::value<std::string>(), "output USERS.h5 (/users/ids, /users/latent)");
  AddCommonOptions(desc);
  AddAdaptActiveOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix adapt --model-file MODEL --data NEW.h5 --out USERS.h5",
                        desc, vm))
    return 0;
  Require(vm, "model-file");
  Require(vm, "data");
  Require(vm, "out");
  const std::string device = ApplyCommonOptions(vm);
  auto model = LoadModel(vm["model-file"].as<std::string>());
  Dataset ds = ReadDataset(vm["data"].as<std::string>());
  CheckCompatible(*model, ds);
  auto t0 = std::chrono::steady_clock::now();
  RowMatrixF lat;
  if (!RunAdaptActive(vm, *model, ds, &lat))
    lat = model->Adapt(ds, ds.AllPairs(), ds.n_users(), device);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WriteUserMatrix(vm["out"].as<std::string>(), ds.user_ids, "/users/latent", lat);
  if (!vm["quiet"].as<bool>())
    std::cerr << "adapted " << ds.n_users() << " users (latent size " << lat.cols() << ") in " << s
              << " s on " << device << "\n";
  return 0;
}

}  // namespace prefmix::apps
