#include "core/torch/module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/error.h"

namespace prefmix::torchmodule {
namespace {

std::map<std::string, AnyFn>& Entries() {
  static std::map<std::string, AnyFn> e;
  return e;
}
std::recursive_mutex& Mutex() {
  static std::recursive_mutex m;
  return m;
}
bool g_loaded = false;

std::string DirOf(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

/// The directory of the file that holds this code: the executable (the CLI), or the shared object
/// it was linked into (the Python module, _prefmix*.so, which carries the LibTorch module beside
/// it).
std::string CodeDir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ProvideRaw), &info) && info.dli_fname &&
      info.dli_fname[0] == '/') {
    const std::string f = info.dli_fname, base = f.substr(f.rfind('/') + 1);
    const bool shared_object = (base.size() > 3 && base.compare(base.size() - 3, 3, ".so") == 0) ||
                               base.find(".so.") != std::string::npos;
    if (shared_object) return DirOf(f);
  }
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  return DirOf(std::string(buf, static_cast<size_t>(n)));
}

}  // namespace

bool ProvideRaw(const char* name, AnyFn fn) {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  Entries()[name] = fn;
  return true;
}

bool Provided(const char* name) {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  return Entries().count(name) > 0;
}

bool Loaded() {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  return g_loaded;
}

std::string ModulePath() {
  if (const char* env = std::getenv("PREFMIX_TORCH_MODULE"); env && *env) return env;
  return CodeDir() + "/libprefmix_torch.so";
}

AnyFn NeedRaw(const char* name, const char* user) {
  std::lock_guard<std::recursive_mutex> lock(Mutex());
  auto it = Entries().find(name);
  if (it != Entries().end()) return it->second;
  const std::string path = ModulePath();
  if (!g_loaded) {
    // RTLD_GLOBAL: the module's symbols stay visible to anything loaded after it (torch's own
    // plugins); its static initialisers call ProvideRaw while dlopen runs.
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      const char* why = dlerror();
      throw Error(
          Cat(user, " needs the LibTorch module ", path,
              ", which could not be loaded: ", why ? why : "unknown error",
              " (build the target prefmix_torch, or set PREFMIX_TORCH_MODULE to its path)"));
    }
    g_loaded = true;
    it = Entries().find(name);
    if (it != Entries().end()) return it->second;
  }
  throw Error(Cat(user, ": the LibTorch module ", path, " does not provide '", name,
                  "' (a module from another prefmix build?)"));
}

}  // namespace prefmix::torchmodule
