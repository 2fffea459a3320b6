// Global libtorch switches that tch 0.26 does not expose, with guard.h's error convention.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "guard.h"

extern "C" {

// Autocast on CUDA computes in bfloat16 (1) or float16 (0); thread-local in libtorch, so
// the training thread calls it before its first autocast region.
int lrlab_set_autocast_bf16(int bf16, char* err, size_t len) {
  return lrlab::guarded(err, len, [&] {
    at::autocast::set_autocast_dtype(at::kCUDA, bf16 ? at::kBFloat16 : at::kHalf);
  });
}

// Deterministic kernels (cuDNN included) for bit-reproducible CUDA runs.
int lrlab_set_deterministic(int on, char* err, size_t len) {
  return lrlab::guarded(err, len, [&] {
    at::globalContext().setDeterministicAlgorithms(on != 0, /*warn_only=*/false);
    at::globalContext().setDeterministicCuDNN(on != 0);
    if (on) at::globalContext().setBenchmarkCuDNN(false);
  });
}

// cuDNN's version (e.g. 91002) in `out`, 0 without CUDA or cuDNN; for `lrlab info`.
int lrlab_cudnn_version(long long* out, char* err, size_t len) {
  *out = 0;
  return lrlab::guarded(err, len, [&] {
    const auto& hooks = at::detail::getCUDAHooks();
    *out = hooks.hasCuDNN() ? hooks.versionRuntimeCuDNN() : 0;
  });
}
}
