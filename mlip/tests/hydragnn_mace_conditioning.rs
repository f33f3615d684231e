//! Charge/spin conditioning of HydraGNN's MACE (`use_graph_attr_conditioning`), imported into
//! the engine's own MACE:
//! - HydraGNN's own numbers (the goldens `GFM_MACE_graph2_concat`, `GFM_MACE_graph2_film`,
//!   `GFM_MACE_graph2_fuse_pool` in tests/hydragnn_golden_extra, committed): the energy of both
//!   branches and the forces to 1e-8. `concat_node` and `film` act on the embedding and after
//!   every layer (each readout reads the features before it); `fuse_pool` acts nowhere in
//!   HydraGNN's MACE, so it is imported without conditioning, with a warning;
//! - where it acts, against the unconditioned shared golden `GFM_MACE_graph2`: a `film` whose
//!   last layer is zero reproduces it exactly, random weights and other charges change it;
//! - forces and virial are the energy's derivatives on the periodic, sheared Al5Cu7 cell;
//!   the layer-by-layer protocol over 1 to 4 simulated ranks (one without atoms) equals the
//!   whole structure; the engine's config refuses MACE with `fuse_pool` by name.

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::path::Path;

use mlip::hydragnn::{import, read_npz, ImportOptions};
use mlip::{Model, Request, Structure};
use serde_json::Value;
use tch::{Kind, Tensor};

#[macro_use]
#[path = "support/golden.rs"]
mod golden;
mod common;

use common::gfm::{
    assert_layered_equals_whole, fd_errors, golden_errors_in_dir, golden_in, max_rel, FORCES,
};

/// The engine model of `GFM_<name>` in `dir`, its config and state dict edited first, and the
/// importer's warnings.
fn import_edited(
    dir: &Path,
    name: &str,
    edit_config: impl FnOnce(&mut Value),
    edit_state: impl FnOnce(&mut BTreeMap<String, Tensor>),
) -> (Model, Vec<String>) {
    let mut state = read_npz(&dir.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
    edit_state(&mut state);
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("GFM_{name}_config.json"))).unwrap(),
    )
    .unwrap();
    edit_config(&mut config);
    let imported = import(&config.to_string(), &state, &ImportOptions::default()).unwrap();
    (imported.model, imported.warnings)
}

/// A reproducible random tensor of `shape`, entries N(0, 0.3²).
fn rand(shape: &[i64], seed: i64) -> Tensor {
    common::randn_seeded(shape, seed as u64) * 0.3
}

/// The three MACE goldens made with upstream HydraGNN: both branches' energies and the forces
/// to 1e-8. `fuse_pool` is imported without conditioning (HydraGNN's MACE never applies it).
#[test]
fn mace_conditioning_goldens_reproduce_hydragnn() {
    let dir = golden::extra_dir();
    for (name, mode) in [
        ("MACE_graph2_concat", "concat_node"),
        ("MACE_graph2_film", "film"),
        ("MACE_graph2_fuse_pool", "fuse_pool"),
    ] {
        let (mut m, warnings) = import_edited(&dir, name, |_| {}, |_| {});
        if mode == "fuse_pool" {
            assert!(m.graph_attr_names().is_empty());
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("fuse_pool") && w.contains("no effect")),
                "{warnings:?}"
            );
            let err = m.set_graph_attr(&[-1.0, 2.0]).unwrap_err().to_string();
            assert!(err.contains("not conditioned"), "{err}");
        } else {
            assert_eq!(m.graph_attr_names(), ["charge", "spin"]);
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("[charge, spin]") && w.contains(mode)),
                "{warnings:?}"
            );
        }
        let (de, df) = golden_errors_in_dir(&mut m, &dir, name, "ethanol");
        assert!(de < 1e-8, "{name}: energy off by {de:e}");
        assert!(df < 1e-8, "{name}: forces off by {df:e}");
        if mode != "fuse_pool" {
            // other charges and spins change the energy
            let g = golden_in(&dir, name, "ethanol");
            let e1 = m.compute(&g.structure, Request::ENERGY).unwrap().energy;
            m.set_graph_attr(&[0.0, 1.0]).unwrap();
            let e2 = m.compute(&g.structure, Request::ENERGY).unwrap().energy;
            assert!(
                (e1 - e2).abs() > 1e-6,
                "{name}: charge and spin change nothing"
            );
        }
    }
}

