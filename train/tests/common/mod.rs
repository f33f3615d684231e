//! Shared helpers of the training tests: tiny synthetic datasets with exact labels (a
//! Lennard-Jones potential evaluated with the engine's neighbour list), configs, file readers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hydragnn_train::data::{
    extxyz::AtomProp, ingest, write_extxyz, Frame, IngestOptions, SplitSpec,
};
use mlip::neighbors::neighbor_list;
use mlip::Structure;
use rand::{Rng, SeedableRng};

/// Shifted LJ pair energy and dE/dr (zero at rc).
fn lj(r: f64, eps: f64, sigma: f64, rc: f64) -> (f64, f64) {
    let f = |r: f64| {
        let s6 = (sigma / r).powi(6);
        4.0 * eps * (s6 * s6 - s6)
    };
    let s6 = (sigma / r).powi(6);
    let de = 4.0 * eps * (-12.0 * s6 * s6 + 6.0 * s6) / r;
    (f(r) - f(rc), de)
}

/// Energy and forces of a structure under LJ with element-dependent sigma.
pub fn label(s: &Structure) -> (f64, Vec<[f64; 3]>) {
    let rc = 4.0;
    let nl = neighbor_list(s, rc).unwrap();
    let vecs = nl.edge_vectors(s);
    let mut e = 0.0;
    let mut f = vec![[0.0; 3]; s.len()];
    for (k, r) in vecs.iter().enumerate() {
        let (i, j) = (nl.centers[k], nl.neighbors[k]);
        let sigma = 1.9 + 0.02 * ((s.numbers[i] + s.numbers[j]) % 7) as f64;
        let d = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
        let (u, du) = lj(d, 0.05, sigma, rc);
        e += 0.5 * u;
        for c in 0..3 {
            f[i][c] += du * r[c] / d;
        }
    }
    (e, f)
}

/// The LJ stress of a periodic structure (ASE's sign, eV/Angstrom^3, 3x3 row-major):
/// `Σ_e r_e ⊗ dE/dr_e / V`, i.e. `-W/V` with the engine's virial.
pub fn lj_stress(s: &Structure) -> [f64; 9] {
    let rc = 4.0;
    let nl = neighbor_list(s, rc).unwrap();
    let vecs = nl.edge_vectors(s);
    let c = s.cell;
    let v = (c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
        - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
        + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]))
        .abs();
    let mut st = [0.0; 9];
    for (k, r) in vecs.iter().enumerate() {
        let (i, j) = (nl.centers[k], nl.neighbors[k]);
        let sigma = 1.9 + 0.02 * ((s.numbers[i] + s.numbers[j]) % 7) as f64;
        let d = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
        let (_, du) = lj(d, 0.05, sigma, rc);
        for a in 0..3 {
            for b in 0..3 {
                st[3 * a + b] += r[a] * 0.5 * du * r[b] / d / v;
            }
        }
    }
    st
}

/// [`metal_frames`] with their LJ stress (bulk: periodic in 3D), strained by up to ±3 % so the
/// stress varies.
pub fn bulk_frames(n: usize, seed: u64) -> Vec<Frame> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    metal_frames(n, seed)
        .into_iter()
        .map(|mut f| {
            let k = 1.0 + rng.gen_range(-0.03..0.03);
            for p in &mut f.positions {
                p.iter_mut().for_each(|x| *x *= k);
            }
            for r in &mut f.cell {
                r.iter_mut().for_each(|x| *x *= k);
            }
            let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
            let (e, fo) = label(&s);
            f.energy = Some(e - 3.5 * s.len() as f64);
            f.forces = Some(fo);
            f.stress = Some(lj_stress(&s));
            f
        })
        .collect()
}

/// Slabs: [`metal_frames`] cells with 8 Angstrom of vacuum along z, periodic in x and y only;
/// energy and forces, no stress.
pub fn slab_frames(n: usize, seed: u64) -> Vec<Frame> {
    metal_frames(n, seed)
        .into_iter()
        .map(|mut f| {
            f.cell[2][2] += 8.0;
            f.pbc = [true, true, false];
            let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
            let (e, fo) = label(&s);
            f.energy = Some(e - 3.5 * s.len() as f64);
            f.forces = Some(fo);
            f.stress = None;
            f
        })
        .collect()
}

