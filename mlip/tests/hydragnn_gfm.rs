//! HydraGNN's foundation-model recipe (../shared/hydragnn_golden/GFM_*, see its README) in the
//! engine, without Python: the golden state dicts imported with mlip::hydragnn reproduce
//! HydraGNN's float64 energies and forces on the whole structure (the engine builds its own
//! neighbour list), branch by branch; forces and stress are the derivatives of the energy on the
//! periodic Al/Cu cell; graph-level energies refuse per-atom energies and the fast path; PaiNN
//! checkpoints with and without the update-layer biases both load; layer by layer over simulated
//! ranks, the reduction step gives the whole structure's numbers. (The checkpoint → Python →
//! model file → C ABI chain is mlip/capi/tests/hydragnn_gfm.rs.)

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use mlip::hydragnn::{import, read_npz, ImportOptions};
use mlip::{GraphInput, LayeredEval, Model, Request, Structure};
use tch::{Kind, Tensor};

mod common;

use common::gfm::*;

#[macro_use]
#[path = "support/golden.rs"]
mod golden;

fn golden(name: &str, structure: &str) -> Golden {
    read_golden(&golden::dir().join(format!("GFM_{name}_{structure}_golden.npz")))
}

/// The engine model of `GFM_<name>` (config + state dict), its state dict edited by `edit`.
fn import_gfm(
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, Tensor>),
) -> (Model, Vec<String>) {
    let d = golden::dir();
    let mut state = read_npz(&d.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
    edit(&mut state);
    let config = std::fs::read_to_string(d.join(format!("GFM_{name}_config.json"))).unwrap();
    let imported = import(&config, &state, &ImportOptions::default()).unwrap();
    (imported.model, imported.warnings)
}

#[test]
fn painn_graph_head_every_branch_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("PAINN_graph2", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("edge_dim = 1")),
        "{warnings:?}"
    );
    assert_eq!(model.branch_names(), ["branch-0", "branch-1"]);
    assert!(model.energy_is_pooled(None));
    let g = golden("PAINN_graph2", "cual12");
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: true,
    };
    for (b, name) in ["branch-0", "branch-1"].iter().enumerate() {
        model.set_branch(name).unwrap();
        let r = model.compute(&g.structure, req).unwrap();
        let e_rel = (r.energy - g.energy[b]).abs() / g.energy[b].abs();
        let f_rel = max_rel(&r.forces, &g.forces[b]);
        eprintln!(
            "PAINN_graph2 {name}: energy {} (HydraGNN {}), rel {e_rel:.1e}; forces rel {f_rel:.1e}",
            r.energy, g.energy[b]
        );
        assert!(
            e_rel < 1e-8,
            "{name}: energy {} vs {}",
            r.energy,
            g.energy[b]
        );
        assert!(f_rel < 1e-8, "{name}: forces off by {f_rel:e}");
        // per-atom virials still sum to the virial
        let mut sum = [[0.0; 3]; 3];
        for w in &r.virials {
            for i in 0..3 {
                for j in 0..3 {
                    sum[i][j] += w[i][j];
                }
            }
        }
        for i in 0..3 {
            for j in 0..3 {
                assert!((sum[i][j] - r.virial[i][j]).abs() < 1e-12 * (1.0 + r.virial[i][j].abs()));
            }
        }
    }
}

#[test]
fn graph_energy_refuses_per_atom_energies_and_the_fast_path() {
    skip_without_golden!();
    let (mut model, _) = import_gfm("PAINN_graph2", |_| {});
    let g = golden("PAINN_graph2", "cual12");
    let err = model
        .compute(&g.structure, Request::ALL)
        .unwrap_err()
        .to_string();
    assert!(err.contains("per-atom energies are not defined"), "{err}");
    assert!(err.contains("branch-0"), "{err}");
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("graph-level energy"), "{err}");
    assert!(model.fast().is_none());
}

/// E(x + h) - E(x - h) over 2h against the forces, and the same for a strain against the
/// virial, on the periodic Al5Cu7 cell, for each branch.
#[test]
fn painn_graph_head_forces_and_stress_are_energy_derivatives() {
    skip_without_golden!();
    let (mut model, _) = import_gfm("PAINN_graph2", |_| {});
    let g = golden("PAINN_graph2", "cual12");
    let s0 = &g.structure;
    for name in ["branch-0", "branch-1"] {
        model.set_branch(name).unwrap();
        let (worst, worst_w) = fd_errors(&model, s0, 1e-5);
        assert!(worst < 1e-7, "{name}: forces vs FD off by {worst:e}");
        assert!(worst_w < 1e-7, "{name}: virial vs FD off by {worst_w:e}");
        eprintln!("{name}: FD forces rel {worst:.1e}, FD virial rel {worst_w:.1e}");
    }
}

