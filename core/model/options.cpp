#include "core/model/options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"
#include "core/model/model.h"

namespace prefmix {

namespace {

/// Shortest text that reads back as v ("1e-04" style avoided: 0.0001 or 1e-4 as %g gives).
std::string Number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::ostringstream os;
    os << static_cast<int64_t>(v);
    return os.str();
  }
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // 1e-04 -> 1e-4, as people write it.
  const size_t e = s.find('e');
  if (e != std::string::npos) {
    size_t d = e + 1;
    if (d < s.size() && (s[d] == '-' || s[d] == '+')) ++d;
    while (d + 1 < s.size() && s[d] == '0') s.erase(d, 1);
    if (s[e + 1] == '+') s.erase(e + 1, 1);
  }
  return s;
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

const OptionSpec* FindSpec(const std::vector<OptionSpec>& specs, const std::string& key) {
  for (const auto& s : specs)
    if (s.key == key) return &s;
  return nullptr;
}

/// The default of `s` as a value (the declaration's text, parsed once per use).
Json DefaultOf(const OptionSpec& s, const std::string& text) {
  if (s.type == OptionType::kSwitch) return Json(text == "on");
  return s.Parse(text);
}

}  // namespace

std::string OptionSpec::Flag() const {
  if (!flag.empty()) return flag;
  std::string f = key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::string OptionSpec::TypeName() const {
  switch (type) {
    case OptionType::kInt:
      return allow_auto ? "int or auto" : "int";
    case OptionType::kReal:
      return "real";
    case OptionType::kText:
      return choices.empty() ? "text" : Join(choices, " | ");
    case OptionType::kOnOff:
      return "on | off";
    case OptionType::kSwitch:
      return "switch";
  }
  return "";
}

std::string OptionSpec::Show(const Json& v) const {
  if (v.is_string()) return v.str();
  if (v.is_number()) return Number(v.number());
  if (v.type() == Json::Type::kBool) return v.boolean() ? "on" : "off";
  return "";
}

Json OptionSpec::Parse(const std::string& text) const {
  const std::string f = Dashed();
  switch (type) {
    case OptionType::kInt: {
      if (allow_auto && text == "auto") return Json("auto");
      PREFMIX_CHECK_INPUT(text.find(',') == std::string::npos, f, ": '", text,
                          "' is a list; give one value (a grid of values is `experiment --grid`)");
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      PREFMIX_CHECK_INPUT(!text.empty() && end && *end == '\0' && errno == 0 &&
                              text.find_first_of(" \t") == std::string::npos,
                          f, ": '", text, "' is not an integer", allow_auto ? " (or 'auto')" : "");
      PREFMIX_CHECK_INPUT(v >= -(1LL << 31) && v < (1LL << 31), f, ": ", text, " is out of range");
      return Json(static_cast<int>(v));
    }
    case OptionType::kReal: {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      PREFMIX_CHECK_INPUT(!text.empty() && end && *end == '\0' && !std::isnan(v), f, ": ", text,
                          " is not a number");
      PREFMIX_CHECK_INPUT(std::isfinite(v), f, ": ", text, " is not a finite number");
      return Json(v);
    }
    case OptionType::kText:
      return Json(text);
    case OptionType::kOnOff:
      PREFMIX_CHECK_INPUT(text == "on" || text == "off", f, ": '", text, "' is not one of on, off");
      return Json(text == "on");
    case OptionType::kSwitch:
      PREFMIX_CHECK_INPUT(text == "on" || text == "off", f, ": '", text, "' is not one of on, off");
      return Json(text == "on");
  }
  return Json();
}

void OptionSpec::Check(const Json& v, const std::string& family) const {
  const std::string f = Dashed();
  switch (type) {
    case OptionType::kInt:
      if (v.is_string()) {
        PREFMIX_CHECK_INPUT(v.str() == "auto", f, ": '", v.str(), "' is not an integer");
        PREFMIX_CHECK_INPUT(allow_auto, f, ": 'auto' is not supported by ", family,
                            "; give a number");
        return;
      }
      PREFMIX_CHECK_INPUT(v.is_number() && v.number() == std::floor(v.number()), f, ": ",
                          v.is_number() ? Number(v.number()) : v.Dump(-1), " is not an integer");
      break;
    case OptionType::kReal:
      PREFMIX_CHECK_INPUT(v.is_number(), f, ": ", v.Dump(-1), " is not a number");
      PREFMIX_CHECK_INPUT(!std::isnan(v.number()), f, ": ", v.number(), " is not a number");
      PREFMIX_CHECK_INPUT(std::isfinite(v.number()), f, ": ", v.number(),
                          " is not a finite number");
      break;
    case OptionType::kText:
      PREFMIX_CHECK_INPUT(v.is_string(), f, ": ", v.Dump(-1), " is not text");
      if (choices.empty()) return;  // free text, checked by the family
      PREFMIX_CHECK_INPUT(std::find(choices.begin(), choices.end(), v.str()) != choices.end(), f,
                          ": '", v.str(), "' is not one of ", Join(choices, ", "));
      return;
    case OptionType::kOnOff:
    case OptionType::kSwitch:
      PREFMIX_CHECK_INPUT(v.type() == Json::Type::kBool, f, ": ", v.Dump(-1),
                          " is not one of on, off");
      return;
  }
  const double x = v.number();
  PREFMIX_CHECK_INPUT(min_open ? x > min : x >= min, f, ": ", Number(x), " must be ",
                      min_open ? "> " : ">= ", Number(min), " for ", family);
  PREFMIX_CHECK_INPUT(x <= max, f, ": ", Number(x), " must be <= ", Number(max), " for ", family);
}

namespace opt {

namespace {
OptionSpec Numeric(std::string key, OptionType type, std::string value, std::string help,
                   double min, double max) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = type;
  s.value = std::move(value);
  s.help = std::move(help);
  s.min = min;
  s.max = max;
  return s;
}
}  // namespace

OptionSpec Int(std::string key, int value, std::string help, double min, double max) {
  return Numeric(std::move(key), OptionType::kInt, std::to_string(value), std::move(help), min,
                 max);
}

OptionSpec Real(std::string key, std::string value, std::string help, double min, double max) {
  return Numeric(std::move(key), OptionType::kReal, std::move(value), std::move(help), min, max);
}

OptionSpec Text(std::string key, std::string value, std::vector<std::string> choices,
                std::string help) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = OptionType::kText;
  s.value = std::move(value);
  s.choices = std::move(choices);
  s.help = std::move(help);
  return s;
}

