//! Helpers shared by the C ABI's HydraGNN tests (moved from hydragnn_gfm.rs): the repository
//! root, a Python with torch, tensors as numbers, the last error, loading a model file in
//! float64 with a branch, relative errors.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use hydragnn::*;
use tch::{Kind, Tensor};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with torch: $HYDRAGNN_PYTHON, the project's .venv, or python3.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HYDRAGNN_PYTHON") {
        return p.into();
    }
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

pub fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
}

pub fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

pub fn load(path: &Path, branch: &str) -> *mut hgnn_model_t {
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let cbranch = CString::new(branch).unwrap();
    let mut opts = hgnn_options_default();
    opts.dtype = HGNN_DTYPE_FLOAT64;
    opts.branch = cbranch.as_ptr();
    let mut model = std::ptr::null_mut();
    assert_eq!(
        unsafe { hgnn_model_load(cpath.as_ptr(), &opts, &mut model) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    model
}

pub fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    num / b.iter().map(|v| v.abs()).fold(0.0, f64::max)
}
