//! The shipped base model, potentials/base_schnet.model (benchmarks/base_model.sh, model card
//! potentials/base_schnet.md): it loads with the five branches its card lists; `hydragnn eval`
//! on the committed slices of train/data/base/ (one per branch) reproduces the errors the card
//! states for them; on one frame per branch the forces are -dE/dx (central differences, float64);
//! and the fine-tuning example examples/train/finetune_from_base.json starts from it and trains
//! (one epoch of 2 steps on the committed fcc(100) slabs, a set the base never saw).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hydragnn_train::data::{read_extxyz, ParseOptions};
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};
use mlip::{Model, Request, Structure};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn base_model() -> PathBuf {
    root().join("potentials/base_schnet.model")
}

/// The branches of the card, in order, with the committed slice each is checked on and the
/// card's numbers for that slice: (branch, slice, force MAE eV/Å, energy MAE meV/atom).
const SLICES: [(&str, &str, f64, f64); 5] = [
    ("metals", "train/data/base/metals.xyz", METALS_F, METALS_E),
    ("alloys", "train/data/base/alloys.xyz", ALLOYS_F, ALLOYS_E),
    ("vacancies", "train/data/base/vacancies.xyz", VAC_F, VAC_E),
    ("slabs111", "train/data/base/slabs111.xyz", SLABS_F, SLABS_E),
    ("molecules", "train/data/base/molecules.xyz", MOL_F, MOL_E),
];
const METALS_F: f64 = 1.309130e-02;
const METALS_E: f64 = 3.086337e+00;
const ALLOYS_F: f64 = 2.662653e-02;
const ALLOYS_E: f64 = 2.480908e+00;
const VAC_F: f64 = 1.221955e-02;
const VAC_E: f64 = 3.817856e+00;
const SLABS_F: f64 = 1.057643e-02;
const SLABS_E: f64 = 1.308494e-01;
const MOL_F: f64 = 2.678585e-01;
const MOL_E: f64 = 2.545064e+02;

/// Tolerance on the card's slice numbers, relative (plus 0.005 meV/atom absolute on energies):
/// `hydragnn eval` computes in float32, and the order of its sums may differ between builds and
/// thread counts.
const REL_TOL: f64 = 1e-3;

#[test]
fn base_model_has_the_cards_branches() {
    let m = Model::load(base_model(), tch::Kind::Float, tch::Device::Cpu).unwrap();
    let want: Vec<String> = SLICES.iter().map(|s| s.0.to_string()).collect();
    assert_eq!(m.branch_names(), want);
}

#[test]
fn eval_on_the_committed_slices_reproduces_the_card() {
    let dir = tempfile::tempdir().unwrap();
    for (branch, slice, force_mae, energy_mae) in SLICES {
        let json = dir.path().join(format!("{branch}.json"));
        let o = Command::new(bin())
            .args(["eval", base_model().to_str().unwrap()])
            .arg(root().join(slice))
            .args(["--branch", branch, "--json"])
            .arg(&json)
            .env("HYDRAGNN_NO_MPI", "1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{branch}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let (_, m) = v["metrics"].as_object().unwrap().iter().next().unwrap();
        let f = m["forces"]["mae"].as_f64().unwrap();
        let e = 1000.0 * m["energy_per_atom"]["mae"].as_f64().unwrap();
        assert!(f.is_finite() && e.is_finite(), "{branch}: {f} {e}");
        assert!(
            (f - force_mae).abs() <= REL_TOL * force_mae,
            "{branch}: force MAE {f} eV/A, card {force_mae}"
        );
        assert!(
            (e - energy_mae).abs() <= REL_TOL * energy_mae + 0.005,
            "{branch}: energy MAE {e} meV/atom, card {energy_mae}"
        );
    }
}

#[test]
fn forces_are_minus_the_energy_gradient_on_every_branch() {
    let mut m = Model::load(base_model(), tch::Kind::Double, tch::Device::Cpu).unwrap();
    let h = 1e-4;
    for (branch, slice, _, _) in SLICES {
        m.set_branch(branch).unwrap();
        let f = &read_extxyz(root().join(slice), &ParseOptions::default()).unwrap()[0];
        let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
        let r = m.compute(&s, Request::EFV).unwrap();
        assert!(r.energy.is_finite(), "{branch}");
        let fmax = r
            .forces
            .iter()
            .flatten()
            .fold(0.0f64, |a, x| a.max(x.abs()));
        assert!(fmax.is_finite() && fmax > 0.0, "{branch}: {fmax}");
        for atom in [0, f.positions.len() / 2] {
            for k in 0..3 {
                let energy_at = |d: f64| {
                    let mut p = f.positions.clone();
                    p[atom][k] += d;
                    let s = Structure::new(p, f.numbers.clone(), f.cell, f.pbc).unwrap();
                    m.compute(&s, Request::ENERGY).unwrap().energy
                };
                let fd = -(energy_at(h) - energy_at(-h)) / (2.0 * h);
                let got = r.forces[atom][k];
                assert!(
                    (fd - got).abs() < 1e-5 + 1e-4 * got.abs(),
                    "{branch} atom {atom} axis {k}: force {got}, -dE/dx {fd}"
                );
            }
        }
    }
}

#[test]
fn finetuning_example_starts_from_the_base_model() {
    let dir = tempfile::tempdir().unwrap();
    let frames = read_extxyz(
        root().join("train/data/base/slabs100.xyz"),
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(frames.len(), 20);
    let data = dataset(dir.path(), "slabs100", &frames[..15], &frames[15..], &[]);

    let example = root().join("examples/train/finetune_from_base.json");
    TrainConfig::load(&example).unwrap();
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    let t = &c["NeuralNetwork"]["Training"];
    assert_eq!(t["init_from"], "../../potentials/base_schnet.model");
    c["NeuralNetwork"]["Training"]["init_from"] = serde_json::json!(base_model());
    // One epoch of 15 frames in batches of 8: 2 steps, then validation and best.model.
    c["NeuralNetwork"]["Training"]["num_epoch"] = serde_json::json!(1);
    c["Verbosity"]["level"] = serde_json::json!(0);
    assert_eq!(c["Dataset"]["datasets"][0]["name"], "slabs100");
    c["Dataset"]["datasets"][0]["path"] = serde_json::json!(data);
    let cp = write_config(dir.path(), "finetune.json", &c);
    let out = dir.path().join("out");
    let s = train(
        &TrainConfig::load(&cp).unwrap(),
        TrainOptions {
            out_dir: out.clone(),
            resume: false,
            command: "test".into(),
        },
        &Dist::single(),
    )
    .unwrap();
    assert_eq!(s.steps, 2);
    let losses = step_losses(&out);
    assert_eq!(losses.len(), 2);
    assert!(losses.iter().all(|(_, l)| l.is_finite()), "{losses:?}");
    let m = Model::load(out.join("best.model"), tch::Kind::Float, tch::Device::Cpu).unwrap();
    assert_eq!(m.branch_names(), vec!["slabs100".to_string()]);
}
