// prefmix adapt: the user step for (new) users from all their pairs in a dataset, shared
// parameters frozen; writes /users/ids and /users/latent. With --online the pairs are consumed
// one at a time (docs/protocols.md#online order) by the family's online user step, and --json
// writes the prequential metrics: every pair predicted from the user's earlier pairs only. With
// --active N --pool POOL.csv the pairs asked are chosen by active selection (apps/adapt_active.h).
#include <chrono>
#include <iostream>

#include "apps/adapt_active.h"
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/eval/experiment.h"
#include "core/eval/metrics.h"
#include "core/eval/protocol.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"

namespace prefmix::apps {

int RunAdapt(int argc, char** argv) {
  po::options_description desc("adapt options");
  desc.add_options()("model-file", po::value<std::string>(), "trained model file")(
      "data", po::value<std::string>(), "the new users' comparisons (.h5)")(
      "out", po::value<std::string>(), "output USERS.h5 (/users/ids, /users/latent)")(
      "online", po::bool_switch(),
      "consume each user's pairs one at a time (seeded order) with the online user step; the "
      "latent written is the state after all of them (micro)")(
      "online-estimator",
      po::value<std::string>()->default_value(ProtocolOptions().online_estimator),
      "online user step: quasi-bayes | map (micro)")(
      "json", po::value<std::string>(),
      "with --online: metrics JSON of the prequential predictions (protocol 'online', key "
      "online = accuracy on the next pair vs labels seen)")(
      "min-group-users", po::value<int>()->default_value(5),
      "with --json: per_group lists groups with at least this many users");
  AddCommonOptions(desc);
  AddAdaptActiveOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(
          argc, argv,
          "usage: prefmix adapt --model-file MODEL --data NEW.h5 --out USERS.h5 [--online "
          "[--online-estimator E] [--json OUT.json] | --active N --pool POOL.csv]",
          desc, vm))
    return 0;
  Require(vm, "model-file");
  Require(vm, "data");
  Require(vm, "out");
  const bool online = vm["online"].as<bool>();
  PREFMIX_CHECK_INPUT(online || !vm.count("json"),
                      "--json: needs --online (adapt writes metrics "
                      "only for the online user step)");
  PREFMIX_CHECK_INPUT(online || vm["online-estimator"].defaulted(),
                      "--online-estimator: needs --online");
  PREFMIX_CHECK_INPUT(!online || (vm["active"].as<int>() == 0 && !vm.count("pool")),
                      "--online: cannot be combined with --active / --pool");
  const int min_group_users = vm["min-group-users"].as<int>();
  PREFMIX_CHECK_INPUT(min_group_users >= 1, "--min-group-users: ", min_group_users,
                      " must be >= 1");
  const std::string device = ApplyCommonOptions(vm);
  auto model = LoadModel(vm["model-file"].as<std::string>());
  Dataset ds = ReadDataset(vm["data"].as<std::string>());
  CheckCompatible(*model, ds);
  // Every output is checked before any is written: all of them or none.
  for (const char* o : {"out", "json", "asked"})
    if (vm.count(o)) CheckOutputPath(vm[o].as<std::string>());
  OutputGroup outputs;  // --out, --json and --asked appear together or not at all
  auto t0 = std::chrono::steady_clock::now();
  RowMatrixF lat;
  Json metrics;
  if (online) {
    PREFMIX_CHECK_INPUT(device == "cpu", "--online: runs on the CPU; drop --device ", device);
    const std::string estimator = vm["online-estimator"].as<std::string>();
    const uint64_t seed = vm["seed"].as<uint64_t>();
    const PairSet stream = OnlineStream(ds.AllPairs(), ds.n_users(), seed);
    OnlineResult on = model->AdaptOnline(ds, stream, ds.n_users(), estimator);
    lat = std::move(on.latent);
    const double adapt_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (vm.count("json")) {
      // P(first preferred) from P(observed label), for the pair metrics.
      std::vector<double> first(stream.size());
      for (size_t j = 0; j < stream.size(); ++j)
        first[j] = stream.label[j] ? on.prob[j] : 1.0 - on.prob[j];
      metrics = Json::Object();
      metrics["model"] = model->Family();
      metrics["protocol"] = "online";
      metrics["seed"] = seed;
      const Json pm = PairMetrics(ds, stream, first, min_group_users);
      for (const auto& kv : pm.members()) metrics[kv.first] = kv.second;
      metrics["online"] = OnlineCurve(stream, on.prob, -1);
      metrics["online_estimator"] = estimator;
      Json t = Json::Object();
      t["train_seconds"] = 0.0;
      t["adapt_seconds"] = adapt_s;
      t["eval_seconds"] = 0.0;
      metrics["timing"] = t;
      metrics["params"] = model->Params();
      Json opts = model->options().ToJson();
      opts["online_estimator"] = estimator;
      metrics["provenance"] = Provenance(vm, vm["data"].as<std::string>(), device, opts);
    }
  } else if (!RunAdaptActive(vm, *model, ds, &lat)) {
    lat = model->Adapt(ds, ds.AllPairs(), ds.n_users(), device);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  UserMatrixProvenance prov;
  prov.family = model->Family();
  prov.model_sha256 = FileSha256(vm["model-file"].as<std::string>());
  WriteUserMatrix(vm["out"].as<std::string>(), ds.user_ids, "/users/latent", lat, prov);
  if (vm.count("json")) WriteJson(metrics, vm["json"].as<std::string>());
  outputs.Commit();
  if (!vm["quiet"].as<bool>())
    std::cerr << "adapted " << ds.n_users() << " users (latent size " << lat.cols() << ") in " << s
              << " s on " << device << (online ? " (online)" : "") << "\n";
  return 0;
}

}  // namespace prefmix::apps
