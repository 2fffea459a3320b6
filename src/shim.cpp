// Global libtorch switches that tch 0.26 does not expose. Each returns 0 on success and -1
// when libtorch raised (the Rust side turns that into an error).
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

extern "C" {

// Autocast on CUDA computes in bfloat16 (1) or float16 (0); thread-local in libtorch, so
// the training thread calls it before its first autocast region.
int lrlab_set_autocast_bf16(int bf16) {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Deterministic kernels (cuDNN included) for bit-reproducible CUDA runs.
int lrlab_set_deterministic(int on) {
  try {
    at::globalContext().setDeterministicAlgorithms(on != 0, /*warn_only=*/false);
    at::globalContext().setDeterministicCuDNN(on != 0);
    if (on) at::globalContext().setBenchmarkCuDNN(false);
    return 0;
  } catch (...) {
    return -1;
  }
}

// cuDNN's version (e.g. 91002), 0 without CUDA or cuDNN; for `lrlab info`.
long long lrlab_cudnn_version() {
  try {
    const auto& hooks = at::detail::getCUDAHooks();
    return hooks.hasCuDNN() ? hooks.versionRuntimeCuDNN() : 0;
  } catch (...) {
    return 0;
  }
}
}