OptionSpec OnOff(std::string key, bool value, std::string help) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = OptionType::kOnOff;
  s.value = value ? "on" : "off";
  s.help = std::move(help);
  return s;
}

OptionSpec Switch(std::string key, std::string flag, bool value, std::string help) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = OptionType::kSwitch;
  s.flag = std::move(flag);
  s.value = value ? "on" : "off";
  s.help = std::move(help);
  return s;
}

namespace {
OptionSpec WithRule(OptionSpec s, std::string rule) {
  s.rule = std::move(rule);
  return s;
}
}  // namespace

OptionSpec K(int value, bool allow_auto) {
  OptionSpec s = Int("k", value, "components: groups / prototypes / heads / basis size", 1, 1e6);
  s.allow_auto = allow_auto;
  if (allow_auto) s.rule = "or auto: chosen on validation";
  return s;
}

OptionSpec Dim(int value, std::string rule) {
  return WithRule(Int("dim", value, "projection or latent size", 0, 1e6), rule);
}

OptionSpec Epochs(int value, std::string rule) {
  OptionSpec s =
      WithRule(Int("epochs", value, "maximum passes over the training pairs", 0, 1e9), rule);
  s.zero_is_default = true;
  return s;
}

OptionSpec Lr(std::string value, std::string rule) {
  OptionSpec s = WithRule(Real("lr", std::move(value), "Adam step size", 0), rule);
  s.zero_is_default = true;
  return s;
}

