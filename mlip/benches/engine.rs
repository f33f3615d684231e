//! Engine benchmark (not a timed test): energy + forces time per atom for a 4,000-atom fcc copper
//! crystal and a 20-atom molecule, per backbone, in float32 and float64, with the neighbour-list
//! time reported separately. Run: `cargo bench -p mlip --bench engine` (after `. scripts/env.sh`).
//! Models: hidden_dim 64, 3 layers, cutoff 5 Å, random weights (timing does not depend on them).

use std::time::Instant;

use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn fcc_cu(n: usize) -> Structure {
    let a = 3.61;
    let basis = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]];
    let pos = basis.iter().map(|b| [b[0] * a, b[1] * a, b[2] * a]).collect();
    let s = Structure::new(pos, vec![29; 4], [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]], [true; 3]).unwrap();
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

fn main() {
    let threads = std::env::var("HYDRAGNN_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    tch::set_num_threads(threads);
    let rc = 5.0;
    let crystal = fcc_cu(10);
    let mol = molecule();
    println!("hydragnn-rs engine benchmark: libtorch threads = {threads}, cutoff {rc} Å, hidden_dim 64, 3 layers");
    for (name, s, reps) in [("Cu fcc 4000 atoms", &crystal, 3usize), ("molecule 20 atoms", &mol, 50)] {
        let t_nl = time(reps, || {
            std::hint::black_box(mlip::neighbors::neighbor_list(s, rc).unwrap());
        });
        let nl = mlip::neighbors::neighbor_list(s, rc).unwrap();
        println!("\n{name}: {} edges; neighbour list {:.3} ms ({:.3} µs/atom)", nl.len(), t_nl * 1e3, t_nl * 1e6 / s.len() as f64);
        println!("{:<8} {:<8} {:>14} {:>16} {:>12}", "model", "dtype", "E+F ms/call", "E+F µs/atom", "NL share");
        for mpnn in [MpnnType::SchNet, MpnnType::PaiNN] {
            for (dname, kind) in [("float32", tch::Kind::Float), ("float64", tch::Kind::Double)] {
                let mut c = ModelConfig::small(mpnn, vec![29], rc);
                c.hidden_dim = 64;
                c.num_conv_layers = 3;
                let m = Model::new(c, kind, tch::Device::Cpu, 1).unwrap();
                let t = time(reps, || {
                    std::hint::black_box(m.compute(s, Request { forces: true, ..Request::ENERGY }).unwrap());
                });
                println!(
                    "{:<8} {:<8} {:>14.3} {:>16.3} {:>11.1}%",
                    format!("{mpnn:?}"),
                    dname,
                    t * 1e3,
                    t * 1e6 / s.len() as f64,
                    100.0 * t_nl / t
                );
            }
        }
    }
}