/// Checkpoints written before upstream dropped the biases of PaiNN's `update_U`/`update_V` have
/// `.bias` keys: they load, and zero biases give exactly the bias-free numbers.
#[test]
fn painn_checkpoints_with_and_without_update_biases_load() {
    skip_without_golden!();
    let g = golden("PAINN_graph2", "cual12");
    let (new, _) = import_gfm("PAINN_graph2", |_| {});
    // the layout before HydraGNN #511: biases on update_U, update_V (every layer) and on
    // vec_embed_out (`module_3`, every layer but the last)
    let keys = [
        "0.module_1.update_U",
        "0.module_1.update_V",
        "0.module_3",
        "1.module_1.update_U",
        "1.module_1.update_V",
    ];
    let (zero, warnings) = import_gfm("PAINN_graph2", add_biases(&keys, 0.0));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("update_U/update_V and vec_embed_out biases")),
        "{warnings:?}"
    );
    assert!(zero.config().painn.update_bias);
    let (biased, _) = import_gfm("PAINN_graph2", add_biases(&keys, 0.01));
    let (out_v_only, _) = import_gfm("PAINN_graph2", |st| {
        add_biases(&keys, 0.0)(st);
        add_biases(&keys[2..3], 0.01)(st);
    });
    let e = |m: &Model| m.compute(&g.structure, Request::ENERGY).unwrap().energy;
    assert_eq!(e(&new), e(&zero));
    assert!(
        (e(&biased) - e(&new)).abs() > 1e-6,
        "the biases are not used"
    );
    assert!(
        (e(&out_v_only) - e(&new)).abs() > 1e-9,
        "the vec_embed_out bias is not used"
    );
    // a bias on one layer only is not a checkpoint layout: the missing key is named
    let d = golden::dir();
    let mut state = read_npz(&d.join("GFM_PAINN_graph2_state_dict.npz")).unwrap();
    add_biases(&keys, 0.0)(&mut state);
    state.remove("model.graph_convs.1.module_1.update_V.bias");
    let config = std::fs::read_to_string(d.join("GFM_PAINN_graph2_config.json")).unwrap();
    let err = import(&config, &state, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.graph_convs.1.module_1.update_V.bias"),
        "{err}"
    );
}

/// An edit of a state dict that adds a bias `scale·(0, 1, 2, ...)` to each of the Linear layers
/// `model.graph_convs.<key>` (e.g. `0.module_1.update_U`), as checkpoints before HydraGNN #511
/// had them.
fn add_biases<'a>(keys: &'a [&'a str], scale: f64) -> impl Fn(&mut BTreeMap<String, Tensor>) + 'a {
    move |st: &mut BTreeMap<String, Tensor>| {
        for k in keys {
            let n = st[&format!("model.graph_convs.{k}.weight")].size()[0];
            let b = Tensor::arange(n, (Kind::Double, tch::Device::Cpu)) * scale;
            st.insert(format!("model.graph_convs.{k}.bias"), b);
        }
    }
}

/// PNAEq checkpoints from before HydraGNN #511 (biases on update_X, update_V and
/// vec_embed_out) load too; zero biases give the same energy as the current layout.
#[test]
fn pnaeq_checkpoints_with_and_without_vector_biases_load() {
    skip_without_golden!();
    let g = golden("PNAEq_node", "cual12");
    let (new, _) = import_gfm("PNAEq_node", |_| {});
    let keys = [
        "0.module_1.update_X",
        "0.module_1.update_V",
        "0.module_3",
        "1.module_1.update_X",
        "1.module_1.update_V",
    ];
    let (zero, warnings) = import_gfm("PNAEq_node", add_biases(&keys, 0.0));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("update_X/update_V and vec_embed_out biases")),
        "{warnings:?}"
    );
    assert!(zero.config().pna.vector_bias);
    let (biased, _) = import_gfm("PNAEq_node", add_biases(&keys, 0.01));
    let e = |m: &Model| m.compute(&g.structure, Request::ENERGY).unwrap().energy;
    assert_eq!(e(&new), e(&zero));
    assert!(
        (e(&biased) - e(&new)).abs() > 1e-9,
        "the biases are not used"
    );
    // the current layout is unchanged: HydraGNN's golden energy
    assert!((e(&new) - g.energy[0]).abs() <= 1e-8 * g.energy[0].abs());
}

