//! The cost of an ensemble: K members evaluated in one call (one neighbour list shared) against K
//! separate evaluations of the same members, energy + forces + virial, best of `reps`:
//! `cargo run --release -p mlip --example ensemble_cost -- [K] [cells] [reps] [exact]`
//! (defaults 4 members, fcc Cu 6×6×6 = 864 atoms, 5 repetitions, the fast path). Prints the
//! times and the ratio; also checks that both give the same numbers (1e-12).

use std::time::Instant;

use mlip::ensemble::Ensemble;
use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (k, cells, reps) = (arg(1, 4), arg(2, 6), arg(3, 5));
    let exact = a.get(4).is_some_and(|s| s == "exact");
    let members: Vec<Model> = (0..k)
        .map(|i| {
            let mut c = ModelConfig::small(MpnnType::SchNet, vec![29], 5.0);
            c.hidden_dim = 64;
            c.num_conv_layers = 3;
            let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, i as i64 + 1).unwrap();
            if !exact {
                m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
            }
            m
        })
        .collect();
    let a0 = 3.61;
    let unit = Structure::new(
        vec![
            [0.0, 0.0, 0.0],
            [0.5 * a0, 0.5 * a0, 0.0],
            [0.5 * a0, 0.0, 0.5 * a0],
            [0.0, 0.5 * a0, 0.5 * a0],
        ],
        vec![29; 4],
        [[a0, 0.0, 0.0], [0.0, a0, 0.0], [0.0, 0.0, a0]],
        [true; 3],
    )
    .unwrap();
    let mut s = unit.supercell([cells, cells, cells]);
    for (i, p) in s.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 11) as f64 / 11.0 - 0.5);
    }
    let ens = Ensemble::new(members).unwrap();
    let req = Request::EFV;
    let (mut t_one, mut t_sep) = (f64::MAX, f64::MAX);
    let mut worst: f64 = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        let r = ens.compute(&s, req).unwrap();
        t_one = t_one.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let sep: Vec<_> = ens
            .members
            .iter()
            .map(|m| m.compute(&s, req).unwrap())
            .collect();
        t_sep = t_sep.min(t.elapsed().as_secs_f64());
        for (x, y) in r.members.iter().zip(&sep) {
            worst = worst.max((x.energy - y.energy).abs() / y.energy.abs().max(1.0));
        }
    }
    assert!(
        worst <= 1e-12,
        "ensemble and separate evaluations differ: {worst:e}"
    );
    println!(
        "K = {k}, {} atoms, {} path, best of {reps}: K in one call {:.2} ms, K separate {:.2} ms, \
         ratio {:.3}",
        s.len(),
        if exact { "exact" } else { "fast" },
        1e3 * t_one,
        1e3 * t_sep,
        t_one / t_sep
    );
}
