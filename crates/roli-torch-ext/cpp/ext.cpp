// The few libtorch 2.11 calls tch 0.24 does not bind. One translation unit, CPU-side headers only.
//
// Convention: every function is `extern "C"`, returns 0 on success and 1 on error, and on error
// writes a NUL-terminated message (truncated to `err_len`) into the caller's `err` buffer. No C++
// exception crosses the boundary. Tensors arrive as `at::Tensor*` (what tch's `as_ptr()` gives, as
// in tch's own shim); tensors created here are returned as `new at::Tensor`, which tch's
// `Tensor::from_ptr` takes over and frees.
#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_sqrt.h>
#include <ATen/ops/_foreach_sub.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>

#include <dlfcn.h>

#include "guard.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using roli_ext::fail;
using roli_ext::guarded;

c10::DeviceType device_type(int code) {
  switch (code) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    case 2:
      return at::kMPS;
    default:
      TORCH_CHECK(false, "unsupported device type code ", code);
  }
}

at::ScalarType scalar_type(int code) {
  auto t = static_cast<at::ScalarType>(code);
  TORCH_CHECK(
      t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble,
      "unsupported floating dtype code ", code);
  return t;
}

std::vector<at::Tensor> list(const at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(ts[i] != nullptr, "null tensor pointer at position ", i);
    out.push_back(*ts[i]);
  }
  return out;
}

void give(std::vector<at::Tensor>&& ts, at::Tensor** out, size_t n) {
  TORCH_CHECK(ts.size() == n, "expected ", n, " result tensors, got ", ts.size());
  for (size_t i = 0; i < n; ++i) out[i] = new at::Tensor(std::move(ts[i]));
}

// The CPU fused kernels walk raw memory over `numel` elements with the parameter's dtype and check
// nothing; refuse what they would silently get wrong (the CUDA ones check for themselves).
void check_like_params(const char* what, const std::vector<at::Tensor>& params,
                       const std::vector<at::Tensor>& others) {
  TORCH_CHECK(others.size() == params.size(), what, ": ", others.size(), " tensors for ",
              params.size(), " parameters");
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const auto& o = others[i];
    TORCH_CHECK(o.device() == p.device() && o.scalar_type() == p.scalar_type(), what, " ", i,
                ": ", o.scalar_type(), " on ", o.device(), ", its parameter ", p.scalar_type(),
                " on ", p.device());
    TORCH_CHECK(o.sizes() == p.sizes() && o.strides() == p.strides(), what, " ", i,
                ": shape/strides ", o.sizes(), "/", o.strides(), " differ from its parameter's ",
                p.sizes(), "/", p.strides());
  }
}

void check_dense(const std::vector<at::Tensor>& params) {
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(params[i].is_non_overlapping_and_dense(), "parameter ", i,
                " is not dense (overlapping or with gaps)");
  }
}

// Device statistics need an accelerator with that index; CPU-only processes have none.
bool accelerator_index(int index, c10::DeviceType* type) {
  auto acc = at::accelerator::getAccelerator(false);
  if (!acc.has_value() || index < 0) return false;
  if (index >= static_cast<int>(at::accelerator::deviceCount())) return false;
  at::globalContext().lazyInitDevice(*acc);
  *type = *acc;
  return true;
}

}  // namespace

extern "C" {

// ---- autocast ------------------------------------------------------------------------------

int roli_ext_autocast_state(int dev, bool* enabled, int* dtype, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(dev);
    *enabled = at::autocast::is_autocast_enabled(t);
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(t));
  });
}

// Saves the previous state, enables autocast with `dtype`, increments the nesting level.
int roli_ext_autocast_enter(int dev, int dtype, bool* prev_enabled, int* prev_dtype, char* err,
                            size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(dev);
    auto s = scalar_type(dtype);
    TORCH_CHECK(s == at::kHalf || s == at::kBFloat16, "autocast dtype must be Half or BFloat16");
    *prev_enabled = at::autocast::is_autocast_enabled(t);
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(t));
    at::autocast::set_autocast_enabled(t, true);
    at::autocast::set_autocast_dtype(t, s);
    at::autocast::increment_nesting();
  });
}

// As torch.autocast.__exit__: clears the cast cache when the outermost scope ends, restores state.
int roli_ext_autocast_exit(int dev, bool prev_enabled, int prev_dtype, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto t = device_type(dev);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(t, prev_enabled);
    at::autocast::set_autocast_dtype(t, static_cast<at::ScalarType>(prev_dtype));
  });
}

