//! Trainer benchmark, printed in one run (`benchmarks/train_bench.sh`, or
//! `cargo bench -p hydragnn-train --bench train_bench -- [DATASET.bp] [--steps N] [--batch B]`):
//!
//! 1. ADIOS2 read throughput: the trainset read in batches of B graphs, one slice read per array.
//! 2. The same graphs stored one file per graph (a small binary file each: header, numbers,
//!    positions, cell, energy, forces, the way per-graph pickle/`.pt` datasets are laid out), read
//!    back file by file; the ratio ADIOS/per-file.
//! 3. Training throughput with energy + autograd forces in the loss (forward, force by autograd
//!    with create_graph, double backward, AdamW step): structures/s and atoms/s, for the
//!    metals example architecture (SchNet, hidden 64, 3 layers, cutoff 5 A), with the CPU time
//!    per step (user and system), which a loaded machine distorts less than the wall time.
//!    `--default-malloc` keeps glibc's allocator defaults ([`hydragnn_train::malloc`]).
//!
//! Without a dataset argument it ingests the committed slice train/data/metals.xyz into a
//! temporary directory first. Threads: `HYDRAGNN_NUM_THREADS` (default: libtorch's).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hydragnn_train::data::{Dataset, FrameBlock};
use hydragnn_train::graphs::{collate, Graph, GraphSpec};
use hydragnn_train::metrics::{batch_loss, predict};
use hydragnn_train::optim::AdamW;
use hydragnn_train::trainer::{new_model, plan_model};
use hydragnn_train::TrainConfig;
use tch::{Device, Kind};

fn write_graph_file(path: &Path, b: &FrameBlock, i: usize) {
    let a = b.atoms_of(i);
    let mut buf: Vec<u8> = Vec::new();
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    for z in &b.numbers[a.clone()] {
        buf.extend_from_slice(&z.to_le_bytes());
    }
    let f64s = |buf: &mut Vec<u8>, v: &[f64]| {
        v.iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()))
    };
    f64s(&mut buf, &b.positions[3 * a.start..3 * a.end]);
    f64s(&mut buf, &b.cell[9 * i..9 * i + 9]);
    buf.extend(b.pbc[3 * i..3 * i + 3].iter().map(|&p| u8::from(p)));
    f64s(&mut buf, &[b.energy.as_ref().map_or(0.0, |e| e[i])]);
    if let Some(f) = &b.forces {
        f64s(&mut buf, &f[3 * a.start..3 * a.end]);
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&buf))
        .expect("write graph file");
}

/// Reads one graph file back into arrays (what a per-graph dataset loader does).
fn read_graph_file(path: &Path) -> (Vec<i32>, Vec<f64>, usize) {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .expect("read graph file");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut off = 8;
    let numbers: Vec<i32> = (0..n)
        .map(|k| i32::from_le_bytes(bytes[off + 4 * k..off + 4 * k + 4].try_into().unwrap()))
        .collect();
    off += 4 * n;
    let rest = &bytes[off..];
    let floats: Vec<f64> = rest
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (numbers, floats, n)
}

