//! Fused kernels as custom libtorch autograd functions (C++, `mlip/csrc/`): activations whose
//! first and second derivatives are one pass each ([`act`]), and a gather-multiply-scatter
//! ([`gather_mul_scatter`]), a gather-add ([`gather_add`]) and a scale-scatter
//! ([`scale_scatter`]) over the edges, each with its whole derivative family.
//!
//! Training on forces differentiates every activation twice (the forces, then the parameter
//! gradient of the force loss). libtorch records SiLU's derivative as ~6 element-wise operations
//! when the graph is kept and their derivatives as ~11 more; here the derivative g·f'(x) is one
//! custom function and its backward computes gg·f'(x) and gg·g·f''(x) in one pass (for ReLU,
//! whose f'' is zero, gg·f'(x) alone: no zero tensor is filled). Higher orders fall back to
//! differentiable ATen expressions, so every order is exact.
//!
//! Used for CPU float32/float64 tensors; other devices and dtypes, or `HYDRAGNN_FUSED=0` in the
//! environment (read once), take libtorch's own operations. `mlip/tests/fused_act.rs` holds
//! values and first, second and third derivatives to the plain expressions.

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicU8, Ordering};

use tch::{Device, Kind, Tensor};

use super::config::Activation;

extern "C" {
    fn hgnn_fused_act(
        x: *const torch_sys::C_tensor,
        kind: i64,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn hgnn_fused_gms(
        a: *const torch_sys::C_tensor,
        w: *const torch_sys::C_tensor,
        src: *const torch_sys::C_tensor,
        dst: *const torch_sys::C_tensor,
        n_out: i64,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn hgnn_fused_gather_add(
        x: *const torch_sys::C_tensor,
        y: *const torch_sys::C_tensor,
        r: *const torch_sys::C_tensor,
        i: *const torch_sys::C_tensor,
        j: *const torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    fn hgnn_fused_scale_scatter(
        m: *const torch_sys::C_tensor,
        s: *const torch_sys::C_tensor,
        d: *const torch_sys::C_tensor,
        n: i64,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
}

/// 0: not yet read, 1: on, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the fused kernels are in use (`HYDRAGNN_FUSED=0` turns them off).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("HYDRAGNN_FUSED").map_or(true, |v| v.trim() != "0");
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the fused kernels on or off for this process (benchmarks and tests compare both).
pub fn set_enabled(on: bool) {
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether the fused kernels apply to tensors like `x`: turned on, on the CPU, float32/float64.
pub fn applies(x: &Tensor) -> bool {
    enabled() && x.device() == Device::Cpu && matches!(x.kind(), Kind::Float | Kind::Double)
}

/// The fused activation of `x`, or `None` where it does not apply (another activation, device or
/// dtype; turned off; or the C++ side reported an error, which the caller's libtorch operation
/// then raises in its own words).
pub fn act(a: Activation, x: &Tensor) -> Option<Tensor> {
    let kind = match a {
        Activation::Silu => 0,
        Activation::Ssp => 1,
        Activation::Tanh => 2,
        Activation::Relu => 3,
    };
    if !applies(x) {
        return None;
    }
    // SAFETY: `x` is a live tensor; `out` and `err` are the buffers `call` passes.
    call(|out, err, len| unsafe { hgnn_fused_act(x.as_ptr(), kind, out, err, len) })
}

/// `out[dst[e], c, f] += a[src[e], c, f] · w[e, f]` for `a` (Na, C, F), `w` (E, F), int64 `src`
/// and `dst` (E), `out` (n_out, C, F): one pass over the edges instead of libtorch's gathered
/// and multiplied (E, C, F) tensors, in every derivative too. `None` where it does not apply
/// (turned off, not a CPU float32/float64 tensor, shapes that do not fit; the caller's libtorch
/// expression then runs).
pub fn gather_mul_scatter(
    a: &Tensor,
    w: &Tensor,
    src: &Tensor,
    dst: &Tensor,
    n_out: i64,
) -> Option<Tensor> {
    if !applies(a) || w.kind() != a.kind() {
        return None;
    }
    // SAFETY: the tensors are live; `out` and `err` are the buffers `call` passes.
    call(|out, err, len| unsafe {
        hgnn_fused_gms(
            a.as_ptr(),
            w.as_ptr(),
            src.as_ptr(),
            dst.as_ptr(),
            n_out,
            out,
            err,
            len,
        )
    })
}

/// `z[e] = x[i[e]] + y[j[e]] + r[e mod P]` for `x` (Nx, H), `y` (Ny, H), `r` (P, H) and int64
/// `i`, `j` (E), E a multiple of P: EGNN's first edge layer split per atom, with `r` the
/// per-pair (pair-major edges, E = 2P) or per-edge (P = E) radial term. One pass instead of two
/// gathered (E, H) tensors and two sums, in every derivative too (its backward is one pass of
/// three scatters, whose backward is this again). `None` where it does not apply.
pub fn gather_add(x: &Tensor, y: &Tensor, r: &Tensor, i: &Tensor, j: &Tensor) -> Option<Tensor> {
    if !applies(x) || y.kind() != x.kind() || r.kind() != x.kind() {
        return None;
    }
    // SAFETY: the tensors are live; `out` and `err` are the buffers `call` passes.
    call(|out, err, len| unsafe {
        hgnn_fused_gather_add(
            x.as_ptr(),
            y.as_ptr(),
            r.as_ptr(),
            i.as_ptr(),
            j.as_ptr(),
            out,
            err,
            len,
        )
    })
}

/// `out[d[e]] += m[e] · s[e mod P]` for `m` (E, H), `s` (P), int64 `d` (E), E a multiple of
/// P, `out` (n, H): EGNN's messages times their envelope (per pair, E = 2P, or per edge, P = E)
/// summed into their destinations in one pass, in every derivative too. `None` where it does
/// not apply.
pub fn scale_scatter(m: &Tensor, s: &Tensor, d: &Tensor, n: i64) -> Option<Tensor> {
    if !applies(m) || s.kind() != m.kind() {
        return None;
    }
    // SAFETY: the tensors are live; `out` and `err` are the buffers `call` passes.
    call(|out, err, len| unsafe {
        hgnn_fused_scale_scatter(m.as_ptr(), s.as_ptr(), d.as_ptr(), n, out, err, len)
    })
}

/// Runs a C entry point that writes a new tensor to `out` or a message to `err`.
fn call(
    f: impl FnOnce(*mut *mut torch_sys::C_tensor, *mut c_char, usize) -> c_int,
) -> Option<Tensor> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mut err = [0 as c_char; 256];
    let rc = f(&mut out, err.as_mut_ptr(), err.len());
    if rc != 0 || out.is_null() {
        // SAFETY: the C++ side always NUL-terminates within the buffer.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
        log_once(msg.to_string_lossy().as_ref());
        return None;
    }
    // SAFETY: `out` is a valid, uniquely owned tensor pointer from the C++ side.
    Some(unsafe { Tensor::from_ptr(out) })
}

fn log_once(msg: &str) {
    static SAID: AtomicU8 = AtomicU8::new(0);
    if SAID.swap(1, Ordering::Relaxed) == 0 {
        eprintln!("hydragnn: fused kernel unavailable ({msg}); using libtorch's operations");
    }
}