/// What is still refused names the option.
#[test]
fn unsupported_gfm_options_are_refused_by_name() {
    skip_without_golden!();
    let d = golden::dir();
    let state = read_npz(&d.join("GFM_PAINN_graph2_state_dict.npz")).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("GFM_PAINN_graph2_config.json")).unwrap(),
    )
    .unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), what: &str| {
        let mut c = config.clone();
        edit(&mut c["NeuralNetwork"]["Architecture"]);
        let err = import(&c.to_string(), &state, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "expected '{what}' in: {err}");
    };
    refused(&|a| a["edge_dim"] = 2.into(), "edge_dim = 2");
    refused(&|a| a["graph_pooling"] = "mean".into(), "graph_pooling");
    // MACE options the engine does not implement: refused naming the option
    {
        let state = read_npz(&d.join("GFM_MACE_node_state_dict.npz")).unwrap();
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join("GFM_MACE_node_config.json")).unwrap(),
        )
        .unwrap();
        for (key, value, what) in [
            ("max_ell", serde_json::json!(2), "max_ell = 2"),
            ("node_max_ell", serde_json::json!(2), "node_max_ell = 2"),
            ("correlation", serde_json::json!(3), "correlation 3"),
            (
                "radial_type",
                serde_json::json!("gaussian"),
                "radial_type 'gaussian'",
            ),
            (
                "num_conv_layers",
                serde_json::json!(1),
                "num_conv_layers = 1",
            ),
        ] {
            let mut c = config.clone();
            c["NeuralNetwork"]["Architecture"][key] = value;
            let err = import(&c.to_string(), &state, &ImportOptions::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(what) && err.contains("MACE"),
                "expected '{what}' in: {err}"
            );
        }
    }
    // PNAEq and DimeNet take edge_dim 1 (mlip/tests/hydragnn_conditioning.rs); other values
    // are refused naming edge_dim
    for name in ["PNAEq_node", "DimeNet_node"] {
        let state = read_npz(&d.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
        let mut c: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join(format!("GFM_{name}_config.json"))).unwrap(),
        )
        .unwrap();
        c["NeuralNetwork"]["Architecture"]["edge_dim"] = 2.into();
        let err = import(&c.to_string(), &state, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("edge_dim = 1"), "{name}: {err}");
    }
}

/// The reduction step: 1, 2, 3 and 4 simulated ranks (one of them without atoms) give the
/// whole-structure energy, forces and virial of the graph-level energy, for both branches.
#[test]
fn graph_energy_layer_by_layer_across_pieces_equals_whole_structure() {
    skip_without_golden!();
    let (mut model, _) = import_gfm("PAINN_graph2", |_| {});
    let s = golden("PAINN_graph2", "cual12").structure;
    for name in ["branch-0", "branch-1"] {
        model.set_branch(name).unwrap();
        assert_layered_equals_whole(&model, &s, name);
    }
}

