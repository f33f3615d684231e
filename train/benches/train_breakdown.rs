//! Training throughput by backbone, with where the time of a step goes
//! (`benchmarks/train_breakdown.sh`, or
//! `cargo bench -p hydragnn-train --bench train_breakdown -- [DATASET.bp] [--steps N] [--batch B]
//! [--threads 1,2] [--models schnet,painn,egnn] [--device cpu|cuda]`; on a GPU every phase ends
//! with a device synchronisation, so each is charged its own kernels). `--models egnn-hydragnn`
//! times HydraGNN's own EGNN (ReLU inside, the distance as the only edge input, no envelope),
//! the architecture that `benchmarks/upstream_train_bench.sh` times upstream.
//!
//! For SchNet, PaiNN and EGNN, built by the trainer's own model construction (`plan_model`,
//! `new_model`) from the architecture of `examples/train/metals.json`, `metals_painn.json` and
//! `metals_egnn.json` (hidden 64, 3 layers, cutoff 5 A, graph energy head [32], energy + 10 x
//! force MSE, AdamW, clip_grad_norm 10, fp32), it runs the trainer's step on batches of B graphs
//! and times each phase separately:
//!
//! | phase | what runs |
//! | --- | --- |
//! | data | `collate` of the batch's graphs (neighbour lists are built once at load, as in the trainer) |
//! | forward | `Model::forward`: the energy |
//! | forces | `edge_forces` with `create_graph`: dE/d(edge vectors), kept differentiable |
//! | loss | `batch_loss` (energy + force terms) |
//! | backward | `loss.backward()`: the double backward into the parameters |
//! | grad sync | what the trainer does around its allreduce on one rank: gradients to one flat f64 buffer, clipped, written back (`AdamW::grads_flat`, `clip_flat`, `set_grads_flat`); the MPI allreduce itself is not here (see `--ranks` in the script) |
//! | optimizer | `AdamW::step` |
//!
//! libtorch's CPU operations are synchronous, so a wall-clock stamp between phases is exact.
//! Each phase also gets the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`: all threads, user +
//! system, nanosecond resolution), which a loaded, shared machine distorts less than wall time.
//! Printed per backbone and thread count: atoms/s (wall), atoms per CPU-second, seconds per
//! step, and each phase's share of the wall and CPU time.
//!
//! Without a dataset argument it ingests the committed slice train/data/metals.xyz into a
//! temporary directory first. Thread counts are set with `tch::set_num_threads`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use hydragnn_train::data::Dataset;
use hydragnn_train::graphs::{collate, Graph, GraphSpec};
use hydragnn_train::metrics::{batch_loss, BranchSpec, Prediction};
use hydragnn_train::optim::AdamW;
use hydragnn_train::trainer::{new_model, plan_model};
use hydragnn_train::TrainConfig;
use mlip::model::config::{Activation, Envelope, ModelConfig};
use tch::{Device, Kind};

/// The process's CPU time (all threads, user + system) in seconds.
fn cpu_now() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: std::ffi::c_int, tp: *mut Timespec) -> std::ffi::c_int;
    }
    // Linux's CLOCK_PROCESS_CPUTIME_ID.
    const CLOCK_PROCESS_CPUTIME_ID: std::ffi::c_int = 2;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on x86_64/aarch64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.sec as f64 + t.nsec as f64 * 1e-9
}

/// The phases of a step, in order.
const PHASES: [&str; 7] = [
    "data",
    "forward",
    "forces",
    "loss",
    "backward",
    "grad sync",
    "optimizer",
];

/// Wall and CPU seconds per phase, accumulated over steps.
#[derive(Default, Clone)]
struct Times {
    wall: [f64; 7],
    cpu: [f64; 7],
}

/// A stopwatch that charges the time since the last mark to a phase.
struct Lap {
    wall: Instant,
    cpu: f64,
    device: Device,
}

impl Lap {
    fn start(device: Device) -> Lap {
        Lap {
            wall: Instant::now(),
            cpu: cpu_now(),
            device,
        }
    }
    fn mark(&mut self, t: &mut Times, phase: usize) {
        // On a GPU the ops are asynchronous: wait for them, or the time lands in a later phase.
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        let (w, c) = (Instant::now(), cpu_now());
        t.wall[phase] += (w - self.wall).as_secs_f64();
        t.cpu[phase] += c - self.cpu;
        self.wall = w;
        self.cpu = c;
    }
}

