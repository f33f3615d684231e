//! Load options: device, precision, threads, branch.

use std::ffi::c_char;

use crate::status::{hgnn_status_t, wrap};

/// Evaluate on the CPU.
pub const HGNN_DEVICE_CPU: i32 = 0;
/// Evaluate on the first CUDA device.
pub const HGNN_DEVICE_CUDA: i32 = 1;
/// Single precision.
pub const HGNN_DTYPE_FLOAT32: i32 = 32;
/// Double precision.
pub const HGNN_DTYPE_FLOAT64: i32 = 64;

/// Options for `hgnn_model_load`; start from `hgnn_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_options_t {
    /// `HGNN_DEVICE_CPU` or `HGNN_DEVICE_CUDA`.
    pub device: i32,
    /// `HGNN_DTYPE_FLOAT32` or `HGNN_DTYPE_FLOAT64`.
    pub dtype: i32,
    /// libtorch intra-op threads; 0 keeps the current setting (or `HYDRAGNN_NUM_THREADS`).
    pub num_threads: i32,
    /// Name of the output branch (head) to use; NULL selects the model's first branch.
    pub branch: *const c_char,
}

/// Default options: CPU, float64, threads unchanged, first branch.
#[no_mangle]
pub extern "C" fn hgnn_options_default() -> hgnn_options_t {
    hgnn_options_t {
        device: HGNN_DEVICE_CPU,
        dtype: HGNN_DTYPE_FLOAT64,
        num_threads: 0,
        branch: std::ptr::null(),
    }
}

/// Sets the number of libtorch intra-op threads for the process (also: `HYDRAGNN_NUM_THREADS`).
#[no_mangle]
#[must_use]
pub extern "C" fn hgnn_set_num_threads(n: i32) -> hgnn_status_t {
    wrap(|| Ok(mlip::compute::set_num_threads(n)?))
}
