//! Per-element reference energies: the least-squares fit recovers known energies on synthetic
//! data, handles collinear compositions, and ingestion fits on the trainset only.

use std::path::PathBuf;

use hydragnn_train::data::{
    fit_reference_energies, ingest, write_extxyz, Dataset, Frame, IngestOptions, SplitSpec,
};
use rand::{Rng, SeedableRng};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("hydragnn-data-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const TRUE: [(i32, f64); 5] = [
    (1, -13.6),
    (6, -1029.8),
    (7, -1485.3),
    (8, -2041.0),
    (29, -3.5),
];

/// Random compositions with energies `Σ n_Z e_Z + noise`.
fn synthetic(n: usize, noise: f64, seed: u64) -> (Vec<Vec<i32>>, Vec<f64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut numbers = Vec::new();
    let mut energies = Vec::new();
    for _ in 0..n {
        let atoms: Vec<i32> = (0..rng.gen_range(1..30))
            .map(|_| TRUE[rng.gen_range(0..TRUE.len())].0)
            .collect();
        let e: f64 = atoms
            .iter()
            .map(|z| TRUE.iter().find(|t| t.0 == *z).unwrap().1)
            .sum();
        energies.push(e + noise * (rng.gen::<f64>() - 0.5));
        numbers.push(atoms);
    }
    (numbers, energies)
}

#[test]
fn fit_recovers_known_energies() {
    let (numbers, energies) = synthetic(200, 0.0, 1);
    let fit = fit_reference_energies(numbers.iter().map(Vec::as_slice), &energies).unwrap();
    assert_eq!(fit.elements, vec![1, 6, 7, 8, 29]);
    assert_eq!(fit.rank, 5);
    for (z, e) in TRUE {
        assert!((fit.of(z) - e).abs() < 1e-9, "Z={z}: {} vs {e}", fit.of(z));
    }
    assert!(fit.rmse < 1e-9);
    assert_eq!(fit.of(92), 0.0);
    assert!((fit.total(&[1, 1, 8]) - (2.0 * -13.6 - 2041.0)).abs() < 1e-9);

    // With noise of +-0.05 eV per structure, the estimates stay within a few meV.
    let (numbers, energies) = synthetic(2000, 0.1, 2);
    let fit = fit_reference_energies(numbers.iter().map(Vec::as_slice), &energies).unwrap();
    for (z, e) in TRUE {
        assert!((fit.of(z) - e).abs() < 5e-3, "Z={z}: {} vs {e}", fit.of(z));
    }
    assert!(
        (fit.rmse - 0.1 / 12f64.sqrt()).abs() < 0.01,
        "rmse {}",
        fit.rmse
    );
}

#[test]
fn collinear_compositions_give_the_minimum_norm_solution() {
    // Every structure is (CH4)_k: only e_C + 4 e_H is determined.
    let numbers: Vec<Vec<i32>> = (1..6).map(|k| [6, 1, 1, 1, 1].repeat(k)).collect();
    let energies: Vec<f64> = (1..6).map(|k| k as f64 * -24.0).collect();
    let fit = fit_reference_energies(numbers.iter().map(Vec::as_slice), &energies).unwrap();
    assert_eq!(fit.rank, 1);
    assert!(fit.rmse < 1e-9);
    assert!((fit.of(6) + 4.0 * fit.of(1) + 24.0).abs() < 1e-9);
    // Minimum norm: (e_H, e_C) parallel to (4, 1).
    assert!((fit.of(1) - 4.0 * fit.of(6)).abs() < 1e-9);
}

#[test]
fn fit_errors() {
    assert!(fit_reference_energies(std::iter::empty(), &[]).is_err());
    let n = [vec![1]];
    assert!(fit_reference_energies(n.iter().map(Vec::as_slice), &[1.0, 2.0]).is_err());
}

#[test]
fn ingest_fits_on_the_trainset_only() {
    let dir = scratch("refenergy-ingest");
    let (numbers, energies) = synthetic(60, 0.0, 3);
    let frame = |n: &Vec<i32>, e: f64, shift: f64| Frame {
        numbers: n.clone(),
        positions: (0..n.len()).map(|i| [i as f64 * 1.5, 0.0, 0.0]).collect(),
        energy: Some(e + shift),
        forces: Some(vec![[0.0; 3]; n.len()]),
        ..Default::default()
    };
    let train: Vec<Frame> = numbers[..40]
        .iter()
        .zip(&energies[..40])
        .map(|(n, &e)| frame(n, e, 0.0))
        .collect();
    // Validation energies far off: they must not move the fit.
    let val: Vec<Frame> = numbers[40..]
        .iter()
        .zip(&energies[40..])
        .map(|(n, &e)| frame(n, e, 1000.0))
        .collect();
    write_extxyz(dir.join("train.xyz"), &train).unwrap();
    write_extxyz(dir.join("val.xyz"), &val).unwrap();
    let out = dir.join("syn.bp");
    let inputs = vec![
        (dir.join("train.xyz"), SplitSpec::Train),
        (dir.join("val.xyz"), SplitSpec::Val),
    ];
    let s = ingest(&inputs, &out, "synthetic", &IngestOptions::default()).unwrap();
    let fit = s.reference.unwrap();
    assert!(fit.rmse < 1e-9);
    let ds = Dataset::open(&out).unwrap();
    for (z, e) in TRUE {
        assert!((ds.meta().reference_energy(z) - e).abs() < 1e-9, "Z={z}");
    }
    assert_eq!(ds.meta().n_graphs("testset"), 0);
    assert_eq!(
        ds.split("testset").unwrap().read_graphs(0..0).unwrap(),
        vec![]
    );
}
