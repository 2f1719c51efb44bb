// prefmix options [--model F] [--markdown]: every family's options with their defaults, from the
// families' declarations (docs/options.md is `prefmix options --markdown`).
#include <iostream>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/model/model.h"

namespace prefmix::apps {

int RunOptions(int argc, char** argv) {
  po::options_description desc("options options");
  desc.add_options()("model", po::value<std::string>(), "one family (default: all)")(
      "markdown", po::bool_switch(), "Markdown tables (docs/options.md)");
  po::variables_map vm;
  if (!ParseCommandLine(argc, argv, "usage: prefmix options [--model F] [--markdown]", desc, vm))
    return 0;
  if (vm["markdown"].as<bool>()) {
    PREFMIX_CHECK_INPUT(!vm.count("model"), "--markdown prints every family; drop --model");
    std::cout << OptionsMarkdown();
    return 0;
  }
  std::vector<std::string> families = FamilyNames(true);
  if (vm.count("model")) families = {FindFamily(vm["model"].as<std::string>()).name};
  for (const auto& f : families) {
    std::cout << f << "\n";
    for (const auto& s : FamilyOptions(f)) {
      std::string def = s.type == OptionType::kSwitch ? s.key + " " + s.value : s.value;
      std::string flag = s.Dashed();
      std::cout << "  " << flag << std::string(flag.size() < 18 ? 18 - flag.size() : 1, ' ') << def
                << std::string(def.size() < 10 ? 10 - def.size() : 1, ' ') << s.Meaning();
      if (s.type == OptionType::kText || s.type == OptionType::kOnOff)
        std::cout << " {" << s.TypeName() << "}";
      std::cout << "\n";
    }
  }
  return 0;
}

}  // namespace prefmix::apps