OptionSpec Batch(int value, std::string rule) {
  OptionSpec s = WithRule(Int("batch", value, "mini-batch size in pairs", 0, 1e9), rule);
  s.zero_is_default = true;
  return s;
}

OptionSpec L2(std::string value, std::string rule) {
  OptionSpec s = WithRule(Real("l2", value, "L2 strength"), rule);
  // A family whose default is a number (not "choose on validation") reads a negative value as
  // its default, as the first model files recorded it.
  if (std::strtod(value.c_str(), nullptr) >= 0) s.negative_is_default = true;
  return s;
}

OptionSpec Patience(int value) {
  return Int("patience", value, "early stopping: epochs without a better validation log-likelihood",
             1, 1e9);
}

OptionSpec Refit() {
  return Switch("refit", "no-refit", true,
                "after choosing settings on validation, refit on train + validation "
                "(--no-refit: keep the selection fit)");
}

OptionSpec Hidden(int value) { return Int("hidden", value, "MLP hidden width", 1, 1e6); }

OptionSpec UserPrior(std::string value, std::string rule) {
  OptionSpec s = WithRule(Real("user_prior", value, "strength of the user-step prior"), rule);
  if (std::strtod(value.c_str(), nullptr) >= 0) s.negative_is_default = true;
  return s;
}

}  // namespace opt

// ---- ModelOptions ----------------------------------------------------------------------------

namespace {
/// The value of `key`: as set, else the family's default.
Json Value(const ModelOptions& o, const std::string& key) {
  auto it = o.values.find(key);
  if (it != o.values.end()) return it->second;
  for (const auto& s : FamilyOptions(o.family))
    if (s.key == key) return DefaultOf(s, s.value);
  PREFMIX_ASSERT(false, "option '", key, "' is not declared by family '", o.family, "'");
  return Json();
}
}  // namespace

int ModelOptions::Int(const std::string& key) const {
  const Json v = Value(*this, key);
  PREFMIX_ASSERT(v.is_number(), "option '", key, "' is not a number");
  return static_cast<int>(v.number());
}

double ModelOptions::Real(const std::string& key) const {
  const Json v = Value(*this, key);
  PREFMIX_ASSERT(v.is_number(), "option '", key, "' is not a number");
  return v.number();
}

std::string ModelOptions::Text(const std::string& key) const {
  const Json v = Value(*this, key);
  PREFMIX_ASSERT(v.is_string(), "option '", key, "' is not text");
  return v.str();
}

bool ModelOptions::Flag(const std::string& key) const {
  const Json v = Value(*this, key);
  PREFMIX_ASSERT(v.type() == Json::Type::kBool, "option '", key, "' is not on/off");
  return v.boolean();
}

bool ModelOptions::Auto(const std::string& key) const {
  auto it = values.find(key);
  return it != values.end() && it->second.is_string() && it->second.str() == "auto";
}

ModelOptions& ModelOptions::Set(const std::string& key, int v) {
  values[key] = Json(v);
  return *this;
}
ModelOptions& ModelOptions::Set(const std::string& key, double v) {
  values[key] = Json(v);
  return *this;
}
ModelOptions& ModelOptions::Set(const std::string& key, bool v) {
  values[key] = Json(v);
  return *this;
}
ModelOptions& ModelOptions::Set(const std::string& key, const char* v) {
  values[key] = Json(v);
  return *this;
}
ModelOptions& ModelOptions::Set(const std::string& key, const std::string& v) {
  values[key] = Json(v);
  return *this;
}

