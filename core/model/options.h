#pragma once
// Model options as tables. Each family declares, once and in its own file, the options it reads:
// key, type, default, help line and check (OptionSpec). Everything else is generated from those
// declarations: the command-line flags and their parsing (apps/options.cpp), `--help` with each
// family's default, the options object of the model file and metrics JSON, and the option tables
// of docs/options.md (`prefmix options --markdown`). Adding an option to a family is an edit in
// that family's .cpp only: declare it in its registration and read it with options_.Int("key")
// (or Real, Text, Flag).
//
// The options several families share (--k, --epochs, --lr, ...) have one help line and one check
// written here (the opt:: helpers); each family that reads one states its own default.
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/io/json.h"

namespace prefmix {

enum class OptionType {
  kInt,     ///< an integer within [min, max] ("auto" too when allow_auto)
  kReal,    ///< a finite number within [min, max]
  kText,    ///< one of `choices` (any text when there are none)
  kOnOff,   ///< on | off on the command line, a boolean in JSON
  kSwitch,  ///< a flag without a value that turns the default around (--no-refit)
};

/// One option of one family.
struct OptionSpec {
  std::string key;  ///< name in ModelOptions and in the model-file JSON, e.g. "user_prior"
  OptionType type = OptionType::kInt;
  std::string value;  ///< the family's default, as text ("300", "1e-4", "hard", "on")
  std::string help;   ///< one line for --help and docs/options.md
  std::string rule;   ///< what the family does with the value where that is family-specific
  std::vector<std::string> choices;  ///< kText: the allowed values (empty: any text)
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;             ///< the value must be > min (not >= min)
  bool allow_auto = false;           ///< kInt: "auto" is a value too (--k auto)
  bool zero_is_default = false;      ///< a given 0 means the family default
  bool negative_is_default = false;  ///< a given negative value means the family default
  /// The value assumed when a model file written before the option existed lacks it (empty:
  /// `value`).
  std::string legacy;
  std::string flag;  ///< the command-line flag without "--" (empty: key with '-' for '_')

  std::string Flag() const;
  /// "--flag"
  std::string Dashed() const { return "--" + Flag(); }
  /// The text a user types for this value (1e-4, on, auto, ...).
  std::string Show(const Json& v) const;
  /// Parses and checks the text given on the command line (or by Python); the error names the
  /// flag and the value.
  Json Parse(const std::string& text) const;
  /// Checks a value (from code, JSON or Parse): type, range, choices.
  void Check(const Json& v, const std::string& family) const;
  /// help, then (rule) when there is one.
  std::string Meaning() const { return rule.empty() ? help : help + " (" + rule + ")"; }
  /// Short type name for --help and docs ("int", "real", "text", "on|off", "switch").
  std::string TypeName() const;
};

/// Builders for family declarations. Each returns a spec a family lists in its registration.
namespace opt {
OptionSpec Int(std::string key, int value, std::string help, double min = -2147483648.0,
               double max = 2147483647.0);
OptionSpec Real(std::string key, std::string value, std::string help, double min = -1e300,
                double max = 1e300);
OptionSpec Text(std::string key, std::string value, std::vector<std::string> choices,
                std::string help);
OptionSpec OnOff(std::string key, bool value, std::string help);
/// A flag without value; giving it sets the option to !value.
OptionSpec Switch(std::string key, std::string flag, bool value, std::string help);

// The options several families read: one help line and check here, the default per family.
// `rule` (where given) says what the family does with 0 or a negative value.
OptionSpec K(int value, bool allow_auto);
OptionSpec Dim(int value, std::string rule);
OptionSpec Epochs(int value, std::string rule = "");
OptionSpec Lr(std::string value, std::string rule = "");
OptionSpec Batch(int value, std::string rule);
OptionSpec L2(std::string value, std::string rule);
OptionSpec Patience(int value);
OptionSpec Refit();
OptionSpec Hidden(int value);
OptionSpec UserPrior(std::string value, std::string rule);
}  // namespace opt

/// A family's options (declared in its registration, filled with its defaults by MakeModel) and
/// the run settings every command has.
struct ModelOptions {
  std::string family;
  /// The family's options by key. Keys the family does not declare are refused by MakeModel;
  /// absent keys get the family's default.
  std::map<std::string, Json> values;
  uint64_t seed = 1;
  int threads = 2;
  std::string device = "cpu";
  bool quiet = true;

  /// The value of an option the family declares: as set, else the family's default.
  int Int(const std::string& key) const;
  double Real(const std::string& key) const;
  std::string Text(const std::string& key) const;
  bool Flag(const std::string& key) const;
  /// True when an allow_auto option holds "auto".
  bool Auto(const std::string& key) const;
  bool Has(const std::string& key) const { return values.count(key) > 0; }

  ModelOptions& Set(const std::string& key, int v);
  ModelOptions& Set(const std::string& key, double v);
  ModelOptions& Set(const std::string& key, bool v);
  ModelOptions& Set(const std::string& key, const char* v);
  ModelOptions& Set(const std::string& key, const std::string& v);

  /// {"family", the family's options in declaration order, "seed", "threads", "device"}.
  Json ToJson() const;
  /// Reads a ToJson object (also those of older files: options the file lacks get their legacy
  /// value, keys of options this family does not declare are ignored).
  static ModelOptions FromJson(const Json& j);
};

/// The declared options of `family` (the registry's table).
const std::vector<OptionSpec>& FamilyOptions(const std::string& family);
/// Fills the family's defaults for absent options, applies zero_is_default and checks every value;
/// throws prefmix::Error naming the flag and value (or a key the family does not declare).
void ResolveOptions(ModelOptions& o);

/// Markdown tables of every family's options (docs/options.md is this text).
std::string OptionsMarkdown();

}  // namespace prefmix