/// The model named `model` (`--models`) as the trainer plans it; for `egnn-hydragnn`, HydraGNN's own
/// EGNN instead of the trainer's (upstream's `E_GCL`: ReLU inside the edge and node MLPs, the
/// plain distance as the only edge input, no cutoff envelope), the architecture that
/// `benchmarks/upstream_train_bench.py` times upstream.
fn plan(model: &str, cfg: &TrainConfig) -> (ModelConfig, BranchSpec) {
    let (mut mc, metas) = plan_model(cfg).expect("plan");
    if model == "egnn-hydragnn" {
        mc.conv_activation = Some(Activation::Relu);
        mc.envelope = Envelope::Hard;
        mc.egnn.edge_rbf = false;
        mc.validate().expect("HydraGNN's EGNN");
    }
    (mc, metas[0].1.clone())
}

/// The example config of a backbone, pointed at `data`, silent, as a parsed trainer config.
fn config_for(model: &str, data: &Path, batch: usize, tmp: &Path) -> TrainConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let file = match model {
        "schnet" => "metals.json",
        "painn" => "metals_painn.json",
        "egnn" | "egnn-hydragnn" => "metals_egnn.json",
        other => panic!("unknown model '{other}' (schnet, painn, egnn, egnn-hydragnn)"),
    };
    let path = root.join("examples/train").join(file);
    let text = std::fs::read_to_string(&path).expect("example config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["Verbosity"]["level"] = 0.into();
    v["Dataset"]["datasets"][0]["path"] = data.to_string_lossy().into_owned().into();
    v["NeuralNetwork"]["Training"]["batch_size"] = batch.into();
    TrainConfig::parse(&v.to_string(), &tmp.join(file)).expect("config")
}

/// Result of one backbone at one thread count.
struct Run {
    /// Trainable scalars: the f64 gradient buffer that the trainer allreduces holds as many.
    params: usize,
    steps: usize,
    atoms: usize,
    times: Times,
}

fn bench(
    name: &str,
    cfg: &TrainConfig,
    graphs: &[Graph],
    steps: usize,
    batch: usize,
    device: Device,
) -> Run {
    let (mc, spec) = plan(name, cfg);
    let model = new_model(mc, Kind::Float, device, 0).expect("model");
    let t = cfg.training();
    let mut opt = AdamW::new(model.var_store(), &t.optimizer);
    let clip = t.clip_grad_norm;
    let loss_type = t.loss_function_type;
    let n = graphs.len();
    let mut times = Times::default();
    let mut run = |k: usize, times: &mut Times| -> usize {
        let s = (k * batch) % n.saturating_sub(batch).max(1);
        let part: Vec<&Graph> = graphs[s..(s + batch).min(n)].iter().collect();
        let atoms: usize = part.iter().map(|g| g.n_atoms()).sum();
        let mut lap = Lap::start(device);
        opt.zero_grad();
        let c = collate(&part, &[], &[], Kind::Float, device, true);
        lap.mark(times, 0);
        let out = model.forward(&c.graph, Some(spec.branch)).expect("forward");
        lap.mark(times, 1);
        let (f, _) = mlip::compute::edge_forces(&out.energy, &c.graph, None, true).expect("forces");
        lap.mark(times, 2);
        let p = Prediction {
            energy: out.energy,
            forces: Some(f),
            stress: None,
            props: Default::default(),
        };
        let l = batch_loss(&spec, &p, &c, loss_type, part.len() as f64, atoms as f64);
        lap.mark(times, 3);
        l.backward();
        let loss = l.double_value(&[]);
        lap.mark(times, 4);
        let mut flat = opt.grads_flat();
        assert!(loss.is_finite() && flat.iter().all(|g| g.is_finite()));
        if let Some(c) = clip {
            AdamW::clip_flat(&mut flat, c);
        }
        opt.set_grads_flat(&flat);
        lap.mark(times, 5);
        opt.step(|_| true);
        lap.mark(times, 6);
        atoms
    };
    // Warm-up: first-touch allocations, libtorch's lazy initialisation.
    let mut scratch = Times::default();
    for k in 0..3 {
        run(k, &mut scratch);
    }
    let mut atoms = 0;
    for k in 0..steps {
        atoms += run(k + 3, &mut times);
    }
    Run {
        params: opt.numel(),
        steps,
        atoms,
        times,
    }
}

