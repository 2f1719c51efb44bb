#pragma once
// Shared by the libFuzzer harnesses (bench/fuzz.sh runs them): the loaders take file paths, so each
// input is written to one temporary file per process and target (rewritten in place, so the
// inode stays the same and NoteInput's set of inputs does not grow), then loaded.
// prefmix::Error is the clean rejection; any other exception escapes and libFuzzer reports it
// (uncaught exception -> std::terminate -> abort), as it does crashes, sanitizer reports, leaks
// and timeouts.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace prefmix::fuzz {

/// $TMPDIR (or /tmp) / prefmix-fuzz-<name>-<pid><ext>.
inline std::string TempPath(const std::string& name, const std::string& ext = "") {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/prefmix-fuzz-" + name + "-" +
         std::to_string(::getpid()) + ext;
}

/// Writes `size` bytes to `path` (truncating it); aborts when the file cannot be written, which
/// is a broken fuzzing setup, not a finding.
inline void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

inline void WriteFile(const std::string& path, const std::string& text) {
  WriteFile(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

/// The clean rejection: silent, or printed when PREFMIX_FUZZ_VERBOSE is set (for triage:
/// PREFMIX_FUZZ_VERBOSE=1 fuzz_model FILE... shows each file's message).
inline void Rejected(const std::exception& e) {
  static const bool verbose = std::getenv("PREFMIX_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "prefmix::Error: %s\n", e.what());
}

/// Removes the file at exit (libFuzzer returns from main on -runs/-max_total_time).
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace prefmix::fuzz

// Sanitizer defaults for every harness: stop at the first UBSan report (libFuzzer then saves the
// input), with a stack trace. The environment (UBSAN_OPTIONS) still overrides these.
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:silence_unsigned_overflow=1";
}
