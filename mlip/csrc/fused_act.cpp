// Fused activation functions for the libtorch backbones (mlip::model::fused).
//
// Training with forces differentiates every activation twice: once for the forces (recorded, so
// `create_graph`) and once more for the parameter gradient of the force loss. libtorch's SiLU
// records its derivative as ~6 element-wise operations when the graph is kept, and their own
// derivatives as ~11 more, each a pass over an (edges x channels) tensor. Here the activation is
// a custom autograd function whose derivative is a second custom function, ActGrad, computing
// g * f'(x) in one pass; ActGrad's own backward computes both of its input gradients,
// gg * f'(x) and gg * g * f''(x), in one more pass. Both passes read a saved auxiliary tensor
// (sigmoid(x) for SiLU and shifted softplus, tanh(x) for tanh) so they are plain arithmetic.
// Derivatives beyond the second (ActGrad's backward with the graph kept) use differentiable
// ATen expressions, so any order stays exact.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "fused_common.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

enum ActKind : int64_t { kSilu = 0, kSsp = 1, kTanh = 2, kRelu = 3 };

constexpr int64_t kGrain = 16384;

// f'(x) and f''(x) from x and the auxiliary a (sigmoid(x), or tanh(x) for tanh). ReLU (f' the
// step x > 0, as libtorch's threshold_backward has it; f'' zero) has its own loop, relu_mask.
template <typename T>
inline T d1(int64_t kind, T x, T a) {
  switch (kind) {
    case kSilu:
      return a * (T(1) + x * (T(1) - a));
    case kSsp:
      return a;
    default:
      return T(1) - a * a;
  }
}

template <typename T>
inline T d2(int64_t kind, T x, T a) {
  switch (kind) {
    case kSilu:
      return a * (T(1) - a) * (T(2) + x * (T(1) - T(2) * a));
    case kSsp:
      return a * (T(1) - a);
    default:
      return T(-2) * a * (T(1) - a * a);
  }
}

// The same derivatives as differentiable ATen expressions of x (for orders above two).
Tensor d1_graph(int64_t kind, const Tensor& x) {
  if (kind == kRelu) return at::gt(x, 0).to(x.scalar_type());
  if (kind == kTanh) {
    auto t = at::tanh(x);
    return 1 - t * t;
  }
  auto s = at::sigmoid(x);
  return kind == kSsp ? s : s * (1 + x * (1 - s));
}

Tensor d2_graph(int64_t kind, const Tensor& x) {
  if (kind == kTanh) {
    auto t = at::tanh(x);
    return -2 * t * (1 - t * t);
  }
  auto s = at::sigmoid(x);
  return kind == kSsp ? s * (1 - s) : s * (1 - s) * (2 + x * (1 - 2 * s));
}

// out = g where x > 0, else 0 (libtorch's threshold_backward, NaN in g below zero included).
// Both loads are unconditional so that the loop compiles to compares and blends: a branch on the
// sign of x mispredicts about half the time on activations.
template <typename T>
inline void relu_mask(const T* x, const T* g, T* out, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) {
    T gi = g[i];
    out[i] = x[i] > T(0) ? gi : T(0);
  }
}

template <typename T>
inline void grad_range(int64_t kind, const T* x, const T* a, const T* g, T* out, int64_t b,
                       int64_t e) {
  switch (kind) {
    case kSilu:
      for (int64_t i = b; i < e; ++i) out[i] = g[i] * d1<T>(kSilu, x[i], a[i]);
      break;
    case kSsp:
      for (int64_t i = b; i < e; ++i) out[i] = g[i] * a[i];
      break;
    case kRelu:
      relu_mask(x, g, out, b, e);
      break;
    default:
      for (int64_t i = b; i < e; ++i) out[i] = g[i] * d1<T>(kTanh, x[i], a[i]);
  }
}