/// `concat_node` conditioning on [charge, spin]: HydraGNN's numbers for both branches with its
/// golden attributes; without attributes, or with the wrong number, a clear error; other values
/// give another energy; forces stay the energy's derivatives.
#[test]
fn painn_concat_node_charge_spin_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("PAINN_graph2_concat", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("[charge, spin]")),
        "{warnings:?}"
    );
    assert_eq!(model.graph_attr_names(), ["charge", "spin"]);
    let g = golden("PAINN_graph2_concat", "ethanol");
    let err = model
        .compute(&g.structure, Request::ENERGY)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("charge and spin") && err.contains("were not given"),
        "{err}"
    );
    let err = model.set_graph_attr(&[1.0]).unwrap_err().to_string();
    assert!(
        err.contains("2 per-structure attributes (charge, spin), got 1"),
        "{err}"
    );
    assert!(model
        .set_graph_attr(&[0.0, f64::NAN])
        .unwrap_err()
        .to_string()
        .contains("'spin'"));
    let attr = flat(
        &read_npz(&golden::dir().join("GFM_PAINN_graph2_concat_ethanol_golden.npz")).unwrap()
            ["graph_attr"],
    );
    assert_eq!(attr, [-1.0, 2.0]);
    model.set_graph_attr(&attr).unwrap();
    let req = Request {
        forces: true,
        virial: false,
        energies: false,
        virials: false,
    };
    for (b, name) in ["branch-0", "branch-1"].iter().enumerate() {
        model.set_branch(name).unwrap();
        let r = model.compute(&g.structure, req).unwrap();
        let e_rel = (r.energy - g.energy[b]).abs() / g.energy[b].abs();
        let f_rel = max_rel(&r.forces, &g.forces[b]);
        eprintln!("PAINN_graph2_concat {name}: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}");
        assert!(
            e_rel < 1e-8,
            "{name}: energy {} vs {}",
            r.energy,
            g.energy[b]
        );
        assert!(f_rel < 1e-8, "{name}: forces off by {f_rel:e}");
        // central differences
        let h = 1e-5;
        let fmax = r
            .forces
            .iter()
            .flatten()
            .map(|x| x.abs())
            .fold(0.0, f64::max);
        for i in [0, 4, 8] {
            for k in 0..3 {
                let mut p = g.structure.clone();
                p.positions[i][k] += h;
                let mut m = g.structure.clone();
                m.positions[i][k] -= h;
                let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
                let fd = -(e(&p) - e(&m)) / (2.0 * h);
                assert!(
                    (fd - r.forces[i][k]).abs() < 1e-7 * fmax,
                    "{name}: FD force {fd} vs {}",
                    r.forces[i][k]
                );
            }
        }
    }
    let e0 = model.compute(&g.structure, Request::ENERGY).unwrap().energy;
    model.set_graph_attr(&[0.0, 1.0]).unwrap();
    let e1 = model.compute(&g.structure, Request::ENERGY).unwrap().energy;
    assert!(
        (e0 - e1).abs() > 1e-6,
        "charge and spin change nothing: {e0} {e1}"
    );
}

/// An unknown conditioning mode is refused by name; `film` and `fuse_pool` are imported
/// (mlip/tests/hydragnn_conditioning.rs), and with a checkpoint that lacks their modules the
/// error names the missing tensor.
#[test]
fn other_conditioning_modes_are_refused_by_name() {
    skip_without_golden!();
    let d = golden::dir();
    let state = read_npz(&d.join("GFM_PAINN_graph2_concat_state_dict.npz")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("GFM_PAINN_graph2_concat_config.json")).unwrap(),
    )
    .unwrap();
    for (mode, expected) in [
        ("attention", "graph_attr_conditioning_mode 'attention'"),
        ("film", "'model.graph_conditioner.0.weight'"),
        ("fuse_pool", "'model.graph_pool_projector.0.weight'"),
    ] {
        config["NeuralNetwork"]["Architecture"]["graph_attr_conditioning_mode"] = mode.into();
        let err = import(&config.to_string(), &state, &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{mode}: {err}");
    }
}

/// HydraGNN's SchNet (`SCFStack`: PyG CFConv layers, float32 Gaussian centres and shifted
/// softplus) as options of the engine's SchNet: energy, per-atom energies and forces of the
/// non-periodic ethanol golden to 1e-8; on the periodic Al5Cu7 cell forces and virial are the
/// energy's derivatives; the fast path declines it.
#[test]
fn schnet_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("SchNet_node", |_| {});
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("without periodic images")),
        "{warnings:?}"
    );
    assert_eq!(
        model.config().mpnn_type,
        mlip::model::config::MpnnType::SchNet
    );
    assert!(model.config().schnet.cfconv_only);
    let g = golden("SchNet_node", "ethanol");
    let node_energy = flat(
        &read_npz(&golden::dir().join("GFM_SchNet_node_ethanol_golden.npz")).unwrap()
            ["node_energy"],
    );
    let r = model.compute(&g.structure, Request::ALL).unwrap();
    let e_rel = (r.energy - g.energy[0]).abs() / g.energy[0].abs();
    let f_rel = max_rel(&r.forces, &g.forces[0]);
    let ne = r
        .energies
        .iter()
        .zip(&node_energy)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / g.energy[0].abs();
    eprintln!("SchNet_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}");
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("SchNet variant"), "{err}");

    let s0 = golden("PAINN_graph2", "cual12").structure;
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let r = model.compute(&s0, req).unwrap();
    let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
    let h = 1e-5;
    let fmax = r
        .forces
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    for i in [0, 3, 7] {
        for k in 0..3 {
            let mut p = s0.clone();
            p.positions[i][k] += h;
            let mut m = s0.clone();
            m.positions[i][k] -= h;
            let fd = -(e(&p) - e(&m)) / (2.0 * h);
            assert!(
                (fd - r.forces[i][k]).abs() < 1e-7 * fmax,
                "FD force {fd} vs {}",
                r.forces[i][k]
            );
        }
    }
    let wmax = r
        .virial
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    for a in 0..3 {
        for b in 0..3 {
            let strained = |eps: f64| {
                let mut s = s0.clone();
                let apply = |v: &mut [f64; 3]| {
                    let x = v[b];
                    v[a] += eps * x;
                };
                s.positions.iter_mut().for_each(apply);
                s.cell.iter_mut().for_each(apply);
                s
            };
            let fd = -(e(&strained(h)) - e(&strained(-h))) / (2.0 * h);
            assert!(
                (fd - r.virial[a][b]).abs() < 1e-7 * wmax,
                "FD virial [{a}][{b}] {fd} vs {}",
                r.virial[a][b]
            );
        }
    }
    // the layer-by-layer protocol over simulated ranks gives the same numbers
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 2).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(&s0, model.cutoff(), &owner, 2));
    assert!((el - r.energy).abs() < 1e-12 * r.energy.abs());
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}

