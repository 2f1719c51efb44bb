// prefmix generate: a synthetic dataset with planted truth (data/generate.h).
#include <initializer_list>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/io/h5io.h"
#include "data/generate.h"

namespace prefmix::apps {
namespace {

using data::GenerateKind;
using data::GenerateOptions;

// "default: groups 300, lowrank 300, ideal-point 300" from the presets of the kinds a knob
// applies to, so the help text and the defaults come from one place (data/generate.h).
template <typename Getter>
std::string PresetDefaults(const char* what, Getter get,
                           std::initializer_list<GenerateKind> kinds = {
                               GenerateKind::kGroups, GenerateKind::kLowrank,
                               GenerateKind::kIdealPoint}) {
  std::ostringstream os;
  os << what << " (default:";
  bool first = true;
  for (GenerateKind kind : kinds) {
    os << (first ? " " : ", ") << data::KindName(kind) << " " << get(GenerateOptions::Preset(kind));
    first = false;
  }
  os << ")";
  return os.str();
}

std::string Join(const std::vector<double>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  return v.empty() ? "equal" : os.str();
}

// "70,20,10" -> {70, 20, 10}; throws naming --group-sizes on anything else.
std::vector<double> ParseSizes(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string field;
  while (std::getline(ss, field, ',')) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(field, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    PREFMIX_CHECK_INPUT(used > 0 && field.find_first_not_of(" \t", used) == std::string::npos,
                        "--group-sizes: '", field, "' in '", text,
                        "' is not a number (expected percentages like 70,20,10)");
    out.push_back(v);
  }
  PREFMIX_CHECK_INPUT(!out.empty() && text.back() != ',', "--group-sizes: '", text,
                      "' is not a comma-separated list of percentages (e.g. 70,20,10)");
  return out;
}

}  // namespace

int RunGenerate(int argc, char** argv) {
  using O = const GenerateOptions&;
  const std::initializer_list<GenerateKind> kGroupsOnly = {GenerateKind::kGroups};
  const std::initializer_list<GenerateKind> kMixtures = {GenerateKind::kLowrank,
                                                         GenerateKind::kIdealPoint};
  const std::string users_help = PresetDefaults("number of users", [](O o) { return o.n_users; });
  const std::string pairs_help =
      PresetDefaults("comparisons per user", [](O o) { return o.pairs_per_user; });
  const std::string items_help = PresetDefaults("number of items", [](O o) { return o.n_items; });
  const std::string dim_help = PresetDefaults("embedding dimension D", [](O o) { return o.dim; });
  const std::string k_help = PresetDefaults(
      "groups (groups), directions (lowrank) or prototypes (ideal-point)", [](O o) { return o.k; });
  const std::string sizes_help = PresetDefaults(
      "groups only: percent of users per group, summing to 100; with --k other than the "
      "preset's, equal sizes unless given",
      [](O o) { return Join(o.group_sizes); }, kGroupsOnly);
  const std::string similarity_help = PresetDefaults(
      "groups only: cosine between any two group reward vectors, in [-1/(K-1), 1)",
      [](O o) { return o.group_similarity; }, kGroupsOnly);
  const std::string correlation_help =
      PresetDefaults("P(attribute 'segment' equals the user's (argmax) group)",
                     [](O o) { return o.attribute_correlation; });
  const std::string alpha_help = PresetDefaults(
      "Dirichlet concentration of the user weights", [](O o) { return o.alpha; }, kMixtures);
  const std::string latent_help =
      PresetDefaults("dimension d of the item map f and of the prototypes",
                     [](O o) { return o.latent_dim; }, {GenerateKind::kIdealPoint});
  const std::string scale_help = PresetDefaults("BT inverse temperature, folded into the rewards",
                                                [](O o) { return o.scale; });

  // Every knob's default depends on --kind, so none is given to program_options: an absent
  // flag means the kind's preset value.
  po::options_description desc("generate options");
  desc.add_options()                                                                   //
      ("kind", po::value<std::string>(), "groups | lowrank | ideal-point (required)")  //
      ("preset", po::value<std::string>()->default_value("standard"),
       "standard | sparse (sparse: 5,000 users with 10 pairs each, as crowd data; every knob "
       "below overrides the preset)")                                                      //
      ("out", po::value<std::string>(), "output dataset file, HDF5 schema v1 (required)")  //
      ("users", po::value<int64_t>(), users_help.c_str())                                  //
      ("pairs-per-user", po::value<int64_t>(), pairs_help.c_str())                         //
      ("items", po::value<int64_t>(), items_help.c_str())                                  //
      ("dim", po::value<int64_t>(), dim_help.c_str())                                      //
      ("k", po::value<int64_t>(), k_help.c_str())                                          //
      ("group-sizes", po::value<std::string>(), sizes_help.c_str())                        //
      ("group-similarity", po::value<double>(), similarity_help.c_str())                   //
      ("attribute-correlation", po::value<double>(), correlation_help.c_str())             //
      ("alpha", po::value<double>(), alpha_help.c_str())                                   //
      ("latent-dim", po::value<int64_t>(), latent_help.c_str())                            //
      ("scale", po::value<double>(), scale_help.c_str());
  AddCommonOptions(desc);
  po::variables_map vm;
  const std::string usage =
      "usage: prefmix generate --kind groups|lowrank|ideal-point [--preset standard|sparse] --out "
      "D.h5 [options]\n"
      "Writes a synthetic dataset with planted truth (/truth/*); every knob defaults to the\n"
      "kind's preset. Prints a summary with the oracle accuracy to stderr.";
  if (!ParseCommandLine(argc, argv, usage, desc, vm)) return 0;
  Require(vm, "kind");
  Require(vm, "out");
  ApplyCommonOptions(vm);

  const GenerateKind kind = data::ParseKind(vm["kind"].as<std::string>());
  GenerateOptions opts = GenerateOptions::Preset(kind, vm["preset"].as<std::string>());
  const GenerateOptions preset = opts;
  opts.seed = vm["seed"].as<uint64_t>();
  if (vm.count("users")) opts.n_users = vm["users"].as<int64_t>();
  if (vm.count("pairs-per-user")) opts.pairs_per_user = vm["pairs-per-user"].as<int64_t>();
  if (vm.count("items")) opts.n_items = vm["items"].as<int64_t>();
  if (vm.count("dim")) opts.dim = vm["dim"].as<int64_t>();
  if (vm.count("k")) opts.k = vm["k"].as<int64_t>();
  if (vm.count("attribute-correlation"))
    opts.attribute_correlation = vm["attribute-correlation"].as<double>();
  if (vm.count("scale")) opts.scale = vm["scale"].as<double>();

  // Knobs of other kinds are ignored with a note (docs/cli.md#ignored-options).
  auto ignored = [&](const char* flag) {
    std::cerr << "prefmix generate: note: --" << flag << " does not apply to --kind "
              << data::KindName(kind) << "; ignored\n";
  };
  const bool groups = kind == GenerateKind::kGroups;
  if (vm.count("group-sizes")) {
    if (groups)
      opts.group_sizes = ParseSizes(vm["group-sizes"].as<std::string>());
    else
      ignored("group-sizes");
  } else if (groups && opts.k != preset.k) {
    opts.group_sizes.clear();  // the preset's sizes are for the preset's K
  }
  if (vm.count("group-similarity")) {
    if (groups)
      opts.group_similarity = vm["group-similarity"].as<double>();
    else
      ignored("group-similarity");
  }
  if (vm.count("alpha")) {
    if (!groups)
      opts.alpha = vm["alpha"].as<double>();
    else
      ignored("alpha");
  }
  if (vm.count("latent-dim")) {
    if (kind == GenerateKind::kIdealPoint)
      opts.latent_dim = vm["latent-dim"].as<int64_t>();
    else
      ignored("latent-dim");
  }

  const Dataset ds = data::Generate(opts);
  const std::string out = vm["out"].as<std::string>();
  WriteDataset(ds, out);
  if (!vm["quiet"].as<bool>()) {
    std::ostringstream acc;
    acc.precision(4);
    acc << std::fixed << data::OracleAccuracy(ds.truth_pair_prob);
    std::cerr << "prefmix generate: wrote " << out << ": " << ds.description
              << "; comparisons=" << ds.n_comparisons() << " oracle_accuracy=" << acc.str() << "\n";
  }
  return 0;
}

}  // namespace prefmix::apps
