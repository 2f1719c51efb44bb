#include "core/io/json.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace prefmix {

Json& Json::operator[](const std::string& key) {
  if (type_ == Type::kNull) type_ = Type::kObject;
  PREFMIX_ASSERT(type_ == Type::kObject, "Json: member access on a non-object");
  for (auto& kv : object_)
    if (kv.first == key) return kv.second;
  object_.emplace_back(key, Json());
  return object_.back().second;
}

const Json& Json::at(const std::string& key) const {
  if (type_ == Type::kObject)
    for (const auto& kv : object_)
      if (kv.first == key) return kv.second;
  throw Error(Cat("JSON: missing key '", key, "'"));
}

bool Json::contains(const std::string& key) const {
  if (type_ != Type::kObject) return false;
  for (const auto& kv : object_)
    if (kv.first == key) return true;
  return false;
}

void Json::push_back(Json v) {
  if (type_ == Type::kNull) type_ = Type::kArray;
  PREFMIX_ASSERT(type_ == Type::kArray, "Json: push_back on a non-array");
  array_.push_back(std::move(v));
}

double Json::number() const {
  PREFMIX_CHECK_INPUT(type_ == Type::kNumber, "JSON: number expected");
  return num_;
}

const std::string& Json::str() const {
  PREFMIX_CHECK_INPUT(type_ == Type::kString, "JSON: string expected");
  return str_;
}

namespace {
void Escape(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

void Json::DumpTo(std::string& out, int indent, int level) const {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (type_) {
    case Type::kNull:
      out += "null";
      break;
    case Type::kBool:
      out += bool_ ? "true" : "false";
      break;
    case Type::kNumber: {
      PREFMIX_ASSERT(std::isfinite(num_), "Json: non-finite number in output");
      char buf[40];
      if (is_int_ || (num_ == std::floor(num_) && std::fabs(num_) < 1e15))
        std::snprintf(buf, sizeof buf, "%.0f", num_);
      else
        std::snprintf(buf, sizeof buf, "%.10g", num_);
      out += buf;
      break;
    }
    case Type::kString:
      Escape(out, str_);
      break;
    case Type::kArray: {
      out += '[';
      bool simple = true;
      for (const auto& v : array_) simple &= !(v.is_array() || v.is_object());
      for (size_t i = 0; i < array_.size(); ++i) {
        if (i) out += simple || indent < 0 ? (indent < 0 ? "," : ", ") : ",";
        if (!simple) newline(level + 1);
        array_[i].DumpTo(out, indent, level + 1);
      }
      if (!simple && !array_.empty()) newline(level);
      out += ']';
      break;
    }
    case Type::kObject: {
      out += '{';
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        Escape(out, object_[i].first);
        out += indent < 0 ? ":" : ": ";
        object_[i].second.DumpTo(out, indent, level + 1);
      }
      if (!object_.empty()) newline(level);
      out += '}';
      break;
    }
  }
}

std::string Json::Dump(int indent) const {
  std::string out;
  DumpTo(out, indent, 0);
  if (indent >= 0) out += '\n';
  return out;
}

namespace {
struct Parser {
  /// Arrays and objects nest at most this deep (the parser recurses once per level).
  static constexpr int kMaxDepth = 256;
  const std::string& s;
  size_t i = 0;
  int depth = 0;
  [[noreturn]] void Fail(const char* what) {
    throw Error(Cat("JSON parse error at offset ", i, ": ", what));
  }
  void Ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  Json Value() {
    Ws();
    if (i >= s.size()) Fail("unexpected end");
    char c = s[i];
    if ((c == '{' || c == '[') && ++depth > kMaxDepth) Fail("arrays and objects nested too deep");
    if (c == '{') {
      ++i;
      Json o = Json::Object();
      Ws();
      if (i < s.size() && s[i] == '}') {
        ++i;
        --depth;
        return o;
      }
      for (;;) {
        Ws();
        if (i >= s.size() || s[i] != '"') Fail("key expected");
        std::string k = String();
        Ws();
        if (i >= s.size() || s[i] != ':') Fail("':' expected");
        ++i;
        o[k] = Value();
        Ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == '}') {
          ++i;
          --depth;
          return o;
        }
        Fail("',' or '}' expected");
      }
    }
    if (c == '[') {
      ++i;
      Json a = Json::Array();
      Ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
        --depth;
        return a;
      }
      for (;;) {
        a.push_back(Value());
        Ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == ']') {
          ++i;
          --depth;
          return a;
        }
        Fail("',' or ']' expected");
      }
    }
    if (c == '"') return Json(String());
    if (s.compare(i, 4, "true") == 0) {
      i += 4;
      return Json(true);
    }
    if (s.compare(i, 5, "false") == 0) {
      i += 5;
      return Json(false);
    }
    if (s.compare(i, 4, "null") == 0) {
      i += 4;
      return Json();
    }
    size_t start = i;
    while (i < s.size() && (isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-' ||
                            s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
      ++i;
    if (start == i) Fail("value expected");
    // The whole token must be one finite number ("-", "1e", "1-2" and "1e999" are not).
    const std::string token = s.substr(start, i - start);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(token.c_str(), &end);
    if (end != token.c_str() + token.size() || !std::isfinite(v)) {
      i = start;
      Fail("malformed or out-of-range number");
    }
    return Json(v);
  }
  std::string String() {
    ++i;  // opening quote
    std::string out;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        ++i;
        if (i >= s.size()) Fail("bad escape");
        char e = s[i++];
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case 'r':
            out += '\r';
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'u': {
            if (i + 4 > s.size()) Fail("bad \\u escape");
            unsigned cp = 0;
            for (int k = 0; k < 4; ++k) {
              const char h = s[i + k];
              if (!std::isxdigit(static_cast<unsigned char>(h))) Fail("bad \\u escape");
              cp = cp * 16 + (std::isdigit(static_cast<unsigned char>(h))
                                  ? h - '0'
                                  : std::tolower(static_cast<unsigned char>(h)) - 'a' + 10);
            }
            i += 4;
            if (cp < 0x80)
              out += static_cast<char>(cp);
            else if (cp < 0x800) {
              out += static_cast<char>(0xC0 | (cp >> 6));
              out += static_cast<char>(0x80 | (cp & 0x3F));
            } else {
              out += static_cast<char>(0xE0 | (cp >> 12));
              out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
              out += static_cast<char>(0x80 | (cp & 0x3F));
            }
            break;
          }
          default:
            out += e;
        }
      } else {
        out += s[i++];
      }
    }
    if (i >= s.size()) Fail("unterminated string");
    ++i;
    return out;
  }
};
}  // namespace

Json Json::Parse(const std::string& text) {
  Parser p{text};
  Json v = p.Value();
  p.Ws();
  if (p.i != text.size()) p.Fail("trailing characters");
  return v;
}

}  // namespace prefmix