/// One training step's gradients (the trainer's energy + force + stress loss, double backward) of
/// `model` on `part`,
/// in float64, flat in [`AdamW::params`] order, with the loss.
fn step_grads(
    model: &mlip::model::Model,
    cfg: &TrainConfig,
    spec: &hydragnn_train::metrics::BranchSpec,
    part: &[&Graph],
    device: Device,
) -> (f64, Vec<f64>, Vec<(String, usize)>) {
    let t = cfg.training();
    let mut opt = AdamW::new(model.var_store(), &t.optimizer);
    opt.zero_grad();
    let atoms: usize = part.iter().map(|g| g.n_atoms()).sum();
    let c = collate(part, &[], &[], Kind::Double, device, true);
    // The trainer's prediction: energy, forces and (for this dataset) stress.
    let p = hydragnn_train::metrics::predict(model, spec, &c, true).expect("predict");
    let l = batch_loss(
        spec,
        &p,
        &c,
        t.loss_function_type,
        part.len() as f64,
        atoms as f64,
    );
    l.backward();
    let names = opt
        .params
        .iter()
        .map(|p| (p.name.clone(), p.var.numel()))
        .collect();
    (l.double_value(&[]), opt.grads_flat(), names)
}

/// `--grad-check`: the same float64 model (CPU weights copied to `device`) and batch give the
/// same loss and parameter gradients on the CPU and on `device`; prints the parameters that
/// differ most. Returns whether every gradient agrees to `1e-9` relative to the largest.
fn grad_check(
    name: &str,
    cfg: &TrainConfig,
    graphs: &[Graph],
    batch: usize,
    device: Device,
) -> bool {
    let (mc, spec) = plan(name, cfg);
    let cpu = new_model(mc.clone(), Kind::Double, Device::Cpu, 0).expect("model");
    let mut dev = new_model(mc, Kind::Double, device, 0).expect("model");
    dev.var_store_mut()
        .copy(cpu.var_store())
        .expect("copy weights");
    let part: Vec<&Graph> = graphs[..batch.min(graphs.len())].iter().collect();
    let (la, ga, names) = step_grads(&cpu, cfg, &spec, &part, Device::Cpu);
    let (lb, gb, _) = step_grads(&dev, cfg, &spec, &part, device);
    let scale = ga.iter().fold(0f64, |m, g| m.max(g.abs())).max(1e-300);
    let mut per: Vec<(f64, String, f64, f64)> = Vec::new();
    let mut off = 0;
    for (name, n) in names {
        let (a, b) = (&ga[off..off + n], &gb[off..off + n]);
        let d = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        per.push((d / scale, name, na, nb));
        off += n;
    }
    per.sort_by(|x, y| y.0.total_cmp(&x.0));
    let worst = per.first().map_or(0.0, |p| p.0);
    println!(
        "  grad check {device:?} vs Cpu (float64, one batch of {batch}): loss {la:.15e} vs {lb:.15e}, max |dg| / max |g| = {worst:.3e}"
    );
    for (d, name, na, nb) in per.iter().take(6) {
        println!("    {name}: max |dg|/max|g| {d:.3e}, |g| cpu {na:.6e}, {device:?} {nb:.6e}");
    }
    worst <= 1e-9 && ((la - lb).abs() <= 1e-12 * la.abs())
}