/// HydraGNN's PNA (edge_dim 1, BatchNorm in evaluation mode, degree scalers from the
/// checkpoint's float32 `avg_deg` buffers) as the engine's PNA backbone: energy, per-atom
/// energies and forces of the periodic Al5Cu7 golden to 1e-8; forces and virial are the
/// energy's derivatives there (all degrees are 18, away from any min/max tie); layer by layer
/// over simulated ranks equals one pass; the fast path declines it.
#[test]
fn pna_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("PNA_node", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("piecewise smooth")),
        "{warnings:?}"
    );
    assert!(model.config().pna.batch_norm);
    let g = golden("PNA_node", "cual12");
    let node_energy = flat(
        &read_npz(&golden::dir().join("GFM_PNA_node_cual12_golden.npz")).unwrap()["node_energy"],
    );
    let r = model.compute(&g.structure, Request::ALL).unwrap();
    let e_rel = (r.energy - g.energy[0]).abs() / g.energy[0].abs();
    let f_rel = max_rel(&r.forces, &g.forces[0]);
    let ne = r
        .energies
        .iter()
        .zip(&node_energy)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / g.energy[0].abs();
    eprintln!("PNA_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}");
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("PNA"), "{err}");

    let s0 = &g.structure;
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let r = model.compute(s0, req).unwrap();
    let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
    let h = 1e-5;
    let fmax = r
        .forces
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    let mut worst: f64 = 0.0;
    for i in [0, 3, 7] {
        for k in 0..3 {
            let mut p = s0.clone();
            p.positions[i][k] += h;
            let mut m = s0.clone();
            m.positions[i][k] -= h;
            let fd = -(e(&p) - e(&m)) / (2.0 * h);
            worst = worst.max((fd - r.forces[i][k]).abs() / fmax);
        }
    }
    let wmax = r
        .virial
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    let mut worst_w: f64 = 0.0;
    for a in 0..3 {
        for b in 0..3 {
            let strained = |eps: f64| {
                let mut s = s0.clone();
                let apply = |v: &mut [f64; 3]| {
                    let x = v[b];
                    v[a] += eps * x;
                };
                s.positions.iter_mut().for_each(apply);
                s.cell.iter_mut().for_each(apply);
                s
            };
            let fd = -(e(&strained(h)) - e(&strained(-h))) / (2.0 * h);
            worst_w = worst_w.max((fd - r.virial[a][b]).abs() / wmax);
        }
    }
    eprintln!("PNA_node: FD forces rel {worst:.1e}, FD virial rel {worst_w:.1e}");
    assert!(
        worst < 1e-7 && worst_w < 1e-7,
        "FD: forces {worst:e}, virial {worst_w:e}"
    );
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 3).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(s0, model.cutoff(), &owner, 3));
    assert!((el - r.energy).abs() < 1e-12 * r.energy.abs());
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}

