#include "apps/cli_common.h"

#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/device.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/threads.h"

namespace prefmix::apps {

bool ParseCommandLine(int argc, char** argv, const std::string& usage,
                      po::options_description& desc, po::variables_map& vm,
                      const po::positional_options_description* positional) {
  desc.add_options()("help,h", "show this help")("config", po::value<std::string>(),
                                                 "INI file of options (the command line wins)");
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(desc);
    // Strict: a flag must be spelled in full (no `--epoch` for `--epochs`).
    parser.style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing);
    if (positional) parser.positional(*positional);
    const po::parsed_options parsed = parser.run();
    for (const auto& o : parsed.options) {
      // A word that is no option's value and no declared positional argument is a mistake
      // (e.g. `--models bt, lowrank`: `lowrank` would otherwise be dropped without a word).
      PREFMIX_CHECK_INPUT(!o.string_key.empty(), "unexpected argument '",
                          o.original_tokens.empty() ? std::string() : o.original_tokens[0],
                          "' (options are --name value; see --help)");
      // Unsigned options (--seed) would take -1 as 2^64 - 1.
      if (o.string_key == "seed")
        for (const auto& v : o.value)
          PREFMIX_CHECK_INPUT(v.empty() || v[0] != '-', "--seed: ", v,
                              " is negative (seeds are integers in [0, 2^53 - 1])");
    }
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      NoteInput(path);
      std::ifstream in(path);
      PREFMIX_CHECK_INPUT(in, "--config: cannot open '", path, "'");
      po::store(po::parse_config_file(in, desc), vm);
    }
    po::notify(vm);
    if (vm.count("seed")) {
      // Seeds are recorded as JSON numbers, exact only up to 2^53 - 1.
      const uint64_t seed = vm["seed"].as<uint64_t>();
      PREFMIX_CHECK_INPUT(seed <= (uint64_t{1} << 53) - 1, "--seed: ", seed,
                          " is above 2^53 - 1, the largest integer the metrics JSON records "
                          "exactly");
    }
  } catch (const po::error& e) {
    throw Error(Cat(e.what(), " (see --help)"));
  }
  return true;
}

void AddCommonOptions(po::options_description& desc) {
  desc.add_options()("threads", po::value<int>()->default_value(2),
                     "worker threads (OpenMP, torch)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu | cuda")(
      "seed", po::value<uint64_t>()->default_value(1), "random seed")("quiet", po::bool_switch(),
                                                                      "no progress on stderr");
}

std::string ApplyCommonOptions(const po::variables_map& vm) {
  if (vm.count("threads")) {
    int t = vm["threads"].as<int>();
    PREFMIX_CHECK_INPUT(t >= 1 && t <= 1024, "--threads: ", t, " is not in [1, 1024]");
    SetThreads(t);
  }
  std::string device = vm.count("device") ? vm["device"].as<std::string>() : "cpu";
  CheckDevice(device);
  return device;
}

void Require(const po::variables_map& vm, const char* name) {
  PREFMIX_CHECK_INPUT(vm.count(name), "missing required option --", name, " (see --help)");
}

void CreateOutputDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PREFMIX_CHECK_INPUT(!ec && std::filesystem::is_directory(dir), "--out: cannot create directory '",
                      dir, "': ", ec.message());
}

ProgressFn StderrProgress(const po::variables_map& vm) {
  if (vm["quiet"].as<bool>() || !isatty(2)) return ProgressFn();
  return [](const std::string& s) { std::cerr << s << "\n"; };
}

void AddUnknownUsersOption(po::options_description& desc) {
  desc.add_options()("unknown-users", po::value<std::string>()->default_value("error"),
                     "users the model never saw: error (default) | population (score them with "
                     "the population model)");
}

void CheckUnknownUsers(const po::variables_map& vm, const Model& model, const Dataset& ds,
                       const std::string& data_path) {
  const std::string mode = vm["unknown-users"].as<std::string>();
  PREFMIX_CHECK_INPUT(mode == "error" || mode == "population", "--unknown-users: '", mode,
                      "' is not one of error, population");
  if (mode == "population" || model.LatentDim() == 0) return;
  const std::vector<int64_t> rows = model.TrainRows(ds.user_ids);
  int64_t unknown = 0;
  std::string first;
  for (size_t u = 0; u < rows.size(); ++u)
    if (rows[u] < 0 && unknown++ == 0) first = ds.user_ids[u];
  PREFMIX_CHECK_INPUT(unknown == 0, data_path, ": ", unknown, " of ", ds.n_users(),
                      " users are not among the model's training users (first: '", first,
                      "'); adapt them first (prefmix adapt, then --users-file for score) or pass "
                      "--unknown-users population to use the population model for them");
}

}  // namespace prefmix::apps
