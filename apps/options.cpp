// Model / protocol option parsing shared by train, experiment and demo.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "apps/cli_common.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/h5io.h"
#include "core/threads.h"
#include "prefmix/version.h"

namespace prefmix::apps {

namespace {

/// Every flag some family declares, once, with the declaring families (in presentation order).
struct FlagEntry {
  OptionSpec spec;  ///< the first declaration (type, flag and help are the same in every family)
  std::vector<std::pair<std::string, const OptionSpec*>> families;
};

std::vector<FlagEntry> AllModelFlags() {
  std::vector<FlagEntry> out;
  for (const auto& family : FamilyNames(true)) {
    for (const auto& s : FamilyOptions(family)) {
      auto it = std::find_if(out.begin(), out.end(),
                             [&](const FlagEntry& e) { return e.spec.Flag() == s.Flag(); });
      if (it == out.end()) {
        out.push_back({s, {}});
        it = out.end() - 1;
      }
      PREFMIX_ASSERT(it->spec.key == s.key && it->spec.type == s.type, "families declare ",
                     s.Dashed(), " with different keys or types");
      it->families.emplace_back(family, &s);
    }
  }
  return out;
}

/// "bt, lowrank: -1 (< 0: chosen on validation); vpl: 1e-3 (Adam weight decay)".
std::string DefaultsLine(const FlagEntry& e) {
  std::vector<std::pair<std::string, std::string>> groups;  // (default and rule, families)
  for (const auto& [family, spec] : e.families) {
    std::string d = spec->type == OptionType::kSwitch ? spec->key + " " + spec->value : spec->value;
    if (!spec->rule.empty()) d += " (" + spec->rule + ")";
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == d; });
    if (it == groups.end())
      groups.emplace_back(d, family);
    else
      it->second += ", " + family;
  }
  std::string out;
  for (const auto& [d, families] : groups) out += (out.empty() ? "" : "; ") + families + ": " + d;
  return out;
}

}  // namespace

std::vector<std::string> SplitList(const std::string& text, const char* flag) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::stringstream ss(text + ",");  // so that a trailing comma yields an empty element
  std::string item;
  while (std::getline(ss, item, ',')) {
    // `--models bt, lowrank` reaches here as "bt,": an empty element is always a mistake.
    PREFMIX_CHECK_INPUT(!item.empty() && item.find_first_of(" \t") == std::string::npos,
                        flag ? Cat("--", flag, ": '") : std::string("list '"), text,
                        "' has an empty or blank element (write the list without spaces, "
                        "e.g. a,b,c)");
    out.push_back(item);
  }
  return out;
}

std::vector<int> ParseIntList(const std::string& text, const char* flag) {
  std::vector<int> out;
  for (const auto& s : SplitList(text, flag)) {
    size_t pos = 0;
    int v = 0;
    try {
      v = std::stoi(s, &pos);
    } catch (...) {
      pos = 0;
    }
    PREFMIX_CHECK_INPUT(pos == s.size() && !s.empty(), "--", flag, ": '", s,
                        "' is not an integer (expected a list like 1,2,5)");
    out.push_back(v);
  }
  PREFMIX_CHECK_INPUT(!out.empty(), "--", flag, ": empty list");
  return out;
}

void AddModelOptions(po::options_description& desc) {
  // Generated from the families' declarations (core/model/options.h); --help shows each family's
  // default. Values are taken as text and parsed by the declaring family's spec.
  for (const FlagEntry& e : AllModelFlags()) {
    std::string help = e.spec.help;
    if (e.spec.type == OptionType::kText || e.spec.type == OptionType::kOnOff)
      help += " {" + e.spec.TypeName() + "}";
    help += " [" + DefaultsLine(e) + "]";
    const std::string flag = e.spec.Flag();
    if (e.spec.type == OptionType::kSwitch)
      desc.add_options()(flag.c_str(), po::bool_switch(), help.c_str());
    else
      desc.add_options()(flag.c_str(), po::value<std::string>(), help.c_str());
  }
}