// gx = gg * g * f''(x) (when gx != nullptr) and ggo = gg * f'(x) (when ggo != nullptr).
template <typename T>
inline void grad2_range(int64_t kind, const T* x, const T* a, const T* g, const T* gg, T* gx,
                        T* ggo, int64_t b, int64_t e) {
#define HGNN_LOOP(K)                                                                \
  if (gx && ggo) {                                                                  \
    for (int64_t i = b; i < e; ++i) {                                               \
      gx[i] = gg[i] * g[i] * d2<T>(K, x[i], a[i]);                                  \
      ggo[i] = gg[i] * d1<T>(K, x[i], a[i]);                                        \
    }                                                                               \
  } else if (gx) {                                                                  \
    for (int64_t i = b; i < e; ++i) gx[i] = gg[i] * g[i] * d2<T>(K, x[i], a[i]);    \
  } else {                                                                          \
    for (int64_t i = b; i < e; ++i) ggo[i] = gg[i] * d1<T>(K, x[i], a[i]);          \
  }
  switch (kind) {
    case kSilu:
      HGNN_LOOP(kSilu)
      break;
    case kSsp:
      HGNN_LOOP(kSsp)
      break;
    case kRelu:
      // f'' = 0: only ggo is asked for (ActGrad's backward never wants gx for ReLU)
      if (ggo) relu_mask(x, gg, ggo, b, e);
      break;
    default:
      HGNN_LOOP(kTanh)
  }
#undef HGNN_LOOP
}

#define HGNN_RANGES(T, SUFFIX)                                                                 \
  HGNN_CLONES void grad_range_##SUFFIX(int64_t kind, const T* x, const T* a, const T* g, T* out, \
                                       int64_t b, int64_t e) {                                 \
    grad_range<T>(kind, x, a, g, out, b, e);                                                   \
  }                                                                                            \
  HGNN_CLONES void grad2_range_##SUFFIX(int64_t kind, const T* x, const T* a, const T* g,      \
                                        const T* gg, T* gx, T* ggo, int64_t b, int64_t e) {    \
    grad2_range<T>(kind, x, a, g, gg, gx, ggo, b, e);                                          \
  }
HGNN_RANGES(float, f32)
HGNN_RANGES(double, f64)
#undef HGNN_RANGES

void grad_any(int64_t kind, const float* x, const float* a, const float* g, float* o, int64_t b,
              int64_t e) {
  grad_range_f32(kind, x, a, g, o, b, e);
}
void grad_any(int64_t kind, const double* x, const double* a, const double* g, double* o,
              int64_t b, int64_t e) {
  grad_range_f64(kind, x, a, g, o, b, e);
}
void grad2_any(int64_t kind, const float* x, const float* a, const float* g, const float* gg,
               float* gx, float* ggo, int64_t b, int64_t e) {
  grad2_range_f32(kind, x, a, g, gg, gx, ggo, b, e);
}
void grad2_any(int64_t kind, const double* x, const double* a, const double* g, const double* gg,
               double* gx, double* ggo, int64_t b, int64_t e) {
  grad2_range_f64(kind, x, a, g, gg, gx, ggo, b, e);
}

template <typename T>
void grad_kernel(int64_t kind, const T* x, const T* a, const T* g, T* out, int64_t n) {
  at::parallel_for(0, n, kGrain,
                   [&](int64_t b, int64_t e) { grad_any(kind, x, a, g, out, b, e); });
}

template <typename T>
void grad2_kernel(int64_t kind, const T* x, const T* a, const T* g, const T* gg, T* gx, T* ggo,
                  int64_t n) {
  at::parallel_for(0, n, kGrain,
                   [&](int64_t b, int64_t e) { grad2_any(kind, x, a, g, gg, gx, ggo, b, e); });
}

// out = g * f'(x), one pass (x, a, g contiguous, same dtype and shape).
Tensor act_grad(int64_t kind, const Tensor& x_in, const Tensor& a, const Tensor& g) {
  auto x = x_in.contiguous();
  auto gc = g.contiguous();
  auto out = at::empty_like(x, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hgnn_act_grad", [&] {
    grad_kernel<scalar_t>(kind, x.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(),
                          gc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                          x.numel());
  });
  return out;
}