// ---- global math switches -------------------------------------------------------------------

int roli_ext_set_matmul_precision(int p, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    static const char* names[] = {"highest", "high", "medium"};
    TORCH_CHECK(p >= 0 && p <= 2, "matmul precision code ", p);
    at::globalContext().setFloat32MatmulPrecision(names[p]);
  });
}

int roli_ext_matmul_precision(int* p, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    switch (at::globalContext().float32MatmulPrecision()) {
      case at::Float32MatmulPrecision::HIGHEST:
        *p = 0;
        break;
      case at::Float32MatmulPrecision::HIGH:
        *p = 1;
        break;
      case at::Float32MatmulPrecision::MEDIUM:
        *p = 2;
        break;
    }
  });
}

int roli_ext_set_cudnn_tf32(bool on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { at::globalContext().setAllowTF32CuDNN(on); });
}

int roli_ext_cudnn_tf32(bool* on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { *on = at::globalContext().allowTF32CuDNN(); });
}

int roli_ext_set_deterministic(bool on, bool warn_only, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { at::globalContext().setDeterministicAlgorithms(on, warn_only); });
}

int roli_ext_deterministic(bool* on, bool* warn_only, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    *on = at::globalContext().deterministicAlgorithms();
    *warn_only = at::globalContext().deterministicAlgorithmsWarnOnly();
  });
}

int roli_ext_set_cudnn_benchmark(bool on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { at::globalContext().setBenchmarkCuDNN(on); });
}

int roli_ext_cudnn_benchmark(bool* on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { *on = at::globalContext().benchmarkCuDNN(); });
}

// ---- CUDA build/runtime facts ---------------------------------------------------------------

int roli_ext_cuda_versions(bool* has_cuda, int64_t* runtime, bool* has_cudnn, int64_t* cudnn,
                           int* gpus, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    *has_cuda = at::hasCUDA();
    *runtime = 0;
    *has_cudnn = false;
    *cudnn = 0;
    *gpus = 0;
    if (!*has_cuda) return;
    const auto& hooks = at::detail::getCUDAHooks();
    *runtime = hooks.versionCUDART();
    *gpus = hooks.getNumGPUs();
    *has_cudnn = hooks.hasCuDNN();
    if (*has_cudnn) *cudnn = hooks.versionCuDNN();
  });
}

// The name of CUDA device `index` ("NVIDIA H200"); *found is false without CUDA or for an index
// out of range. at::cuda::getDeviceProperties(c10::DeviceIndex) returns a cudaDeviceProp*, whose
// first member is `char name[256]`; it is looked up at run time so that this crate needs neither
// CUDA's headers nor a link to libtorch_cuda (its own tests run without it).
int roli_ext_cuda_device_name(int index, bool* found, char* name, size_t cap, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    *found = false;
    if (cap == 0) return;
    name[0] = 0;
    if (!at::hasCUDA() || index < 0 || index >= at::detail::getCUDAHooks().getNumGPUs()) return;
    using Fn = const char* (*)(c10::DeviceIndex);
    auto f = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "_ZN2at4cuda19getDevicePropertiesEa"));
    if (f == nullptr) return;
    const char* p = f(static_cast<c10::DeviceIndex>(index));
    if (p == nullptr) return;
    std::strncpy(name, p, cap - 1);
    name[cap - 1] = 0;
    *found = true;
  });
}

// ---- device memory statistics ---------------------------------------------------------------

// out: current/peak allocated bytes, current/peak reserved bytes (aggregate pool).
int roli_ext_memory_stats(int index, bool* available, int64_t* out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::DeviceType t;
    *available = accelerator_index(index, &t);
    if (!*available) return;
    auto stats = at::getDeviceAllocator(t)->getDeviceStats(static_cast<c10::DeviceIndex>(index));
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = stats.allocated_bytes[agg].current;
    out[1] = stats.allocated_bytes[agg].peak;
    out[2] = stats.reserved_bytes[agg].current;
    out[3] = stats.reserved_bytes[agg].peak;
  });
}

int roli_ext_memory_reset_peak(int index, bool* available, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::DeviceType t;
    *available = accelerator_index(index, &t);
    if (*available) at::getDeviceAllocator(t)->resetPeakStats(static_cast<c10::DeviceIndex>(index));
  });
}