/// HydraGNN's PNAPlus (PNA whose messages are gated by DimeNet's Bessel basis with trainable
/// frequencies) as the engine's PNA with `pna.bessel_rbf`: the ethanol golden to 1e-8; forces
/// are the energy's derivatives; layer by layer equals one pass.
#[test]
fn pnaplus_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (model, _) = import_gfm("PNAPlus_node", |_| {});
    assert!(model.config().pna.bessel_rbf);
    let g = golden("PNAPlus_node", "ethanol");
    let node_energy = flat(
        &read_npz(&golden::dir().join("GFM_PNAPlus_node_ethanol_golden.npz")).unwrap()
            ["node_energy"],
    );
    let r = model.compute(&g.structure, Request::ALL).unwrap();
    let e_rel = (r.energy - g.energy[0]).abs() / g.energy[0].abs();
    let f_rel = max_rel(&r.forces, &g.forces[0]);
    let ne = r
        .energies
        .iter()
        .zip(&node_energy)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / g.energy[0].abs();
    eprintln!(
        "PNAPlus_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}"
    );
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let s0 = &g.structure;
    let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
    let h = 1e-5;
    let fmax = r
        .forces
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    for i in [0, 4, 8] {
        for k in 0..3 {
            let mut p = s0.clone();
            p.positions[i][k] += h;
            let mut m = s0.clone();
            m.positions[i][k] -= h;
            let fd = -(e(&p) - e(&m)) / (2.0 * h);
            assert!(
                (fd - r.forces[i][k]).abs() < 1e-7 * fmax,
                "FD force {fd} vs {}",
                r.forces[i][k]
            );
        }
    }
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 2).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(s0, model.cutoff(), &owner, 2));
    assert!((el - r.energy).abs() < 1e-12 * r.energy.abs());
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}

/// The families whose goldens are molecules (PNAPlus; the charge/spin-conditioned PaiNN) are
/// conservative on the periodic Al5Cu7 cell too: forces and virial are the energy's derivatives.
/// The cell is sheared a little first: in the cubic golden cell the self-image pairs along x and
/// y have exactly the same length, and a strain that separates them puts PNA's min/max at a
/// kink (the virial then differs from its finite difference by O(h), as it would in HydraGNN).
#[test]
fn molecule_golden_families_are_conservative_on_the_periodic_cell() {
    skip_without_golden!();
    let mut s0 = golden("PAINN_graph2", "cual12").structure;
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    let (pnaplus, _) = import_gfm("PNAPlus_node", |_| {});
    let (mut concat, _) = import_gfm("PAINN_graph2_concat", |_| {});
    concat.set_graph_attr(&[1.0, 0.5]).unwrap();
    for (name, m) in [("PNAPlus", &pnaplus), ("PAINN_graph2_concat", &concat)] {
        let (wf, ww) = fd_errors(m, &s0, 1e-5);
        eprintln!("{name} on Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
        assert!(
            wf < 1e-7 && ww < 1e-7,
            "{name}: forces {wf:e}, virial {ww:e}"
        );
    }
}

/// Energy and forces of `m` on the golden `GFM_<name>_<structure>` against HydraGNN's:
/// (energy rel, per-atom energy rel (0 when the golden has none), forces rel).
fn golden_errors(m: &Model, name: &str, structure: &str) -> (f64, f64, f64) {
    golden_errors_at(
        m,
        &golden::dir().join(format!("GFM_{name}_{structure}_golden.npz")),
    )
}

/// HydraGNN's PNAEq (PaiNN messages and update, PNA aggregation of the scalar messages with five
/// degree scalers, the `avg_deg` buffers from the checkpoint) as the engine's PNAEq backbone:
/// energy, per-atom energies and forces of the periodic Al5Cu7 golden to 1e-8; forces and
/// virial are the energy's derivatives on a sheared cell; rotation and permutation invariance;
/// layer by layer over simulated ranks equals one pass; the fast path declines it.
#[test]
fn pnaeq_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("PNAEq_node", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("piecewise smooth")),
        "{warnings:?}"
    );
    let (e_rel, ne, f_rel) = golden_errors(&model, "PNAEq_node", "cual12");
    eprintln!("PNAEq_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}");
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("PNAEq"), "{err}");
    let mut s0 = golden("PNAEq_node", "cual12").structure;
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    let (wf, ww) = fd_errors(&model, &s0, 1e-5);
    eprintln!("PNAEq_node on sheared Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
    assert!(wf < 1e-7 && ww < 1e-7, "forces {wf:e}, virial {ww:e}");
    let (de, df) = invariance_errors(&model, &s0);
    eprintln!("PNAEq_node: rotation/permutation energy rel {de:.1e}, forces rel {df:.1e}");
    assert!(de < 1e-12 && df < 1e-10, "{de:e} {df:e}");
    let r = model.compute(&s0, Request::ALL).unwrap();
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 3).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(&s0, model.cutoff(), &owner, 3));
    assert!((el - r.energy).abs() < 1e-12 * r.energy.abs());
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}

