#pragma once
// Helpers shared by the tests: temp dirs, running the CLI, schema validation, python/h5py.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "core/error.h"

namespace prefmix::testing {

/// The message of the prefmix::Error that f throws; "" when it throws none.
inline std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A fresh directory under the gtest temp dir, named after the running test.
inline std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("prefmix_") + info->test_suite_name() + "_" + info->name();
  for (auto& c : name)
    if (c == '/') c = '_';
  std::filesystem::path p = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) { return std::filesystem::exists(path); }

struct CliResult {
  int rc = -1;
  std::string out, err;
};

/// Runs `prefmix <args>` (args are shell words, already quoted where needed).
inline CliResult RunCli(const std::string& args, const std::string& dir) {
  const std::string out = dir + "/.stdout", err = dir + "/.stderr";
  std::string cmd =
      std::string(PREFMIX_CLI) + " " + args + " >" + out + " 2>" + err + " </dev/null";
  int status = std::system(cmd.c_str());
  CliResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

/// Debian's python3 (h5py, jsonschema live there, not in a pyenv python earlier on PATH).
inline std::string Python() { return Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

inline bool PythonHas(const std::string& module) {
  std::string cmd = Python() + " -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

/// Runs python code (written to a file in dir); returns the exit code.
inline int RunPython(const std::string& code, const std::string& dir, std::string* err = nullptr) {
  const std::string script = dir + "/.script.py", errf = dir + "/.pyerr";
  std::ofstream(script) << code;
  int status = std::system((Python() + " " + script + " >/dev/null 2>" + errf).c_str());
  if (err) *err = ReadFile(errf);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// Validates a metrics file against data/schema/metrics.schema.json (skips without jsonschema).
inline void ExpectValidMetrics(const std::string& json_path) {
  if (!PythonHas("jsonschema"))
    GTEST_SKIP() << "python3-jsonschema missing: apt-get install python3-jsonschema";
  std::string cmd = Python() +
                    " " PREFMIX_SOURCE_DIR "/tests/validate_json.py " PREFMIX_SOURCE_DIR
                    "/data/schema/metrics.schema.json " +
                    json_path + " 2>" + json_path + ".err";
  int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(json_path + ".err");
}

/// The SUSHI3 data directory, from $PREFMIX_SUSHI_DIR ("" when unset). SUSHI's licence forbids
/// redistribution, so the repository holds none of it; .ci/run sets the variable.
inline std::string SushiDir() {
  const char* d = std::getenv("PREFMIX_SUSHI_DIR");
  return d ? d : "";
}
inline bool HaveSushi() {
  return !SushiDir().empty() && std::filesystem::exists(SushiDir() + "/sushi3.udata");
}
/// The one-line hint of a test skipped for want of the SUSHI data.
inline std::string SushiSkipHint() {
  return "SUSHI3 data not found: set PREFMIX_SUSHI_DIR to the directory holding sushi3.udata "
         "(now '" +
         SushiDir() + "')";
}

/// Number of lines in s (a trailing newline does not start a new line).
inline int Lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  if (!s.empty() && s.back() != '\n') ++n;
  return n;
}

}  // namespace prefmix::testing
