#include "apps/adapt_active.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "core/eval/active.h"
#include "core/io/atomic_file.h"

namespace prefmix::apps {

void AddAdaptActiveOptions(po::options_description& desc) {
  ActiveOptions d;
  desc.add_options()("active", po::value<int>()->default_value(0),
                     "ask N pairs per user from --pool by active selection (vpl), then adapt")(
      "pool", po::value<std::string>(),
      "candidate pairs POOL.csv: user,chosen,rejected (the label is revealed when asked)")(
      "criterion", po::value<std::string>()->default_value(d.criterion),
      "active selection: bald (information gain about z) | entropy (VPL's expected posterior "
      "entropy) | random")("asked", po::value<std::string>(),
                           "write the asked pairs (user,chosen,rejected,round)");
}

bool RunAdaptActive(const po::variables_map& vm, const Model& model, const Dataset& ds,
                    RowMatrixF* latents) {
  const int n = vm["active"].as<int>();
  PREFMIX_CHECK_INPUT(n >= 0, "--active: ", n, " must be >= 0");
  if (n == 0) {
    PREFMIX_CHECK_INPUT(!vm.count("pool"), "--pool needs --active N (N >= 1)");
    return false;
  }
  Require(vm, "pool");
  ActiveOptions o;
  o.queries = n;
  o.criterion = vm["criterion"].as<std::string>();
  o.seed = vm["seed"].as<uint64_t>();
  std::vector<AskedPair> asked;
  *latents = AdaptActive(model, ds, vm["pool"].as<std::string>(), o, &asked);
  if (vm.count("asked")) {
    std::ostringstream os;
    os << "user,chosen,rejected,round\n";
    for (const auto& a : asked)
      os << ds.user_ids[a.user] << "," << a.chosen << "," << a.rejected << "," << a.round << "\n";
    WriteTextFileAtomic(vm["asked"].as<std::string>(), os.str());
  }
  return true;
}

void AddExperimentActiveOptions(po::options_description& desc) {
  ActiveOptions d;
  desc.add_options()("active", po::value<int>()->default_value(0),
                     "unseen: also compare active query selection with random selection for "
                     "N questions per held-out user (vpl)")(
      "criterion", po::value<std::string>()->default_value(d.criterion),
      "active selection: bald (information gain about z) | entropy (VPL's expected posterior "
      "entropy) | random");
}

std::unique_ptr<UnseenExtra> ExperimentActiveExtra(const po::variables_map& vm,
                                                   const ProtocolOptions& proto) {
  const int n = vm["active"].as<int>();
  PREFMIX_CHECK_INPUT(n >= 0, "--active: ", n, " must be >= 0");
  if (n == 0) return nullptr;
  PREFMIX_CHECK_INPUT(proto.name == "unseen", "--active needs --protocol unseen (got '", proto.name,
                      "')");
  ActiveOptions o;
  o.queries = n;
  o.criterion = vm["criterion"].as<std::string>();
  o.seed = proto.seed;
  ValidateActiveOptions(o);
  const int max_shots = *std::max_element(proto.shots.begin(), proto.shots.end());
  auto extra = std::make_unique<UnseenExtra>();
  extra->key = "active";
  extra->run = [o, max_shots](const Model& m, const Dataset& ds, const PairSet& all,
                              const Split& s) { return ActiveCurve(m, ds, all, s, max_shots, o); };
  return extra;
}

}  // namespace prefmix::apps
