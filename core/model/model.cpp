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

std::vector<std::string> FamilyNames(bool with_choosers) {
  std::vector<std::string> names;
  for (const auto& f : Registry())
    if (with_choosers || !f.chooser) names.push_back(f.name);
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return Rank(a) != Rank(b) ? Rank(a) < Rank(b) : a < b;
  });
  return names;
}

const FamilyInfo& FindFamily(const std::string& name) {
  for (const auto& f : Registry())
    if (f.name == name) return f;
  std::string known;
  for (const auto& n : FamilyNames(true)) known += (known.empty() ? "" : ", ") + n;
  throw Error(Cat("--model: unknown family '", name, "' (known: ", known, ")"));
}

std::unique_ptr<Model> MakeModel(const ModelOptions& options) {
  ModelOptions o = options;
  ResolveOptions(o);
  auto m = FindFamily(o.family).make(o);
  m->set_options(o);
  return m;
}

namespace {
constexpr char kMagic[4] = {'P', 'F', 'M', 'X'};
}

void SaveModel(const Model& chooser, const std::string& path) {
  const Model& model = chooser.Fitted();
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
    uint32_t payload_version = FindFamily(family).payload_version;
    ar(version, lib, family, options, model.embedding_model, model.dim, model.context_dim,
       payload_version, body_size);
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
    PREFMIX_CHECK_INPUT(version >= 1, path, ": model format version ", version, " is not valid");
    PREFMIX_CHECK_INPUT(version <= kModelFormatVersion, path, ": model format version ", version,
                        " is newer than this prefmix reads (", kModelFormatVersion,
                        "); upgrade prefmix");
    std::string lib, family, options, embedding_model;
    int64_t dim = 0, context_dim = 0;
    uint32_t payload_version = 1;  // format version 1 had no payload versions
    uint64_t body_size = 0;
    ar(lib, family, options, embedding_model, dim, context_dim);
    if (version >= 2) ar(payload_version);
    ar(body_size);
    const FamilyInfo& info = FindFamily(family);
    PREFMIX_CHECK_INPUT(payload_version >= 1, path, ": ", family, " payload version ",
                        payload_version, " is not valid");
    PREFMIX_CHECK_INPUT(payload_version <= info.payload_version, path, ": ", family,
                        " payload version ", payload_version, " is newer than this prefmix reads (",
                        info.payload_version, "); upgrade prefmix");
    ModelOptions opts = ModelOptions::FromJson(Json::Parse(options));
    PREFMIX_CHECK_INPUT(opts.family == family, path, ": family mismatch in header");
    model = MakeModel(opts);
    model->payload_version_ = payload_version;
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