/// Periodic 8-atom cells of two metals (Z 28 and 29), rattled; energy, forces (and stress: none).
pub fn metal_frames(n: usize, seed: u64) -> Vec<Frame> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let a = 2.6 + rng.gen_range(-0.05..0.05);
            let mut pos = Vec::new();
            let mut numbers = Vec::new();
            for x in 0..2 {
                for y in 0..2 {
                    for z in 0..2 {
                        pos.push([
                            x as f64 * a + rng.gen_range(-0.12..0.12),
                            y as f64 * a + rng.gen_range(-0.12..0.12),
                            z as f64 * a + rng.gen_range(-0.12..0.12),
                        ]);
                        numbers.push(if rng.gen_bool(0.5) { 28 } else { 29 });
                    }
                }
            }
            let cell = [
                [2.0 * a, 0.0, 0.0],
                [0.0, 2.0 * a, 0.0],
                [0.0, 0.0, 2.0 * a],
            ];
            let s = Structure::new(pos.clone(), numbers.clone(), cell, [true; 3]).unwrap();
            let (e, f) = label(&s);
            Frame {
                numbers,
                positions: pos,
                cell,
                pbc: [true; 3],
                energy: Some(e - 3.5 * s.len() as f64),
                forces: Some(f),
                ..Default::default()
            }
        })
        .collect()
}

/// Small molecules (3-5 atoms of H, C, O) in vacuum: energy, forces, a `gap` and per-atom `charge`.
pub fn molecule_frames(n: usize, seed: u64) -> Vec<Frame> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let k = rng.gen_range(3..6);
            let mut pos: Vec<[f64; 3]> = Vec::new();
            while pos.len() < k {
                let p = [
                    rng.gen_range(0.0..3.0),
                    rng.gen_range(0.0..3.0),
                    rng.gen_range(0.0..3.0),
                ];
                if pos
                    .iter()
                    .all(|q| (0..3).map(|c| (p[c] - q[c]).powi(2)).sum::<f64>() > 1.8 * 1.8)
                {
                    pos.push(p);
                }
            }
            let numbers: Vec<i32> = (0..k).map(|_| [1, 6, 8][rng.gen_range(0..3)]).collect();
            let s = Structure::molecule(pos.clone(), numbers.clone()).unwrap();
            let (e, f) = label(&s);
            let gap = 4.0 + 0.3 * numbers.iter().filter(|&&z| z == 8).count() as f64 + 0.1 * e;
            let charge: Vec<f64> = numbers
                .iter()
                .map(|&z| 0.1 * (z as f64 - 5.0) / 3.0)
                .collect();
            let mut scalars = BTreeMap::new();
            scalars.insert("gap".to_string(), gap);
            let mut atom_props = BTreeMap::new();
            atom_props.insert(
                "charge".to_string(),
                AtomProp {
                    width: 1,
                    values: charge,
                },
            );
            Frame {
                numbers,
                positions: pos,
                energy: Some(e - 1.0 * k as f64),
                forces: Some(f),
                scalars,
                atom_props,
                ..Default::default()
            }
        })
        .collect()
}

/// Writes frames as extxyz and ingests them (train/val/test files) into `dir/<name>.bp`.
pub fn dataset(dir: &Path, name: &str, train: &[Frame], val: &[Frame], test: &[Frame]) -> PathBuf {
    let mut inputs = Vec::new();
    for (split, frames, spec) in [
        ("train", train, SplitSpec::Train),
        ("val", val, SplitSpec::Val),
        ("test", test, SplitSpec::Test),
    ] {
        if frames.is_empty() {
            continue;
        }
        let p = dir.join(format!("{name}_{split}.xyz"));
        write_extxyz(&p, frames).unwrap();
        inputs.push((p, spec));
    }
    let out = dir.join(format!("{name}.bp"));
    ingest(&inputs, &out, name, &IngestOptions::default()).unwrap();
    out
}

