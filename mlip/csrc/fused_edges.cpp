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

#include "fused_common.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

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


// ---- Gather-add: z[e] = x[i_e] + y[j_e] + r[e % P] (EGNN's first edge layer, split per atom) ----
//
//   GA3(x, y, r, i, j)[e, f] = x[i_e, f] + y[j_e, f] + r[e mod P, f]     x: (Nx, H), y: (Ny, H),
//                                                                         r: (P, H), E = k P
//   SC3(g, i, j, Nx, Ny, P) = (sum_{e: i_e = n} g[e], sum_{e: j_e = n} g[e], sum_k g[p + k P])
//
// SC3 is GA3's backward and GA3 is SC3's, so every order of derivative is exact.

template <typename T>
inline void ga3_range(const T* x, const T* y, const T* r, const int64_t* i, const int64_t* j,
                      T* z, int64_t P, int64_t H, int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; ++e) {
    const T* xr = x + i[e] * H;
    const T* yr = y + j[e] * H;
    const T* rr = r + (e % P) * H;
    T* zr = z + e * H;
    for (int64_t f = 0; f < H; ++f) zr[f] = xr[f] + yr[f] + rr[f];
  }
}

// The scatters of SC3 for the channels f0 <= f < f1 (threads split the channels).
template <typename T>
inline void sc3_range(const T* g, const int64_t* i, const int64_t* j, T* gx, T* gy, T* gr,
                      int64_t E, int64_t P, int64_t H, int64_t f0, int64_t f1) {
  for (int64_t e = 0; e < E; ++e) {
    const T* gg = g + e * H;
    T* xr = gx + i[e] * H;
    T* yr = gy + j[e] * H;
    T* rr = gr + (e % P) * H;
    for (int64_t f = f0; f < f1; ++f) {
      xr[f] += gg[f];
      yr[f] += gg[f];
      rr[f] += gg[f];
    }
  }
}

#define HGNN_RANGES(T)                                                                        \
  HGNN_CLONES void ga3_any(const T* x, const T* y, const T* r, const int64_t* i,              \
                           const int64_t* j, T* z, int64_t P, int64_t H, int64_t e0,          \
                           int64_t e1) {                                                      \
    ga3_range<T>(x, y, r, i, j, z, P, H, e0, e1);                                             \
  }                                                                                           \
  HGNN_CLONES void sc3_any(const T* g, const int64_t* i, const int64_t* j, T* gx, T* gy,      \
                           T* gr, int64_t E, int64_t P, int64_t H, int64_t f0, int64_t f1) {  \
    sc3_range<T>(g, i, j, gx, gy, gr, E, P, H, f0, f1);                                       \
  }
HGNN_RANGES(float)
HGNN_RANGES(double)
#undef HGNN_RANGES

Tensor ga3_kernel(const Tensor& x_in, const Tensor& y_in, const Tensor& r_in, const Tensor& i_in,
                  const Tensor& j_in) {
  auto x = x_in.contiguous();
  auto y = y_in.contiguous();
  auto r = r_in.contiguous();
  auto i = i_in.contiguous();
  auto j = j_in.contiguous();
  const int64_t E = i.size(0), H = x.size(1), P = r.size(0);
  TORCH_CHECK(y.size(1) == H && r.size(1) == H && j.size(0) == E && P > 0 && E % P == 0,
              "hgnn GA3: shapes");
  check_index(i, x.size(0), "first");
  check_index(j, y.size(0), "second");
  auto z = at::empty({E, H}, x.options());
  const int64_t* ip = i.const_data_ptr<int64_t>();
  const int64_t* jp = j.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hgnn_ga3", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* rp = r.const_data_ptr<scalar_t>();
    scalar_t* zp = z.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, E, 256, [&](int64_t e0, int64_t e1) {
      ga3_any(xp, yp, rp, ip, jp, zp, P, H, e0, e1);
    });
  });
  return z;
}

std::vector<Tensor> sc3_kernel(const Tensor& g_in, const Tensor& i_in, const Tensor& j_in,
                               int64_t nx, int64_t ny, int64_t P) {
  auto g = g_in.contiguous();
  auto i = i_in.contiguous();
  auto j = j_in.contiguous();
  const int64_t E = i.size(0), H = g.size(1);
  TORCH_CHECK(g.size(0) == E && j.size(0) == E && P > 0 && E % P == 0, "hgnn SC3: shapes");
  check_index(i, nx, "first");
  check_index(j, ny, "second");
  auto gx = at::zeros({nx, H}, g.options());
  auto gy = at::zeros({ny, H}, g.options());
  auto gr = at::zeros({P, H}, g.options());
  const int64_t* ip = i.const_data_ptr<int64_t>();
  const int64_t* jp = j.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "hgnn_sc3", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    scalar_t* xp = gx.mutable_data_ptr<scalar_t>();
    scalar_t* yp = gy.mutable_data_ptr<scalar_t>();
    scalar_t* rp = gr.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, H, 16, [&](int64_t f0, int64_t f1) {
      sc3_any(gp, ip, jp, xp, yp, rp, E, P, H, f0, f1);
    });
  });
  return {gx, gy, gr};
}

