// Every CUDA call's return code is checked: a failure becomes a C++ exception naming the call and
// CUDA's message (a Python RuntimeError through the bindings).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace r1lite::cuda {

inline void check(cudaError_t status, const char* what, const char* file, int line) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" +
                             std::to_string(line) + "): " + cudaGetErrorString(status));
}

}  // namespace r1lite::cuda

#define CUDA_CHECK(call) ::r1lite::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: a bad configuration is reported here, faults at the next synchronization.
#define CUDA_CHECK_LAUNCH() ::r1lite::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
