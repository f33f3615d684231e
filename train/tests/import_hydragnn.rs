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

/// A config that gets as far as the checkpoint (the importer reads it after the weights).
const MIN_CONFIG: &str = r#"{"NeuralNetwork": {"Architecture": {"mpnn_type": "PAINN", "radius": 5.0,
    "hidden_dim": 8, "num_conv_layers": 1, "input_dim": 1}}}"#;

#[test]
fn import_of_files_that_are_not_hydragnn_checkpoints_says_so() {
    let dir = tmp("not-checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(&config, MIN_CONFIG).unwrap();
    // pickle.dumps(argparse.Namespace(a=1), protocol=2): a pickle of an object, not of tensors.
    let pickle =
        b"\x80\x02cargparse\nNamespace\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00aq\x03K\x01sb.";
    // np.savez(f) with no arrays: an empty zip archive.
    let mut empty_npz = b"PK\x05\x06".to_vec();
    empty_npz.extend([0u8; 18]);
    let cases: [(&str, &[u8], &str); 4] = [
        ("plain.pk", pickle, "a pickle that torch.save did not write"),
        ("empty.npz", &empty_npz, "empty zip archive"),
        (
            "text.pk",
            b"hello, not a checkpoint\n",
            "neither a zip archive nor a pickle",
        ),
        ("nothing.pk", b"", "is empty"),
    ];
    for (name, bytes, what) in cases {
        let ck = dir.join(name);
        std::fs::write(&ck, bytes).unwrap();
        let e =
            import_hydragnn(&config, &ck, &dir.join("out.model"), &Default::default()).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains(name)
                && msg.contains("is not a HydraGNN checkpoint")
                && msg.contains(what),
            "{name}: {msg}"
        );
        assert!(
            !msg.contains("weights_only") && !msg.contains("Traceback") && !msg.contains("Warning"),
            "{name}: {msg}"
        );
    }
    // An output directory that does not exist is named as such, not blamed on the checkpoint.
    let ck = dir.join("plain.pk");
    let out = dir.join("no/such/dir/out.model");
    let e = import_hydragnn(&config, &ck, &out, &Default::default()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("output directory")
            && msg.contains("no/such/dir")
            && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn import_config_value_of_the_wrong_type_names_key_type_and_value() {
    let state = BTreeMap::new();
    for (key, bad, expected) in [
        ("radius", r#""five""#, "must be a number"),
        ("hidden_dim", "8.5", "must be an integer"),
        ("mpnn_type", "3", "must be a string"),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(MIN_CONFIG).unwrap();
        v["NeuralNetwork"]["Architecture"][key] = serde_json::from_str(bad).unwrap();
        let e = match mlip::hydragnn::import(&v.to_string(), &state, &Default::default()) {
            Ok(_) => panic!("{key} = {bad} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&format!("Architecture.{key}")) && e.contains(expected) && e.contains(bad),
            "{key}: {e}"
        );
        assert!(!e.contains("missing"), "{key}: {e}");
    }
}

/// `import-hydragnn` of HydraGNN's MACE (`GFM_MACE_node`: config + .pk → model file): the file
/// reproduces HydraGNN's float64 energy and forces on the ethanol golden to 1e-8 relative, with
/// the engine's own neighbour list.
#[test]
fn mace_checkpoint_reproduces_hydragnn_energy_and_forces() {
    skip_without_golden!();
    let d = golden::dir();
    let out = tmp("MACE_node.hgnn");
    let opts = ImportOptions {
        species: Some("H,C,O".into()),
        ..Default::default()
    };
    let report = import_hydragnn(
        &d.join("GFM_MACE_node_config.json"),
        &d.join("GFM_MACE_node_checkpoint.pk"),
        &out,
        &opts,
    )
    .unwrap_or_else(|e| panic!("import of MACE failed: {e:#}"));
    assert_eq!(report.mpnn_type, "MACE");
    let g = read_npz(&d.join("GFM_MACE_node_ethanol_golden.npz")).unwrap();
    let pos = vec3(&g["pos"]);
    let z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let s = mlip::Structure::new(pos, z, [[0.0; 3]; 3], [false; 3]).unwrap();
    let model = Model::load(&out, Kind::Double, tch::Device::Cpu).unwrap();
    let r = model.compute(&s, Request::ALL).unwrap();
    let e = flat(&g["energy"])[0];
    let e_rel = (r.energy - e).abs() / e.abs();
    let f_rel = max_rel(&r.forces, &vec3(&g["forces"]));
    eprintln!("MACE via import-hydragnn: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}");
    assert!(e_rel < 1e-8 && f_rel < 1e-8, "{e_rel:e} {f_rel:e}");
}
