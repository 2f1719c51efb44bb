// Family `vpl`'s registry entry and options (personalization/vpl.h describes the model). The
// model itself is LibTorch code, part of the LibTorch module (core/torch/module.h): it is loaded
// the first time a vpl model is made, so that listing the families, --help and the other families
// never load LibTorch.
#include <memory>

#include "core/model/model.h"
#include "core/model/options.h"
#include "core/torch/module.h"

namespace prefmix::personalization {
namespace {

std::vector<OptionSpec> VplOptions() {
  OptionSpec beta = opt::Real("beta", "1e-4", "KL weight (VPL's Pets value)");
  beta.negative_is_default = true;
  OptionSpec adapt = opt::Text(
      "vpl_adapt", "auto", {"auto", "population", "encoder"},
      "a user's z (seen and new users): the posterior mean over the training users' encoded mu "
      "given the user's pairs (population), VPL's amortized mu of the pairs (encoder), or "
      "whichever predicts training users held out of an extra fit better (auto)");
  adapt.legacy = "encoder";  // files from before the option adapted with the encoder
  return {opt::Dim(0, "0: {4, 8, 16} chosen on validation"),
          opt::Epochs(200),
          opt::Lr("3e-3"),
          opt::Batch(512, ""),
          opt::L2("1e-3", "Adam weight decay"),
          opt::Text("arch", "linear", {"linear", "mlp"}, "the reward decoder: linear or an MLP"),
          opt::Hidden(64),
          opt::Patience(20),
          opt::Refit(),
          beta,
          opt::Int("anneal_period", 1000, "cyclical cosine KL annealing period (optimizer steps)",
                   1, 1e9),
          opt::Real("anneal_floor", "0.1", "KL annealing floor", 0, 1),
          adapt};
}

const bool kRegistered = RegisterFamily(
    {"vpl",
     "VPL: variational user latent z ~ q(z | context pairs) from a pair encoder + self-attention "
     "(precision-weighted pooling), reward decoder MLP([e; z]); amortized adaptation",
     VplOptions(),
     [](const ModelOptions& o) {
       return torchmodule::Need<std::unique_ptr<Model>(const ModelOptions&)>("vpl.make", "vpl")(o);
     },
     5,
     // The demo's budget: one latent size above the planted K, a narrower encoder and a
     // short schedule (about 10 s for both protocols; `experiment` keeps the defaults).
     [](ModelOptions& o, int planted_k) {
       o.Set("dim", planted_k + 1);
       o.Set("hidden", 32);
       o.Set("epochs", 30);
       o.Set("lr", 0.01);
       o.Set("refit", false);
     },
     "vpl runs on a demo budget (latent K + 1, hidden 32, 30 epochs, no refit)."});

}  // namespace
}  // namespace prefmix::personalization
