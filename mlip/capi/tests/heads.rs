//! Every head through the C ABI, on the trained two-branch SchNet (potentials/joint_schnet.model,
//! branch `molecules` with its mean-pooled `gap` head): the heads' description, their values for
//! a structure and a batch (equal to the engine's own prediction), the layered protocol's pooled
//! graph heads (equal to the whole-structure values), and clear errors for an unknown head name
//! or a buffer of the wrong size.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use hydragnn::*;
use mlip::{Model, Request, Structure};

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../potentials/joint_schnet.model")
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Water and ammonia (Å).
fn molecules() -> Vec<(Vec<f64>, Vec<i32>)> {
    vec![
        (
            vec![0.0, 0.0, 0.119, 0.0, 0.763, -0.477, 0.0, -0.763, -0.477],
            vec![8, 1, 1],
        ),
        (
            vec![
                0.0, 0.0, 0.117, 0.0, 0.939, -0.273, 0.813, -0.470, -0.273, -0.813, -0.470, -0.273,
            ],
            vec![7, 1, 1, 1],
        ),
    ]
}

fn c_structure(pos: &[f64], z: &[i32]) -> hgnn_structure_t {
    hgnn_structure_t {
        n_atoms: z.len() as i64,
        positions: pos.as_ptr(),
        atomic_numbers: z.as_ptr(),
        cell: [0.0; 9],
        pbc: [0; 3],
    }
}

/// The engine's prediction of head `name` (exact path).
fn engine(name: &str, pos: &[f64], z: &[i32]) -> Vec<f64> {
    let mut m = Model::load(model_path(), tch::Kind::Double, tch::Device::Cpu).unwrap();
    m.set_branch("molecules").unwrap();
    let s = Structure::new(
        pos.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        z.to_vec(),
        [[0.0; 3]; 3],
        [false; 3],
    )
    .unwrap();
    let r = m.compute(&s, Request::ENERGY).unwrap();
    if name == "energy" {
        vec![r.energy]
    } else {
        r.properties[name].clone()
    }
}

unsafe fn load(branch: Option<&str>) -> *mut hgnn_model_t {
    let path = CString::new(model_path().to_str().unwrap()).unwrap();
    let b = branch.map(|b| CString::new(b).unwrap());
    let mut opts = hgnn_options_default();
    opts.branch = b.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
    let mut m = std::ptr::null_mut();
    assert_eq!(hgnn_model_load(path.as_ptr(), &opts, &mut m), HGNN_SUCCESS);
    // the exact path, to compare with the engine's exact prediction
    assert_eq!(hgnn_model_set_compress(m, 0, 0.0), HGNN_SUCCESS);
    m
}

