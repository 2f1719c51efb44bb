#include "core/model/model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/io/serialize.h"
#include "prefmix/version.h"

namespace prefmix {

Json ModelOptions::ToJson() const {
  Json j = Json::Object();
  j["family"] = family;
  j["k"] = k_auto ? Json("auto") : Json(k);
  j["dim"] = dim;
  j["epochs"] = epochs;
  j["lr"] = lr;
  j["batch"] = batch;
  j["l2"] = l2;
  j["arch"] = arch;
  j["hidden"] = hidden;
  j["patience"] = patience;
  j["user_prior"] = user_prior;
  j["refit"] = refit;
  j["em"] = em;
  j["em_prior"] = em_prior;
  j["restarts"] = restarts;
  j["router"] = router;
  j["balance"] = balance;
  j["sample_entropy"] = sample_entropy;
  j["beta"] = beta;
  j["anneal_period"] = anneal_period;
  j["anneal_floor"] = anneal_floor;
  j["vpl_adapt"] = vpl_adapt;
  j["ideal"] = ideal;
  j["loss"] = loss;
  j["gppl_users"] = gppl_users;
  j["item_kernel"] = item_kernel;
  j["gppl_residual"] = gppl_residual;
  j["components"] = components;
  j["inducing"] = inducing;
  j["ls_factor"] = ls_factor;
  j["svi_delay"] = svi_delay;
  j["svi_forget"] = svi_forget;
  j["gamma_shape"] = gamma_shape;
  j["gamma_rate_t"] = gamma_rate_t;
  j["gamma_rate_v"] = gamma_rate_v;
  j["gamma_rate_w"] = gamma_rate_w;
  j["gamma_rate_g"] = gamma_rate_g;
  j["seed"] = static_cast<uint64_t>(seed);
  j["threads"] = threads;
  j["device"] = device;
  return j;
}

namespace {
/// A whole-number option of type T: a JSON number without a fraction, in T's range (a cast of
/// anything else is undefined behaviour).
template <typename T>
T IntOption(const Json& j, const char* key) {
  const double v = j.at(key).number();
  // T's range as doubles: lo is exact, hi = max + 1 is a power of two (exact too).
  const double lo = static_cast<double>(std::numeric_limits<T>::min());
  const double hi = 2.0 * static_cast<double>(std::numeric_limits<T>::max() / 2 + 1);
  PREFMIX_CHECK_INPUT(v == std::floor(v) && v >= lo && v < hi, "options: '", key, "' = ", v,
                      " is not an integer in [", std::numeric_limits<T>::min(), ", ",
                      std::numeric_limits<T>::max(), "]");
  return static_cast<T>(v);
}
}  // namespace

ModelOptions ModelOptions::FromJson(const Json& j) {
  ModelOptions o;
  o.family = j.at("family").str();
  if (j.at("k").is_string())
    o.k_auto = true;
  else
    o.k = IntOption<int>(j, "k");
  o.dim = IntOption<int>(j, "dim");
  o.epochs = IntOption<int>(j, "epochs");
  o.lr = j.at("lr").number();
  o.batch = IntOption<int>(j, "batch");
  o.l2 = j.at("l2").number();
  o.arch = j.at("arch").str();
  o.hidden = IntOption<int>(j, "hidden");
  o.patience = IntOption<int>(j, "patience");
  o.user_prior = j.at("user_prior").number();
  o.refit = j.at("refit").boolean();
  // Added after format version 1's first files: optional, defaults when absent.
  if (j.contains("em")) o.em = j.at("em").str();
  if (j.contains("em_prior")) o.em_prior = j.at("em_prior").boolean();
  if (j.contains("restarts")) o.restarts = IntOption<int>(j, "restarts");
  if (j.contains("router")) o.router = j.at("router").str();
  if (j.contains("balance")) o.balance = j.at("balance").number();
  if (j.contains("sample_entropy")) o.sample_entropy = j.at("sample_entropy").boolean();
  if (j.contains("beta")) o.beta = j.at("beta").number();
  if (j.contains("anneal_period")) o.anneal_period = IntOption<int>(j, "anneal_period");
  if (j.contains("anneal_floor")) o.anneal_floor = j.at("anneal_floor").number();
  // Files written before --vpl-adapt existed adapted with the encoder (then the only way).
  o.vpl_adapt = j.contains("vpl_adapt") ? j.at("vpl_adapt").str() : "encoder";
  if (j.contains("ideal")) o.ideal = j.at("ideal").str();
  if (j.contains("loss")) o.loss = j.at("loss").str();
  if (j.contains("gppl_users")) o.gppl_users = j.at("gppl_users").str();
  if (j.contains("item_kernel")) o.item_kernel = j.at("item_kernel").str();
  if (j.contains("gppl_residual")) o.gppl_residual = j.at("gppl_residual").str();
  if (j.contains("components")) o.components = IntOption<int>(j, "components");
  if (j.contains("inducing")) o.inducing = IntOption<int>(j, "inducing");
  if (j.contains("ls_factor")) o.ls_factor = j.at("ls_factor").number();
  if (j.contains("svi_delay")) o.svi_delay = j.at("svi_delay").number();
  if (j.contains("svi_forget")) o.svi_forget = j.at("svi_forget").number();
  if (j.contains("gamma_shape")) o.gamma_shape = j.at("gamma_shape").number();
  if (j.contains("gamma_rate_t")) o.gamma_rate_t = j.at("gamma_rate_t").number();
  if (j.contains("gamma_rate_v")) o.gamma_rate_v = j.at("gamma_rate_v").number();
  if (j.contains("gamma_rate_w")) o.gamma_rate_w = j.at("gamma_rate_w").number();
  if (j.contains("gamma_rate_g")) o.gamma_rate_g = j.at("gamma_rate_g").number();
  o.seed = IntOption<uint64_t>(j, "seed");
  o.threads = IntOption<int>(j, "threads");
  o.device = j.at("device").str();
  return o;
}

OnlineResult Model::AdaptOnline(const Dataset&, const PairSet&, int64_t, const std::string&) const {
  throw Error(
      Cat("--online: family '", Family(), "' has no online user step (families with one: micro)"));
}

std::vector<int64_t> Model::TrainRows(const std::vector<std::string>& ids) const {
  std::unordered_map<std::string, int64_t> index;
  for (size_t i = 0; i < train_user_ids_.size(); ++i) index[train_user_ids_[i]] = i;
  std::vector<int64_t> rows(ids.size(), -1);
  for (size_t u = 0; u < ids.size(); ++u) {
    auto it = index.find(ids[u]);
    if (it != index.end()) rows[u] = it->second;
  }
  return rows;
}

RowMatrixF Model::LatentsForRows(const std::vector<int64_t>& rows) const {
  const int L = LatentDim();
  RowMatrixF out(static_cast<int64_t>(rows.size()), L);
  if (L == 0) return out;
  const Eigen::VectorXf pop = PopulationLatent();
  for (size_t u = 0; u < rows.size(); ++u) {
    if (rows[u] < 0)
      out.row(u) = pop.transpose();
    else
      out.row(u) = train_latents_.row(rows[u]);
  }
  return out;
}

RowMatrixF Model::LatentsFor(const Dataset& ds, int64_t* n_unknown) const {
  const std::vector<int64_t> rows = TrainRows(ds.user_ids);
  if (n_unknown) *n_unknown = std::count(rows.begin(), rows.end(), int64_t{-1});
  return LatentsForRows(rows);
}

void Model::SetTrainLatents(const Dataset& ds, RowMatrixF latents) {
  PREFMIX_ASSERT(latents.rows() == ds.n_users() && latents.cols() == LatentDim(),
                 "train latents shape ", latents.rows(), "x", latents.cols());
  train_latents_ = std::move(latents);
  train_user_ids_ = ds.user_ids;
}

void Model::SaveBase(std::ostream& os) const {
  cereal::PortableBinaryOutputArchive ar(os);
  ar(train_user_ids_, train_latents_);
}

void Model::LoadBase(std::istream& is) {
  cereal::PortableBinaryInputArchive ar(is);
  ar(train_user_ids_, train_latents_);
  PREFMIX_CHECK_INPUT(train_latents_.rows() == (Eigen::Index)train_user_ids_.size() &&
                          train_latents_.cols() == LatentDim(),
                      "model file: user latents have shape [", train_latents_.rows(), ", ",
                      train_latents_.cols(), "], expected [", train_user_ids_.size(), ", ",
                      LatentDim(), "]");
}

namespace {
std::vector<FamilyInfo>& Registry() {
  static std::vector<FamilyInfo> r;
  return r;
}
int Rank(const std::string& n) {
  for (const auto& f : Registry())
    if (f.name == n) return f.rank;
  return 100;
}
}  // namespace

bool RegisterFamily(FamilyInfo info) {
  for (const auto& f : Registry())
    PREFMIX_ASSERT(f.name != info.name, "family '", info.name, "' registered twice");
  Registry().push_back(std::move(info));
  return true;
}

std::vector<std::string> FamilyNames() {
  std::vector<std::string> names;
  for (const auto& f : Registry()) names.push_back(f.name);
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return Rank(a) != Rank(b) ? Rank(a) < Rank(b) : a < b;
  });
  return names;
}

