// Model / protocol option parsing shared by train, experiment and demo.
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
const char* kModelFlags[] = {
    "k",      "dim",      "epochs",         "lr",       "batch", "l2",       "arch",
    "hidden", "patience", "user-prior",     "no-refit", "em",    "em-prior", "restarts",
    "router", "balance",  "sample-entropy", "ideal",    "loss"};
const char* kVplFlags[] = {"beta", "anneal-period", "anneal-floor", "vpl-adapt"};
const char* kGpplFlags[] = {"gppl-users",  "gppl-residual", "item-kernel",  "components",
                            "inducing",    "ls-factor",     "svi-delay",    "svi-forget",
                            "gamma-shape", "gamma-rate-t",  "gamma-rate-v", "gamma-rate-w",
                            "gamma-rate-g"};
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
  ModelOptions d;
  desc.add_options()(
      "k", po::value<std::string>()->default_value(std::to_string(d.k)),
      "components: groups / prototypes / heads / basis size (or 'auto' where supported)")(
      "dim", po::value<int>()->default_value(d.dim),
      "projection or latent size (0: family default)")("epochs", po::value<int>()->default_value(0),
                                                       "maximum epochs (0: family default)")(
      "lr", po::value<double>()->default_value(0), "Adam step size (0: family default)")(
      "batch", po::value<int>()->default_value(d.batch),
      "mini-batch size in pairs (0: full batch)")("l2", po::value<double>()->default_value(d.l2),
                                                  "L2 strength (< 0: chosen on validation)")(
      "arch", po::value<std::string>()->default_value(d.arch), "bt: linear | mlp")(
      "hidden", po::value<int>()->default_value(d.hidden), "MLP hidden width")(
      "patience", po::value<int>()->default_value(d.patience), "early-stopping patience (epochs)")(
      "user-prior", po::value<double>()->default_value(d.user_prior),
      "lowrank: user-step prior strength (< 0: chosen on pseudo-unseen users)")(
      "no-refit", po::bool_switch(), "do not refit on train + validation after selection")(
      "em", po::value<std::string>()->default_value(d.em), "em-bt: E-step, hard | soft")(
      "em-prior", po::value<std::string>()->default_value(d.em_prior ? "on" : "off"),
      "em-bt: log pi_k in the E-step, on | off (off: MaxMin-RLHF's E-step)")(
      "restarts", po::value<int>()->default_value(d.restarts), "em-bt: EM starts per K")(
      "router", po::value<std::string>()->default_value(d.router),
      "micro: router input, context | attributes | features")(
      "balance", po::value<double>()->default_value(d.balance),
      "micro: load-balancing weight of the routing entropy term")(
      "sample-entropy", po::bool_switch(),
      "micro: per-sample routing entropy (MiCRo's code) instead of the batch-mean entropy")(
      "beta", po::value<double>()->default_value(d.beta),
      "vpl: KL weight beta (< 0: family default 1e-4)")(
      "anneal-period", po::value<int>()->default_value(d.anneal_period),
      "vpl: cyclical cosine KL annealing period (optimizer steps)")(
      "anneal-floor", po::value<double>()->default_value(d.anneal_floor, "0.1"),
      "vpl: KL annealing floor in [0, 1]")(
      "vpl-adapt", po::value<std::string>()->default_value(d.vpl_adapt),
      "vpl: a user's z (seen and new users), auto (the one of the two below with the lower "
      "log loss on training users held out of an extra fit) | population (posterior mean over the "
      "training "
      "users' encoded mu given the user's pairs) | encoder (VPL's amortized mu of the pairs)")(
      "ideal", po::value<std::string>()->default_value(d.ideal),
      "pal-a: ideal point, Pw (a = P'w) | f(Pw) (PAL's; needs --dim = D) | f(P)w")(
      "loss", po::value<std::string>()->default_value(d.loss),
      "pal-a, pal-b: training loss, bt (Bradley-Terry) | hinge (PAL's)")(
      "gppl-users", po::value<std::string>()->default_value(d.gppl_users),
      "gppl: crowd (crowdGPPL) | per-user (a GP per person) | pooled (one GP for everybody)")(
      "gppl-residual", po::value<std::string>()->default_value(d.gppl_residual),
      "gppl crowd: add a per-user GP g_u(x) to f_u, on | off")(
      "item-kernel", po::value<std::string>()->default_value(d.item_kernel),
      "gppl: item kernel, matern32 (Matern 3/2, median-heuristic length-scales) | identity")(
      "components", po::value<int>()->default_value(d.components),
      "gppl: latent components C (crowd)")(
      "inducing", po::value<int>()->default_value(d.inducing),
      "gppl: inducing items M (all items when there are at most M)")(
      "ls-factor", po::value<double>()->default_value(d.ls_factor, "1"),
      "gppl: length-scale = factor x the median heuristic")(
      "svi-delay", po::value<double>()->default_value(d.svi_delay, "1"),
      "gppl: SVI step size (i + delay)^-forget")(
      "svi-forget", po::value<double>()->default_value(d.svi_forget, "-1"),
      "gppl: SVI forgetting rate in [0, 1] (< 0: 0 with one full batch, else 0.9)")(
      "gamma-shape", po::value<double>()->default_value(d.gamma_shape, "1"),
      "gppl: shape of the inverse-scale gamma priors")(
      "gamma-rate-t", po::value<double>()->default_value(d.gamma_rate_t, "100"),
      "gppl: rate of the consensus (and per-user / pooled GP) inverse-scale prior")(
      "gamma-rate-v", po::value<double>()->default_value(d.gamma_rate_v, "10"),
      "gppl: rate of the item components' inverse-scale priors")(
      "gamma-rate-w", po::value<double>()->default_value(d.gamma_rate_w, "10"),
      "gppl: rate of the user weights' inverse-scale priors")(
      "gamma-rate-g", po::value<double>()->default_value(d.gamma_rate_g, "1000"),
      "gppl crowd: rate of the per-user residual's inverse-scale prior");
}

