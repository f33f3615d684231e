// A fused gather-multiply-scatter over the edges for the libtorch backbones
// (mlip::model::fused::gather_mul_scatter), with its whole derivative family.
//
//   GMS(a, w, s, d, n)[d_e, c, f] += a[s_e, c, f] * w[e, f]       a: (Na, C, F), w: (E, F)
//   EDOT(a, b, s, d)[e, f]         = sum_c a[s_e, c, f] * b[d_e, c, f]
//
// PaiNN's sum_j v_j * dvv_ij is GMS(v, dvv, src, dst, N): without it libtorch materialises
// v[src] and the product, (E, 3, F) tensors, in the forward pass and again (with more of them) in
// the force pass and in the parameter gradient of the force loss. The family is closed under
// differentiation (dGMS/da = GMS with s and d swapped, dGMS/dw = EDOT, dEDOT/da and dEDOT/db =
// GMS), so each function's backward applies the others and every order of derivative is exact.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

void check_index(const Tensor& idx, int64_t n, const char* what) {
  if (idx.numel() == 0) return;
  int64_t lo = idx.min().item<int64_t>();
  int64_t hi = idx.max().item<int64_t>();
  if (lo < 0 || hi >= n) {
    throw std::out_of_range(std::string("hgnn fused edges: ") + what + " index out of range [0, " +
                            std::to_string(n) + "): " + std::to_string(lo) + ".." +
                            std::to_string(hi));
  }
}

// Compiled twice, for AVX2 + FMA and for baseline x86-64, and picked at load time by the CPU.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HGNN_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define HGNN_CLONES
#endif

// out[d_e, c, f] += a[s_e, c, f] * w[e, f] for the channels f0 <= f < f1.
template <typename T>
inline void gms_range(const T* ap, const T* wp, T* op, const int64_t* sp, const int64_t* dp,
                      int64_t E, int64_t C, int64_t F, int64_t f0, int64_t f1) {
  for (int64_t e = 0; e < E; ++e) {
    const T* ar = ap + sp[e] * C * F;
    const T* wr = wp + e * F;
    T* orow = op + dp[e] * C * F;
    for (int64_t c = 0; c < C; ++c) {
      const T* ac = ar + c * F;
      T* oc = orow + c * F;
      for (int64_t f = f0; f < f1; ++f) oc[f] += ac[f] * wr[f];
    }
  }
}

// out[e, f] = sum_c a[s_e, c, f] * b[d_e, c, f] for the edges e0 <= e < e1.
template <typename T>
inline void edot_range(const T* ap, const T* bp, T* op, const int64_t* sp, const int64_t* dp,
                       int64_t C, int64_t F, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; ++e) {
    const T* ar = ap + sp[e] * C * F;
    const T* br = bp + dp[e] * C * F;
    T* orow = op + e * F;
    for (int64_t f = 0; f < F; ++f) orow[f] = ar[f] * br[f];
    for (int64_t c = 1; c < C; ++c)
      for (int64_t f = 0; f < F; ++f) orow[f] += ar[c * F + f] * br[c * F + f];
  }
}

#define HGNN_RANGES(T)                                                                        \
  HGNN_CLONES void gms_any(const T* ap, const T* wp, T* op, const int64_t* sp,                \
                           const int64_t* dp, int64_t E, int64_t C, int64_t F, int64_t f0,    \
                           int64_t f1) {                                                      \
    gms_range<T>(ap, wp, op, sp, dp, E, C, F, f0, f1);                                        \
  }                                                                                           \
  HGNN_CLONES void edot_any(const T* ap, const T* bp, T* op, const int64_t* sp,               \
                            const int64_t* dp, int64_t C, int64_t F, int64_t e0, int64_t e1) { \
    edot_range<T>(ap, bp, op, sp, dp, C, F, e0, e1);                                          \
  }
HGNN_RANGES(float)
HGNN_RANGES(double)
#undef HGNN_RANGES

Tensor gms_kernel(const Tensor& a_in, const Tensor& w_in, const Tensor& s_in, const Tensor& d_in,
                  int64_t n_out) {
  auto a = a_in.contiguous();
  auto w = w_in.contiguous();
  auto s = s_in.contiguous();
  auto d = d_in.contiguous();
  const int64_t E = s.size(0), C = a.size(1), F = a.size(2);
  TORCH_CHECK(w.size(0) == E && w.size(1) == F && d.size(0) == E, "hgnn GMS: shapes");
  check_index(s, a.size(0), "source");
  check_index(d, n_out, "destination");
  auto out = at::zeros({n_out, C, F}, a.options());
  const int64_t* sp = s.const_data_ptr<int64_t>();
  const int64_t* dp = d.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "hgnn_gms", [&] {
    const scalar_t* ap = a.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    // Threads split the channels: no two threads write the same element.
    at::parallel_for(0, F, 16, [&](int64_t f0, int64_t f1) {
      gms_any(ap, wp, op, sp, dp, E, C, F, f0, f1);
    });
  });
  return out;
}

