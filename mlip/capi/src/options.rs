//! Load options: device, precision, threads, branch.

use std::ffi::{c_char, CStr};

use mlip::Precision;

use crate::status::{arg, hgnn_status_t, null, out, wrap, Fail};

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
    /// libtorch intra-op threads, 1..=1024; 0 keeps the current setting (or `HYDRAGNN_NUM_THREADS`).
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
/// `n` must be in 1..=1024 (`mlip::compute::MAX_THREADS`), else `HGNN_ERROR_INVALID_ARGUMENT`
/// naming the value and the range. In a process forked from one that had used the library, one
/// thread is used whatever `n` is (libgomp's threads do not survive a fork).
#[no_mangle]
#[must_use]
pub extern "C" fn hgnn_set_num_threads(n: i32) -> hgnn_status_t {
    wrap(|| Ok(mlip::compute::set_num_threads(n)?))
}

/// The precision of an `HGNN_DTYPE_*` value.
pub(crate) fn precision_of(dtype: i32) -> Result<Precision, Fail> {
    match dtype {
        HGNN_DTYPE_FLOAT32 => Ok(Precision::Float32),
        HGNN_DTYPE_FLOAT64 => Ok(Precision::Float64),
        d => Err(arg(format!(
            "dtype must be HGNN_DTYPE_FLOAT32 (32) or HGNN_DTYPE_FLOAT64 (64), got {d}"
        ))),
    }
}

/// The `HGNN_DTYPE_*` value of a precision.
pub(crate) fn dtype_of(p: Precision) -> i32 {
    match p {
        Precision::Float32 => HGNN_DTYPE_FLOAT32,
        Precision::Float64 => HGNN_DTYPE_FLOAT64,
    }
}

/// Parses a precision's name into `*dtype` (`HGNN_DTYPE_FLOAT32` or `HGNN_DTYPE_FLOAT64`): the
/// one parser every client uses. Accepts float32, fp32, f32, single and float64, fp64, f64,
/// double (any case); anything else (bf16 included) fails with `HGNN_ERROR_INVALID_ARGUMENT` and
/// a message saying what is accepted.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_precision_parse(
    name: *const c_char,
    dtype: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        if name.is_null() {
            return Err(null("name"));
        }
        let slot = out(dtype, "dtype")?;
        let s = CStr::from_ptr(name)
            .to_str()
            .map_err(|_| arg("precision name is not valid UTF-8".into()))?;
        *slot = dtype_of(s.parse::<Precision>()?);
        Ok(())
    })
}

/// The canonical name of an `HGNN_DTYPE_*` value ("float32" or "float64", static), or NULL for
/// any other value.
#[no_mangle]
pub extern "C" fn hgnn_precision_name(dtype: i32) -> *const c_char {
    match dtype {
        HGNN_DTYPE_FLOAT32 => c"float32".as_ptr(),
        HGNN_DTYPE_FLOAT64 => c"float64".as_ptr(),
        _ => std::ptr::null(),
    }
}
