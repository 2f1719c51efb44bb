#pragma once
// Shared CLI plumbing: option parsing with `--config FILE` (the command line wins), `--help`.
#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace prefmix::apps {

namespace po = boost::program_options;

/// Parses argv against `desc` (plus --help and --config). Returns false when --help was
/// printed. Unknown options and malformed values throw prefmix::Error naming the flag.
bool ParseCommandLine(int argc, char** argv, const std::string& usage,
                      po::options_description& desc, po::variables_map& vm,
                      const po::positional_options_description* positional = nullptr);

/// Adds --threads, --device, --seed, --quiet.
void AddCommonOptions(po::options_description& desc);

/// Applies --threads (OpenMP and torch) and checks --device; returns the device name.
std::string ApplyCommonOptions(const po::variables_map& vm);

/// Throws prefmix::Error("missing required option --name") when absent.
void Require(const po::variables_map& vm, const char* name);

}  // namespace prefmix::apps

#include "core/eval/experiment.h"
#include "core/eval/protocol.h"
#include "core/io/json.h"
#include "core/model/model.h"

namespace prefmix::apps {

/// Adds the model options shared by the families (--model/--models, --k, --dim, --epochs, ...).
void AddModelOptions(po::options_description& desc);
/// Resolves the options for `family`; notes the explicitly given options it ignores on stderr,
/// or in `notes` when given.
ModelOptions ReadModelOptions(const po::variables_map& vm, const std::string& family,
                              std::vector<std::string>* notes = nullptr);
/// Adds --protocol and its options (docs/protocols.md).
void AddProtocolOptions(po::options_description& desc);
ProtocolOptions ReadProtocolOptions(const po::variables_map& vm);
/// Parses a comma-separated list ("1,2,5") of integers; names the flag on error.
std::vector<int> ParseIntList(const std::string& text, const char* flag);
/// Splits "a,b,c".
std::vector<std::string> SplitList(const std::string& text, const char* flag = nullptr);
/// The provenance object of docs/protocols.md#metrics-json.
Json Provenance(const po::variables_map& vm, const std::string& data_path,
                const std::string& device, const Json& options);
/// Writes JSON atomically to `path`, or to stdout when path is "-".
void WriteJson(const Json& j, const std::string& path);
/// Creates the --out directory (and its parents) or throws prefmix::Error naming it.
void CreateOutputDir(const std::string& dir);
/// Progress lines on stderr, or none with --quiet or when stderr is not a terminal.
ProgressFn StderrProgress(const po::variables_map& vm);

/// Adds --unknown-users error|population (eval, score).
void AddUnknownUsersOption(po::options_description& desc);
/// With --unknown-users error (the default), refuses a dataset with users the model never saw
/// when the model has per-user latents (naming how many, the first one, and the two ways out);
/// with `population` they are scored with the population model.
void CheckUnknownUsers(const po::variables_map& vm, const Model& model, const Dataset& ds,
                       const std::string& data_path);

}  // namespace prefmix::apps
