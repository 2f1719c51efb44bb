#pragma once
// Device dispatch: "cpu" always; "cuda" only in a CUDA build on a machine with a GPU.
#include <string>

namespace prefmix {
/// True when prefmix was built with its CUDA kernels.
bool BuiltWithCuda();
/// Number of usable CUDA devices (0 without a driver/GPU or in a CPU-only build).
int CudaDeviceCount();
/// Throws prefmix::Error with a clear message if `device` is unknown or unavailable.
void CheckDevice(const std::string& device);
}  // namespace prefmix
