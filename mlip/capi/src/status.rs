//! Status codes, the per-thread error message, and the one wrapper (`wrap`) that turns engine
//! errors and panics into a status code and a message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlip::Error;

/// Status code returned by every function.
pub type hgnn_status_t = i32;
/// Success.
pub const HGNN_SUCCESS: hgnn_status_t = 0;
/// An argument is invalid (NaN position, zero-volume cell, bad sizes, out-of-order calls ...).
pub const HGNN_ERROR_INVALID_ARGUMENT: hgnn_status_t = 1;
/// A required pointer is NULL.
pub const HGNN_ERROR_NULL_POINTER: hgnn_status_t = 2;
/// A file could not be read.
pub const HGNN_ERROR_IO: hgnn_status_t = 3;
/// A file is not a valid model file (truncated, corrupted, wrong version, not a model).
pub const HGNN_ERROR_MODEL_FILE: hgnn_status_t = 4;
/// An atom's element is not in the model.
pub const HGNN_ERROR_UNKNOWN_SPECIES: hgnn_status_t = 5;
/// An internal failure (libtorch error, non-finite model output).
pub const HGNN_ERROR_INTERNAL: hgnn_status_t = 6;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::new("no error").unwrap());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_else(|_| CString::new("error").unwrap());
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

pub(crate) struct Fail(pub(crate) hgnn_status_t, pub(crate) String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let code = match e.root() {
            Error::InvalidInput(_) | Error::Config(_) => HGNN_ERROR_INVALID_ARGUMENT,
            Error::UnknownSpecies { .. } => HGNN_ERROR_UNKNOWN_SPECIES,
            Error::Io { .. } => HGNN_ERROR_IO,
            Error::ModelFile { .. } => HGNN_ERROR_MODEL_FILE,
            Error::Internal(_) | Error::Torch(_) | Error::InStructure { .. } => HGNN_ERROR_INTERNAL,
        };
        Fail(code, e.to_string())
    }
}

pub(crate) fn null(what: &str) -> Fail {
    Fail(HGNN_ERROR_NULL_POINTER, format!("{what} is a NULL pointer"))
}
pub(crate) fn arg(msg: String) -> Fail {
    Fail(HGNN_ERROR_INVALID_ARGUMENT, msg)
}

/// The one shape of every exported function: catch panics, map errors to codes and messages.
/// Every entry also runs the engine's fork guard (`mlip::fork::on_entry`: in a process forked
/// from one that had used the library, one thread, instead of a hang in libgomp or rayon).
pub(crate) fn wrap(f: impl FnOnce() -> Result<(), Fail>) -> hgnn_status_t {
    let f = || {
        mlip::fork::on_entry();
        f()
    };
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => HGNN_SUCCESS,
        Ok(Err(Fail(code, msg))) => {
            set_error(&msg);
            code
        }
        Err(p) => {
            set_error(&format!(
                "internal error (panic caught at the C ABI): {}",
                mlip::compute::panic_message(p.as_ref())
            ));
            HGNN_ERROR_INTERNAL
        }
    }
}

pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str) -> Result<&'a [T], Fail> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

pub(crate) fn count(n: i64, what: &str) -> Result<usize, Fail> {
    usize::try_from(n).map_err(|_| arg(format!("{what} must be >= 0, got {n}")))
}

/// The message of the last error on this thread (valid until the next failing call on it).
#[no_mangle]
pub extern "C" fn hgnn_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The version of the C ABI this header describes. It changes whenever the ABI changes in a way
/// that matters to a compiled client (a struct's layout, a function's signature or meaning, a
/// constant, a function added or removed). Clients compare it with `hgnn_abi_version()` at run
/// time and refuse a library whose ABI differs from the header they were built against.
pub const HGNN_ABI_VERSION: i32 = 2;

/// The version of the C ABI the library implements: `HGNN_ABI_VERSION` of the header it was
/// built with.
#[no_mangle]
pub extern "C" fn hgnn_abi_version() -> i32 {
    HGNN_ABI_VERSION
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn hgnn_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

pub(crate) fn as_vec3(v: &[f64]) -> Vec<[f64; 3]> {
    v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

pub(crate) unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    p.as_mut().ok_or_else(|| null(what))
}