int roli_ext_memory_info(int index, bool* available, uint64_t* free_bytes, uint64_t* total_bytes,
                         char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::DeviceType t;
    *available = accelerator_index(index, &t);
    if (!*available) return;
    auto info = at::getDeviceAllocator(t)->getMemoryInfo(static_cast<c10::DeviceIndex>(index));
    *free_bytes = info.first;
    *total_bytes = info.second;
  });
}

// ---- optimiser kernels ----------------------------------------------------------------------

int roli_ext_fused_sgd_(const at::Tensor* const* params, const at::Tensor* const* grads,
                        const at::Tensor* const* bufs, size_t n, size_t n_bufs, double weight_decay,
                        double momentum, double lr, double dampening, bool nesterov, bool maximize,
                        bool is_first_step, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto p = list(params, n);
    auto g = list(grads, n);
    auto b = list(bufs, n_bufs);
    check_dense(p);
    check_like_params("gradient", p, g);
    if (momentum != 0.0) check_like_params("momentum buffer", p, b);
    at::_fused_sgd_(p, g, b, weight_decay, momentum, lr, dampening, nesterov, maximize,
                    is_first_step);
  });
}

int roli_ext_fused_adamw_(const at::Tensor* const* params, const at::Tensor* const* grads,
                          const at::Tensor* const* exp_avgs, const at::Tensor* const* exp_avg_sqs,
                          const at::Tensor* const* steps, size_t n, double lr, double beta1,
                          double beta2, double weight_decay, double eps, char* err,
                          size_t err_len) {
  return guarded(err, err_len, [&] {
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    check_dense(p);
    check_like_params("gradient", p, g);
    check_like_params("exp_avg", p, m);
    check_like_params("exp_avg_sq", p, v);
    at::_fused_adamw_(p, g, m, v, {}, list(steps, n), lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}

// Multi-tensor ops. `op`: 0 add, 1 sub, 2 mul, 3 div. In place on `self` when `out` is null,
// otherwise the n results are written to `out`.
int roli_ext_foreach_scalar(int op, const at::Tensor* const* self, size_t n, double scalar,
                            at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto a = list(self, n);
    at::Scalar s(scalar);
    if (out == nullptr) {
      switch (op) {
        case 0: at::_foreach_add_(a, s); break;
        case 1: at::_foreach_sub_(a, s); break;
        case 2: at::_foreach_mul_(a, s); break;
        case 3: at::_foreach_div_(a, s); break;
        default: TORCH_CHECK(false, "foreach op code ", op);
      }
    } else {
      switch (op) {
        case 0: give(at::_foreach_add(a, s), out, n); break;
        case 1: give(at::_foreach_sub(a, s), out, n); break;
        case 2: give(at::_foreach_mul(a, s), out, n); break;
        case 3: give(at::_foreach_div(a, s), out, n); break;
        default: TORCH_CHECK(false, "foreach op code ", op);
      }
    }
  });
}

int roli_ext_foreach_list(int op, const at::Tensor* const* self, const at::Tensor* const* other,
                          size_t n, at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto a = list(self, n);
    auto b = list(other, n);
    if (out == nullptr) {
      switch (op) {
        case 0: at::_foreach_add_(a, b); break;
        case 1: at::_foreach_sub_(a, b); break;
        case 2: at::_foreach_mul_(a, b); break;
        case 3: at::_foreach_div_(a, b); break;
        default: TORCH_CHECK(false, "foreach op code ", op);
      }
    } else {
      switch (op) {
        case 0: give(at::_foreach_add(a, b), out, n); break;
        case 1: give(at::_foreach_sub(a, b), out, n); break;
        case 2: give(at::_foreach_mul(a, b), out, n); break;
        case 3: give(at::_foreach_div(a, b), out, n); break;
        default: TORCH_CHECK(false, "foreach op code ", op);
      }
    }
  });
}

int roli_ext_foreach_sqrt(const at::Tensor* const* self, size_t n, at::Tensor** out, char* err,
                          size_t err_len) {
  return guarded(err, err_len, [&] {
    auto a = list(self, n);
    if (out == nullptr) {
      at::_foreach_sqrt_(a);
    } else {
      give(at::_foreach_sqrt(a), out, n);
    }
  });
}

}  // extern "C"