/// Random `film` weights (H = 16: Linear(2 → 16), Linear(16 → 32)), HydraGNN names.
fn film_weights(seed: i64) -> Vec<(&'static str, Tensor)> {
    vec![
        ("model.graph_conditioner.0.weight", rand(&[16, 2], seed)),
        ("model.graph_conditioner.0.bias", rand(&[16], seed + 1)),
        (
            "model.graph_conditioner.2.weight",
            rand(&[32, 16], seed + 2),
        ),
        ("model.graph_conditioner.2.bias", rand(&[32], seed + 3)),
    ]
}

/// Random `concat_node` weights (H = 16: Linear(18 → 16)), HydraGNN names.
fn concat_weights(seed: i64) -> Vec<(&'static str, Tensor)> {
    vec![
        ("model.graph_concat_projector.weight", rand(&[16, 18], seed)),
        ("model.graph_concat_projector.bias", rand(&[16], seed + 1)),
    ]
}

/// The shared `GFM_MACE_graph2` (two branches, graph-level energy, edge_dim 1) conditioned by
/// `mode` with the given weights, charge and spin set to [-1, 2].
fn mace_conditioned(mode: &str, weights: Vec<(&str, Tensor)>) -> Model {
    let (mut m, _) = import_edited(
        &golden::dir(),
        "MACE_graph2",
        |c| {
            let a = &mut c["NeuralNetwork"]["Architecture"];
            a["use_graph_attr_conditioning"] = true.into();
            a["graph_attr_conditioning_mode"] = mode.into();
        },
        |s| {
            for (k, t) in weights {
                s.insert(k.to_string(), t);
            }
        },
    );
    m.set_graph_attr(&[-1.0, 2.0]).unwrap();
    m
}

/// The Al5Cu7 golden cell, sheared a little.
fn sheared_cual12() -> Structure {
    let mut s0 = golden_in(&golden::dir(), "MACE_graph2", "cual12").structure;
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    s0
}

/// A `film` with a zero last layer (scale 1, shift 0) gives exactly the unconditioned MACE,
/// HydraGNN's shared `GFM_MACE_graph2` golden; random weights change it.
#[test]
fn mace_film_zero_is_the_unconditioned_model() {
    skip_without_golden!();
    let g = golden_in(&golden::dir(), "MACE_graph2", "cual12");
    let mut w = film_weights(11);
    w[2].1 = Tensor::zeros([32, 16], (Kind::Double, tch::Device::Cpu));
    w[3].1 = Tensor::zeros([32], (Kind::Double, tch::Device::Cpu));
    let mut m = mace_conditioned("film", w);
    for (b, bn) in ["branch-0", "branch-1"].iter().enumerate() {
        m.set_branch(bn).unwrap();
        let r = m.compute(&g.structure, FORCES).unwrap();
        let e_rel = (r.energy - g.energy[b]).abs() / g.energy[b].abs();
        let f_rel = max_rel(&r.forces, &g.forces[b]);
        eprintln!(
            "film (zero) {bn}: energy rel {e_rel:.1e}, forces rel {f_rel:.1e} vs GFM_MACE_graph2"
        );
        assert!(e_rel < 1e-12 && f_rel < 1e-10, "{bn}: {e_rel:e} {f_rel:e}");
    }
    for (mode, w) in [
        ("film", film_weights(21)),
        ("concat_node", concat_weights(31)),
    ] {
        let m = mace_conditioned(mode, w);
        let e = m.compute(&g.structure, Request::ENERGY).unwrap().energy;
        assert!(
            (e - g.energy[0]).abs() > 1e-6,
            "{mode}: conditioning changes nothing"
        );
    }
}

