//! `import-hydragnn` against HydraGNN itself: the PaiNN and EGNN checkpoints of
//! ../shared/hydragnn_golden are imported (config + .pk → Python helper → engine model file), and
//! the engine reproduces HydraGNN's float64 energy, per-atom energies and forces on the golden
//! graph (its edge_index and edge_shifts) to 1e-8 relative. (Radius graph, layer-by-layer and
//! C-ABI runs of imported models: mlip/tests/hydragnn_golden.rs, mlip/capi/tests/hydragnn_golden.rs.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use hydragnn_train::import::{import_hydragnn, ImportOptions};
use mlip::hydragnn::read_npz;
use mlip::{GraphInput, Model, Request};
use tch::{Kind, Tensor};

#[macro_use]
#[path = "../../mlip/tests/support/golden.rs"]
mod golden;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hgnn-import-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn vec3(t: &Tensor) -> Vec<[f64; 3]> {
    let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap();
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
}

struct Golden {
    positions: Vec<[f64; 3]>,
    centers: Vec<usize>,
    neighbors: Vec<usize>,
    shifts: Vec<[f64; 3]>,
    node_energy: Vec<f64>,
    energy: f64,
    forces: Vec<[f64; 3]>,
}

fn golden(m: &str) -> Golden {
    let g: BTreeMap<String, Tensor> =
        read_npz(&golden::dir().join(format!("LJ_{m}_golden.npz"))).unwrap();
    let ei = Vec::<i64>::try_from(g["edge_index"].contiguous().view([-1])).unwrap();
    let ne = ei.len() / 2;
    Golden {
        positions: vec3(&g["pos"]),
        centers: ei[..ne].iter().map(|&x| x as usize).collect(),
        neighbors: ei[ne..].iter().map(|&x| x as usize).collect(),
        shifts: vec3(&g["edge_shifts"]),
        node_energy: flat(&g["node_energy"]),
        energy: flat(&g["energy"])[0],
        forces: vec3(&g["forces"]),
    }
}

/// Imports model `m` into a file of its own for `test` (tests run in parallel).
fn import(m: &str, test: &str) -> (PathBuf, hydragnn_train::import::ImportReport) {
    let d = golden::dir();
    let out = tmp(&format!("{m}-{test}.hgnn"));
    let opts = ImportOptions {
        species: Some("Ar=1.0".into()),
        ..Default::default()
    };
    let report = import_hydragnn(
        &d.join(format!("LJ_{m}_config.json")),
        &d.join(format!("LJ_{m}_checkpoint.pk")),
        &out,
        &opts,
    )
    .unwrap_or_else(|e| panic!("import of {m} failed: {e:#}"));
    (out, report)
}

fn max_rel(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |k| (x[k] - y[k]).abs()))
        .fold(0.0, f64::max);
    num / b.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max)
}

fn check_golden(m: &str) {
    let (path, report) = import(m, "golden");
    assert_eq!(report.mpnn_type, m);
    assert_eq!(report.max_neighbours, Some(5));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("max_neighbours = 5")),
        "{:?}",
        report.warnings
    );
    let model = Model::load(&path, Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(model.species(), &[18]);
    let g = golden(m);
    let numbers = vec![18; g.positions.len()];
    let gi = GraphInput {
        n_local: g.positions.len(),
        positions: &g.positions,
        numbers: &numbers,
        centers: &g.centers,
        neighbors: &g.neighbors,
        shifts: Some(&g.shifts),
    };
    let r = model.compute_graph(&gi, Request::ALL).unwrap();
    let e_rel = (r.energy - g.energy).abs() / g.energy.abs();
    let f_rel = max_rel(&r.forces, &g.forces);
    let ne_rel = r
        .energies
        .iter()
        .zip(&g.node_energy)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / g.energy.abs();
    eprintln!("{m}: energy {} vs golden {} (rel {e_rel:.2e}), forces rel {f_rel:.2e}, per-atom rel {ne_rel:.2e}", r.energy, g.energy);
    assert!(
        e_rel < 1e-8,
        "{m}: energy {} vs golden {}",
        r.energy,
        g.energy
    );
    assert!(ne_rel < 1e-8, "{m}: per-atom energies differ by {ne_rel:e}");
    assert!(f_rel < 1e-8, "{m}: forces differ by {f_rel:e} relative");
}

#[test]
fn painn_checkpoint_reproduces_hydragnn_energy_and_forces() {
    skip_without_golden!();
    check_golden("PAINN");
}

#[test]
fn egnn_checkpoint_reproduces_hydragnn_energy_and_forces() {
    skip_without_golden!();
    check_golden("EGNN");
}

#[test]
fn state_dict_npz_imports_the_same_model_as_the_checkpoint() {
    skip_without_golden!();
    let d = golden::dir();
    let opts = ImportOptions {
        species: Some("Ar=1.0".into()),
        ..Default::default()
    };
    let (pk, _) = import("PAINN", "npz");
    let npz = tmp("PAINN-npz.hgnn");
    import_hydragnn(
        &d.join("LJ_PAINN_config.json"),
        &d.join("LJ_PAINN_state_dict.npz"),
        &npz,
        &opts,
    )
    .unwrap();
    let a = Model::load(&pk, Kind::Double, tch::Device::Cpu).unwrap();
    let b = Model::load(&npz, Kind::Double, tch::Device::Cpu).unwrap();
    let va = a.var_store().variables();
    for (k, t) in b.var_store().variables() {
        assert!(
            va[&k].equal(&t),
            "weight {k} differs between the .pk and the .npz import"
        );
    }
}

#[test]
fn importer_rejects_a_species_with_the_wrong_number_of_features() {
    skip_without_golden!();
    let d = golden::dir();
    let opts = ImportOptions {
        species: Some("Ar=1.0:2.0".into()),
        ..Default::default()
    };
    let e = import_hydragnn(
        &d.join("LJ_EGNN_config.json"),
        &d.join("LJ_EGNN_checkpoint.pk"),
        &tmp("bad.hgnn"),
        &opts,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("input_dim is 1"), "{e:#}");
}