ModelOptions ReadModelOptions(const po::variables_map& vm, const std::string& family,
                              std::vector<std::string>* notes) {
  const FamilyInfo& info = FindFamily(family);
  ModelOptions o;
  o.family = family;
  std::string k = vm["k"].as<std::string>();
  if (k == "auto") {
    o.k_auto = true;
  } else {
    const std::vector<int> ks = ParseIntList(k, "k");
    PREFMIX_CHECK_INPUT(ks.size() == 1, "--k: '", k,
                        "' is a list; give one value or 'auto' (a grid of K values is "
                        "`experiment --grid`)");
    o.k = ks[0];
    PREFMIX_CHECK_INPUT(o.k >= 1, "--k: ", k, " must be >= 1 or 'auto'");
  }
  o.dim = vm["dim"].as<int>();
  o.epochs = vm["epochs"].as<int>();
  o.lr = vm["lr"].as<double>();
  o.batch = vm["batch"].as<int>();
  o.l2 = vm["l2"].as<double>();
  o.arch = vm["arch"].as<std::string>();
  o.hidden = vm["hidden"].as<int>();
  o.patience = vm["patience"].as<int>();
  o.user_prior = vm["user-prior"].as<double>();
  o.refit = !vm["no-refit"].as<bool>();
  o.em = vm["em"].as<std::string>();
  const std::string em_prior = vm["em-prior"].as<std::string>();
  PREFMIX_CHECK_INPUT(em_prior == "on" || em_prior == "off", "--em-prior: '", em_prior,
                      "' is not one of on, off");
  o.em_prior = em_prior == "on";
  o.restarts = vm["restarts"].as<int>();
  o.router = vm["router"].as<std::string>();
  o.balance = vm["balance"].as<double>();
  o.sample_entropy = vm["sample-entropy"].as<bool>();
  o.beta = vm["beta"].as<double>();
  o.anneal_period = vm["anneal-period"].as<int>();
  o.anneal_floor = vm["anneal-floor"].as<double>();
  o.vpl_adapt = vm["vpl-adapt"].as<std::string>();
  o.ideal = vm["ideal"].as<std::string>();
  o.loss = vm["loss"].as<std::string>();
  o.gppl_users = vm["gppl-users"].as<std::string>();
  o.item_kernel = vm["item-kernel"].as<std::string>();
  o.gppl_residual = vm["gppl-residual"].as<std::string>();
  o.components = vm["components"].as<int>();
  o.inducing = vm["inducing"].as<int>();
  o.ls_factor = vm["ls-factor"].as<double>();
  o.svi_delay = vm["svi-delay"].as<double>();
  o.svi_forget = vm["svi-forget"].as<double>();
  o.gamma_shape = vm["gamma-shape"].as<double>();
  o.gamma_rate_t = vm["gamma-rate-t"].as<double>();
  o.gamma_rate_v = vm["gamma-rate-v"].as<double>();
  o.gamma_rate_w = vm["gamma-rate-w"].as<double>();
  o.gamma_rate_g = vm["gamma-rate-g"].as<double>();
  o.seed = vm["seed"].as<uint64_t>();
  o.threads = vm["threads"].as<int>();
  o.device = vm["device"].as<std::string>();
  o.quiet = vm["quiet"].as<bool>();
  PREFMIX_CHECK_INPUT(o.epochs >= 0, "--epochs: ", o.epochs, " is negative");
  PREFMIX_CHECK_INPUT(o.lr >= 0 && std::isfinite(o.lr), "--lr: ", o.lr, " is not >= 0");
  PREFMIX_CHECK_INPUT(o.batch >= 0, "--batch: ", o.batch, " is negative");
  PREFMIX_CHECK_INPUT(o.patience >= 1, "--patience: ", o.patience, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.em == "hard" || o.em == "soft", "--em: '", o.em,
                      "' is not one of hard, soft");
  PREFMIX_CHECK_INPUT(o.restarts >= 1, "--restarts: ", o.restarts, " must be >= 1");
  PREFMIX_CHECK_INPUT(o.router == "context" || o.router == "attributes" || o.router == "features",
                      "--router: '", o.router, "' is not one of context, attributes, features");
  PREFMIX_CHECK_INPUT(o.ideal == "Pw" || o.ideal == "f(Pw)" || o.ideal == "f(P)w", "--ideal: '",
                      o.ideal, "' is not one of Pw, f(Pw), f(P)w");
  PREFMIX_CHECK_INPUT(o.loss == "bt" || o.loss == "hinge", "--loss: '", o.loss,
                      "' is not one of bt, hinge");
  PREFMIX_CHECK_INPUT(o.balance >= 0 && std::isfinite(o.balance), "--balance: ", o.balance,
                      " must be a finite number >= 0");
  // Negative means "choose on validation"; NaN or infinity is never a setting.
  PREFMIX_CHECK_INPUT(std::isfinite(o.l2), "--l2: ", o.l2,
                      " is not a number (give a value >= 0, or < 0 to choose on validation)");
  PREFMIX_CHECK_INPUT(std::isfinite(o.user_prior), "--user-prior: ", o.user_prior,
                      " is not a number (give a value >= 0, or < 0 to choose on validation)");
  PREFMIX_CHECK_INPUT(std::isfinite(o.beta), "--beta: ", o.beta, " is not a number");
  std::vector<const char*> flags(std::begin(kModelFlags), std::end(kModelFlags));
  flags.insert(flags.end(), std::begin(kVplFlags), std::end(kVplFlags));
  flags.insert(flags.end(), std::begin(kGpplFlags), std::end(kGpplFlags));
  for (const char* flag : flags) {
    if (!vm.count(flag) || vm[flag].defaulted()) continue;
    if (std::string(flag) == "no-refit" && !vm[flag].as<bool>()) continue;
    if (std::string(flag) == "sample-entropy" && !vm[flag].as<bool>()) continue;
    std::string key = flag;
    for (auto& c : key)
      if (c == '-') c = '_';
    if (key == "no_refit") key = "refit";
    bool used = false;
    for (const auto& u : info.options) used |= u == key;
    if (used) continue;
    const std::string note =
        Cat("--", flag, " does not apply to family '", family, "' and is ignored");
    if (notes)
      notes->push_back(note);
    else
      std::cerr << "note: " << note << "\n";
  }
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
