#pragma once
// The LibTorch module: the code that needs LibTorch (bt's MLP, pal-a / pal-b training, vpl, torch's
// thread count) lives in a separately linked shared object, libprefmix_torch.so, that the CLI
// loads the first time a family asks for it. Commands and families that never touch LibTorch
// (--help, inspect, import, bt linear, lowrank, em-bt, micro, gppl) then start without loading
// LibTorch and the ~290 libraries it pulls in (issue 21).
//
// The module publishes its entry points by name from static initialisers (Provide); the code in
// the core library asks for one with Need, which loads the module on first use. Where the module's
// objects are linked in statically (the tests, the benches), the entry points are provided at
// start-up and nothing is loaded. The Python module loads it as the CLI does: python/prefmix
// imports _prefmix with RTLD_GLOBAL so that the module's references to prefmix resolve there.
//
// This file does not include LibTorch (the rest of core/torch does, and is part of the module).
#include <string>

namespace prefmix::torchmodule {

using AnyFn = void (*)();

/// Publishes an entry point (called from the module's static initialisers). Returns true.
bool ProvideRaw(const char* name, AnyFn fn);
/// The entry point `name`, loading the module first when it is not yet provided. Throws
/// prefmix::Error naming the module path and `user` (the family or command that needs it) when the
/// module cannot be loaded or does not provide `name`.
AnyFn NeedRaw(const char* name, const char* user);
/// True when the entry point is present without loading anything (statically linked, or the
/// module already loaded).
bool Provided(const char* name);
/// True once the module was loaded with dlopen (never where its objects are linked in).
bool Loaded();
/// The path the module is loaded from: $PREFMIX_TORCH_MODULE when set, else libprefmix_torch.so
/// beside the file holding prefmix's code: the running executable (the CLI), or the Python
/// module's _prefmix*.so.
std::string ModulePath();

template <class F>
bool Provide(const char* name, F* fn) {
  return ProvideRaw(name, reinterpret_cast<AnyFn>(fn));
}
template <class F>
F* Need(const char* name, const char* user) {
  return reinterpret_cast<F*>(NeedRaw(name, user));
}

}  // namespace prefmix::torchmodule
