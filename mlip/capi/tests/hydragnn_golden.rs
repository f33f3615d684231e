//! HydraGNN checkpoints through the C ABI, number for number: each checkpoint of
//! ../shared/hydragnn_golden (PaiNN, EGNN) goes through the importer (tools/import_hydragnn.py
//! reads the .pk with torch, mlip::hydragnn maps config and weights) into a model file,
//! which `hgnn_model_load` opens and `hgnn_compute_graph` evaluates on the golden edge list
//! (edge_index[0] = centre, edge_index[1] = neighbour, edge_shifts) in float64: energy, per-atom
//! energies and forces match HydraGNN's to 1e-8 relative. The CLI path (`hydragnn
//! import-hydragnn`) is tested in train/tests/import_hydragnn.rs.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use hydragnn::*;
use mlip::hydragnn::{import, parse_species, read_npz, read_state_dict, ImportOptions};
use tch::{Kind, Tensor};

#[macro_use]
#[path = "../../tests/support/golden.rs"]
mod golden;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with torch: $HYDRAGNN_PYTHON, the project's .venv, or python3.
fn python() -> PathBuf {
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

fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Checkpoint → model file, through the same two steps as `hydragnn import-hydragnn`.
fn import_to_file(m: &str) -> PathBuf {
    let d = golden::dir();
    let dir = std::env::temp_dir().join(format!("hgnn-capi-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join(format!("{m}.safetensors"));
    let st = Command::new(python())
        .arg(root().join("tools/import_hydragnn.py"))
        .arg(d.join(format!("LJ_{m}_checkpoint.pk")))
        .arg(&export)
        .status()
        .expect("run tools/import_hydragnn.py");
    assert!(
        st.success(),
        "tools/import_hydragnn.py failed on the {m} checkpoint"
    );
    let state = read_state_dict(&export).unwrap();
    let config = std::fs::read_to_string(d.join(format!("LJ_{m}_config.json"))).unwrap();
    let opts = ImportOptions {
        species: Some(parse_species("Ar=1.0").unwrap()),
        ..Default::default()
    };
    let imported = import(&config, &state, &opts).unwrap();
    let out = dir.join(format!("{m}.hgnn"));
    imported.model.save(&out, &BTreeMap::new()).unwrap();
    out
}

/// The exact path reproduces HydraGNN to 1e-8; the fast path (the default) to its tables' error.
fn check(m: &str) {
    let path = import_to_file(m);
    check_path(m, &path, false, 1e-8);
    check_path(m, &path, true, 1e-5);
}

fn check_path(m: &str, path: &std::path::Path, compress: bool, tol: f64) {
    let g: BTreeMap<String, Tensor> =
        read_npz(&golden::dir().join(format!("LJ_{m}_golden.npz"))).unwrap();
    let pos = flat(&g["pos"]);
    let n = pos.len() / 3;
    let ei = Vec::<i64>::try_from(g["edge_index"].contiguous().view([-1])).unwrap();
    let ne = ei.len() / 2;
    let shifts = flat(&g["edge_shifts"]);
    let (e_gold, ne_gold, f_gold) = (
        flat(&g["energy"])[0],
        flat(&g["node_energy"]),
        flat(&g["forces"]),
    );

    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut opts = hgnn_options_default();
    opts.dtype = HGNN_DTYPE_FLOAT64;
    let mut model = std::ptr::null_mut();
    assert_eq!(
        unsafe { hgnn_model_load(cpath.as_ptr(), &opts, &mut model) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    assert_eq!(
        unsafe { hgnn_model_set_compress(model, compress as i32, 0.0) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    let numbers = vec![18i32; n];
    let graph = hgnn_graph_t {
        n_local: n as i64,
        n_total: n as i64,
        positions: pos.as_ptr(),
        atomic_numbers: numbers.as_ptr(),
        n_edges: ne as i64,
        centers: ei[..ne].as_ptr(),
        neighbors: ei[ne..].as_ptr(),
        shifts: shifts.as_ptr(),
    };
    let mut forces = vec![0.0; 3 * n];
    let mut energies = vec![0.0; n];
    let mut res = hgnn_results_t {
        energy: 0.0,
        forces: forces.as_mut_ptr(),
        virial: std::ptr::null_mut(),
        energies: energies.as_mut_ptr(),
        virials: std::ptr::null_mut(),
    };
    assert_eq!(
        unsafe { hgnn_compute_graph(model, &graph, &mut res) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    unsafe { hgnn_model_free(model) };

    let e_rel = (res.energy - e_gold).abs() / e_gold.abs();
    let fmax = f_gold.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let f_rel = forces
        .iter()
        .zip(&f_gold)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / fmax;
    let ne_rel = energies
        .iter()
        .zip(&ne_gold)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / e_gold.abs();
    eprintln!(
        "{m} via the C ABI ({} path): energy {} (golden {e_gold}, rel {e_rel:.1e}), forces rel {f_rel:.1e}, per-atom rel {ne_rel:.1e}",
        if compress { "fast" } else { "exact" },
        res.energy
    );
    assert!(
        e_rel < tol,
        "{m}: energy {} vs HydraGNN {e_gold}",
        res.energy
    );
    assert!(
        ne_rel < tol,
        "{m}: per-atom energies differ by {ne_rel:e} relative"
    );
    assert!(f_rel < tol, "{m}: forces differ by {f_rel:e} relative");
}

#[test]
fn painn_checkpoint_through_the_c_abi_matches_hydragnn() {
    skip_without_golden!();
    check("PAINN");
}

#[test]
fn egnn_checkpoint_through_the_c_abi_matches_hydragnn() {
    skip_without_golden!();
    check("EGNN");
}
