//! Fused activations: SiLU, shifted softplus and tanh as custom libtorch autograd functions
//! (C++, `mlip/csrc/fused_act.cpp`) whose first and second derivatives are one pass each.
//!
//! Training on forces differentiates every activation twice (the forces, then the parameter
//! gradient of the force loss). libtorch records SiLU's derivative as ~6 element-wise operations
//! when the graph is kept and their derivatives as ~11 more; here the derivative g·f'(x) is one
//! custom function and its backward computes gg·f'(x) and gg·g·f''(x) in one pass. Higher orders
//! fall back to differentiable ATen expressions, so every order is exact.
//!
//! Used for CPU float32/float64 tensors; other devices and dtypes, or `HYDRAGNN_FUSED_ACT=0` in
//! the environment (read once), take libtorch's own operations. `mlip/tests/fused_act.rs` holds
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
}

/// 0: not yet read, 1: on, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the fused activations are in use (`HYDRAGNN_FUSED_ACT=0` turns them off).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("HYDRAGNN_FUSED_ACT").map_or(true, |v| v.trim() != "0");
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns the fused activations on or off for this process (benchmarks and tests compare both).
pub fn set_enabled(on: bool) {
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// The fused activation of `x`, or `None` where it does not apply (another activation, device or
/// dtype; turned off; or the C++ side reported an error, which the caller's libtorch operation
/// then raises in its own words).
pub fn act(a: Activation, x: &Tensor) -> Option<Tensor> {
    let kind = match a {
        Activation::Silu => 0,
        Activation::Ssp => 1,
        Activation::Tanh => 2,
        Activation::Relu => return None,
    };
    if !enabled() || x.device() != Device::Cpu || !matches!(x.kind(), Kind::Float | Kind::Double) {
        return None;
    }
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    let mut err = [0 as c_char; 256];
    // SAFETY: `x` is a live tensor; on success `out` is a new heap tensor whose ownership passes
    // to the returned `Tensor`; `err` is a writable buffer of the stated length.
    let rc = unsafe { hgnn_fused_act(x.as_ptr(), kind, &mut out, err.as_mut_ptr(), err.len()) };
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
        eprintln!("hydragnn: fused activation unavailable ({msg}); using libtorch's");
    }
}
