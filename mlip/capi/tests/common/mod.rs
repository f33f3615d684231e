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

/// What one run of the layer-by-layer protocol returns: the energy of `hgnn_eval_results`, the
/// local readout (`hgnn_eval_readout`), the forces (3n) and per-atom energies (n, node-head
/// energies only: empty for a pooled energy).
pub struct Layered {
    pub energy: f64,
    pub local: f64,
    pub forces: Vec<f64>,
    pub energies: Vec<f64>,
}

/// The layer-by-layer protocol on one piece without ghosts: every layer forward, the readout, for
/// a pooled (graph-level) energy the reduction step (`hgnn_eval_head_partials` and
/// `hgnn_eval_reduce` of this piece alone), every layer backward, the results. Asserts that
/// every call succeeds, naming the last error.
///
/// # Safety
/// `model` must be a live model and `graph`'s pointers valid for its sizes.
pub unsafe fn run_layered(model: *mut hgnn_model_t, graph: &hgnn_graph_t) -> Layered {
    let ok = |rc: hgnn_status_t| assert_eq!(rc, HGNN_SUCCESS, "{}", last_error());
    let n = graph.n_local as usize;
    let mut ev = std::ptr::null_mut();
    ok(hgnn_eval_begin(model, graph, &mut ev));
    let mut nl = 0;
    ok(hgnn_model_num_layers(model, &mut nl));
    for l in 0..nl {
        ok(hgnn_eval_forward_layer(ev, l));
    }
    let mut local = f64::NAN;
    ok(hgnn_eval_readout(ev, &mut local));
    let mut pooled = 0;
    ok(hgnn_model_energy_is_pooled(model, &mut pooled));
    if pooled == 1 {
        let (mut ns, mut nm) = (0, 0);
        ok(hgnn_model_head_partials_size(model, &mut ns, &mut nm));
        let mut sums = vec![0.0; ns as usize];
        let mut maxs = vec![0.0; nm as usize];
        ok(hgnn_eval_head_partials(
            ev,
            sums.as_mut_ptr(),
            ns,
            maxs.as_mut_ptr(),
            nm,
        ));
        let mut e = 0.0;
        ok(hgnn_eval_reduce(
            ev,
            sums.as_ptr(),
            ns,
            maxs.as_ptr(),
            nm,
            &mut e,
        ));
    }
    for l in (0..nl).rev() {
        ok(hgnn_eval_backward_layer(ev, l));
    }
    let mut forces = vec![0.0; 3 * n];
    let mut energies = vec![0.0; if pooled == 1 { 0 } else { n }];
    let mut r = hgnn_results_t {
        energy: 0.0,
        forces: forces.as_mut_ptr(),
        virial: std::ptr::null_mut(),
        energies: if pooled == 1 {
            std::ptr::null_mut()
        } else {
            energies.as_mut_ptr()
        },
        virials: std::ptr::null_mut(),
    };
    ok(hgnn_eval_results(ev, &mut r));
    hgnn_eval_free(ev);
    Layered {
        energy: r.energy,
        local,
        forces,
        energies,
    }
}
