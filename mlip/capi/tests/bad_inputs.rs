//! Bad inputs found by issue 13's probe, each refused through the C ABI with a message naming
//! the value or the atoms: thread counts out of range (they used to succeed and then crash),
//! atoms at the same position in a whole structure (one used to be dropped silently), and a
//! caller-supplied graph with an edge given twice (it used to count twice).

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use hydragnn::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A random-weight Cu/Ni/O SchNet model file (cutoff 4 Å), written once per test process.
fn model_file() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let c =
            mlip::ModelConfig::small(mlip::model::config::MpnnType::SchNet, vec![29, 28, 8], 4.0);
        let m = mlip::Model::new(c, tch::Kind::Double, tch::Device::Cpu, 3).unwrap();
        let p = std::env::temp_dir().join(format!("hgnn-bad-inputs-{}.model", std::process::id()));
        m.save(&p, &Default::default()).unwrap();
        p
    })
    .clone()
}

/// Loads the model with `threads` (1 unless a test asks otherwise).
fn load(threads: i32) -> Result<*mut hgnn_model_t, (i32, String)> {
    let path = CString::new(model_file().to_str().unwrap()).unwrap();
    let mut o = hgnn_options_default();
    o.num_threads = threads;
    let mut m = std::ptr::null_mut();
    let st = unsafe { hgnn_model_load(path.as_ptr(), &o, &mut m) };
    if st == HGNN_SUCCESS {
        Ok(m)
    } else {
        Err((st, last_error()))
    }
}

/// fcc Cu, 2x2x2 conventional cells (32 atoms), a = 3.61 Å.
fn fcc_cu() -> (Vec<f64>, Vec<i32>, [f64; 9]) {
    let a = 3.61;
    let mut pos = Vec::new();
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for b in [
                    [0.0, 0.0, 0.0],
                    [0.5, 0.5, 0.0],
                    [0.5, 0.0, 0.5],
                    [0.0, 0.5, 0.5],
                ] {
                    pos.extend([
                        (i as f64 + b[0]) * a,
                        (j as f64 + b[1]) * a,
                        (k as f64 + b[2]) * a,
                    ]);
                }
            }
        }
    }
    let n = pos.len() / 3;
    let l = 2.0 * a;
    (pos, vec![29; n], [l, 0.0, 0.0, 0.0, l, 0.0, 0.0, 0.0, l])
}

fn compute(m: *mut hgnn_model_t, pos: &[f64], z: &[i32], cell: [f64; 9]) -> Result<f64, String> {
    let s = hgnn_structure_t {
        n_atoms: z.len() as i64,
        positions: pos.as_ptr(),
        atomic_numbers: z.as_ptr(),
        cell,
        pbc: [1, 1, 1],
    };
    let mut forces = vec![0.0; pos.len()];
    let mut r = hgnn_results_t {
        energy: 0.0,
        forces: forces.as_mut_ptr(),
        virial: std::ptr::null_mut(),
        energies: std::ptr::null_mut(),
        virials: std::ptr::null_mut(),
    };
    match unsafe { hgnn_compute(m, &s, &mut r) } {
        HGNN_SUCCESS => Ok(r.energy),
        st => {
            assert_eq!(st, HGNN_ERROR_INVALID_ARGUMENT);
            Err(last_error())
        }
    }
}

#[test]
fn thread_counts_out_of_range_are_refused() {
    // Issue 13: >= 2048 returned success and then crashed, 10^6 ended the process.
    for n in [0, -3, 1025, 2048, 5000, 1_000_000, i32::MAX] {
        let st = hgnn_set_num_threads(n);
        assert_eq!(st, HGNN_ERROR_INVALID_ARGUMENT, "hgnn_set_num_threads({n})");
        let e = last_error();
        assert!(e.contains(&n.to_string()) && e.contains("1..=1024"), "{e}");
    }
    for n in [1025, 5000, 1_000_000] {
        let (st, e) = load(n).unwrap_err();
        assert_eq!(st, HGNN_ERROR_INVALID_ARGUMENT);
        assert!(e.contains(&n.to_string()) && e.contains("1..=1024"), "{e}");
    }
    // HYDRAGNN_NUM_THREADS (read when the options leave num_threads at 0): the other tests of
    // this file pass num_threads = 1 and never read it.
    for v in ["5000", "1099511627776", "0", "two"] {
        std::env::set_var("HYDRAGNN_NUM_THREADS", v);
        let (st, e) = load(0).unwrap_err();
        assert_eq!(st, HGNN_ERROR_INVALID_ARGUMENT);
        assert!(
            e.contains(&format!("HYDRAGNN_NUM_THREADS='{v}'")) && e.contains("1..=1024"),
            "{e}"
        );
    }
    std::env::set_var("HYDRAGNN_NUM_THREADS", "2");
    unsafe { hgnn_model_free(load(0).unwrap()) };
    std::env::remove_var("HYDRAGNN_NUM_THREADS");
    assert_eq!(hgnn_set_num_threads(1), HGNN_SUCCESS);
}