ModelOptions ReadModelOptions(const po::variables_map& vm, const std::string& family,
                              std::vector<std::string>* notes) {
  FindFamily(family);  // an unknown family is an error naming the known ones
  ModelOptions o;
  o.family = family;
  const std::vector<OptionSpec>& specs = FamilyOptions(family);
  for (const FlagEntry& e : AllModelFlags()) {
    const std::string flag = e.spec.Flag();
    if (!vm.count(flag) || vm[flag].defaulted()) continue;
    const bool is_switch = e.spec.type == OptionType::kSwitch;
    if (is_switch && !vm[flag].as<bool>()) continue;
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.Flag() == flag) spec = &s;
    if (!spec) {
      const std::string note =
          Cat("--", flag, " does not apply to family '", family, "' and is ignored");
      if (notes)
        notes->push_back(note);
      else
        std::cerr << "note: " << note << "\n";
      continue;
    }
    o.values[spec->key] =
        is_switch ? Json(spec->value != "on") : spec->Parse(vm[flag].as<std::string>());
  }
  o.seed = vm["seed"].as<uint64_t>();
  o.threads = vm["threads"].as<int>();
  o.device = vm["device"].as<std::string>();
  o.quiet = vm["quiet"].as<bool>();
  ResolveOptions(o);
  return o;
}

void AddProtocolOptions(po::options_description& desc) {
  ProtocolOptions d;
  desc.add_options()("protocol", po::value<std::string>()->default_value(d.name),
                     "seen | unseen | subsample")(
      "test-fraction", po::value<double>()->default_value(d.test_fraction),
      "seen: share of each user's pairs for test")(
      "unseen-fraction", po::value<double>()->default_value(d.unseen_fraction),
      "unseen: share of users held out")("shots",
                                         po::value<std::string>()->default_value("1,2,5,10,20"),
                                         "unseen: support sizes (0 = cold start)")(
      "users", po::value<int>()->default_value(d.users), "subsample: users per repeat (0 = all)")(
      "train-pairs", po::value<int>()->default_value(d.train_pairs),
      "subsample: training pairs per user")("test-pairs",
                                            po::value<int>()->default_value(d.test_pairs),
                                            "subsample: test pairs per user")(
      "repeats", po::value<int>()->default_value(d.repeats), "subsample: repeats")(
      "valid-fraction", po::value<double>()->default_value(d.valid_fraction),
      "share of each training user's pairs used for model selection")(
      "min-group-users", po::value<int>()->default_value(d.min_group_users),
      "per_group lists groups with at least this many users")(
      "online", po::bool_switch(),
      "unseen: also feed each held-out user's pairs one at a time to the family's online user "
      "step and report accuracy on the next pair vs labels seen (JSON key online; micro)")(
      "online-estimator", po::value<std::string>()->default_value(d.online_estimator),
      "online user step: quasi-bayes | map (micro)");
}

ProtocolOptions ReadProtocolOptions(const po::variables_map& vm) {
  ProtocolOptions o;
  o.name = vm["protocol"].as<std::string>();
  o.test_fraction = vm["test-fraction"].as<double>();
  o.unseen_fraction = vm["unseen-fraction"].as<double>();
  o.shots = ParseIntList(vm["shots"].as<std::string>(), "shots");
  o.users = vm["users"].as<int>();
  o.train_pairs = vm["train-pairs"].as<int>();
  o.test_pairs = vm["test-pairs"].as<int>();
  o.repeats = vm["repeats"].as<int>();
  o.valid_fraction = vm["valid-fraction"].as<double>();
  o.min_group_users = vm["min-group-users"].as<int>();
  o.online = vm["online"].as<bool>();
  o.online_estimator = vm["online-estimator"].as<std::string>();
  o.seed = vm["seed"].as<uint64_t>();
  ValidateProtocolOptions(o);
  return o;
}

Json Provenance(const po::variables_map& vm, const std::string& data_path,
                const std::string& device, const Json& options) {
  Json p = Json::Object();
  p["version"] = PREFMIX_VERSION;
  p["commit"] = PREFMIX_GIT_COMMIT;
  if (!data_path.empty()) {
    p["dataset"] = data_path;
    p["dataset_sha256"] = FileSha256(data_path);
  }
  p["threads"] = vm.count("threads") ? vm["threads"].as<int>() : GetThreads();
  p["device"] = device;
  p["options"] = options;
  return p;
}

void WriteJson(const Json& j, const std::string& path) {
  std::string text = j.Dump(2);
  if (path == "-") {
    std::cout << text;
    return;
  }
  WriteTextFileAtomic(path, text);
}

}  // namespace prefmix::apps