/// HydraGNN's DimeNet (PyG's DimeNet++ blocks with triplets, trainable radial frequencies, the
/// spherical basis with PyG's float32 Bessel zeros and normalisers) as the engine's DimeNet:
/// energy, per-atom energies and forces of the periodic Al5Cu7 golden (with self-image edges,
/// whose triplets HydraGNN excludes by atom index) to 1e-8; forces and virial are the energy's
/// derivatives on a sheared cell; rotation and permutation invariance; graphs with ghost atoms
/// (the layer-by-layer path) and the fast path are refused by name.
#[test]
fn dimenet_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("DimeNet_node", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("two cutoffs")),
        "{warnings:?}"
    );
    let (e_rel, ne, f_rel) = golden_errors(&model, "DimeNet_node", "cual12");
    eprintln!(
        "DimeNet_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}"
    );
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("DimeNet"), "{err}");
    let mut s0 = golden("DimeNet_node", "cual12").structure;
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    let (wf, ww) = fd_errors(&model, &s0, 1e-5);
    eprintln!("DimeNet_node on sheared Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
    assert!(wf < 1e-7 && ww < 1e-7, "forces {wf:e}, virial {ww:e}");
    let (de, df) = invariance_errors(&model, &s0);
    eprintln!("DimeNet_node: rotation/permutation energy rel {de:.1e}, forces rel {df:.1e}");
    assert!(de < 1e-12 && df < 1e-10, "{de:e} {df:e}");
    // a graph with ghost rows: refused, naming the backbone and why
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 2).collect();
    let p = &pieces(&s0, model.cutoff(), &owner, 2)[0];
    let g = GraphInput {
        n_local: p.n_local,
        positions: &p.positions,
        numbers: &p.numbers,
        centers: &p.centers,
        neighbors: &p.neighbors,
        shifts: None,
    };
    let err = LayeredEval::new(&model, &g).err().unwrap().to_string();
    assert!(err.contains("DimeNet") && err.contains("ghost"), "{err}");
}

/// PNAEq, DimeNet and MACE in a batch of structures (periodic Al5Cu7, a sheared copy, the ethanol
/// molecule): every structure's energy and forces equal its own evaluation (DimeNet's triplets
/// and PNAEq's degree scalers stay within each structure); in float32 the energy stays within
/// 1e-5 relative of float64.
#[test]
fn pnaeq_and_dimenet_batches_equal_single_structures_and_float32_agrees() {
    skip_without_golden!();
    let a = golden("PNAEq_node", "cual12").structure;
    let mut b = a.clone();
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    b.positions.iter_mut().for_each(deform);
    b.cell.iter_mut().for_each(deform);
    let c = golden("PNAPlus_node", "ethanol").structure;
    let batch = [a, b, c];
    let req = Request {
        forces: true,
        virial: false,
        energies: false,
        virials: false,
    };
    for name in ["PNAEq_node", "DimeNet_node", "MACE_node"] {
        let (model, _) = import_gfm(name, |_| {});
        let rs = model.compute_batch(&batch, req).unwrap();
        for (s, r) in batch.iter().zip(&rs) {
            let one = model.compute(s, req).unwrap();
            assert!(
                (r.energy - one.energy).abs() <= 1e-12 * one.energy.abs(),
                "{name}: {} vs {}",
                r.energy,
                one.energy
            );
            assert!(max_rel(&r.forces, &one.forces) < 1e-11, "{name}: forces");
        }
        let d = golden::dir();
        let state = read_npz(&d.join(format!("GFM_{name}_state_dict.npz"))).unwrap();
        let config = std::fs::read_to_string(d.join(format!("GFM_{name}_config.json"))).unwrap();
        let opts = ImportOptions {
            kind: Kind::Float,
            ..Default::default()
        };
        let m32 = import(&config, &state, &opts).unwrap().model;
        let e32 = m32.compute(&batch[0], Request::ENERGY).unwrap().energy;
        let rel = (e32 - rs[0].energy).abs() / rs[0].energy.abs();
        eprintln!("{name}: float32 energy rel {rel:.1e}");
        assert!(rel < 1e-5, "{name}: float32 {e32} vs {}", rs[0].energy);
    }
}

