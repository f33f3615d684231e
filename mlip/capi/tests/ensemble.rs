//! Ensembles through the C ABI: `hgnn_model_load` on an ensemble file, K, the driving results
//! (mean or member 0) from `hgnn_compute`, the deviations and committee arrays of
//! `hgnn_compute_ensemble` equal to the engine's, and clear refusals (the one-model paths, a
//! bad drive, arrays requested without their quantity).

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use hydragnn::*;
use mlip::ensemble::{Drive, Ensemble};
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn last_error() -> String {
    unsafe { CStr::from_ptr(hgnn_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Three SchNet members over Cu, Al (cutoff 4 Å), built into an ensemble file.
fn ensemble_file(dir: &std::path::Path) -> PathBuf {
    let files: Vec<PathBuf> = (0..3)
        .map(|k| {
            let c = ModelConfig::small(MpnnType::SchNet, vec![29, 13], 4.0);
            let m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, 10 + k).unwrap();
            let p = dir.join(format!("m{k}.model"));
            m.save(&p, &Default::default()).unwrap();
            p
        })
        .collect();
    let out = dir.join("ens.model");
    mlip::ensemble::build(&files, &out).unwrap();
    out
}

#[test]
fn ensemble_compute_matches_the_engine_and_refuses_one_model_paths() {
    let dir = std::env::temp_dir().join(format!("hgnn-capi-ens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = ensemble_file(&dir);
    let pos = vec![
        0.0, 0.0, 0.0, 1.9, 1.7, 0.1, 1.8, 0.0, 1.9, 0.1, 1.8, 1.7, 2.9, 2.8, 3.0,
    ];
    let z = vec![29, 13, 29, 29, 13];
    let n = z.len();
    let cell = [[3.7, 0.0, 0.0], [0.0, 3.8, 0.0], [0.0, 0.0, 3.9]];
    let s = Structure::new(
        pos.chunks(3).map(|c| [c[0], c[1], c[2]]).collect(),
        z.clone(),
        cell,
        [true; 3],
    )
    .unwrap();
    // the engine on the exact path, for reference; the C ABI on the exact path too
    let ens = Ensemble::load(&path, tch::Kind::Double, tch::Device::Cpu).unwrap();
    let want = ens.compute(&s, Request::EFV).unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut m: *mut hgnn_model_t = std::ptr::null_mut();
    unsafe {
        assert_eq!(
            hgnn_model_load(cpath.as_ptr(), std::ptr::null(), &mut m),
            0,
            "{}",
            last_error()
        );
        assert_eq!(hgnn_model_set_compress(m, 0, 0.0), 0);
        let mut k = 0;
        assert_eq!(hgnn_model_ensemble_size(m, &mut k), 0);
        assert_eq!(k, 3);
        let cs = hgnn_structure_t {
            n_atoms: n as i64,
            positions: pos.as_ptr(),
            atomic_numbers: z.as_ptr(),
            cell: [3.7, 0.0, 0.0, 0.0, 3.8, 0.0, 0.0, 0.0, 3.9],
            pbc: [1; 3],
        };
        let (mut f, mut v) = (vec![0.0; 3 * n], vec![0.0; 9]);
        let mut r = hgnn_results_t {
            energy: 0.0,
            forces: f.as_mut_ptr(),
            virial: v.as_mut_ptr(),
            energies: std::ptr::null_mut(),
            virials: std::ptr::null_mut(),
        };
        // hgnn_compute on an ensemble: the mean drives
        assert_eq!(hgnn_compute(m, &cs, &mut r), 0, "{}", last_error());
        let tol = 1e-12;
        assert!((r.energy - want.mean.energy).abs() < tol);
        for i in 0..n {
            for c in 0..3 {
                assert!((f[3 * i + c] - want.mean.forces[i][c]).abs() < tol);
            }
        }
        // the committee
        let (mut fd, mut me, mut mf, mut mv) = (
            vec![0.0; n],
            vec![0.0; 3],
            vec![0.0; 3 * 3 * n],
            vec![0.0; 27],
        );
        let mut e = hgnn_ensemble_results_t {
            energy_std: -1.0,
            max_devi_f: -1.0,
            min_devi_f: -1.0,
            avg_devi_f: -1.0,
            max_devi_v: -1.0,
            min_devi_v: -1.0,
            avg_devi_v: -1.0,
            virial_std: [0.0; 9],
            force_dev: fd.as_mut_ptr(),
            member_energies: me.as_mut_ptr(),
            member_forces: mf.as_mut_ptr(),
            member_virials: mv.as_mut_ptr(),
        };
        assert_eq!(
            hgnn_compute_ensemble(m, &cs, &mut r, &mut e),
            0,
            "{}",
            last_error()
        );
        let d = &want.deviation;
        assert!(d.max_f > 1e-4, "members should disagree: {}", d.max_f);
        assert!((e.energy_std - d.energy_std).abs() < tol);
        assert!((e.max_devi_f - d.max_f).abs() < tol && (e.min_devi_f - d.min_f).abs() < tol);
        assert!((e.avg_devi_f - d.avg_f).abs() < tol);
        assert!((e.max_devi_v - d.max_v).abs() < tol && (e.avg_devi_v - d.avg_v).abs() < tol);
        for (a, b) in fd.iter().zip(&d.force) {
            assert!((a - b).abs() < tol);
        }
        for k in 0..3 {
            assert!((me[k] - want.members[k].energy).abs() < tol);
            assert!((mf[3 * n * k + 4] - want.members[k].forces[1][1]).abs() < tol);
            assert!((mv[9 * k + 8] - want.members[k].virial[2][2]).abs() < tol);
        }
        // member 0 drives
        assert_eq!(hgnn_model_set_ensemble_drive(m, HGNN_DRIVE_FIRST), 0);
        assert_eq!(hgnn_compute(m, &cs, &mut r), 0);
        assert!((r.energy - want.driving(Drive::First).energy).abs() < tol);
        assert_eq!(
            hgnn_model_set_ensemble_drive(m, 7),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("HGNN_DRIVE_MEAN"), "{}", last_error());
        // an array without its quantity
        r.forces = std::ptr::null_mut();
        assert_eq!(
            hgnn_compute_ensemble(m, &cs, &mut r, &mut e),
            HGNN_ERROR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("request forces"), "{}", last_error());
        // the one-model paths refuse an ensemble
        let mut ev: *mut hgnn_eval_t = std::ptr::null_mut();
        let g = hgnn_graph_t {
            n_local: 0,
            n_total: 0,
            positions: std::ptr::null(),
            atomic_numbers: std::ptr::null(),
            n_edges: 0,
            centers: std::ptr::null(),
            neighbors: std::ptr::null(),
            shifts: std::ptr::null(),
        };
        assert_eq!(hgnn_eval_begin(m, &g, &mut ev), HGNN_ERROR_INVALID_ARGUMENT);
        assert!(
            last_error().contains("ensemble of 3 members"),
            "{}",
            last_error()
        );
        hgnn_model_free(m);
    }
    std::fs::remove_dir_all(&dir).ok();
}