struct ActGrad : public Function<ActGrad> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& g, const Tensor& a,
                        int64_t kind) {
    ctx->save_for_backward({x, g});
    ctx->saved_data["a"] = a;
    ctx->saved_data["kind"] = kind;
    return act_grad(kind, x, a, g.expand_as(x));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& g = saved[1];
    auto a = ctx->saved_data["a"].toTensor();
    int64_t kind = ctx->saved_data["kind"].toInt();
    const auto& gg = grads[0];
    // ReLU's f'' is zero: no gradient for x (autograd reads an undefined one as zeros)
    bool want_x = ctx->needs_input_grad(0) && kind != kRelu;
    bool want_g = ctx->needs_input_grad(1);
    if (!gg.defined() || (!want_x && !want_g)) return {Tensor(), Tensor(), Tensor(), Tensor()};
    if (at::GradMode::is_enabled()) {
      // The graph of this derivative is kept: differentiable expressions.
      Tensor gx = want_x ? gg * g * d2_graph(kind, x) : Tensor();
      Tensor go = want_g ? gg * d1_graph(kind, x) : Tensor();
      return {gx, go, Tensor(), Tensor()};
    }
    auto xc = x.contiguous();
    auto ggc = gg.expand_as(x).contiguous();
    auto gc = g.expand_as(x).contiguous();
    Tensor gx = want_x ? at::empty_like(x, at::MemoryFormat::Contiguous) : Tensor();
    Tensor go = want_g ? at::empty_like(x, at::MemoryFormat::Contiguous) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hgnn_act_grad2", [&] {
      grad2_kernel<scalar_t>(kind, xc.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(),
                             gc.const_data_ptr<scalar_t>(), ggc.const_data_ptr<scalar_t>(),
                             want_x ? gx.mutable_data_ptr<scalar_t>() : nullptr,
                             want_g ? go.mutable_data_ptr<scalar_t>() : nullptr, x.numel());
    });
    return {gx, go, Tensor(), Tensor()};
  }
};

struct Act : public Function<Act> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t kind) {
    auto xc = x.contiguous();
    Tensor a = kind == kTanh ? at::tanh(xc) : kind == kRelu ? xc : at::sigmoid(xc);
    Tensor y;
    switch (kind) {
      case kRelu:
        y = at::relu(xc);
        break;
      case kSilu:
        y = xc * a;
        break;
      case kSsp:
        y = at::softplus(xc).sub_(M_LN2);
        break;
      default:
        y = a.clone();
    }
    // x itself (an input), not a contiguous copy: its unpacked version carries x's graph, which
    // the derivative needs when it is differentiated again.
    ctx->save_for_backward({x});
    ctx->saved_data["a"] = a;
    ctx->saved_data["kind"] = kind;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto x = ctx->get_saved_variables()[0];
    auto a = ctx->saved_data["a"].toTensor();
    int64_t kind = ctx->saved_data["kind"].toInt();
    return {ActGrad::apply(x, grads[0], a, kind), Tensor()};
  }
};

}  // namespace

extern "C" {

// *out = act(x) as a new tensor (free it with tch's destructor); kind 0 SiLU, 1 shifted
// softplus, 2 tanh, 3 ReLU. x must be a CPU float32/float64 tensor. Returns 0, or 1 with a message in
// err (never throws).
int hgnn_fused_act(const at::Tensor* x, int64_t kind, at::Tensor** out, char* err, size_t len) {
  return hgnn::guarded("hgnn_fused_act", out, err, len, [&] {
    if (kind < kSilu || kind > kRelu) throw std::invalid_argument("unknown activation kind");
    if (!hgnn::cpu_real(*x)) throw std::invalid_argument("needs a CPU float32 or float64 tensor");
    return Act::apply(*x, kind);
  });
}

}  // extern "C"