const FamilyInfo& FindFamily(const std::string& name) {
  for (const auto& f : Registry())
    if (f.name == name) return f;
  std::string known;
  for (const auto& n : FamilyNames()) known += (known.empty() ? "" : ", ") + n;
  throw Error(Cat("--model: unknown family '", name, "' (known: ", known, ")"));
}

std::unique_ptr<Model> MakeModel(const ModelOptions& options) {
  auto m = FindFamily(options.family).make(options);
  m->set_options(options);
  return m;
}

namespace {
constexpr char kMagic[4] = {'P', 'F', 'M', 'X'};
}

void SaveModel(const Model& model, const std::string& path) {
  std::ostringstream payload;
  model.SavePayload(payload);
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    PREFMIX_CHECK_INPUT(f, path, ": cannot open for writing");
    f.write(kMagic, 4);
    cereal::PortableBinaryOutputArchive ar(f);
    uint32_t version = kModelFormatVersion;
    std::string lib = PREFMIX_VERSION, family = model.Family();
    std::string options = model.options().ToJson().Dump(-1);
    std::string body = payload.str();
    uint64_t body_size = body.size();
    ar(version, lib, family, options, model.embedding_model, model.dim, model.context_dim,
       body_size);
    f.write(body.data(), static_cast<std::streamsize>(body.size()));
    f.flush();
    PREFMIX_CHECK_INPUT(f, path, ": write failed");
  }
  out.Commit();
}

