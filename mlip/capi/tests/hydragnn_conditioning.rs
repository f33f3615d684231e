//! The `film` and `fuse_pool` charge/spin conditioning modes and `edge_dim` 1 for PNAPlus, PNAEq
//! and DimeNet through the C ABI: a HydraGNN state dict (`.npz`, no Python) goes through the
//! importer into a model file, which `hgnn_model_load` opens with each branch selected by name;
//! charge and spin are named and set with `hgnn_model_set_graph_attr`. The whole-structure path
//! (`hgnn_compute`) and, for the graph heads, the layer-by-layer protocol with its reduction
//! step (`hgnn_eval_head_partials`, `hgnn_eval_reduce`; `fuse_pool` acts on the reduced pooled
//! vector) give:
//! - HydraGNN's numbers of the new goldens (tests/hydragnn_golden_extra) to 1e-8, MACE's
//!   conditioning modes included;
//! - the engine's own numbers (`Model::compute`) to 1e-11 for conditioning weights drawn at
//!   random on the GFM PaiNN graph-head checkpoint (../shared/hydragnn_golden), so the model
//!   file and the C ABI carry the mode even where no golden exists.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

use hydragnn::*;
use mlip::hydragnn::{import, read_npz, ImportOptions};
use mlip::{Request, Structure};
use serde_json::Value;
use tch::{Kind, Tensor};

#[macro_use]
#[path = "../../tests/support/golden.rs"]
mod golden;
mod common;

use common::{flat, last_error, load, max_rel, run_layered};

