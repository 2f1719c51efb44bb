// prefmix inspect D.h5: a summary of a dataset file.
#include <algorithm>
#include <iostream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/eval/metrics.h"
#include "core/io/h5io.h"

namespace prefmix::apps {

int RunInspect(int argc, char** argv) {
  po::options_description desc("inspect options");
  desc.add_options()("data", po::value<std::string>(), "dataset file (.h5)")(
      "json", po::bool_switch(), "print the summary as JSON");
  po::positional_options_description pos;
  pos.add("data", 1);
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv, "usage: prefmix inspect D.h5 [--json]", desc, vm, &pos))
    return 0;
  Require(vm, "data");
  const std::string path = vm["data"].as<std::string>();
  Dataset ds = ReadDataset(path);
  PairSet all = ds.AllPairs();
  std::vector<double> per_user(ds.n_users(), 0);
  for (int32_t u : all.user) per_user[u] += 1;
  Json j = Json::Object();
  j["file"] = path;
  j["format_version"] = 1;
  if (!ds.embedding_model.empty()) j["embedding_model"] = ds.embedding_model;
  if (!ds.description.empty()) j["description"] = ds.description;
  j["items"] = ds.n_items();
  j["dim"] = ds.dim();
  j["users"] = ds.n_users();
  j["stored_comparisons"] = ds.n_comparisons();
  j["rankings"] = ds.n_rankings();
  j["ranking_pairs"] = ds.n_ranking_pairs();
  j["comparisons"] = static_cast<int64_t>(all.size());
  Json cpu = Json::Object();
  cpu["min"] = *std::min_element(per_user.begin(), per_user.end());
  cpu["median"] = Percentile(per_user, 50);
  cpu["max"] = *std::max_element(per_user.begin(), per_user.end());
  j["comparisons_per_user"] = cpu;
  j["contexts"] = ds.has_contexts ? Json(static_cast<int64_t>(ds.contexts.rows())) : Json(false);
  j["user_features"] =
      ds.user_features.size() ? Json(static_cast<int64_t>(ds.user_features.cols())) : Json(false);
  Json attrs = Json::Object();
  for (const auto& a : ds.attributes) {
    Json g = Json::Object();
    std::vector<int64_t> count(std::max(a.NumCodes(), 0) + 1, 0);
    for (int32_t c : a.codes) ++count[c < 0 ? count.size() - 1 : c];
    for (size_t c = 0; c < count.size(); ++c)
      if (count[c])
        g[c + 1 == count.size() ? "unknown" : a.Label(static_cast<int32_t>(c))] = count[c];
    attrs[a.name] = g;
  }
  j["attributes"] = attrs;
  Json truth = Json::Array();
  if (!ds.truth_pair_prob.empty()) truth.push_back("pair_prob");
  if (!ds.truth_user_group.empty()) truth.push_back("user_group");
  if (ds.truth_user_weights.size()) truth.push_back("user_weights");
  if (ds.truth_group_item_reward.size()) truth.push_back("group_item_reward");
  j["truth"] = truth;
  if (vm["json"].as<bool>()) {
    std::cout << j.Dump(2);
    return 0;
  }
  std::cout << "file:         " << path << "\n";
  if (!ds.embedding_model.empty()) std::cout << "embedding:    " << ds.embedding_model << "\n";
  if (!ds.description.empty()) std::cout << "description:  " << ds.description << "\n";
  std::cout << "items:        " << ds.n_items() << "\n"
            << "dimension:    " << ds.dim() << "\n"
            << "users:        " << ds.n_users() << "\n"
            << "comparisons:  " << all.size() << " (" << ds.n_comparisons() << " stored, "
            << ds.n_ranking_pairs() << " from " << ds.n_rankings() << " rankings)\n"
            << "per user:     min " << cpu.at("min").number() << " / median "
            << cpu.at("median").number() << " / max " << cpu.at("max").number() << "\n"
            << "rankings:     " << (ds.has_rankings() ? "yes" : "no") << "\n"
            << "contexts:     "
            << (ds.has_contexts ? std::to_string(ds.contexts.rows()) + " x " +
                                      std::to_string(ds.contexts.cols())
                                : "no")
            << "\n"
            << "features:     "
            << (ds.user_features.size() ? std::to_string(ds.user_features.cols()) + " per user"
                                        : "no")
            << "\n";
  std::cout << "attributes:   " << (ds.attributes.empty() ? "none" : "") << "\n";
  for (const auto& kv : attrs.members()) {
    std::cout << "  " << kv.first << ":";
    for (const auto& g : kv.second.members())
      std::cout << " " << g.first << "=" << g.second.number();
    std::cout << "\n";
  }
  std::cout << "truth:        ";
  if (truth.size() == 0) std::cout << "none";
  for (const auto& t : truth.items()) std::cout << t.str() << " ";
  std::cout << "\n";
  return 0;
}

}  // namespace prefmix::apps
