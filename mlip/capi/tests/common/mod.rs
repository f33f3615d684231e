//! Helpers of the C ABI tests of imported HydraGNN checkpoints (`hydragnn_gfm.rs`,
//! `hydragnn_backbones.rs`): a Python with torch, the checkpoint → model file import, loading a
//! model file with a branch, the last error, comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use hydragnn::*;
use mlip::hydragnn::{import, read_state_dict, ImportOptions};
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

/// Checkpoint `GFM_<name>_checkpoint.pk` of the golden directory `d` → model file, through the
/// same two steps as `hydragnn import-hydragnn`.
pub fn import_gfm_to_file(d: &Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hgnn-capi-gfm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join(format!("{name}.safetensors"));
    let st = Command::new(python())
        .arg(root().join("tools/import_hydragnn.py"))
        .arg(d.join(format!("GFM_{name}_checkpoint.pk")))
        .arg(&export)
        .status()
        .expect("run tools/import_hydragnn.py");
    assert!(
        st.success(),
        "tools/import_hydragnn.py failed on GFM_{name}"
    );
    let state = read_state_dict(&export).unwrap();
    let config = std::fs::read_to_string(d.join(format!("GFM_{name}_config.json"))).unwrap();
    let imported = import(&config, &state, &ImportOptions::default()).unwrap();
    let out = dir.join(format!("{name}.hgnn"));
    imported.model.save(&out, &BTreeMap::new()).unwrap();
    out
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