std::unique_ptr<Model> LoadModel(const std::string& path) {
  NoteInput(path);
  std::ifstream f(path, std::ios::binary);
  PREFMIX_CHECK_INPUT(f, path, ": cannot open model file");
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  PREFMIX_CHECK_INPUT(f && std::equal(magic, magic + 4, kMagic), path,
                      ": not a prefmix model file (magic bytes are not PFMX)");
  std::unique_ptr<Model> model;
  try {
    cereal::PortableBinaryInputArchive ar(f);
    uint32_t version = 0;
    ar(version);
    PREFMIX_CHECK_INPUT(version <= kModelFormatVersion && version >= 1, path,
                        ": model format version ", version, " is newer than this prefmix reads (",
                        kModelFormatVersion, "); upgrade prefmix");
    std::string lib, family, options, embedding_model;
    int64_t dim = 0, context_dim = 0;
    uint64_t body_size = 0;
    ar(lib, family, options, embedding_model, dim, context_dim, body_size);
    ModelOptions opts = ModelOptions::FromJson(Json::Parse(options));
    PREFMIX_CHECK_INPUT(opts.family == family, path, ": family mismatch in header");
    model = MakeModel(opts);
    model->embedding_model = embedding_model;
    model->dim = dim;
    model->context_dim = context_dim;
    // The payload is read whole: its declared size must be there before it is allocated.
    const std::streamoff at = f.tellg();
    f.seekg(0, std::ios::end);
    const std::streamoff left = f.tellg() - at;
    f.seekg(at);
    PREFMIX_CHECK_INPUT(f && at >= 0 && left >= 0 && body_size <= static_cast<uint64_t>(left), path,
                        ": model file is truncated (payload has ", left, " of ", body_size,
                        " bytes)");
    std::string body(body_size, '\0');
    f.read(body.data(), static_cast<std::streamsize>(body_size));
    PREFMIX_CHECK_INPUT(f.gcount() == static_cast<std::streamsize>(body_size), path,
                        ": model file is truncated (payload has ", f.gcount(), " of ", body_size,
                        " bytes)");
    std::istringstream is(body);
    model->LoadPayload(is);
  } catch (const cereal::Exception& e) {
    throw Error(Cat(path, ": model file is truncated or corrupt (", e.what(), ")"));
  } catch (const Error& e) {
    // The options parser and the families' payload checks do not know the file: name it.
    const std::string msg = e.what();
    if (msg.rfind(path, 0) == 0) throw;
    throw Error(Cat(path, ": ", msg));
  }
  return model;
}

void CheckCompatible(const Model& model, const Dataset& ds) {
  PREFMIX_CHECK_INPUT(ds.dim() == model.dim, ds.source, ": item embedding dimension ", ds.dim(),
                      " differs from the model's training data (", model.dim, ")");
  PREFMIX_CHECK_INPUT(ds.embedding_model == model.embedding_model, ds.source, ": embedding_model '",
                      ds.embedding_model, "' differs from the model's training data ('",
                      model.embedding_model, "')");
  if (model.context_dim > 0 && ds.has_contexts)
    PREFMIX_CHECK_INPUT(ds.contexts.cols() == model.context_dim, ds.source, ": context dimension ",
                        ds.contexts.cols(), " differs from the model's training data (",
                        model.context_dim, ")");
}

}  // namespace prefmix
