//! One ensemble member layer by layer (`hgnn_eval_begin_member`, what the LAMMPS plugin runs for
//! each member): its energy, forces and virial equal that member's own model file evaluated whole,
//! for members of different architectures (SchNet and PaiNN: different feature widths, reported
//! by `hgnn_model_member_feature_width`); an out-of-range member is refused naming K; the
//! evaluation keeps its member alive after the model is freed; the evaluation path cannot change
//! while a member's evaluation is in progress.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use hydragnn::*;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Member files (SchNet, PaiNN, SchNet over Cu, Al; cutoff 4 Å) and their ensemble file.
fn files(dir: &std::path::Path) -> (Vec<PathBuf>, PathBuf) {
    let kinds = [MpnnType::SchNet, MpnnType::PaiNN, MpnnType::SchNet];
    let members: Vec<PathBuf> = kinds
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let c = ModelConfig::small(*t, vec![29, 13], 4.0);
            let m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, 40 + k as i64).unwrap();
            let p = dir.join(format!("m{k}.model"));
            m.save(&p, &Default::default()).unwrap();
            p
        })
        .collect();
    let out = dir.join("ens.model");
    mlip::ensemble::build(&members, &out).unwrap();
    (members, out)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn each_member_layer_by_layer_equals_its_model_file() {
    let dir = std::env::temp_dir().join(format!("hgnn-capi-ens-layered-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (members, path) = files(&dir);
    let pos = vec![
        0.0, 0.0, 0.0, 1.9, 1.7, 0.1, 1.8, 0.0, 1.9, 0.1, 1.8, 1.7, 2.9, 2.8, 3.0, 4.1, 1.2, 2.2,
    ];
    let z = vec![29, 13, 29, 29, 13, 29];
    let n = z.len();
    let s = Structure::new(
        pos.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        z.clone(),
        [[0.0; 3]; 3],
        [false; 3],
    )
    .unwrap();
    let nl = mlip::neighbors::neighbor_list(&s, 4.0).unwrap();
    let centers: Vec<i64> = nl.centers.iter().map(|&x| x as i64).collect();
    let neighbors: Vec<i64> = nl.neighbors.iter().map(|&x| x as i64).collect();
    let g = hgnn_graph_t {
        n_local: n as i64,
        n_total: n as i64,
        positions: pos.as_ptr(),
        atomic_numbers: z.as_ptr(),
        n_edges: centers.len() as i64,
        centers: centers.as_ptr(),
        neighbors: neighbors.as_ptr(),
        shifts: std::ptr::null(),
    };
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    unsafe {
        let mut m: *mut hgnn_model_t = std::ptr::null_mut();
        assert_eq!(
            hgnn_model_load(cpath.as_ptr(), std::ptr::null(), &mut m),
            HGNN_SUCCESS,
            "{}",
            last_error()
        );
        let mut nlayers = 0;
        assert_eq!(hgnn_model_num_layers(m, &mut nlayers), HGNN_SUCCESS);
        for compress in [1, 0] {
            assert_eq!(hgnn_model_set_compress(m, compress, 0.0), HGNN_SUCCESS);
            let mut widths = Vec::new();
            for (k, file) in members.iter().enumerate() {
                // the member's file alone, on the same evaluation path
                let mut alone = Model::load(file, tch::Kind::Double, tch::Device::Cpu).unwrap();
                if compress == 1 {
                    alone.enable_fast(mlip::fast::DEFAULT_TOLERANCE).ok();
                }
                let want = alone.compute(&s, Request::EFV).unwrap();
                let mut e: *mut hgnn_eval_t = std::ptr::null_mut();
                assert_eq!(
                    hgnn_eval_begin_member(m, k as i32, &g, &mut e),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
                let mut w = 0;
                assert_eq!(
                    hgnn_model_member_feature_width(m, k as i32, 1, &mut w),
                    HGNN_SUCCESS
                );
                let (mut data, mut we) = (std::ptr::null_mut(), 0);
                assert_eq!(hgnn_eval_features(e, 1, &mut data, &mut we), HGNN_SUCCESS);
                assert_eq!(w, we, "member {k}: the width the evaluation exchanges");
                widths.push(w);
                // no ghosts: every layer runs without an exchange
                for l in 0..nlayers {
                    assert_eq!(
                        hgnn_eval_forward_layer(e, l),
                        HGNN_SUCCESS,
                        "{}",
                        last_error()
                    );
                }
                assert_eq!(hgnn_eval_readout(e, std::ptr::null_mut()), HGNN_SUCCESS);
                for l in (0..nlayers).rev() {
                    assert_eq!(
                        hgnn_eval_backward_layer(e, l),
                        HGNN_SUCCESS,
                        "{}",
                        last_error()
                    );
                }
                // the path cannot change under the member's evaluation
                assert_eq!(
                    hgnn_model_set_compress(m, compress, 0.0),
                    HGNN_ERROR_INVALID_ARGUMENT
                );
                assert!(last_error().contains("in progress"), "{}", last_error());
                let (mut f, mut v) = (vec![0.0; 3 * n], vec![0.0; 9]);
                let mut r = hgnn_results_t {
                    energy: 0.0,
                    forces: f.as_mut_ptr(),
                    virial: v.as_mut_ptr(),
                    energies: std::ptr::null_mut(),
                    virials: std::ptr::null_mut(),
                };
                assert_eq!(
                    hgnn_eval_results(e, &mut r),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
                hgnn_eval_free(e);
                let tol = 1e-10;
                assert!(
                    (r.energy - want.energy).abs() <= tol * want.energy.abs(),
                    "member {k}: {} vs {}",
                    r.energy,
                    want.energy
                );
                assert!(
                    max_rel(&f, want.forces.as_flattened()) <= tol,
                    "member {k} forces"
                );
                assert!(
                    max_rel(&v, want.virial.as_flattened()) <= tol,
                    "member {k} virial"
                );
            }
            assert_ne!(
                widths[0], widths[1],
                "SchNet and PaiNN exchange different widths"
            );
        }
        // out of range: refused naming K
        let mut e: *mut hgnn_eval_t = std::ptr::null_mut();
        for bad in [-1, 3] {
            assert_eq!(
                hgnn_eval_begin_member(m, bad, &g, &mut e),
                HGNN_ERROR_INVALID_ARGUMENT
            );
            assert!(
                last_error().contains(&format!("member {bad} is outside 0..3")),
                "{}",
                last_error()
            );
            let mut w = 0;
            assert_eq!(
                hgnn_model_member_feature_width(m, bad, 1, &mut w),
                HGNN_ERROR_INVALID_ARGUMENT
            );
        }
        // a member's evaluation outlives the model
        assert_eq!(hgnn_eval_begin_member(m, 2, &g, &mut e), HGNN_SUCCESS);
        hgnn_model_free(m);
        for l in 0..nlayers {
            assert_eq!(hgnn_eval_forward_layer(e, l), HGNN_SUCCESS);
        }
        let mut energy = 0.0;
        assert_eq!(hgnn_eval_readout(e, &mut energy), HGNN_SUCCESS);
        assert!(energy.is_finite());
        hgnn_eval_free(e);
    }
    std::fs::remove_dir_all(&dir).ok();
}
