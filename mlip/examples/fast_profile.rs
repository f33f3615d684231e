//! Profiling driver for the fast path (not a benchmark): repeated energy + force calls on a
//! 4,000-atom fcc Cu crystal with a random 64×3 model. Usage:
//! `fast_profile [schnet|painn] [f32|f64] [calls] [model file]` or `fast_profile molecules`, e.g. under `perf record -g`.

use mlip::model::config::{ModelConfig, MpnnType};
use mlip::{Model, Request, Structure};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(|s| s.as_str()) == Some("molecules") {
        return molecules();
    }
    let mpnn = if args.get(1).map(|s| s.as_str()) == Some("painn") {
        MpnnType::PaiNN
    } else {
        MpnnType::SchNet
    };
    let kind = if args.get(2).map(|s| s.as_str()) == Some("f64") {
        tch::Kind::Double
    } else {
        tch::Kind::Float
    };
    let calls: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    tch::set_num_threads(1);
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
    .unwrap()
    .supercell([10, 10, 10]);
    let mut c = ModelConfig::small(mpnn, vec![29], 5.0);
    c.hidden_dim = 64;
    c.num_conv_layers = 3;
    let mut m = match args.get(4) {
        Some(path) => Model::load(path, kind, tch::Device::Cpu).unwrap(),
        None => Model::new(c, kind, tch::Device::Cpu, 1).unwrap(),
    };
    println!(
        "{}",
        m.enable_fast(mlip::fast::DEFAULT_TOLERANCE)
            .unwrap()
            .describe()
    );
    let t = std::time::Instant::now();
    for _ in 0..calls {
        std::hint::black_box(
            m.compute(
                &s,
                Request {
                    forces: true,
                    ..Request::ENERGY
                },
            )
            .unwrap(),
        );
    }
    println!(
        "{mpnn:?} {kind:?}: {:.1} µs/atom per call",
        t.elapsed().as_secs_f64() * 1e6 / calls as f64 / s.len() as f64
    );
}

/// Screening-like workload: 2,000 calls on 18-atom molecules (fast path, float64).
fn molecules() {
    tch::set_num_threads(1);
    let pos: Vec<[f64; 3]> = (0..18)
        .map(|i| {
            [
                1.1 * (i % 3) as f64,
                1.2 * ((i / 3) % 3) as f64,
                1.3 * (i / 9) as f64,
            ]
        })
        .collect();
    let z = (0..18).map(|i| [6, 1, 8][i % 3]).collect();
    let s = Structure::molecule(pos, z).unwrap();
    let mut c = ModelConfig::small(MpnnType::SchNet, vec![1, 6, 8], 5.0);
    c.hidden_dim = 64;
    c.num_conv_layers = 3;
    let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, 1).unwrap();
    m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
    let req = Request {
        forces: true,
        ..Request::ENERGY
    };
    let t = std::time::Instant::now();
    for _ in 0..2000 {
        std::hint::black_box(m.compute(&s, req).unwrap());
    }
    println!(
        "one by one: {:.0} structures/s",
        2000.0 / t.elapsed().as_secs_f64()
    );
    let batch = vec![s.clone(); 32];
    let t = std::time::Instant::now();
    for _ in 0..2000 / 32 {
        std::hint::black_box(m.compute_batch(&batch, req).unwrap());
    }
    println!(
        "batches of 32: {:.0} structures/s",
        2000.0 / t.elapsed().as_secs_f64()
    );
    let big = vec![s.clone(); 256];
    std::hint::black_box(m.compute_batch(&big, req).unwrap());
    let t = std::time::Instant::now();
    for _ in 0..2000 {
        std::hint::black_box(m.compute(&s, req).unwrap());
    }
    println!(
        "one by one after a batch of 256: {:.0} structures/s",
        2000.0 / t.elapsed().as_secs_f64()
    );
}