/// HydraGNN's MACE (e3nn irreps 0e + 1o, the attention-residual interaction block's tensor
/// product with per-edge weights from the radial MLP, correlation-2 symmetric contractions with
/// the checkpoint's coupling tensors, a readout after every layer) as the engine's MACE: energy,
/// per-atom energies and forces of the ethanol golden (node head) to 1e-8; forces and virial are
/// the energy's derivatives on the sheared periodic Al5Cu7 cell; rotation and permutation
/// invariance; layer by layer over simulated ranks equals one pass; the fast path declines it.
#[test]
fn mace_node_head_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, _) = import_gfm("MACE_node", |_| {});
    let (e_rel, ne, f_rel) = golden_errors(&model, "MACE_node", "ethanol");
    eprintln!("MACE_node: energy rel {e_rel:.1e}, per-atom rel {ne:.1e}, forces rel {f_rel:.1e}");
    assert!(
        e_rel < 1e-8 && ne < 1e-8 && f_rel < 1e-8,
        "{e_rel:e} {ne:e} {f_rel:e}"
    );
    let err = model.enable_fast(1e-6).unwrap_err().to_string();
    assert!(err.contains("MACE"), "{err}");
    let mut s0 = golden("PAINN_graph2", "cual12").structure;
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    let (wf, ww) = fd_errors(&model, &s0, 1e-5);
    eprintln!("MACE_node on sheared Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
    assert!(wf < 1e-7 && ww < 1e-7, "forces {wf:e}, virial {ww:e}");
    let (de, df) = invariance_errors(&model, &s0);
    eprintln!("MACE_node: rotation/permutation energy rel {de:.1e}, forces rel {df:.1e}");
    assert!(de < 1e-12 && df < 1e-10, "{de:e} {df:e}");
    let r = model.compute(&s0, Request::ALL).unwrap();
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 3).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(&s0, model.cutoff(), &owner, 3));
    assert!((el - r.energy).abs() < 1e-12 * r.energy.abs());
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}

/// HydraGNN's MACE with the foundation-model graph head (2 branches, add pooling of each
/// readout's scalars, `edge_dim` = 1 prepending |r_ij| to the edge attributes): both branches'
/// energies and forces on the periodic Al5Cu7 golden to 1e-8; FD forces and virial of the graph
/// energy; layer by layer over simulated ranks equals one pass.
#[test]
fn mace_graph_head_every_branch_reproduces_hydragnn() {
    skip_without_golden!();
    let (mut model, warnings) = import_gfm("MACE_graph2", |_| {});
    assert!(
        warnings.iter().any(|w| w.contains("edge_dim = 1")),
        "{warnings:?}"
    );
    assert_eq!(model.branch_names(), ["branch-0", "branch-1"]);
    assert!(model.energy_is_pooled(None));
    let g = golden("MACE_graph2", "cual12");
    let req = Request {
        forces: true,
        virial: false,
        energies: false,
        virials: false,
    };
    for (b, name) in ["branch-0", "branch-1"].iter().enumerate() {
        model.set_branch(name).unwrap();
        let r = model.compute(&g.structure, req).unwrap();
        let e_rel = (r.energy - g.energy[b]).abs() / g.energy[b].abs();
        let f_rel = max_rel(&r.forces, &g.forces[b]);
        eprintln!(
            "MACE_graph2 {name}: energy {} (HydraGNN {}), rel {e_rel:.1e}; forces rel {f_rel:.1e}",
            r.energy, g.energy[b]
        );
        assert!(
            e_rel < 1e-8,
            "{name}: energy {} vs {}",
            r.energy,
            g.energy[b]
        );
        assert!(f_rel < 1e-8, "{name}: forces off by {f_rel:e}");
    }
    let mut s0 = g.structure.clone();
    let deform =
        |v: &mut [f64; 3]| *v = [1.013 * v[0] + 0.02 * v[1], 0.991 * v[1], v[2] + 0.01 * v[0]];
    s0.positions.iter_mut().for_each(deform);
    s0.cell.iter_mut().for_each(deform);
    let (wf, ww) = fd_errors(&model, &s0, 1e-5);
    eprintln!("MACE_graph2 on sheared Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
    assert!(wf < 1e-7 && ww < 1e-7, "forces {wf:e}, virial {ww:e}");
    let r = model.compute(&s0, req).unwrap();
    let owner: Vec<usize> = (0..s0.len()).map(|i| i % 2).collect();
    let (el, fl, _) = run_pieces(&model, &pieces(&s0, model.cutoff(), &owner, 2));
    assert!(
        (el - r.energy).abs() < 1e-12 * r.energy.abs(),
        "{el} vs {}",
        r.energy
    );
    assert!(max_rel(&fl, &r.forces) < 1e-11);
}
