// The linear link's CPU loop in the library's baseline build, and the choice between builds.
#define PREFMIX_CPU_LOOP_NAME SolveLinearUsersBase
#include "core/userstep/user_step_cpu.inc"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace prefmix::cpu {
namespace {

bool CpuHasV3() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

/// PREFMIX_CPU_ISA: unset, empty or "auto" (what the CPU supports), "base", or "x86-64-v3"
/// (refused where the CPU lacks it); anything else is refused, never taken as auto.
bool UseV3() {
  const char* env = std::getenv("PREFMIX_CPU_ISA");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return CpuHasV3();
  if (v == "base") return false;
  PREFMIX_CHECK_INPUT(v == "x86-64-v3", "PREFMIX_CPU_ISA=", v,
                      ": expected auto, base or x86-64-v3");
  PREFMIX_CHECK_INPUT(CpuHasV3(),
                      "PREFMIX_CPU_ISA=x86-64-v3: this CPU lacks AVX2 or FMA; "
                      "use auto or base");
  return true;
}

}  // namespace

const char* LinearUserStepIsa() { return UseV3() ? "x86-64-v3" : "base"; }

void SolveLinearUsers(const raw::UserStepArgs& a) {
  if (UseV3())
    SolveLinearUsersV3(a);
  else
    SolveLinearUsersBase(a);
}

}  // namespace prefmix::cpu
