//! Engine benchmark (not a timed test): energy + forces time per atom for a 4,000-atom fcc copper
//! crystal and a 20-atom molecule, per backbone, in float32 and float64, with the neighbour-list
//! time reported separately. Run: `cargo bench -p mlip --bench engine` (after `. scripts/env.sh`).
//! Models: hidden_dim 64, 3 layers, cutoff 5 Å, random weights (timing does not depend on them).

use std::time::Instant;

use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn fcc_cu(n: usize) -> Structure {
    let a = 3.61;
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    let pos = basis
        .iter()
        .map(|b| [b[0] * a, b[1] * a, b[2] * a])
        .collect();
    let s = Structure::new(
        pos,
        vec![29; 4],
        [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
        [true; 3],
    )
    .unwrap();
    let mut s = s.supercell([n, n, n]);
    // a small deterministic rattle so forces are not zero by symmetry
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.01 * ((i * 7 % 13) as f64 / 13.0 - 0.5);
        p[1] += 0.01 * ((i * 5 % 11) as f64 / 11.0 - 0.5);
    }
    s
}

fn molecule() -> Structure {
    // a 20-atom chain-like molecule of Cu atoms 2.3 Å apart on a helix (element does not matter for timing)
    let pos = (0..20).map(|i| {
        let t = i as f64 * 0.9;
        [2.0 * t.cos(), 2.0 * t.sin(), 0.6 * i as f64]
    });
    Structure::molecule(pos.collect(), vec![29; 20]).unwrap()
}

/// Median wall time (s) of `reps` runs after one warm-up.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// One core's FMA peak in multiply-adds per second, from the clock in /proc/cpuinfo and the
/// vector width the kernels use (AVX2 + FMA: 2 FMA pipes × 8 f32 or 4 f64 lanes).
fn peak_fma(kind: tch::Kind) -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    let lanes = if kind == tch::Kind::Float { 16.0 } else { 8.0 };
    Some(mhz * 1e6 * lanes)
}

fn main() {
    let threads = std::env::var("HYDRAGNN_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);
    let rc = 5.0;
    let quick = std::env::var("HYDRAGNN_BENCH_QUICK").is_ok();
    let crystal = fcc_cu(if quick { 6 } else { 10 });
    let mol = molecule();
    println!("hydragnn-rs engine benchmark: libtorch threads = {threads}, cutoff {rc} Å, hidden_dim 64, 3 layers");
    println!("exact = libtorch autograd; fast = tabulated radial filters (tolerance {:e}) + fused kernels", mlip::fast::DEFAULT_TOLERANCE);
    for (name, s, reps) in [
        (format!("Cu fcc {} atoms", crystal.len()), &crystal, 3usize),
        ("molecule 20 atoms".to_string(), &mol, 50),
    ] {
        let t_nl = time(reps, || {
            std::hint::black_box(mlip::neighbors::neighbor_list(s, rc).unwrap());
        });
        let nl = mlip::neighbors::neighbor_list(s, rc).unwrap();
        println!(
            "\n{name}: {} edges; neighbour list {:.3} ms ({:.3} µs/atom)",
            nl.len(),
            t_nl * 1e3,
            t_nl * 1e6 / s.len() as f64
        );
        println!(
            "{:<8} {:<8} {:<6} {:>12} {:>12} {:>9} {:>14} {:>10}",
            "model", "dtype", "path", "ms/call", "µs/atom", "speedup", "kFMA/atom", "% peak"
        );
        for mpnn in [MpnnType::SchNet, MpnnType::PaiNN] {
            for (dname, kind) in [
                ("float32", tch::Kind::Float),
                ("float64", tch::Kind::Double),
            ] {
                let mut c = ModelConfig::small(mpnn, vec![29], rc);
                c.hidden_dim = 64;
                c.num_conv_layers = 3;
                let mut m = Model::new(c, kind, tch::Device::Cpu, 1).unwrap();
                let req = Request {
                    forces: true,
                    ..Request::ENERGY
                };
                let t_exact = time(if s.len() > 1000 { 1 } else { reps }, || {
                    std::hint::black_box(m.compute(s, req).unwrap());
                });
                println!(
                    "{:<8} {:<8} {:<6} {:>12.3} {:>12.3} {:>9} {:>14} {:>10}",
                    format!("{mpnn:?}"),
                    dname,
                    "exact",
                    t_exact * 1e3,
                    t_exact * 1e6 / s.len() as f64,
                    "1.0x",
                    "",
                    ""
                );
                let info = m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
                let t = time(reps, || {
                    std::hint::black_box(m.compute(s, req).unwrap());
                });
                let fma = (info.flops_per_edge * nl.len() + info.flops_per_node * s.len()) as f64;
                let peak = peak_fma(kind)
                    .map(|p| format!("{:.1}%", 100.0 * fma / t / p))
                    .unwrap_or_default();
                println!(
                    "{:<8} {:<8} {:<6} {:>12.3} {:>12.3} {:>8.1}x {:>14.0} {:>10}",
                    format!("{mpnn:?}"),
                    dname,
                    "fast",
                    t * 1e3,
                    t * 1e6 / s.len() as f64,
                    t_exact / t,
                    fma / s.len() as f64 / 1e3,
                    peak
                );
            }
        }
    }
    screening();
}

/// Batched screening of QM9-sized molecules (18 atoms: C, H, O in a random cluster), structures/s
/// one by one and in batches, exact and fast path, float64.
fn screening() {
    let n_mol = 256;
    let mols: Vec<Structure> = (0..n_mol)
        .map(|k| {
            let mut pos: Vec<[f64; 3]> = Vec::new();
            let mut x = 12345u64 + k as u64;
            let mut rnd = || {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            };
            while pos.len() < 18 {
                let p = [4.0 * rnd(), 4.0 * rnd(), 4.0 * rnd()];
                if pos.iter().all(|q| {
                    ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2) + (q[2] - p[2]).powi(2)).sqrt()
                        > 1.0
                }) {
                    pos.push(p);
                }
            }
            let z = (0..18).map(|i| [6, 1, 1, 8, 6, 1][i % 6]).collect();
            Structure::molecule(pos, z).unwrap()
        })
        .collect();
    println!("\nscreening {n_mol} molecules of 18 atoms (C, H, O), energy + forces, float64, cutoff 5 Å, 1 thread");
    println!(
        "{:<8} {:<6} {:>16} {:>16} {:>16}",
        "model", "path", "one by one /s", "batch 32 /s", "batch 256 /s"
    );
    for mpnn in [MpnnType::SchNet, MpnnType::PaiNN] {
        let mut c = ModelConfig::small(mpnn, vec![1, 6, 8], 5.0);
        c.hidden_dim = 64;
        c.num_conv_layers = 3;
        let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, 1).unwrap();
        for path in ["exact", "fast"] {
            if path == "fast" {
                m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
            }
            let req = Request {
                forces: true,
                ..Request::ENERGY
            };
            let one = time(3, || {
                for s in &mols {
                    std::hint::black_box(m.compute(s, req).unwrap());
                }
            });
            let b32 = time(3, || {
                for chunk in mols.chunks(32) {
                    std::hint::black_box(m.compute_batch(chunk, req).unwrap());
                }
            });
            let b256 = time(3, || {
                std::hint::black_box(m.compute_batch(&mols, req).unwrap());
            });
            let r = |t: f64| n_mol as f64 / t;
            println!(
                "{:<8} {:<6} {:>16.0} {:>16.0} {:>16.0}",
                format!("{mpnn:?}"),
                path,
                r(one),
                r(b32),
                r(b256)
            );
        }
    }
}
