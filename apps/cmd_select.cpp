// prefmix select: MaxMin (egalitarian) or utilitarian choice among candidate items by the
// calibrated per-head scores of a multi-head model (docs/families.md#maxmin-selection and
// docs/cli.md), with each group's win rate of the pick judged by the planted true rewards where the
// data has them.
#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"
#include "core/model/maxmin.h"

namespace prefmix::apps {

int RunSelect(int argc, char** argv) {
  SelectOptions d;
  po::options_description desc("select options");
  desc.add_options()("model-file", po::value<std::string>(), "trained model file")(
      "data", po::value<std::string>(), "dataset file (.h5): the candidate items (and truth)")(
      "aggregate", po::value<std::string>()->default_value(d.aggregate),
      "min (egalitarian: argmax min_k q_k) | mean (utilitarian: argmax sum_k pi_k q_k)")(
      "json", po::value<std::string>(), "output (.json, or - for stdout)")(
      "candidates", po::value<int>()->default_value(d.candidates),
      "0: all items (per context: the items compared under it); N: N random items per repeat")(
      "repeats", po::value<int>()->default_value(d.repeats),
      "candidate sets drawn when --candidates N");
  AddCommonOptions(desc);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv,
                        "usage: prefmix select --model-file MODEL --data D.h5 --aggregate min|mean "
                        "--json OUT.json [--candidates N --repeats R --seed S]",
                        desc, vm))
    return 0;
  Require(vm, "model-file");
  Require(vm, "data");
  Require(vm, "json");
  const std::string device = ApplyCommonOptions(vm);
  SelectOptions o;
  o.aggregate = vm["aggregate"].as<std::string>();
  o.candidates = vm["candidates"].as<int>();
  o.repeats = vm["repeats"].as<int>();
  o.seed = vm["seed"].as<uint64_t>();
  const std::string model_file = vm["model-file"].as<std::string>();
  auto model = LoadModel(model_file);
  const std::string data = vm["data"].as<std::string>();
  Dataset ds = ReadDataset(data);
  CheckOutputPath(vm["json"].as<std::string>());
  CheckCompatible(*model, ds);
  ValidateSelectOptions(o, ds.n_items());
  RowMatrixF rewards;
  Eigen::VectorXd weights;
  if (const auto* mh = dynamic_cast<const MultiHeadModel*>(model.get())) {
    rewards = mh->HeadRewards(ds);
    weights = mh->HeadWeights();
  } else {
    // One head: the population reward (min and mean then pick the same item).
    RowMatrixF pop(1, model->LatentDim());
    if (model->LatentDim() > 0) pop.row(0) = model->PopulationLatent().transpose();
    rewards = model->Score(ds, pop);
    weights = Eigen::VectorXd::Ones(1);
  }
  Json out = Json::Object();
  out["model"] = model->Family();
  Json sel = RunSelection(ds, rewards, weights, o);
  for (const auto& kv : sel.members()) out[kv.first] = kv.second;
  Json opts = model->options().ToJson();
  opts["model_file"] = model_file;
  opts["aggregate"] = o.aggregate;
  opts["candidates"] = o.candidates;
  opts["repeats"] = o.repeats;
  out["provenance"] = Provenance(vm, data, device, opts);
  WriteJson(out, vm["json"].as<std::string>());
  return 0;
}

}  // namespace prefmix::apps
