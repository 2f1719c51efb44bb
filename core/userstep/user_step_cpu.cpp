// The linear link's CPU loop in the library's baseline build, and the choice between builds.
#define PREFMIX_CPU_LOOP_NAME SolveLinearUsersBase
#include "core/userstep/user_step_cpu.inc"

#include <cstdlib>
#include <cstring>

namespace prefmix::cpu {
namespace {

bool UseV3() {
  const char* env = std::getenv("PREFMIX_CPU_ISA");
  if (env && std::strcmp(env, "base") == 0) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
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