/// This process's (user, system) CPU seconds from /proc/self/stat (Linux; clock ticks of 10 ms).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (tick(11), tick(12))
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // --default-malloc: glibc's defaults, to measure what retain_freed_memory saves.
    if !args.iter().any(|a| a == "--default-malloc") {
        hydragnn_train::malloc::retain_freed_memory();
    }
    args.retain(|a| a != "--default-malloc");
    let mut opt = |name: &str, default: usize| -> usize {
        match args.iter().position(|a| a == name) {
            Some(i) => {
                let v = args[i + 1].parse().expect("a number");
                args.drain(i..i + 2);
                v
            }
            None => default,
        }
    };
    let steps = opt("--steps", 20);
    let batch = opt("--batch", 8);
    mlip::compute::threads_from_env().expect("HYDRAGNN_NUM_THREADS");
    let tmp = std::env::temp_dir().join(format!("hydragnn_bench_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let data: PathBuf = common::dataset(args.first(), &tmp);
    println!(
        "dataset {} | libtorch threads {} | batch {batch}",
        data.display(),
        tch::get_num_threads()
    );

    // 1. ADIOS2 slice reads.
    let ds = Dataset::open(&data).expect("open dataset");
    let sr = ds.split("trainset").expect("trainset");
    let n = sr.n_graphs();
    let reps = (20000 / n.max(1)).max(1);
    let t0 = Instant::now();
    let mut atoms = 0usize;
    for _ in 0..reps {
        let mut s = 0;
        while s < n {
            let e = (s + batch).min(n);
            atoms += sr.read_block(s..e).expect("read").total_atoms();
            s = e;
        }
    }
    let adios = (reps * n) as f64 / t0.elapsed().as_secs_f64();
    println!("ADIOS2 read:          {adios:10.0} graphs/s ({} graphs x {reps}, batches of {batch}, {atoms} atoms)", n);

    // 2. One file per graph.
    let all = sr.read_block(0..n).expect("read all");
    let dir = tmp.join("per_graph");
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("{i}.bin"))).collect();
    for (i, f) in files.iter().enumerate() {
        write_graph_file(f, &all, i);
    }
    let t0 = Instant::now();
    let mut check = 0usize;
    for _ in 0..reps {
        for f in &files {
            check += read_graph_file(f).2;
        }
    }
    let per_file = (reps * n) as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(check, atoms);
    println!("one file per graph:   {per_file:10.0} graphs/s");
    println!("ratio ADIOS2 / per-file read: {:.2}x", adios / per_file);

    // 3. Training throughput, energy + autograd forces.
    let cfg_text = serde_json::json!({
        "Verbosity": {"level": 0},
        "Dataset": {"name": "bench", "datasets": [{"name": "metals", "path": data}]},
        "NeuralNetwork": {
            "Architecture": {"mpnn_type": "SchNet", "radius": 5.0, "hidden_dim": 64, "num_conv_layers": 3, "num_radial": 32,
                              "activation_function": "ssp", "output_heads": {"graph": {"num_headlayers": 1, "dim_headlayers": [32]}}},
            "Variables_of_interest": {"output_names": ["energy"], "type": ["graph"]},
            "Training": {"num_epoch": 1, "batch_size": batch, "compute_grad_energy": true, "Optimizer": {"learning_rate": 0.001}}
        }
    })
    .to_string();
    let cfg = TrainConfig::parse(&cfg_text, &tmp.join("bench.json")).expect("config");
    let (mc, metas) = plan_model(&cfg).expect("plan");
    let spec = metas[0].1.clone();
    let model = new_model(mc.clone(), Kind::Float, Device::Cpu, 0).expect("model");
    let gs = GraphSpec::new(mc.radius, &mc.species, false);
    let t0 = Instant::now();
    let graphs: Vec<Graph> = gs.graphs_of_block(&all, "bench").expect("graphs");
    let nl_secs = t0.elapsed().as_secs_f64();
    let edges: usize = graphs.iter().map(|g| g.src.len()).sum();
    println!(
        "neighbour lists:      {:10.0} graphs/s ({:.1} edges per atom)",
        n as f64 / nl_secs,
        edges as f64 / all.total_atoms() as f64
    );
    let mut opt = AdamW::new(model.var_store(), &cfg.training().optimizer);
    let mut run = |k: usize| -> usize {
        let s = (k * batch) % n.saturating_sub(batch).max(1);
        let part: Vec<&Graph> = graphs[s..(s + batch).min(n)].iter().collect();
        let atoms: usize = part.iter().map(|g| g.n_atoms()).sum();
        opt.zero_grad();
        let c = collate(&part, &[], &[], Kind::Float, Device::Cpu, true);
        let p = predict(&model, &spec, &c, true).expect("predict");
        let l = batch_loss(
            &spec,
            &p,
            &c,
            hydragnn_train::config::LossType::Mse,
            part.len() as f64,
            atoms as f64,
        );
        l.backward();
        opt.step(|_| true);
        atoms
    };
    for k in 0..3 {
        run(k);
    }
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let mut atoms = 0;
    for k in 0..steps {
        atoms += run(k + 3);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (user, sys) = cpu_seconds();
    let (user, sys) = (user - c0.0, sys - c0.1);
    println!(
        "training (E+F autograd, SchNet 64x3, rc 5 A): {:8.1} structures/s {:9.0} atoms/s ({steps} steps of {batch}, {:.3} s/step)",
        (steps * batch) as f64 / secs,
        atoms as f64 / secs,
        secs / steps as f64
    );
    // CPU time is what a loaded, shared machine does not distort much: compare these across runs.
    println!(
        "  CPU time per step: {:.3} s user + {:.3} s system (kernel: page faults, zeroing); {:.0} atoms per CPU-second",
        user / steps as f64,
        sys / steps as f64,
        atoms as f64 / (user + sys)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