fn main() {
    hydragnn_train::malloc::retain_freed_memory();
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let check = match args.iter().position(|a| a == "--grad-check") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let mut opt = |name: &str, default: &str| -> String {
        match args.iter().position(|a| a == name) {
            Some(i) => {
                let v = args[i + 1].clone();
                args.drain(i..i + 2);
                v
            }
            None => default.to_string(),
        }
    };
    let steps: usize = opt("--steps", "30").parse().expect("--steps N");
    let batch: usize = opt("--batch", "8").parse().expect("--batch B");
    let threads: Vec<i32> = opt("--threads", "1,2")
        .split(',')
        .map(|t| t.trim().parse().expect("--threads 1,2"))
        .collect();
    let device = opt("--device", "cpu")
        .parse::<mlip::device::DeviceChoice>()
        .and_then(|c| c.resolve(0))
        .unwrap_or_else(|e| panic!("--device: {e}"));
    let models: Vec<String> = opt("--models", "schnet,painn,egnn")
        .split(',')
        .map(|m| m.trim().to_lowercase())
        .collect();
    let tmp = std::env::temp_dir().join(format!("hydragnn_breakdown_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let data: PathBuf = common::dataset(args.first(), &tmp);
    let ds = Dataset::open(&data).expect("open dataset");
    let sr = ds.split("trainset").expect("trainset");
    let all = sr.read_block(0..sr.n_graphs()).expect("read trainset");
    println!(
        "dataset {} | trainset {} graphs, {} atoms | batch {batch} | {steps} timed steps after 3 warm-up | {device:?}",
        data.display(),
        sr.n_graphs(),
        all.total_atoms()
    );
    let mut rows = Vec::new();
    for m in &models {
        let cfg = config_for(m, &data, batch, &tmp);
        let (mc, _) = plan(m, &cfg);
        let gs = GraphSpec::new(mc.radius, &mc.species, false);
        let graphs: Vec<Graph> = gs.graphs_of_block(&all, "bench").expect("graphs");
        let edges: usize = graphs.iter().map(|g| g.src.len()).sum();
        println!(
            "\n{m}: {:?} {}x{}, cutoff {} A, {:.1} edges per atom",
            mc.mpnn_type,
            mc.hidden_dim,
            mc.num_conv_layers,
            mc.radius,
            edges as f64 / all.total_atoms() as f64
        );
        if check {
            let ok = grad_check(m, &cfg, &graphs, batch, device);
            println!(
                "  {}",
                if ok {
                    "grad check PASS"
                } else {
                    "grad check FAIL"
                }
            );
            continue;
        }
        for &t in &threads {
            tch::set_num_threads(t);
            let r = bench(m, &cfg, &graphs, steps, batch, device);
            let wall: f64 = r.times.wall.iter().sum();
            let cpu: f64 = r.times.cpu.iter().sum();
            println!(
                "  {t} thread(s): {:7.0} atoms/s wall, {:7.0} atoms per CPU-second | {:.4} s/step wall, {:.4} CPU-s/step",
                r.atoms as f64 / wall,
                r.atoms as f64 / cpu,
                wall / r.steps as f64,
                cpu / r.steps as f64
            );
            let share = |v: &[f64; 7], tot: f64| -> String {
                PHASES
                    .iter()
                    .zip(v)
                    .map(|(p, x)| format!("{p} {:.1}%", 100.0 * x / tot))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "    {} trainable parameters: {:.0} KB of f64 gradients per allreduce",
                r.params,
                r.params as f64 * 8.0 / 1e3
            );
            println!("    wall shares: {}", share(&r.times.wall, wall));
            println!("    CPU shares:  {}", share(&r.times.cpu, cpu));
            rows.push((m.clone(), t, r, wall, cpu));
        }
    }
    // One markdown table for docs/training.md.
    println!("\n| backbone | threads | atoms/s (wall) | atoms/CPU-s | s/step | data | forward | forces | loss | backward | grad sync | optimizer |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (m, t, r, wall, cpu) in &rows {
        let shares: Vec<String> = r
            .times
            .cpu
            .iter()
            .map(|x| format!("{:.0}%", 100.0 * x / cpu))
            .collect();
        println!(
            "| {m} | {t} | {:.0} | {:.0} | {:.3} | {} |",
            r.atoms as f64 / wall,
            r.atoms as f64 / cpu,
            wall / r.steps as f64,
            shares.join(" | ")
        );
    }
    println!("(phase shares: of the CPU time)");
    let _ = std::fs::remove_dir_all(&tmp);
}
