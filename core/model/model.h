#pragma once
// The model interface every family implements, the family registry (the registry pattern) and the
// versioned model file (docs/formats.md#model-file).
//
// A model = shared item-side parameters + a per-user latent of size LatentDim() (0 for bt).
// Users are rows of a dataset; the latents of the users seen in training are kept by id.
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/options.h"

namespace prefmix {

/// What one fit produced besides the parameters (for the metrics JSON).
struct FitReport {
  double seconds = 0;
  int epochs_run = 0;
  Json details = Json::Object();  ///< family-specific (chosen l2, validation curve, ...)
};

/// Result of the online (sequential) user step.
struct OnlineResult {
  /// Per pair of the stream (same order): the probability the model gave the observed label
  /// from the user's earlier pairs only (before the pair's own label was used).
  std::vector<double> prob;
  /// Per user: the latent after all of the user's pairs.
  RowMatrixF latent;
};

/// The scoring interface every family implements.
class Model {
 public:
  virtual ~Model() = default;
  /// Registered family name ("bt", "lowrank", ...).
  virtual std::string Family() const = 0;
  /// Size of the per-user latent (0 when the family has none).
  virtual int LatentDim() const = 0;
  /// Trains on `train` (pairs' users are rows of ds) with `valid` for model selection.
  /// Afterwards TrainLatents() holds one row per user of ds (population latent if unseen).
  virtual FitReport Fit(const Dataset& ds, const PairSet& train, const PairSet& valid) = 0;
  /// The latent used for a user with no comparisons (cold start): the population model.
  virtual Eigen::VectorXf PopulationLatent() const = 0;
  /// The user step: latents [n_users, L] for users 0..n_users-1 from their support pairs
  /// (pairs' user = row), shared parameters frozen. Users without pairs get their cold-start
  /// latent: PopulationLatent(), or, for a family whose prior reads the user's attributes or
  /// features (micro --router attributes|features), the prior for that user.
  virtual RowMatrixF Adapt(const Dataset& ds, const PairSet& support, int64_t n_users,
                           const std::string& device) const = 0;
  /// P(first preferred over second) for each pair; latents has a row per pairs.user value.
  virtual std::vector<double> PredictProb(const Dataset& ds, const PairSet& pairs,
                                          const RowMatrixF& latents) const = 0;
  /// The online user step (stage-2 routing): consumes each user's pairs of `stream` in stream
  /// order, predicting each pair before updating on its label. `estimator` names the sequential
  /// estimator (family-specific). Families without one throw prefmix::Error.
  virtual OnlineResult AdaptOnline(const Dataset& ds, const PairSet& stream, int64_t n_users,
                                   const std::string& estimator) const;
  /// Reward of every item for each latent row: [latents.rows(), n_items].
  virtual RowMatrixF Score(const Dataset& ds, const RowMatrixF& latents) const = 0;
  /// Learned parameter counts: {"shared": N, "per_user": L}.
  virtual Json Params() const = 0;
  /// Family payload (cereal inside); the file header is written by SaveModel.
  virtual void SavePayload(std::ostream& os) const = 0;
  virtual void LoadPayload(std::istream& is) = 0;

  /// Latents of the training users, one row per entry of TrainUserIds().
  const RowMatrixF& TrainLatents() const { return train_latents_; }
  const std::vector<std::string>& TrainUserIds() const { return train_user_ids_; }
  /// Latents for the users of `ds`, matched by id with the training users; unknown ids get
  /// the population latent. Sets *n_unknown when non-null.
  RowMatrixF LatentsFor(const Dataset& ds, int64_t* n_unknown = nullptr) const;
  /// The training-user row of each id (-1 for an id the model never saw).
  std::vector<int64_t> TrainRows(const std::vector<std::string>& ids) const;
  /// One latent per entry of `rows` (from TrainRows): that training user's, or the population
  /// latent for -1.
  RowMatrixF LatentsForRows(const std::vector<int64_t>& rows) const;

  /// The model that was fitted: this one, or for a model that chose among others (`--model
  /// auto`) the chosen one. SaveModel writes it, and capability checks (dynamic_cast to
  /// MultiHeadModel, ...) look at it.
  virtual const Model& Fitted() const { return *this; }

  const ModelOptions& options() const { return options_; }
  void set_options(const ModelOptions& o) { options_ = o; }
  /// The payload version LoadPayload reads (the file's; FamilyInfo::payload_version for a new
  /// model).
  uint32_t payload_version() const { return payload_version_; }
  friend std::unique_ptr<Model> LoadModel(const std::string& path);
  /// Data fingerprint recorded at training (checked by score/adapt/eval).
  std::string embedding_model;
  int64_t dim = 0;
  int64_t context_dim = 0;

 protected:
  ModelOptions options_;
  uint32_t payload_version_ = 1;
  RowMatrixF train_latents_;
  std::vector<std::string> train_user_ids_;
  /// Helper for families: stores latents of all users of ds (row order).
  void SetTrainLatents(const Dataset& ds, RowMatrixF latents);
  /// Serialises the base part (train latents and ids) with cereal.
  void SaveBase(std::ostream& os) const;
  void LoadBase(std::istream& is);
};

/// A family's registry entry.
struct FamilyInfo {
  std::string name;
  std::string description;
  /// The options this family reads, declared once (core/model/options.h): the CLI, --help, the
  /// model file and docs/options.md come from this table.
  std::vector<OptionSpec> options;
  std::function<std::unique_ptr<Model>(const ModelOptions&)> make;
  /// Presentation order in FamilyNames() (then by name).
  int rank = 100;
  /// `prefmix demo`: the family's budget on the planted presets (applied after the demo sets the
  /// planted K, seed and threads; empty: the family's defaults), and the note the table prints.
  std::function<void(ModelOptions&, int planted_k)> demo_budget;
  std::string demo_note;
  /// The version of this family's payload layout, written in every model file. Raise it when the
  /// payload changes, and keep reading the older versions (Model::payload_version() tells
  /// LoadPayload which one it reads); a file with a newer version is refused.
  uint32_t payload_version = 1;
  /// A family that chooses among the others (`auto`): listed by FamilyNames(true) only (so
  /// "every family" loops, `--models all` and the demo leave it out), and never written in a
  /// model file (the chosen family is).
  bool chooser = false;
};

/// Registers a family (called from a static initialiser in the family's .cpp).
bool RegisterFamily(FamilyInfo info);
/// The entry for `name`; throws prefmix::Error listing the known families.
const FamilyInfo& FindFamily(const std::string& name);
/// Registered names, sorted in a fixed presentation order (bt, lowrank, then alphabetical);
/// with_choosers adds the families that choose among the others (auto) at the end.
std::vector<std::string> FamilyNames(bool with_choosers = false);
/// A new untrained model of options.family, its options resolved (ResolveOptions: defaults
/// filled, every value checked).
std::unique_ptr<Model> MakeModel(const ModelOptions& options);

/// Writes the model file (atomically): magic PFMX, format version, prefmix version, family,
/// options, embedding_model, dims, the family's payload version, then the payload.
void SaveModel(const Model& model, const std::string& path);
/// Reads and checks a model file; throws prefmix::Error on a bad/truncated/future file.
std::unique_ptr<Model> LoadModel(const std::string& path);
/// Refuses data whose dimension or embedding_model differs from the model's (names both).
void CheckCompatible(const Model& model, const Dataset& ds);

/// The model file format version this prefmix writes. 2 added the family's payload version to
/// the header; version-1 files (payload version 1) still load.
constexpr uint32_t kModelFormatVersion = 2;

}  // namespace prefmix