#[test]
fn heads_are_described_and_computed() {
    unsafe {
        let m = load(Some("molecules"));
        let mut n = 0;
        assert_eq!(hgnn_model_num_heads(m, &mut n), HGNN_SUCCESS);
        assert_eq!(n, 2);
        let mut h = std::mem::zeroed::<hgnn_head_t>();
        assert_eq!(hgnn_model_head(m, 1, &mut h), HGNN_SUCCESS);
        assert_eq!(CStr::from_ptr(h.name).to_str().unwrap(), "gap");
        assert_eq!(
            (h.kind, h.dim, h.pooling),
            (HGNN_HEAD_GRAPH, 1, HGNN_POOL_MEAN)
        );
        assert_eq!(hgnn_model_head(m, 0, &mut h), HGNN_SUCCESS);
        assert_eq!(CStr::from_ptr(h.name).to_str().unwrap(), "energy");
        assert_eq!(hgnn_model_head(m, 2, &mut h), HGNN_ERROR_INVALID_ARGUMENT);
        let gap = CString::new("gap").unwrap();
        let mut k = -1;
        assert_eq!(hgnn_model_head_index(m, gap.as_ptr(), &mut k), HGNN_SUCCESS);
        assert_eq!(k, 1);

        let mols = molecules();
        let cs: Vec<hgnn_structure_t> = mols.iter().map(|(p, z)| c_structure(p, z)).collect();
        // one structure, then both as a batch
        for (s, (p, z)) in cs.iter().zip(&mols) {
            let mut v = [0.0];
            assert_eq!(
                hgnn_compute_head(m, 1, s, gap.as_ptr(), v.as_mut_ptr(), 1),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            let want = engine("gap", p, z);
            assert!((v[0] - want[0]).abs() < 1e-12, "{} vs {}", v[0], want[0]);
        }
        let mut v = [0.0; 2];
        assert_eq!(
            hgnn_compute_head(m, 2, cs.as_ptr(), gap.as_ptr(), v.as_mut_ptr(), 2),
            HGNN_SUCCESS
        );
        for (k, (p, z)) in mols.iter().enumerate() {
            assert!((v[k] - engine("gap", p, z)[0]).abs() < 1e-12);
        }
        let energy = CString::new("energy").unwrap();
        assert_eq!(
            hgnn_compute_head(m, 2, cs.as_ptr(), energy.as_ptr(), v.as_mut_ptr(), 2),
            HGNN_SUCCESS
        );
        let (p, z) = &mols[1];
        assert!((v[1] - engine("energy", p, z)[0]).abs() < 1e-10);

        // errors: an unknown name (the message lists the heads), a buffer of the wrong size
        let bad = CString::new("homo").unwrap();
        assert_eq!(
            hgnn_compute_head(m, 1, cs.as_ptr(), bad.as_ptr(), v.as_mut_ptr(), 1),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        let msg = last_error();
        assert!(
            msg.contains("'homo'") && msg.contains("energy, gap"),
            "{msg}"
        );
        assert_eq!(
            hgnn_model_head_index(m, bad.as_ptr(), &mut k),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        assert_eq!(
            hgnn_compute_head(m, 2, cs.as_ptr(), gap.as_ptr(), v.as_mut_ptr(), 1),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("holds 1 values but 2 are needed"));
        assert_eq!(
            hgnn_compute_head(m, 1, cs.as_ptr(), std::ptr::null(), v.as_mut_ptr(), 1),
            HGNN_ERROR_NULL_POINTER
        );
        hgnn_model_free(m);

        // the default branch (metals) has the energy head only
        let m = load(None);
        assert_eq!(hgnn_model_num_heads(m, &mut n), HGNN_SUCCESS);
        assert_eq!(n, 1);
        assert_eq!(
            hgnn_compute_head(m, 1, cs.as_ptr(), gap.as_ptr(), v.as_mut_ptr(), 1),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        hgnn_model_free(m);
    }
}

/// The layered protocol on one piece (every atom local, edges from the engine's neighbour
/// list): the graph heads from `hgnn_eval_head_partials` + `hgnn_model_finish_heads` equal the
/// whole-structure values, on the exact and the fast path.
#[test]
fn layered_graph_heads_equal_the_whole_structure() {
    unsafe {
        let m = load(Some("molecules"));
        let (p, z) = &molecules()[1];
        let s = Structure::new(
            p.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
            z.clone(),
            [[0.0; 3]; 3],
            [false; 3],
        )
        .unwrap();
        let mut mm = 0.0;
        assert_eq!(hgnn_model_cutoff(m, &mut mm), HGNN_SUCCESS);
        let nl = mlip::neighbors::neighbor_list(&s, mm).unwrap();
        let centers: Vec<i64> = nl.centers.iter().map(|&x| x as i64).collect();
        let neighbors: Vec<i64> = nl.neighbors.iter().map(|&x| x as i64).collect();
        for compress in [0, 1] {
            assert_eq!(hgnn_model_set_compress(m, compress, 0.0), HGNN_SUCCESS);
            let g = hgnn_graph_t {
                n_local: z.len() as i64,
                n_total: z.len() as i64,
                positions: p.as_ptr(),
                atomic_numbers: z.as_ptr(),
                n_edges: centers.len() as i64,
                centers: centers.as_ptr(),
                neighbors: neighbors.as_ptr(),
                shifts: std::ptr::null(),
            };
            let mut e = std::ptr::null_mut();
            assert_eq!(
                hgnn_eval_begin(m, &g, &mut e),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            let (mut ns, mut nm) = (0, 0);
            assert_eq!(
                hgnn_model_head_partials_size(m, &mut ns, &mut nm),
                HGNN_SUCCESS
            );
            assert_eq!((ns, nm), (3, 0)); // energy, gap, atom count
            let mut sums = vec![0.0; ns as usize];
            // before the readout: an error, not garbage
            assert_eq!(
                hgnn_eval_head_partials(e, sums.as_mut_ptr(), ns, std::ptr::null_mut(), 0),
                HGNN_ERROR_INVALID_ARGUMENT
            );
            let mut nl_ = 0;
            assert_eq!(hgnn_model_num_layers(m, &mut nl_), HGNN_SUCCESS);
            for l in 0..nl_ {
                assert_eq!(hgnn_eval_forward_layer(e, l), HGNN_SUCCESS);
            }
            let mut energy = 0.0;
            assert_eq!(hgnn_eval_readout(e, &mut energy), HGNN_SUCCESS);
            assert_eq!(
                hgnn_eval_head_partials(e, sums.as_mut_ptr(), ns, std::ptr::null_mut(), 0),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            assert_eq!(sums[2], z.len() as f64);
            let mut vals = [0.0; 2];
            assert_eq!(
                hgnn_model_finish_heads(
                    m,
                    sums.as_ptr(),
                    ns,
                    std::ptr::null(),
                    0,
                    vals.as_mut_ptr(),
                    2
                ),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            let gap = CString::new("gap").unwrap();
            let mut whole = [0.0];
            let cs = c_structure(p, z);
            assert_eq!(
                hgnn_compute_head(m, 1, &cs, gap.as_ptr(), whole.as_mut_ptr(), 1),
                HGNN_SUCCESS
            );
            assert!((vals[0] - energy).abs() < 1e-10, "{vals:?} {energy}");
            assert!(
                (vals[1] - whole[0]).abs() < 1e-10,
                "{} vs {}",
                vals[1],
                whole[0]
            );
            // wrong sizes are refused
            assert_eq!(
                hgnn_model_finish_heads(
                    m,
                    sums.as_ptr(),
                    ns,
                    std::ptr::null(),
                    0,
                    vals.as_mut_ptr(),
                    1
                ),
                HGNN_ERROR_INVALID_ARGUMENT
            );
            assert_eq!(
                hgnn_model_finish_heads(
                    m,
                    sums.as_ptr(),
                    2,
                    std::ptr::null(),
                    0,
                    vals.as_mut_ptr(),
                    2
                ),
                HGNN_ERROR_INVALID_ARGUMENT
            );
            // no node heads in this branch: the message says so
            let mut one = [0.0];
            assert_eq!(
                hgnn_eval_node_head(e, gap.as_ptr(), one.as_mut_ptr(), 1),
                HGNN_ERROR_INVALID_ARGUMENT
            );
            hgnn_eval_free(e);
        }
        hgnn_model_free(m);
    }
}
