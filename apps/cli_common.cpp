#include "apps/cli_common.h"

#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/device.h"
#include "core/error.h"
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
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      PREFMIX_CHECK_INPUT(in, "--config: cannot open '", path, "'");
      po::store(po::parse_config_file(in, desc), vm);
    }
    po::notify(vm);
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

}  // namespace prefmix::apps
