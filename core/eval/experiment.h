#pragma once
// Train + evaluate one family under one protocol (the engine of `prefmix experiment`, `demo`
// and the recovery tests). Returns the metrics JSON of docs/protocols.md#metrics-json without provenance.
#include <functional>
#include <string>

#include "core/io/dataset.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "core/eval/protocol.h"

namespace prefmix {

/// Progress callback: a short line per stage (the CLI prints it to stderr unless --quiet).
using ProgressFn = std::function<void(const std::string&)>;

/// Extra evaluation of the trained model under the unseen protocol (e.g. active query selection
/// in core/eval/active.h): gets the model, the dataset, all pairs and the split; its result
/// is stored in the metrics under `key`.
struct UnseenExtra {
  std::string key;
  std::function<Json(const Model&, const Dataset&, const PairSet&, const Split&)> run;
};

/// Runs the protocol; the metrics follow docs/protocols.md#metrics-json (keys that do not apply omitted).
/// `extra` (unseen protocol only, may be null) adds its result under extra->key.
Json RunExperiment(const Dataset& ds, const ModelOptions& model, const ProtocolOptions& protocol,
                   const ProgressFn& progress = nullptr, const UnseenExtra* extra = nullptr);

/// The online curve (JSON key `online`): `stream` holds users' pairs grouped by user in the order
/// they arrived, `prob` the probability given to each pair's observed label from the user's
/// earlier pairs only (Model::AdaptOnline). Entry t: accuracy and log loss on the users' pair
/// t + 1, i.e. after t labels, for t <= max_labels (< 0: all), with the number of users.
Json OnlineCurve(const PairSet& stream, const std::vector<double>& prob, int max_labels);

/// Metrics of a trained model on every pair of ds for the users it knows (the `eval` command).
Json EvaluateModel(const Model& model, const Dataset& ds, int min_group_users);

}  // namespace prefmix
