//! The example configs of examples/train/ are valid and run: each is pointed at the committed
//! data slices (train/data/*.xyz, ingested into a scratch directory) and trained for a few steps.
//! Also: a fresh model starts from the reference energies (zero-initialised head outputs).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hydragnn_train::data::{ingest, Dataset, IngestOptions, SplitSpec};
use hydragnn_train::graphs::{collate, GraphSpec};
use hydragnn_train::metrics::predict;
use hydragnn_train::trainer::{plan_model, Trainer};
use hydragnn_train::{train, Dist, TrainConfig, TrainOptions};
use tch::{Device, Kind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The committed slices as datasets in `dir`: (metals.bp, molecules.bp).
fn slices(dir: &Path) -> (PathBuf, PathBuf) {
    let mut out = Vec::new();
    for name in ["metals", "molecules"] {
        let p = dir.join(format!("{name}.bp"));
        ingest(
            &[(
                root().join(format!("train/data/{name}.xyz")),
                SplitSpec::Random,
            )],
            &p,
            name,
            &IngestOptions::default(),
        )
        .unwrap();
        out.push(p);
    }
    (out[0].clone(), out[1].clone())
}

/// An example config with its datasets redirected to the slices and its length cut to `steps`.
fn example(name: &str, metals: &Path, molecules: &Path, steps: usize) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("examples/train").join(name)).unwrap();
    let mut c: serde_json::Value = serde_json::from_str(&text).unwrap();
    for d in c["Dataset"]["datasets"].as_array_mut().unwrap() {
        let p = if d["name"] == "metals" {
            metals
        } else {
            molecules
        };
        d["path"] = serde_json::json!(p);
    }
    let t = &mut c["NeuralNetwork"]["Training"];
    // `init_from` is relative to the example's directory; the copy is written elsewhere.
    if let Some(p) = t["init_from"].as_str() {
        t["init_from"] = serde_json::json!(root().join("examples/train").join(p));
    }
    t["max_steps"] = serde_json::json!(steps);
    t["num_epoch"] = serde_json::json!(1);
    c["Verbosity"]["level"] = serde_json::json!(0);
    c
}

#[test]
fn example_configs_validate_and_train() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mol) = slices(dir.path());
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples/train"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(
        names.contains(&"metals.json".to_string()) && names.contains(&"joint.json".to_string()),
        "{names:?}"
    );
    for name in &names {
        // Every example parses as committed (paths unresolved).
        TrainConfig::load(root().join("examples/train").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = example(name, &m, &mol, 2);
        let cp = write_config(dir.path(), name, &c);
        let cfg = TrainConfig::load(&cp).unwrap();
        let out = dir.path().join(format!("out_{name}"));
        let s = train(
            &cfg,
            TrainOptions {
                out_dir: out.clone(),
                resume: false,
                command: "test".into(),
            },
            &Dist::single(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.steps, 2, "{name}");
        assert_eq!(step_losses(&out).len(), 2, "{name}");
    }
}

#[test]
fn fresh_models_start_from_the_reference_energies() {
    let dir = tempfile::tempdir().unwrap();
    let (m, mol) = slices(dir.path());
    let c = example("joint.json", &m, &mol, 1);
    let cp = write_config(dir.path(), "joint.json", &c);
    let cfg = TrainConfig::load(&cp).unwrap();
    let (_, metas) = plan_model(&cfg).unwrap();
    let dist = Dist::single();
    let t = Trainer::new(
        &cfg,
        TrainOptions {
            out_dir: dir.path().join("o"),
            resume: false,
            command: String::new(),
        },
        &dist,
    )
    .unwrap();
    for (b, (meta, spec)) in metas.iter().enumerate() {
        let ds = Dataset::open(&t.datasets()[b].path).unwrap();
        let sr = ds.split("valset").unwrap();
        let batch = sr.read_block(0..2).unwrap();
        let gs = GraphSpec::new(t.model.cutoff(), t.model.species(), false);
        let graphs = gs.graphs_of_block(&batch, "v").unwrap();
        let refs: Vec<_> = graphs.iter().collect();
        let col = collate(
            &refs,
            &spec.graph_props(),
            &spec.node_props(),
            Kind::Float,
            Device::Cpu,
            true,
        );
        let p = predict(&t.model, spec, &col, false).unwrap();
        for (i, g) in graphs.iter().enumerate() {
            let e0: f64 = g.numbers.iter().map(|&z| meta.reference_energy(z)).sum();
            let e = p.energy.double_value(&[i as i64]);
            assert!(
                (e - e0).abs() < 1e-3 * e0.abs().max(1.0),
                "branch {b} graph {i}: {e} vs {e0}"
            );
        }
        assert!(p.forces.unwrap().abs().max().double_value(&[]) == 0.0);
    }
}
