#include "core/io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace prefmix {

AtomicOutput::AtomicOutput(std::string final_path) : final_(std::move(final_path)) {
  namespace fs = std::filesystem;
  PREFMIX_CHECK_INPUT(!final_.empty(), "empty output path");
  fs::path p(final_);
  fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  PREFMIX_CHECK_INPUT(fs::is_directory(dir, ec), final_, ": output directory '", dir.string(),
                      "' does not exist");
  PREFMIX_CHECK_INPUT(!fs::is_directory(p, ec), final_, ": output path is a directory");
  temp_ = final_ + ".tmp." + std::to_string(::getpid());
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) std::remove(temp_.c_str());
}

void AtomicOutput::Commit() {
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
    int err = errno;
    std::remove(temp_.c_str());
    throw Error(Cat(final_, ": cannot write output (", std::strerror(err), ")"));
  }
  committed_ = true;
}

void WriteTextFileAtomic(const std::string& path, const std::string& text) {
  AtomicOutput out(path);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    PREFMIX_CHECK_INPUT(f, path, ": cannot open for writing");
    f << text;
    f.flush();
    PREFMIX_CHECK_INPUT(f, path, ": write failed");
  }
  out.Commit();
}

}  // namespace prefmix