struct Sc3;

struct Ga3 : public Function<Ga3> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& y, const Tensor& r,
                        const Tensor& i, const Tensor& j) {
    ctx->save_for_backward({i, j});
    ctx->saved_data["nx"] = x.size(0);
    ctx->saved_data["ny"] = y.size(0);
    ctx->saved_data["p"] = r.size(0);
    return ga3_kernel(x, y, r, i, j);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct Sc3 : public Function<Sc3> {
  static variable_list forward(AutogradContext* ctx, const Tensor& g, const Tensor& i,
                               const Tensor& j, int64_t nx, int64_t ny, int64_t p) {
    ctx->save_for_backward({i, j});
    ctx->saved_data["nx"] = nx;
    ctx->saved_data["ny"] = ny;
    ctx->saved_data["p"] = p;
    return sc3_kernel(g, i, j, nx, ny, p);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const auto &i = v[0], &j = v[1];
    if (!ctx->needs_input_grad(0)) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    // An output without a gradient contributes zeros.
    auto opts = grads[0].defined() ? grads[0].options()
                : grads[1].defined() ? grads[1].options() : grads[2].options();
    int64_t H = 0;
    for (const auto& g : grads)
      if (g.defined()) H = g.size(1);
    auto orzero = [&](const Tensor& g, int64_t rows) {
      return g.defined() ? g : at::zeros({rows, H}, opts);
    };
    Tensor gg = Ga3::apply(orzero(grads[0], ctx->saved_data["nx"].toInt()),
                           orzero(grads[1], ctx->saved_data["ny"].toInt()),
                           orzero(grads[2], ctx->saved_data["p"].toInt()), i, j);
    return {gg, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

variable_list Ga3::backward(AutogradContext* ctx, variable_list grads) {
  auto v = ctx->get_saved_variables();
  const auto &i = v[0], &j = v[1];
  const auto& g = grads[0];
  if (!g.defined()) return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  auto out = Sc3::apply(g, i, j, ctx->saved_data["nx"].toInt(), ctx->saved_data["ny"].toInt(),
                        ctx->saved_data["p"].toInt());
  return {ctx->needs_input_grad(0) ? out[0] : Tensor(), ctx->needs_input_grad(1) ? out[1] : Tensor(),
          ctx->needs_input_grad(2) ? out[2] : Tensor(), Tensor(), Tensor()};
}


// ---- Scale-scatter: out[d_e] += m[e] * s[e mod P] (EGNN's enveloped message and its sum) ----
//
//   SS(m, s, d, N)[n]  = sum_{e: d_e = n} m[e] * s[e mod P]      m: (E, H), s: (P), E = k P
//   GS(g, s, d)[e]     = g[d_e] * s[e mod P]                      g: (N, H)
//   DOT(g, m, d, P)[p] = sum_{e = p mod P} sum_f g[d_e, f] * m[e, f]
//
// dSS/dm = GS, dSS/ds = DOT; dGS/dg = SS, dGS/ds = DOT; dDOT/dg = SS, dDOT/dm = GS: closed, so
// every order of derivative is exact.

template <typename T>
inline void ss_range(const T* m, const T* s, const int64_t* d, T* out, int64_t E, int64_t P,
                     int64_t H, int64_t f0, int64_t f1) {
  for (int64_t e = 0; e < E; ++e) {
    const T* mr = m + e * H;
    const T se = s[e % P];
    T* o = out + d[e] * H;
    for (int64_t f = f0; f < f1; ++f) o[f] += mr[f] * se;
  }
}

template <typename T>
inline void gs_range(const T* g, const T* s, const int64_t* d, T* out, int64_t P, int64_t H,
                     int64_t e0, int64_t e1) {
  for (int64_t e = e0; e < e1; ++e) {
    const T* gr = g + d[e] * H;
    const T se = s[e % P];
    T* o = out + e * H;
    for (int64_t f = 0; f < H; ++f) o[f] = gr[f] * se;
  }
}

template <typename T>
inline void dot_range(const T* g, const T* m, const int64_t* d, T* out, int64_t E, int64_t P,
                      int64_t H, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    T acc = 0;
    for (int64_t e = p; e < E; e += P) {
      const T* gr = g + d[e] * H;
      const T* mr = m + e * H;
      for (int64_t f = 0; f < H; ++f) acc += gr[f] * mr[f];
    }
    out[p] = acc;
  }
}

#define HGNN_RANGES(T)                                                                       \
  HGNN_CLONES void ss_any(const T* m, const T* s, const int64_t* d, T* out, int64_t E,       \
                          int64_t P, int64_t H, int64_t f0, int64_t f1) {                    \
    ss_range<T>(m, s, d, out, E, P, H, f0, f1);                                              \
  }                                                                                          \
  HGNN_CLONES void gs_any(const T* g, const T* s, const int64_t* d, T* out, int64_t P,       \
                          int64_t H, int64_t e0, int64_t e1) {                               \
    gs_range<T>(g, s, d, out, P, H, e0, e1);                                                 \
  }                                                                                          \
  HGNN_CLONES void dot_any(const T* g, const T* m, const int64_t* d, T* out, int64_t E,      \
                           int64_t P, int64_t H, int64_t p0, int64_t p1) {                   \
    dot_range<T>(g, m, d, out, E, P, H, p0, p1);                                             \
  }
HGNN_RANGES(float)
HGNN_RANGES(double)
#undef HGNN_RANGES

Tensor ss_kernel(const Tensor& m_in, const Tensor& s_in, const Tensor& d_in, int64_t n) {
  auto m = m_in.contiguous();
  auto s = s_in.contiguous();
  auto d = d_in.contiguous();
  const int64_t E = m.size(0), H = m.size(1), P = s.size(0);
  TORCH_CHECK(d.size(0) == E && P > 0 && E % P == 0, "hgnn SS: shapes");
  check_index(d, n, "destination");
  auto out = at::zeros({n, H}, m.options());
  const int64_t* dp = d.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "hgnn_ss", [&] {
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, H, 16,
                     [&](int64_t f0, int64_t f1) { ss_any(mp, sp, dp, op, E, P, H, f0, f1); });
  });
  return out;
}

Tensor gs_kernel(const Tensor& g_in, const Tensor& s_in, const Tensor& d_in) {
  auto g = g_in.contiguous();
  auto s = s_in.contiguous();
  auto d = d_in.contiguous();
  const int64_t E = d.size(0), H = g.size(1), P = s.size(0);
  TORCH_CHECK(P > 0 && E % P == 0, "hgnn GS: shapes");
  check_index(d, g.size(0), "destination");
  auto out = at::empty({E, H}, g.options());
  const int64_t* dp = d.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "hgnn_gs", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, E, 256,
                     [&](int64_t e0, int64_t e1) { gs_any(gp, sp, dp, op, P, H, e0, e1); });
  });
  return out;
}

