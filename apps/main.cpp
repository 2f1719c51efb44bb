// prefmix: one binary, subcommands. The only place that catches everything and maps to exit codes.
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "apps/commands.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "prefmix/version.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"import", prefmix::apps::RunImport, "convert pairs (.npy + .csv) or SUSHI files to a dataset"},
    {"generate", prefmix::apps::RunGenerate, "write a synthetic dataset with planted truth"},
    {"inspect", prefmix::apps::RunInspect, "summarise a dataset file"},
    {"train", prefmix::apps::RunTrain, "train a model family and write a model file"},
    {"eval", prefmix::apps::RunEval, "evaluate a model file on a dataset (metrics JSON)"},
    {"adapt", prefmix::apps::RunAdapt, "infer user latents for (new) users from their pairs"},
    {"score", prefmix::apps::RunScore, "per-user reward of every item"},
    {"select", prefmix::apps::RunSelect,
     "MaxMin / utilitarian pick among candidates by calibrated head scores"},
    {"experiment", prefmix::apps::RunExperiment,
     "train + evaluate under a protocol (metrics JSON)"},
    {"fairness", prefmix::apps::RunFairness,
     "per-group accuracy of several families: fairness.json + report.html"},
    {"options", prefmix::apps::RunOptions, "every family's options and defaults"},
    {"demo", prefmix::apps::RunDemo,
     "the main job on an embedded default: generate, train all, compare"},
};

void PrintUsage(std::ostream& os) {
  os << "prefmix " << PREFMIX_VERSION << " - pluralistic preference (reward) modeling\n\n"
     << "usage: prefmix <command> [options]   (prefmix <command> --help)\n\ncommands:\n";
  for (const auto& c : kCommands)
    os << "  " << c.name << std::string(12 - std::strlen(c.name), ' ') << c.help << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  prefmix::InstallSignalCleanup();  // Ctrl-C / kill: no *.tmp.<pid> left, exit 130 / 143
  if (argc < 2) {
    PrintUsage(std::cerr);
    return 1;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    PrintUsage(std::cout);
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "prefmix " << PREFMIX_VERSION << " (" << PREFMIX_GIT_COMMIT << ")\n";
    return 0;
  }
  for (const auto& c : kCommands) {
    if (cmd != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const prefmix::Error& e) {
      std::cerr << "prefmix " << cmd << ": error: " << e.what() << "\n";
      return 1;
    } catch (const prefmix::InternalError& e) {
      std::cerr << "prefmix " << cmd << ": internal error: " << e.what() << "\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "prefmix " << cmd << ": error: out of memory\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "prefmix " << cmd << ": internal error: " << e.what() << "\n";
      return 2;
    }
  }
  std::cerr << "prefmix: unknown command '" << cmd << "'\n\n";
  PrintUsage(std::cerr);
  return 1;
}