Tensor edot_kernel(const Tensor& a_in, const Tensor& b_in, const Tensor& s_in,
                   const Tensor& d_in) {
  auto a = a_in.contiguous();
  auto b = b_in.contiguous();
  auto s = s_in.contiguous();
  auto d = d_in.contiguous();
  const int64_t E = s.size(0), C = a.size(1), F = a.size(2);
  TORCH_CHECK(b.size(1) == C && b.size(2) == F && d.size(0) == E, "hgnn EDOT: shapes");
  check_index(s, a.size(0), "source");
  check_index(d, b.size(0), "destination");
  auto out = at::empty({E, F}, a.options());
  const int64_t* sp = s.const_data_ptr<int64_t>();
  const int64_t* dp = d.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "hgnn_edot", [&] {
    const scalar_t* ap = a.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, E, 256, [&](int64_t e0, int64_t e1) {
      edot_any(ap, bp, op, sp, dp, C, F, e0, e1);
    });
  });
  return out;
}

struct Edot;

struct Gms : public Function<Gms> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& w, const Tensor& s,
                        const Tensor& d, int64_t n_out) {
    ctx->save_for_backward({a, w, s, d});
    return gms_kernel(a, w, s, d, n_out);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct Edot : public Function<Edot> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b, const Tensor& s,
                        const Tensor& d) {
    ctx->save_for_backward({a, b, s, d});
    return edot_kernel(a, b, s, d);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const auto &a = v[0], &b = v[1], &s = v[2], &d = v[3];
    const auto& g = grads[0];
    if (!g.defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    Tensor ga = ctx->needs_input_grad(0) ? Gms::apply(b, g, d, s, a.size(0)) : Tensor();
    Tensor gb = ctx->needs_input_grad(1) ? Gms::apply(a, g, s, d, b.size(0)) : Tensor();
    return {ga, gb, Tensor(), Tensor()};
  }
};

variable_list Gms::backward(AutogradContext* ctx, variable_list grads) {
  auto v = ctx->get_saved_variables();
  const auto &a = v[0], &w = v[1], &s = v[2], &d = v[3];
  const auto& g = grads[0];
  if (!g.defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  Tensor ga = ctx->needs_input_grad(0) ? Gms::apply(g, w, d, s, a.size(0)) : Tensor();
  Tensor gw = ctx->needs_input_grad(1) ? Edot::apply(a, g, s, d) : Tensor();
  return {ga, gw, Tensor(), Tensor(), Tensor()};
}

void set_error(char* err, size_t len, const char* msg) {
  if (err && len > 0) {
    std::strncpy(err, msg, len - 1);
    err[len - 1] = '\0';
  }
}

}  // namespace

extern "C" {

// *out = GMS(a, w, src, dst, n_out) as a new tensor: out[dst_e] += a[src_e] * w_e (broadcast over
// a's middle dimension). a: (Na, C, F), w: (E, F), same floating dtype, CPU; src, dst: int64 (E).
// Returns 0, or 1 with a message in err (never throws).
int hgnn_fused_gms(const at::Tensor* a, const at::Tensor* w, const at::Tensor* src,
                   const at::Tensor* dst, int64_t n_out, at::Tensor** out, char* err,
                   size_t len) {
  try {
    bool ok = a->dim() == 3 && w->dim() == 2 && src->dim() == 1 && dst->dim() == 1 &&
              a->device().is_cpu() && w->device().is_cpu() && src->device().is_cpu() &&
              dst->device().is_cpu() && a->scalar_type() == w->scalar_type() &&
              (a->scalar_type() == at::kFloat || a->scalar_type() == at::kDouble) &&
              src->scalar_type() == at::kLong && dst->scalar_type() == at::kLong &&
              w->size(0) == src->size(0) && dst->size(0) == src->size(0) &&
              w->size(1) == a->size(2) && n_out >= 0;
    if (!ok) {
      set_error(err, len, "hgnn_fused_gms: unsupported shapes, dtypes or device");
      return 1;
    }
    *out = new at::Tensor(Gms::apply(*a, *w, *src, *dst, n_out));
    return 0;
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
    return 1;
  } catch (...) {
    set_error(err, len, "hgnn_fused_gms: unknown C++ exception");
    return 1;
  }
}

}  // extern "C"