Tensor dot_kernel(const Tensor& g_in, const Tensor& m_in, const Tensor& d_in, int64_t P) {
  auto g = g_in.contiguous();
  auto m = m_in.contiguous();
  auto d = d_in.contiguous();
  const int64_t E = m.size(0), H = m.size(1);
  TORCH_CHECK(g.size(1) == H && d.size(0) == E && P > 0 && E % P == 0, "hgnn DOT: shapes");
  check_index(d, g.size(0), "destination");
  auto out = at::empty({P}, m.options());
  const int64_t* dp = d.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "hgnn_dot", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, P, 256,
                     [&](int64_t p0, int64_t p1) { dot_any(gp, mp, dp, op, E, P, H, p0, p1); });
  });
  return out;
}

struct Gs;
struct Dot;

struct Ss : public Function<Ss> {
  static Tensor forward(AutogradContext* ctx, const Tensor& m, const Tensor& s, const Tensor& d,
                        int64_t n) {
    ctx->save_for_backward({m, s, d});
    return ss_kernel(m, s, d, n);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct Gs : public Function<Gs> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& s, const Tensor& d) {
    ctx->save_for_backward({g, s, d});
    return gs_kernel(g, s, d);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct Dot : public Function<Dot> {
  static Tensor forward(AutogradContext* ctx, const Tensor& g, const Tensor& m, const Tensor& d,
                        int64_t P) {
    ctx->save_for_backward({g, m, d});
    return dot_kernel(g, m, d, P);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto v = ctx->get_saved_variables();
    const auto &g = v[0], &m = v[1], &d = v[2];
    const auto& gp = grads[0];
    if (!gp.defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    Tensor gg = ctx->needs_input_grad(0) ? Ss::apply(m, gp, d, g.size(0)) : Tensor();
    Tensor gm = ctx->needs_input_grad(1) ? Gs::apply(g, gp, d) : Tensor();
    return {gg, gm, Tensor(), Tensor()};
  }
};

variable_list Ss::backward(AutogradContext* ctx, variable_list grads) {
  auto v = ctx->get_saved_variables();
  const auto &m = v[0], &s = v[1], &d = v[2];
  const auto& g = grads[0];
  if (!g.defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
  Tensor gm = ctx->needs_input_grad(0) ? Gs::apply(g, s, d) : Tensor();
  Tensor gs = ctx->needs_input_grad(1) ? Dot::apply(g, m, d, s.size(0)) : Tensor();
  return {gm, gs, Tensor(), Tensor()};
}

variable_list Gs::backward(AutogradContext* ctx, variable_list grads) {
  auto v = ctx->get_saved_variables();
  const auto &g = v[0], &s = v[1], &d = v[2];
  const auto& gg = grads[0];
  if (!gg.defined()) return {Tensor(), Tensor(), Tensor()};
  Tensor gg_out = ctx->needs_input_grad(0) ? Ss::apply(gg, s, d, g.size(0)) : Tensor();
  Tensor gs = ctx->needs_input_grad(1) ? Dot::apply(g, gg, d, s.size(0)) : Tensor();
  return {gg_out, gs, Tensor()};
}

}  // namespace

constexpr const char* kUnsupported = "unsupported shapes, dtypes or device";

extern "C" {

// *out = GMS(a, w, src, dst, n_out) as a new tensor: out[dst_e] += a[src_e] * w_e (broadcast over
// a's middle dimension). a: (Na, C, F), w: (E, F), same floating dtype, CPU; src, dst: int64 (E).
// Returns 0, or 1 with a message in err (never throws).
int hgnn_fused_gms(const at::Tensor* a, const at::Tensor* w, const at::Tensor* src,
                   const at::Tensor* dst, int64_t n_out, at::Tensor** out, char* err,
                   size_t len) {
  return hgnn::guarded("hgnn_fused_gms", out, err, len, [&] {
    bool ok = a->dim() == 3 && w->dim() == 2 && src->dim() == 1 && dst->dim() == 1 &&
              hgnn::cpu_real(*a) && w->device().is_cpu() && src->device().is_cpu() &&
              dst->device().is_cpu() && a->scalar_type() == w->scalar_type() &&
              src->scalar_type() == at::kLong && dst->scalar_type() == at::kLong &&
              w->size(0) == src->size(0) && dst->size(0) == src->size(0) &&
              w->size(1) == a->size(2) && n_out >= 0;
    if (!ok) throw std::invalid_argument(kUnsupported);
    return Gms::apply(*a, *w, *src, *dst, n_out);
  });
}

// *out = x[i_e] + y[j_e] + r[e mod P] (E, H) as a new tensor; x: (Nx, H), y: (Ny, H), r: (P, H)
// with E a multiple of P, same floating dtype, CPU; i, j: int64 (E). Returns 0, or 1 with a
// message in err (never throws).
int hgnn_fused_gather_add(const at::Tensor* x, const at::Tensor* y, const at::Tensor* r,
                          const at::Tensor* i, const at::Tensor* j, at::Tensor** out, char* err,
                          size_t len) {
  return hgnn::guarded("hgnn_fused_gather_add", out, err, len, [&] {
    bool ok = x->dim() == 2 && y->dim() == 2 && r->dim() == 2 && i->dim() == 1 && j->dim() == 1 &&
              hgnn::cpu_real(*x) && y->device().is_cpu() && r->device().is_cpu() &&
              i->device().is_cpu() && j->device().is_cpu() &&
              y->scalar_type() == x->scalar_type() && r->scalar_type() == x->scalar_type() &&
              i->scalar_type() == at::kLong && j->scalar_type() == at::kLong &&
              y->size(1) == x->size(1) && r->size(1) == x->size(1) && j->size(0) == i->size(0) &&
              r->size(0) > 0 && i->size(0) % r->size(0) == 0;
    if (!ok) throw std::invalid_argument(kUnsupported);
    return Ga3::apply(*x, *y, *r, *i, *j);
  });
}

// *out = SS(m, s, d, n): out[d_e] += m[e] * s[e mod P] (n, H) as a new tensor; m: (E, H), s: (P)
// with E a multiple of P, same floating dtype, CPU; d: int64 (E). Returns 0, or 1 with a
// message in err (never throws).
int hgnn_fused_scale_scatter(const at::Tensor* m, const at::Tensor* s, const at::Tensor* d,
                             int64_t n, at::Tensor** out, char* err, size_t len) {
  return hgnn::guarded("hgnn_fused_scale_scatter", out, err, len, [&] {
    bool ok = m->dim() == 2 && s->dim() == 1 && d->dim() == 1 && hgnn::cpu_real(*m) &&
              s->device().is_cpu() && d->device().is_cpu() &&
              s->scalar_type() == m->scalar_type() && d->scalar_type() == at::kLong &&
              d->size(0) == m->size(0) && s->size(0) > 0 && m->size(0) % s->size(0) == 0 &&
              n >= 0;
    if (!ok) throw std::invalid_argument(kUnsupported);
    return Ss::apply(*m, *s, *d, n);
  });
}

}  // extern "C"
