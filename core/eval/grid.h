#pragma once
// Experiment grids (`prefmix experiment --grid grid.ini --out DIR`): models x blocks x repeats in
// one run, written as one table in the shape of the crowdGPPL paper's (accuracy / log loss /
// Kendall tau per dataset), with paired significance of each model against the best one.
//
// Grid file (INI):
//   models = bt,lowrank          ; optional: the command line's --models wins
//   repeats = 25                 ; optional defaults for every block (any protocol key below)
//   [Sushi-A-small]              ; one block per section, in file order
//   data = /tmp/sushi_a.h5
//   protocol = subsample         ; seen | unseen | subsample
//   users = 100
//   train-pairs = 5
//   test-pairs = 25
// Protocol keys: protocol, test-fraction, unseen-fraction, shots, users, train-pairs,
// test-pairs, repeats, first-repeat, valid-fraction, min-group-users, seed. Repeat r of a block
// uses the block's split r (subsample) or seed + r (seen, unseen); the model seed is seed + r.
// A block runs repeats first-repeat .. first-repeat + repeats - 1 (first-repeat defaults to 0),
// so one grid can be split across processes and its tables merged (MergeGridTables).
#include <string>
#include <vector>

#include "core/eval/experiment.h"
#include "core/io/json.h"
#include "core/model/model.h"
#include "core/eval/protocol.h"

namespace prefmix {

/// One column block of the table: a dataset under a protocol.
struct GridBlock {
  std::string name;
  std::string data;
  ProtocolOptions protocol;
};

/// A parsed grid file.
struct GridSpec {
  std::vector<std::string> models;  ///< from the file's `models` key (may be empty)
  std::vector<GridBlock> blocks;
  bool closure = true;  ///< add the transitive-closure baseline row where /rankings exist
};

/// Reads a grid file; `defaults` supplies protocol values the file leaves out. Throws
/// prefmix::Error naming the file, section, key and value on bad input.
GridSpec ReadGridFile(const std::string& path, const ProtocolOptions& defaults);

/// Runs every model on every block for the block's repeats. `models` = resolved options per
/// family. Returns the table JSON (data/schema/grid.schema.json, without provenance).
Json RunGrid(const GridSpec& spec, const std::vector<ModelOptions>& models,
             const ProgressFn& progress = nullptr);

/// Merges grid tables (table.json files of runs that split a grid by first-repeat, or ran
/// different families on the same blocks) into one table with recomputed summaries and tests.
/// Blocks match by name and must share the dataset (SHA-256) and protocol (repeats and
/// first_repeat aside); a (block, model, repeat) found twice must carry identical figures; every
/// row of a merged block must cover the same repeats. `sources` names each table in errors and in
/// the output's `merged_from`. Throws prefmix::Error naming the file, block, model and value.
Json MergeGridTables(const std::vector<Json>& tables, const std::vector<std::string>& sources);

/// The table as GitHub markdown: one row per model, per block "accuracy / log loss / tau" with
/// the Wilcoxon p against the block's best model and seconds per run.
std::string GridMarkdown(const Json& table);
/// The table as CSV: one row per (block, model) with every summary column.
std::string GridCsv(const Json& table);

}  // namespace prefmix
