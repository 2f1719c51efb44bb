#pragma once
// A small ordered JSON value for the metrics files (keys keep insertion order), with a parser
// for tests and config round trips. Non-finite numbers are refused on output (never faked).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace prefmix {

/// A JSON value: null, bool, number, string, array or object (ordered).
class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::kBool), bool_(b) {}
  Json(int v) : type_(Type::kNumber), num_(v), is_int_(true) {}
  Json(int64_t v) : type_(Type::kNumber), num_(static_cast<double>(v)), is_int_(true) {}
  Json(uint64_t v) : type_(Type::kNumber), num_(static_cast<double>(v)), is_int_(true) {}
  Json(double v) : type_(Type::kNumber), num_(v) {}
  Json(const char* s) : type_(Type::kString), str_(s) {}
  Json(std::string s) : type_(Type::kString), str_(std::move(s)) {}

  static Json Array() {
    Json j;
    j.type_ = Type::kArray;
    return j;
  }
  static Json Object() {
    Json j;
    j.type_ = Type::kObject;
    return j;
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_number() const { return type_ == Type::kNumber; }
  bool is_string() const { return type_ == Type::kString; }

  /// Object access: inserts a null member when absent (turns null into an object).
  Json& operator[](const std::string& key);
  /// Object lookup; throws prefmix::Error when absent.
  const Json& at(const std::string& key) const;
  bool contains(const std::string& key) const;
  /// Array append (turns null into an array).
  void push_back(Json v);
  const std::vector<Json>& items() const { return array_; }
  const std::vector<std::pair<std::string, Json>>& members() const { return object_; }
  size_t size() const { return type_ == Type::kArray ? array_.size() : object_.size(); }

  double number() const;
  const std::string& str() const;
  bool boolean() const { return bool_; }

  /// Serialises (indent < 0: compact). Throws prefmix::InternalError on NaN/Inf.
  std::string Dump(int indent = 2) const;
  /// Parses text; throws prefmix::Error with the offset on malformed input.
  static Json Parse(const std::string& text);

 private:
  void DumpTo(std::string& out, int indent, int level) const;
  Type type_ = Type::kNull;
  bool bool_ = false;
  double num_ = 0;
  bool is_int_ = false;
  std::string str_;
  std::vector<Json> array_;
  std::vector<std::pair<std::string, Json>> object_;
};

}  // namespace prefmix