/// The metals-like dataset of the tests (`n_train` + `n_val` graphs).
pub fn metals(dir: &Path, n_train: usize, n_val: usize) -> PathBuf {
    let f = metal_frames(n_train + n_val, 7);
    dataset(dir, "metals", &f[..n_train], &f[n_train..], &[])
}

/// The molecules-like dataset of the tests.
pub fn molecules(dir: &Path, n_train: usize, n_val: usize) -> PathBuf {
    let f = molecule_frames(n_train + n_val, 11);
    dataset(dir, "molecules", &f[..n_train], &f[n_train..], &[])
}

/// A small training config over `datasets` ((name, path, outputs) each).
pub fn config(
    datasets: &[(&str, &Path, Option<&[&str]>)],
    outputs: &[(&str, &str)],
    training: serde_json::Value,
) -> serde_json::Value {
    let ds: Vec<serde_json::Value> = datasets
        .iter()
        .map(|(n, p, o)| {
            let mut v = serde_json::json!({"name": n, "path": p});
            if let Some(o) = o {
                v["output_names"] = serde_json::json!(o);
            }
            v
        })
        .collect();
    let mut t = serde_json::json!({
        "num_epoch": 2, "batch_size": 4, "seed": 1, "compute_grad_energy": true,
        "Optimizer": {"type": "AdamW", "learning_rate": 0.005},
    });
    for (k, v) in training.as_object().unwrap() {
        t[k] = v.clone();
    }
    serde_json::json!({
        "Verbosity": {"level": 0},
        "Dataset": {"name": "test", "datasets": ds},
        "NeuralNetwork": {
            "Architecture": {
                "mpnn_type": "SchNet", "radius": 3.5, "hidden_dim": 8, "num_conv_layers": 1, "num_radial": 8,
                "output_heads": {"graph": {"num_headlayers": 1, "dim_headlayers": [8]}, "node": {"num_headlayers": 1, "dim_headlayers": [8]}},
                "energy_weight": 1.0, "force_weight": 10.0
            },
            "Variables_of_interest": {
                "output_names": outputs.iter().map(|o| o.0).collect::<Vec<_>>(),
                "type": outputs.iter().map(|o| o.1).collect::<Vec<_>>()
            },
            "Training": t
        }
    })
}

/// Writes a config to `dir/name`.
pub fn write_config(dir: &Path, name: &str, c: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(c).unwrap()).unwrap();
    p
}

/// Column `col` of steps.csv by step (5: the loss, 6: the learning rate).
fn steps_column(out: &Path, col: usize) -> Vec<(usize, f64)> {
    let text = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0].parse().unwrap(), c[col].parse().unwrap())
        })
        .collect()
}

/// The losses of steps.csv (step -> loss).
pub fn step_losses(out: &Path) -> Vec<(usize, f64)> {
    steps_column(out, 5)
}

/// The learning rate each step ran at, from steps.csv (step -> rate).
pub fn step_lrs(out: &Path) -> Vec<(usize, f64)> {
    steps_column(out, 6)
}

/// `hydragnn train` as a library call on one process: the config file, the output directory,
/// --resume.
pub fn run_train(cfg_path: &Path, out: &Path, resume: bool) -> hydragnn_train::TrainSummary {
    let cfg = hydragnn_train::TrainConfig::load(cfg_path).unwrap();
    hydragnn_train::train(
        &cfg,
        hydragnn_train::TrainOptions {
            out_dir: out.to_path_buf(),
            resume,
            command: "test".into(),
        },
        &hydragnn_train::Dist::single(),
    )
    .unwrap()
}

/// The `hydragnn` binary built for this test profile.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hydragnn"))
}

/// The venv's mpirun, if the project's environment has one.
pub fn mpirun() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = std::env::var_os("HYDRAGNN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let venv = if venv.is_absolute() {
        venv
    } else {
        root.join(venv)
    };
    let p = venv.join("bin").join("mpirun");
    p.exists().then_some(p)
}