#[test]
fn coincident_atoms_in_a_whole_structure_are_refused() {
    // Issue 13: an atom placed exactly on another was dropped from the neighbour list (a
    // 33-atom crystal scored as if it had 32 atoms); now both atoms are named.
    let m = load(1).unwrap();
    let (pos, z, cell) = fcc_cu();
    let e0 = compute(m, &pos, &z, cell).unwrap();
    assert!(e0.is_finite());
    // atom 32 on top of atom 5
    let mut p = pos.clone();
    p.extend_from_slice(&pos[15..18]);
    let mut zz = z.clone();
    zz.push(29);
    let e = compute(m, &p, &zz, cell).unwrap_err();
    assert!(
        e.contains("atoms 5 and 32") && e.contains("same position"),
        "{e}"
    );
    // atom 32 on a periodic image of atom 0 (one cell vector away)
    let mut p = pos.clone();
    p.extend([cell[0], 0.0, 0.0]);
    let e = compute(m, &p, &zz, cell).unwrap_err();
    assert!(
        e.contains("atoms 0 and 32") && e.contains("periodic image"),
        "{e}"
    );
    // closer than 1e-10 Å counts as the same position; 1e-6 Å does not
    let mut p = pos.clone();
    p.extend([pos[15] + 1e-11, pos[16], pos[17]]);
    assert!(compute(m, &p, &zz, cell).is_err());
    let mut p = pos.clone();
    p.extend([pos[15] + 1e-6, pos[16], pos[17]]);
    compute(m, &p, &zz, cell).unwrap();
    unsafe { hgnn_model_free(m) };
}

#[test]
fn duplicate_edges_in_caller_graphs_are_refused() {
    // Issue 13: a caller-supplied graph with an edge given twice counted it twice.
    let m = load(1).unwrap();
    // Three Cu atoms in a row, 2 Å apart; all six directed edges.
    let pos = [0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 4.0, 0.0, 0.0];
    let z = [29, 29, 29];
    let mut centers = vec![0i64, 0, 1, 1, 2, 2];
    let mut neighbors = vec![1i64, 2, 0, 2, 0, 1];
    let graph = |c: &[i64], n: &[i64], s: Option<&[f64]>| hgnn_graph_t {
        n_local: 3,
        n_total: 3,
        positions: pos.as_ptr(),
        atomic_numbers: z.as_ptr(),
        n_edges: c.len() as i64,
        centers: c.as_ptr(),
        neighbors: n.as_ptr(),
        shifts: s.map_or(std::ptr::null(), |s| s.as_ptr()),
    };
    let mut r = hgnn_results_t {
        energy: 0.0,
        forces: std::ptr::null_mut(),
        virial: std::ptr::null_mut(),
        energies: std::ptr::null_mut(),
        virials: std::ptr::null_mut(),
    };
    let g = graph(&centers, &neighbors, None);
    assert_eq!(
        unsafe { hgnn_compute_graph(m, &g, &mut r) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    // edge 6 repeats edge 3 (1 <- 2)
    centers.push(1);
    neighbors.push(2);
    let g = graph(&centers, &neighbors, None);
    assert_eq!(
        unsafe { hgnn_compute_graph(m, &g, &mut r) },
        HGNN_ERROR_INVALID_ARGUMENT
    );
    let e = last_error();
    assert!(
        e.contains("edges 3 and 6")
            && e.contains("centre atom 1")
            && e.contains("neighbour atom 2"),
        "{e}"
    );
    // The layered protocol reads graphs the same way.
    let mut ev = std::ptr::null_mut();
    assert_eq!(
        unsafe { hgnn_eval_begin(m, &g, &mut ev) },
        HGNN_ERROR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("edges 3 and 6"));
    // The same pair through two different periodic images is two edges, not a duplicate; the
    // same image twice is.
    let mut shifts = vec![0.0; 3 * 6];
    shifts.extend([10.0, 0.0, 0.0]);
    let g = graph(&centers, &neighbors, Some(&shifts));
    assert_eq!(
        unsafe { hgnn_compute_graph(m, &g, &mut r) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    shifts.truncate(18);
    shifts.extend([1e-12, 0.0, 0.0]);
    let g = graph(&centers, &neighbors, Some(&shifts));
    assert_eq!(
        unsafe { hgnn_compute_graph(m, &g, &mut r) },
        HGNN_ERROR_INVALID_ARGUMENT
    );
    assert!(last_error().contains("edges 3 and 6"), "{}", last_error());
    unsafe { hgnn_model_free(m) };
}