Json ModelOptions::ToJson() const {
  Json j = Json::Object();
  j["family"] = family;
  for (const auto& s : FamilyOptions(family)) {
    auto it = values.find(s.key);
    if (it != values.end()) j[s.key] = it->second;
  }
  j["seed"] = static_cast<uint64_t>(seed);
  j["threads"] = threads;
  j["device"] = device;
  return j;
}

ModelOptions ModelOptions::FromJson(const Json& j) {
  ModelOptions o;
  o.family = j.at("family").str();
  for (const auto& s : FamilyOptions(o.family)) {
    if (j.contains(s.key)) {
      // As read; ResolveOptions (MakeModel) checks type and range. An integer option that is no
      // int at all is refused here, before anything could cast it.
      const Json& v = j.at(s.key);
      if (s.type == OptionType::kInt && v.is_number())
        PREFMIX_CHECK_INPUT(v.number() == std::floor(v.number()) && v.number() >= -2147483648.0 &&
                                v.number() < 2147483648.0,
                            "options: '", s.key, "' = ", v.number(),
                            " is not an integer in [-2147483648, 2147483647]");
      o.values[s.key] = v;
    } else if (!s.legacy.empty()) {
      o.values[s.key] = DefaultOf(s, s.legacy);
    }
  }
  // Whole numbers in range, checked before the cast (a cast of anything else is undefined).
  const double seed = j.at("seed").number(), threads = j.at("threads").number();
  PREFMIX_CHECK_INPUT(seed == std::floor(seed) && seed >= 0 && seed < 18446744073709551616.0,
                      "options: 'seed' = ", seed, " is not an integer in [0, 2^64)");
  PREFMIX_CHECK_INPUT(threads == std::floor(threads) && threads >= 1 && threads <= 4096,
                      "options: 'threads' = ", threads, " is not an integer in [1, 4096]");
  o.seed = static_cast<uint64_t>(seed);
  o.threads = static_cast<int>(threads);
  o.device = j.at("device").str();
  return o;
}

const std::vector<OptionSpec>& FamilyOptions(const std::string& family) {
  return FindFamily(family).options;
}

void ResolveOptions(ModelOptions& o) {
  const std::vector<OptionSpec>& specs = FamilyOptions(o.family);
  for (const auto& kv : o.values) {
    if (FindSpec(specs, kv.first)) continue;
    std::vector<std::string> known;
    for (const auto& s : specs) known.push_back(s.key);
    throw Error(Cat("option '", kv.first, "' does not apply to family '", o.family,
                    "' (its options: ", Join(known, ", "), ")"));
  }
  for (const auto& s : specs) {
    auto it = o.values.find(s.key);
    if (it == o.values.end()) {
      o.values[s.key] = DefaultOf(s, s.value);
      continue;
    }
    Json& v = it->second;
    if (v.is_number() &&
        ((s.zero_is_default && v.number() == 0) || (s.negative_is_default && v.number() < 0)))
      v = DefaultOf(s, s.value);
    if (s.type == OptionType::kInt && v.is_number() && v.number() == std::floor(v.number()) &&
        std::fabs(v.number()) < 2147483648.0)
      v = Json(static_cast<int>(v.number()));
    s.Check(v, o.family);
  }
}

std::string OptionsMarkdown() {
  std::ostringstream os;
  for (const auto& family : FamilyNames(true)) {
    os << "### " << family << "\n\n";
    os << "| flag | type | default | meaning |\n|---|---|---|---|\n";
    for (const auto& s : FamilyOptions(family)) {
      auto esc = [](std::string t) {
        std::string out;
        for (char c : t) {
          if (c == '|') out += '\\';
          out += c;
        }
        return out;
      };
      std::string def = s.value;
      if (s.type == OptionType::kSwitch) def = s.key + " " + s.value;
      os << "| `" << s.Dashed() << "` | " << esc(s.TypeName()) << " | " << esc(def) << " | "
         << esc(s.Meaning()) << " |\n";
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace prefmix