fn vec3(v: &[f64]) -> Vec<[f64; 3]> {
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// `GFM_<name>` from `dir` (its config edited by `edit_config`, weights added from `extra`)
/// imported and saved as a model file; with the engine model.
fn import_to_file(
    dir: &Path,
    name: &str,
    edit_config: impl FnOnce(&mut Value),
    extra: Vec<(String, Tensor)>,
) -> (PathBuf, mlip::Model) {
    let mut state = read_npz(&dir.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
    state.extend(extra);
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("GFM_{name}_config.json"))).unwrap(),
    )
    .unwrap();
    edit_config(&mut config);
    let imported = import(&config.to_string(), &state, &ImportOptions::default()).unwrap();
    let tmp = std::env::temp_dir().join(format!("hgnn-capi-cond-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = tmp.join(format!("{name}-{}.hgnn", state.len()));
    imported.model.save(&out, &BTreeMap::new()).unwrap();
    (out, imported.model)
}

/// A golden structure file and what it holds.
struct Golden {
    pos: Vec<f64>,
    z: Vec<i32>,
    cell: Vec<f64>,
    pbc: [i32; 3],
    edges: Option<(Vec<i64>, Vec<f64>)>,
    graph_attr: Option<Vec<f64>>,
    energy: Vec<f64>,
    forces: Vec<f64>,
}

fn read_golden(path: &Path) -> Golden {
    let g = read_npz(path).unwrap();
    let pbc = flat(&g["pbc"]);
    Golden {
        pos: flat(&g["pos"]),
        z: flat(&g["atomic_numbers"])
            .iter()
            .map(|&x| x as i32)
            .collect(),
        cell: flat(&g["cell"]),
        pbc: [0, 1, 2].map(|k| (pbc[k] != 0.0) as i32),
        edges: g.get("edge_index").map(|ei| {
            (
                Vec::<i64>::try_from(ei.contiguous().view([-1])).unwrap(),
                flat(&g["edge_shifts"]),
            )
        }),
        graph_attr: g.get("graph_attr").map(flat),
        energy: flat(&g["energy"]),
        forces: flat(&g["forces"]),
    }
}

/// `model_file` through the C ABI on `g`, every branch: whole structure and (graph-level
/// energies, on the golden edge list) layer by layer with the reduction step, against
/// (energy, forces) per branch from `reference` to `tol` relative. Returns the worst error.
fn through_the_c_abi(
    what: &str,
    model_file: &Path,
    branches: &[String],
    g: &Golden,
    reference: &dyn Fn(usize) -> (f64, Vec<f64>),
    tol: f64,
) -> f64 {
    let n = g.pos.len() / 3;
    let mut worst: f64 = 0.0;
    for (b, branch) in branches.iter().enumerate() {
        let (e_want, f_want) = reference(b);
        let model = load(model_file, branch);
        unsafe {
            let mut na = 0;
            assert_eq!(hgnn_model_num_graph_attr(model, &mut na), HGNN_SUCCESS);
            assert_eq!(na as usize, g.graph_attr.as_ref().map_or(0, Vec::len));
            if let Some(a) = &g.graph_attr {
                let names: Vec<String> = (0..na)
                    .map(|k| {
                        let mut s = std::ptr::null();
                        assert_eq!(hgnn_model_graph_attr_name(model, k, &mut s), HGNN_SUCCESS);
                        CStr::from_ptr(s).to_string_lossy().into_owned()
                    })
                    .collect();
                assert_eq!(names, ["charge", "spin"]);
                assert_eq!(
                    hgnn_model_set_graph_attr(model, a.as_ptr(), a.len() as i64),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
            }
            let s = hgnn_structure_t {
                n_atoms: n as i64,
                positions: g.pos.as_ptr(),
                atomic_numbers: g.z.as_ptr(),
                cell: g.cell.clone().try_into().unwrap(),
                pbc: g.pbc,
            };
            let mut forces = vec![0.0; 3 * n];
            let mut res = hgnn_results_t {
                energy: 0.0,
                forces: forces.as_mut_ptr(),
                virial: std::ptr::null_mut(),
                energies: std::ptr::null_mut(),
                virials: std::ptr::null_mut(),
            };
            assert_eq!(
                hgnn_compute(model, &s, &mut res),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            let e_rel = (res.energy - e_want).abs() / e_want.abs();
            let f_rel = max_rel(&forces, &f_want);
            eprintln!(
                "{what} {branch} via hgnn_compute: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}"
            );
            assert!(
                e_rel < tol && f_rel < tol,
                "{what} {branch}: {e_rel:e} {f_rel:e}"
            );
            worst = worst.max(e_rel).max(f_rel);

            let mut pooled = 0;
            assert_eq!(
                hgnn_model_energy_is_pooled(model, &mut pooled),
                HGNN_SUCCESS
            );
            if let (1, Some((ei, shifts))) = (pooled, &g.edges) {
                let ne = ei.len() / 2;
                let graph = hgnn_graph_t {
                    n_local: n as i64,
                    n_total: n as i64,
                    positions: g.pos.as_ptr(),
                    atomic_numbers: g.z.as_ptr(),
                    n_edges: ne as i64,
                    centers: ei[..ne].as_ptr(),
                    neighbors: ei[ne..].as_ptr(),
                    shifts: shifts.as_ptr(),
                };
                let r = run_layered(model, &graph);
                let e_rel = (r.energy - e_want).abs() / e_want.abs();
                let f_rel = max_rel(&r.forces, &f_want);
                eprintln!("{what} {branch} layer by layer: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}");
                assert!(
                    e_rel < tol && f_rel < tol,
                    "{what} {branch}: layered {e_rel:e} {f_rel:e}"
                );
                worst = worst.max(e_rel).max(f_rel);
            }
            hgnn_model_free(model);
        }
    }
    worst
}

/// The new goldens that exist in tests/hydragnn_golden_extra, through the C ABI, against
/// HydraGNN to 1e-8, every branch, whole structure and (graph heads) layer by layer.
#[test]
fn new_goldens_through_the_c_abi_match_hydragnn() {
    let dir = golden::extra_dir();
    for name in [
        "PAINN_graph2_film",
        "PAINN_graph2_fuse_pool",
        "PNAPlus_node_edge",
        "PNAEq_node_edge",
        "DimeNet_node_edge",
        "MACE_graph2_concat",
        "MACE_graph2_film",
        "MACE_graph2_fuse_pool",
    ] {
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        let f = p.file_name().unwrap().to_string_lossy();
                        f.strip_prefix(&format!("GFM_{name}_"))
                            .and_then(|r| r.strip_suffix("_golden.npz"))
                            .is_some_and(|r| !r.contains('_'))
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !files.is_empty() && dir.join(format!("GFM_{name}_config.json")).exists(),
            "GFM_{name}: no golden in {}",
            dir.display()
        );
        let (path, m) = import_to_file(&dir, name, |_| {}, vec![]);
        for f in files {
            let mut g = read_golden(&f);
            if m.graph_attr_names().is_empty() {
                // MACE's fuse_pool: HydraGNN never applies it, so the model takes no charge/spin
                g.graph_attr = None;
            }
            let n = g.pos.len() / 3;
            let reference = |b: usize| (g.energy[b], g.forces[b * 3 * n..(b + 1) * 3 * n].to_vec());
            through_the_c_abi(
                &format!("GFM_{name}"),
                &path,
                &m.branch_names(),
                &g,
                &reference,
                1e-8,
            );
        }
    }
}

fn rand(shape: &[i64], seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(shape, (Kind::Double, tch::Device::Cpu)) * 0.3
}

/// `film` and `fuse_pool` with random conditioning weights on the GFM PaiNN graph head (2
/// branches, Al5Cu7): the model file keeps the mode, and the C ABI (whole structure and layer
/// by layer with the reduction) gives the engine's numbers to 1e-11 with charge −1, spin 2.
#[test]
fn film_and_fuse_pool_model_files_through_the_c_abi_equal_the_engine() {
    skip_without_golden!();
    let dir = golden::dir();
    let mut g = read_golden(&dir.join("GFM_PAINN_graph2_cual12_golden.npz"));
    g.graph_attr = Some(vec![-1.0, 2.0]);
    for (mode, key, shapes) in [
        ("film", "graph_conditioner", [[16, 2], [32, 16]]),
        ("fuse_pool", "graph_pool_projector", [[16, 18], [16, 16]]),
    ] {
        let mut extra = Vec::new();
        for (k, sh) in [0, 2].iter().zip(shapes) {
            extra.push((format!("model.{key}.{k}.weight"), rand(&sh, 3 * k + 1)));
            extra.push((format!("model.{key}.{k}.bias"), rand(&sh[..1], 3 * k + 2)));
        }
        let (path, mut m) = import_to_file(
            &dir,
            "PAINN_graph2",
            |c| {
                let a = &mut c["NeuralNetwork"]["Architecture"];
                a["use_graph_attr_conditioning"] = true.into();
                a["graph_attr_conditioning_mode"] = mode.into();
            },
            extra,
        );
        let loaded = mlip::Model::load(&path, Kind::Double, tch::Device::Cpu).unwrap();
        assert_eq!(
            loaded.config(),
            m.config(),
            "the model file keeps the {mode} config"
        );
        let mode_json =
            serde_json::to_value(loaded.config().graph_attr.as_ref().unwrap().mode).unwrap();
        assert_eq!(mode_json, mode);
        m.set_graph_attr(&[-1.0, 2.0]).unwrap();
        let s = Structure::new(
            vec3(&g.pos),
            g.z.clone(),
            {
                let c = vec3(&g.cell);
                [c[0], c[1], c[2]]
            },
            [true; 3],
        )
        .unwrap();
        let branches = m.branch_names();
        let mut want = Vec::new();
        for b in &branches {
            m.set_branch(b).unwrap();
            let r = m
                .compute(
                    &s,
                    Request {
                        forces: true,
                        virial: false,
                        energies: false,
                        virials: false,
                    },
                )
                .unwrap();
            want.push((
                r.energy,
                r.forces.iter().flatten().copied().collect::<Vec<_>>(),
            ));
        }
        let reference = |b: usize| want[b].clone();
        let worst = through_the_c_abi(mode, &path, &branches, &g, &reference, 1e-11);
        eprintln!("{mode}: C ABI = engine to {worst:.1e}");
    }
}