/// `concat_node` and `film` with random weights on the periodic, sheared Al5Cu7 cell: forces
/// and virial are the energy's derivatives (both branches); layer by layer over 1 to 4
/// simulated ranks (the 4th without atoms) equals the whole structure.
#[test]
fn mace_conditioning_is_conservative_and_layered() {
    skip_without_golden!();
    let s0 = sheared_cual12();
    for (mode, w) in [
        ("concat_node", concat_weights(41)),
        ("film", film_weights(51)),
    ] {
        let mut m = mace_conditioned(mode, w);
        for bn in ["branch-0", "branch-1"] {
            m.set_branch(bn).unwrap();
            let (wf, ww) = fd_errors(&m, &s0, 1e-5);
            eprintln!("MACE {mode} {bn} on Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
            assert!(wf < 1e-7 && ww < 1e-7, "{mode} {bn}: FD {wf:e} {ww:e}");
            let worst = assert_layered_equals_whole(&m, &s0, &format!("MACE {mode} {bn}"));
            eprintln!(
                "MACE {mode} {bn}: layer by layer over 1-4 pieces = whole structure to {worst:.1e}"
            );
        }
    }
}

/// The engine's config refuses MACE with `fuse_pool` (it would act nowhere), naming the mode.
#[test]
fn mace_config_refuses_fuse_pool() {
    let dir = golden::extra_dir();
    let (m, _) = import_edited(&dir, "MACE_graph2_film", |_| {}, |_| {});
    let mut c = m.config().clone();
    c.graph_attr.as_mut().unwrap().mode = mlip::model::config::ConditioningMode::FusePool;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("MACE") && err.contains("fuse_pool"), "{err}");
    c.graph_attr.as_mut().unwrap().mode = mlip::model::config::ConditioningMode::ConcatNode;
    c.validate().unwrap();
}

/// The conditioned MACE goldens in a batch of structures (ethanol, the periodic Al5Cu7, a
/// sheared copy), every branch: each structure's energy and forces equal its own evaluation
/// (the same charge and spin for every structure of the batch); in float32 the ethanol energy
/// stays within 1e-5 relative of HydraGNN's.
#[test]
fn mace_conditioning_batches_equal_single_structures_and_float32_agrees() {
    skip_without_golden!();
    let dir = golden::extra_dir();
    let req = Request {
        forces: true,
        virial: false,
        energies: false,
        virials: false,
    };
    for name in ["MACE_graph2_concat", "MACE_graph2_film"] {
        let g = golden_in(&dir, name, "ethanol");
        let batch = [g.structure.clone(), sheared_cual12(), {
            golden_in(&golden::dir(), "MACE_graph2", "cual12").structure
        }];
        let (mut m, _) = import_edited(&dir, name, |_| {}, |_| {});
        let err = m.compute_batch(&batch, req).unwrap_err().to_string();
        assert!(err.contains("were not given"), "{name}: {err}");
        m.set_graph_attr(&[-1.0, 2.0]).unwrap();
        for bn in m.branch_names() {
            m.set_branch(&bn).unwrap();
            let rs = m.compute_batch(&batch, req).unwrap();
            for (s, r) in batch.iter().zip(&rs) {
                let one = m.compute(s, req).unwrap();
                assert!(
                    (r.energy - one.energy).abs() <= 1e-12 * one.energy.abs(),
                    "{name} {bn}: {} vs {}",
                    r.energy,
                    one.energy
                );
                assert!(
                    max_rel(&r.forces, &one.forces) < 1e-11,
                    "{name} {bn}: forces"
                );
            }
        }
        let state = read_npz(&dir.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
        let config = std::fs::read_to_string(dir.join(format!("GFM_{name}_config.json"))).unwrap();
        let opts = ImportOptions {
            kind: Kind::Float,
            ..Default::default()
        };
        let mut m32 = import(&config, &state, &opts).unwrap().model;
        m32.set_graph_attr(&[-1.0, 2.0]).unwrap();
        let e32 = m32.compute(&g.structure, Request::ENERGY).unwrap().energy;
        let rel = (e32 - g.energy[0]).abs() / g.energy[0].abs();
        eprintln!("{name}: float32 energy rel {rel:.1e} (HydraGNN fp64)");
        assert!(rel < 1e-5, "{name}: float32 {e32} vs {}", g.energy[0]);
    }
}
