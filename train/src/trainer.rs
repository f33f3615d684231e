//! The training loop: datasets checked against the config before anything is written, a model
//! with one output branch per dataset, seeded batches drawn per dataset in an interleaved order,
//! data parallelism over MPI ranks, AdamW with reduce-on-plateau and early stopping, atomic
//! checkpoints, per-epoch metrics, the best model exported, parity plots at the end.
//!
//! Batches. Every epoch each dataset's trainset is shuffled (ChaCha8 seeded by the config's seed,
//! stream = epoch) and cut into batches of `batch_size` graphs; the batches of all datasets are
//! then shuffled together. A batch touches one dataset, so it runs through that dataset's branch.
//! The plan depends only on (seed, epoch, dataset sizes, batch size), never on the number of
//! ranks: each rank owns a contiguous shard of every split (it reads only that shard) and takes
//! the graphs of each global batch that fall in it. Loss terms are normalised by the global
//! batch's counts, so summing gradients over ranks gives the single-rank gradient exactly.
//!
//! Output directory (rank 0 writes): `steps.csv` (loss per step), `metrics.csv` and
//! `metrics.json` (per epoch, per branch), `checkpoint.st`, `best.model` (the engine's model
//! file, with provenance), `parity_<branch>_<output>.png`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mlip::model::config::{HeadKind, ModelConfig, MpnnType};
use mlip::Model;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::batch::{collate, Graph, GraphSpec};
use crate::checkpoint::{self, TrainState};
use crate::config::TrainConfig;
use crate::data::{shard_range, Dataset, DatasetMeta};
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::evaluate::eval_sums;
use crate::metrics::{batch_loss, finish, predict, BranchMetrics, BranchSpec, Parity, PropSpec};
use crate::optim::AdamW;

/// File names inside the output directory.
pub mod files {
    /// Per-step losses.
    pub const STEPS: &str = "steps.csv";
    /// Per-epoch metrics (CSV).
    pub const METRICS_CSV: &str = "metrics.csv";
    /// Per-epoch metrics and the best model's final metrics (JSON).
    pub const METRICS_JSON: &str = "metrics.json";
    /// The checkpoint.
    pub const CHECKPOINT: &str = "checkpoint.st";
    /// The best model.
    pub const BEST_MODEL: &str = "best.model";
}

/// One epoch's record (a row of metrics.csv).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number (1-based, as printed).
    pub epoch: usize,
    /// Optimiser steps taken at its end.
    pub step: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean of its step losses.
    pub train_loss: f64,
    /// Validation loss (sum over branches).
    pub val_loss: f64,
    /// Seconds since the start of training.
    pub time_s: f64,
    /// Validation metrics per branch.
    pub branches: BTreeMap<String, BranchMetrics>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint.st`.
    pub resume: bool,
    /// The command line, recorded in the model's provenance.
    pub command: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Steps taken in total.
    pub steps: usize,
    /// Epochs completed.
    pub epochs: usize,
    /// Why it stopped (`num_epoch`, `early_stopping`, `max_time`, `max_steps`).
    pub stopped: String,
    /// The best epoch and its validation metrics (None if no epoch finished).
    pub best: Option<(usize, BTreeMap<String, BranchMetrics>)>,
    /// Metrics of the best model per split and branch, when training finished.
    pub final_metrics: BTreeMap<String, BTreeMap<String, BranchMetrics>>,
}

/// A dataset as the trainer uses it.
pub struct DatasetRun {
    /// Branch name.
    pub name: String,
    /// The BP file.
    pub path: PathBuf,
    /// Its attributes.
    pub meta: DatasetMeta,
    /// Outputs and weights.
    pub spec: BranchSpec,
    /// This rank's trainset graphs (`train_shard` of the split).
    pub train: Vec<Graph>,
    /// Which trainset graphs this rank holds.
    pub train_shard: Range<usize>,
    /// Atoms of every trainset graph (all ranks).
    pub train_atoms: Vec<usize>,
    /// This rank's valset graphs.
    pub val: Vec<Graph>,
}

/// Serialises model creation within a process: [`Model::new`] seeds libtorch's global generator
/// and then draws the initial weights, so two threads creating models at once (tests do) would
/// interleave their draws and lose determinism.
static MODEL_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`Model::new`] under the process-wide initialisation lock.
pub fn new_model(config: ModelConfig, kind: Kind, device: Device, seed: i64) -> Result<Model> {
    let _g = MODEL_INIT.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Model::new(config, kind, device, seed)?)
}

/// [`Model::load`] under the same lock (loading initialises a model before reading weights).
pub fn load_model(path: &Path, kind: Kind, device: Device) -> Result<Model> {
    let _g = MODEL_INIT.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Model::load(path, kind, device)?)
}

/// Checks every dataset against the config and derives the model architecture. Nothing is
/// written; every error names the config key and the dataset.
pub fn plan_model(cfg: &TrainConfig) -> Result<(ModelConfig, Vec<(DatasetMeta, BranchSpec)>)> {
    let a = cfg.arch();
    let t = cfg.training();
    let mut metas = Vec::new();
    for (i, d) in cfg.config.dataset.datasets.iter().enumerate() {
        let path = cfg.dataset_path(i);
        let ds = Dataset::open(&path).map_err(|e| {
            Error::config(
                &cfg.path,
                format!("Dataset.datasets[{i}].path"),
                e.to_string(),
            )
        })?;
        let meta = ds.meta().clone();
        let what = format!("dataset '{}' ({})", d.name, path.display());
        for split in ["trainset", "valset"] {
            if meta.n_graphs(split) == 0 {
                return Err(Error::config(
                    &cfg.path,
                    format!("Dataset.datasets[{i}]"),
                    format!("{what} has no graphs in its {split}"),
                ));
            }
        }
        let voi = "NeuralNetwork.Variables_of_interest";
        let mut props = Vec::new();
        let mut energy = false;
        for o in cfg.outputs_of(i) {
            let k = cfg
                .variables()
                .output_names
                .iter()
                .position(|n| *n == o.name)
                .expect("validated");
            let key = format!("{voi}.output_names[{k}]");
            let has = |list: &[crate::data::PropertyInfo]| {
                list.iter().find(|p| p.name == o.name).map(|p| p.width)
            };
            if o.name == "energy" {
                if !meta.layout.energy {
                    return Err(Error::config(
                        &cfg.path,
                        key,
                        format!("the config asks for 'energy' but {what} has no energies"),
                    ));
                }
                energy = true;
                continue;
            }
            let (mine, other, level, other_level) = match o.kind {
                HeadKind::Graph => (
                    has(&meta.scalars),
                    has(&meta.atom_props),
                    "per-frame",
                    "per-atom",
                ),
                HeadKind::Node => (
                    has(&meta.atom_props),
                    has(&meta.scalars),
                    "per-atom",
                    "per-frame",
                ),
            };
            let width = match (mine, other) {
                (Some(w), _) => w,
                (None, Some(_)) => {
                    return Err(Error::config(
                        &cfg.path,
                        format!("{voi}.type[{k}]"),
                        format!(
                        "'{}' is {other_level} in {what}, but the config asks for a {level} output",
                        o.name
                    ),
                    ))
                }
                (None, None) => {
                    let mut have: Vec<String> = meta
                        .scalars
                        .iter()
                        .chain(&meta.atom_props)
                        .map(|p| p.name.clone())
                        .collect();
                    for (n, on) in [
                        ("energy", meta.layout.energy),
                        ("forces", meta.layout.forces),
                        ("stress", meta.layout.stress),
                    ] {
                        if on {
                            have.insert(0, n.to_string());
                        }
                    }
                    return Err(Error::config(
                        &cfg.path,
                        key,
                        format!(
                            "the config asks for '{}' but {what} has no such property (it has: {})",
                            o.name,
                            have.join(", ")
                        ),
                    ));
                }
            };
            if let Some(dim) = o.dim {
                if dim as usize != width {
                    return Err(Error::config(
                        &cfg.path,
                        format!("{voi}.output_dim[{k}]"),
                        format!("is {dim} but '{}' has {width} components in {what}", o.name),
                    ));
                }
            }
            props.push(PropSpec {
                name: o.name.clone(),
                kind: o.kind,
                width,
                weight: o.weight,
            });
        }
        if t.compute_grad_energy && energy && !meta.layout.forces {
            return Err(Error::config(
                &cfg.path,
                "NeuralNetwork.Training.compute_grad_energy",
                format!("is true but {what} has no forces"),
            ));
        }
        let tw = cfg
            .outputs_of(i)
            .iter()
            .find(|o| o.name == "energy")
            .map_or(1.0, |o| o.weight);
        let spec = BranchSpec {
            name: d.name.clone(),
            branch: i,
            energy,
            forces: energy && t.compute_grad_energy,
            props,
            w_energy: tw * a.energy_weight,
            w_energy_peratom: tw * a.energy_peratom_weight,
            w_forces: if t.compute_grad_energy {
                a.force_weight
            } else {
                0.0
            },
        };
        metas.push((meta, spec));
    }

    let mut species: Vec<i32> = metas
        .iter()
        .flat_map(|(m, _)| m.elements.iter().copied())
        .collect();
    species.sort_unstable();
    species.dedup();
    let radial = a.radial_type.unwrap_or(if a.mpnn_type == MpnnType::SchNet {
        mlip::model::config::RadialType::Gaussian
    } else {
        mlip::model::config::RadialType::Bessel
    });
    let branches: Vec<serde_json::Value> = metas
        .iter()
        .map(|(m, s)| {
            let mut heads = vec![serde_json::json!({
                "name": "energy", "type": "graph", "dim": 1,
                "dim_headlayers": cfg.head_layers(HeadKind::Graph), "pooling": "sum",
            })];
            for p in &s.props {
                heads.push(serde_json::json!({
                    "name": p.name, "type": p.kind, "dim": p.width,
                    "dim_headlayers": cfg.head_layers(p.kind), "pooling": a.graph_pooling,
                }));
            }
            let e0: Vec<f64> = species.iter().map(|&z| m.reference_energy(z)).collect();
            serde_json::json!({"name": s.name, "output_heads": heads, "reference_energies": e0})
        })
        .collect();
    let mut mc = serde_json::json!({
        "mpnn_type": a.mpnn_type,
        "hidden_dim": a.hidden_dim,
        "num_conv_layers": a.num_conv_layers,
        "radius": a.radius,
        "num_radial": a.num_radial,
        "radial_type": radial,
        "activation_function": a.activation_function,
        "species": species,
        "branches": branches,
    });
    if let Some(p) = a.envelope_exponent {
        mc["envelope"] = serde_json::json!({"type": "polynomial", "p": p});
    }
    if matches!(a.mpnn_type, MpnnType::PaiNN | MpnnType::Egnn) {
        // Without it PaiNN overflows and EGNN's forces vanish in dense solids (see mlip's
        // `ModelConfig::avg_num_neighbors`). SchNet trains as it is and keeps its plain sums.
        let gs = GraphSpec::new(a.radius, &species, !a.periodic_boundary_conditions);
        mc["avg_num_neighbors"] = serde_json::json!(avg_num_neighbors(cfg, &gs)?);
    }
    if a.mpnn_type == MpnnType::Egnn {
        // The distance as one raw input gives a model whose forces training cannot move (see
        // mlip's `EgnnOptions::edge_rbf`); the config's radial basis resolves it.
        mc["egnn"] = serde_json::json!({"edge_rbf": true});
    }
    let mc: ModelConfig =
        serde_json::from_value(mc).map_err(|e| Error::Invalid(format!("model config: {e}")))?;
    mc.validate()?;
    Ok((mc, metas))
}

/// Average number of neighbours per atom (edges / atoms, to 0.01) in the first (at most) 64
/// training graphs of every dataset: deterministic, whatever the number of ranks, so a resumed run
/// rebuilds the same model.
fn avg_num_neighbors(cfg: &TrainConfig, gs: &GraphSpec) -> Result<f64> {
    let (mut edges, mut atoms) = (0usize, 0usize);
    for i in 0..cfg.config.dataset.datasets.len() {
        let path = cfg.dataset_path(i);
        let ds = Dataset::open(&path)?;
        let tr = ds.split("trainset")?;
        let label = format!("{} trainset", path.display());
        for g in gs.load(&tr, 0..tr.n_graphs().min(64), &label)? {
            edges += g.src.len();
            atoms += g.numbers.len();
        }
    }
    Ok(((edges as f64 / atoms.max(1) as f64).max(1.0) * 100.0).round() / 100.0)
}

/// Zeroes the last layer (weight and bias) of every output head: variables named
/// `branches.<branch>.<head>.<k>.{weight,bias}` with the largest `k` of their head.
pub fn zero_last_head_layers(model: &Model) {
    let vars = model.var_store().variables();
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for name in vars.keys() {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() == 5 && parts[0] == "branches" {
            if let Ok(k) = parts[3].parse::<usize>() {
                let head = format!("{}.{}.{}", parts[0], parts[1], parts[2]);
                let e = last.entry(head).or_insert(k);
                *e = (*e).max(k);
            }
        }
    }
    tch::no_grad(|| {
        for (head, k) in &last {
            for p in ["weight", "bias"] {
                if let Some(v) = vars.get(&format!("{head}.{k}.{p}")) {
                    let _ = v.shallow_clone().zero_();
                }
            }
        }
    });
}

/// The batches of one epoch: (dataset, trainset graph indices), independent of the number of ranks.
pub fn epoch_plan(
    seed: u64,
    epoch: usize,
    sizes: &[usize],
    batch_size: usize,
) -> Vec<(usize, Vec<usize>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut batches = Vec::new();
    for (d, &n) in sizes.iter().enumerate() {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        batches.extend(perm.chunks(batch_size).map(|c| (d, c.to_vec())));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Whether the variable `name` is updated by a batch of branch `branch` (the heads of the other
/// branches get no gradient from it).
fn active_in(name: &str, branch: &str) -> bool {
    match name.strip_prefix("branches.") {
        Some(rest) => rest
            .strip_prefix(branch)
            .is_some_and(|r| r.starts_with('.')),
        None => true,
    }
}

/// Appends lines to steps.csv and knows its length (rank 0 only).
struct StepLog {
    file: Option<std::fs::File>,
    len: u64,
}

impl StepLog {
    fn line(&mut self, s: &str, path: &Path) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.write_all(s.as_bytes()).map_err(|e| Error::io(path, e))?;
            self.len += s.len() as u64;
        }
        Ok(())
    }
}

/// A training run.
pub struct Trainer<'a> {
    cfg: &'a TrainConfig,
    opts: TrainOptions,
    dist: &'a Dist,
    /// The model being trained.
    pub model: Model,
    datasets: Vec<DatasetRun>,
    opt: AdamW,
    state: TrainState,
    kind: Kind,
    device: Device,
    log: StepLog,
    started: Instant,
    base_elapsed: f64,
    verbose: u32,
}

impl<'a> Trainer<'a> {
    /// Checks the config and datasets, builds the model, loads this rank's shards, and (with
    /// `opts.resume`) restores the checkpoint. Creates the output directory only once all checks
    /// have passed.
    pub fn new(cfg: &'a TrainConfig, opts: TrainOptions, dist: &'a Dist) -> Result<Self> {
        let started = Instant::now();
        let t = cfg.training();
        let (mc, metas) = plan_model(cfg)?;
        let ckpt_path = opts.out_dir.join(files::CHECKPOINT);
        if opts.resume && !ckpt_path.exists() {
            return Err(Error::checkpoint(
                &ckpt_path,
                "--resume given but there is no checkpoint",
            ));
        }
        if !opts.resume && ckpt_path.exists() {
            return Err(Error::checkpoint(
                &ckpt_path,
                "exists: pass --resume to continue that run, or choose another output directory",
            ));
        }
        let kind = t.precision.kind();
        let device = dist.device();
        let model = new_model(mc.clone(), kind, device, t.seed as i64)?;
        if cfg.arch().zero_init_heads {
            zero_last_head_layers(&model);
        }
        let gs = GraphSpec::new(
            mc.radius,
            &mc.species,
            !cfg.arch().periodic_boundary_conditions,
        );
        let (rank, size) = (dist.rank(), dist.size());
        let mut datasets = Vec::new();
        for (i, (meta, spec)) in metas.into_iter().enumerate() {
            let path = cfg.dataset_path(i);
            let ds = Dataset::open(&path)?;
            let tr = ds.split("trainset")?;
            let shard = shard_range(tr.n_graphs(), rank, size);
            let label = format!("{} trainset", path.display());
            let train = gs.load(&tr, shard.clone(), &label)?;
            let train_atoms = tr.n_atoms().to_vec();
            let va = ds.split("valset")?;
            let vshard = shard_range(va.n_graphs(), rank, size);
            let val = gs.load(&va, vshard, &format!("{} valset", path.display()))?;
            datasets.push(DatasetRun {
                name: spec.name.clone(),
                path,
                meta,
                spec,
                train,
                train_shard: shard,
                train_atoms,
                val,
            });
        }
        let opt = AdamW::new(model.var_store(), &t.optimizer);
        let state = TrainState {
            epoch: 0,
            step: 0,
            step_in_epoch: 0,
            lr: t.optimizer.learning_rate,
            adam_t: 0,
            plateau: Default::default(),
            early: Default::default(),
            best: None,
            epoch_loss: (0.0, 0),
            steps_log_len: 0,
            history: Vec::new(),
            elapsed: 0.0,
            finished: false,
        };
        let verbose = cfg.config.verbosity.level;
        let mut tr = Trainer {
            cfg,
            opts,
            dist,
            model,
            datasets,
            opt,
            state,
            kind,
            device,
            log: StepLog { file: None, len: 0 },
            started,
            base_elapsed: 0.0,
            verbose,
        };
        if tr.opts.resume {
            tr.restore(&ckpt_path)?;
        }
        if dist.is_root() {
            std::fs::create_dir_all(&tr.opts.out_dir)
                .map_err(|e| Error::io(&tr.opts.out_dir, e))?;
            let steps = tr.opts.out_dir.join(files::STEPS);
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&steps)
                .map_err(|e| Error::io(&steps, e))?;
            if tr.opts.resume {
                f.set_len(tr.state.steps_log_len)
                    .map_err(|e| Error::io(&steps, e))?;
                tr.log = StepLog {
                    file: Some(f),
                    len: tr.state.steps_log_len,
                };
                tr.write_metrics()?;
            } else {
                f.set_len(0).map_err(|e| Error::io(&steps, e))?;
                tr.log = StepLog {
                    file: Some(f),
                    len: 0,
                };
                tr.log
                    .line("step,epoch,dataset,graphs,atoms,loss,lr\n", &steps)?;
            }
        }
        Ok(tr)
    }

    /// The datasets (branch, shards).
    pub fn datasets(&self) -> &[DatasetRun] {
        &self.datasets
    }

    /// The training state (epoch, step, history ...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    fn restore(&mut self, path: &Path) -> Result<()> {
        let ck = checkpoint::load(path)?;
        let old = TrainConfig::parse(&ck.config, &self.cfg.path)
            .map_err(|e| Error::checkpoint(path, format!("its config no longer parses: {e}")))?;
        if resume_key(&old) != resume_key(self.cfg) {
            return Err(Error::checkpoint(
                path,
                "was written with a different config (only num_epoch, max_time, max_steps, checkpoint_every, Checkpoint, \
                 EarlyStopping, patience, val_batch_size, Verbosity and Visualization may change on --resume)",
            ));
        }
        let vars = self.model.var_store().variables();
        tch::no_grad(|| -> Result<()> {
            for (name, var) in &vars {
                let mut var = var.shallow_clone();
                let t = ck
                    .tensors
                    .get(&format!("model/{name}"))
                    .ok_or_else(|| Error::checkpoint(path, format!("no weights for '{name}'")))?;
                if t.size() != var.size() {
                    return Err(Error::checkpoint(
                        path,
                        format!(
                            "'{name}' has shape {:?}, the model {:?}",
                            t.size(),
                            var.size()
                        ),
                    ));
                }
                var.f_copy_(&t.to_kind(self.kind).to_device(self.device))?;
            }
            for p in &mut self.opt.params {
                for (prefix, dst) in [("adam_m", &mut p.m), ("adam_v", &mut p.v)] {
                    let t = ck
                        .tensors
                        .get(&format!("{prefix}/{}", p.name))
                        .ok_or_else(|| {
                            Error::checkpoint(path, format!("no {prefix} for '{}'", p.name))
                        })?;
                    dst.f_copy_(&t.to_kind(self.kind).to_device(self.device))?;
                }
            }
            Ok(())
        })?;
        self.opt.t = ck.state.adam_t;
        self.opt.lr = ck.state.lr;
        self.base_elapsed = ck.state.elapsed;
        self.state = ck.state;
        Ok(())
    }

    fn save_checkpoint(&mut self) -> Result<()> {
        if !self.dist.is_root() || !self.cfg.training().checkpoint {
            return Ok(());
        }
        self.state.adam_t = self.opt.t;
        self.state.lr = self.opt.lr;
        self.state.steps_log_len = self.log.len;
        self.state.elapsed = self.elapsed();
        let vars = self.model.var_store().variables();
        let mut tensors: Vec<(String, &Tensor)> = vars
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t))
            .collect();
        for p in &self.opt.params {
            tensors.push((format!("adam_m/{}", p.name), &p.m));
            tensors.push((format!("adam_v/{}", p.name), &p.v));
        }
        checkpoint::save(
            &self.opts.out_dir.join(files::CHECKPOINT),
            &tensors,
            &self.state,
            &self.cfg.text,
        )
    }

    /// Training seconds: earlier sessions (from the checkpoint) plus this one.
    fn elapsed(&self) -> f64 {
        self.base_elapsed + self.started.elapsed().as_secs_f64()
    }

    /// One optimiser step on the global batch `idx` of dataset `d`; returns the global loss.
    fn step(&mut self, d: usize, idx: &[usize]) -> Result<f64> {
        let run = &self.datasets[d];
        let spec = &run.spec;
        let local: Vec<&Graph> = idx
            .iter()
            .filter(|i| run.train_shard.contains(i))
            .map(|&i| &run.train[i - run.train_shard.start])
            .collect();
        let graphs = idx.len() as f64;
        let atoms = idx.iter().map(|&i| run.train_atoms[i]).sum::<usize>() as f64;
        self.opt.zero_grad();
        let mut local_loss = 0.0;
        if !local.is_empty() {
            let c = collate(
                &local,
                &spec.graph_props(),
                &spec.node_props(),
                self.kind,
                self.device,
                spec.forces,
            );
            let p = predict(&self.model, spec, &c, true)?;
            let loss = batch_loss(
                spec,
                &p,
                &c,
                self.cfg.training().loss_function_type,
                graphs,
                atoms,
            );
            loss.f_backward()?;
            local_loss = loss.double_value(&[]);
        }
        let mut flat = self.opt.grads_flat();
        flat.push(local_loss);
        self.dist.allreduce_sum(&mut flat);
        let loss = flat.pop().expect("loss");
        if !loss.is_finite() || flat.iter().any(|g| !g.is_finite()) {
            return Err(Error::Diverged(format!(
                "non-finite loss or gradient at step {} (epoch {}, dataset '{}'); lower the learning rate or set clip_grad_norm",
                self.state.step + 1,
                self.state.epoch + 1,
                spec.name
            )));
        }
        if let Some(c) = self.cfg.training().clip_grad_norm {
            AdamW::clip_flat(&mut flat, c);
        }
        self.opt.set_grads_flat(&flat);
        let name = spec.name.clone();
        self.opt.step(|v| active_in(v, &name));
        Ok(loss)
    }

    /// Validation metrics per branch (summed over ranks) and the total validation loss.
    fn validate(&self) -> Result<(BTreeMap<String, BranchMetrics>, f64)> {
        let t = self.cfg.training();
        let bs = t.val_batch_size.unwrap_or(t.batch_size);
        let mut out = BTreeMap::new();
        let mut total = 0.0;
        for run in &self.datasets {
            let mut s = eval_sums(
                &self.model,
                &run.spec,
                &run.val,
                bs,
                t.loss_function_type,
                self.kind,
                self.device,
                None,
            )?;
            self.dist.allreduce_sum(&mut s);
            let m = finish(&run.spec, &s);
            total += m.loss;
            out.insert(run.name.clone(), m);
        }
        Ok((out, total))
    }

    /// Trains until the configured end (or `max_steps`), then writes the final outputs.
    pub fn run(&mut self) -> Result<TrainSummary> {
        let t = self.cfg.training().clone();
        let sizes: Vec<usize> = self.datasets.iter().map(|d| d.train_atoms.len()).collect();
        let steps_path = self.opts.out_dir.join(files::STEPS);
        let root = self.dist.is_root();
        let bar_on = root && self.verbose >= 2 && std::io::stderr().is_terminal();
        let mut stopped = String::new();
        let mut last_epoch_secs = 0.0;
        if self.state.finished && self.state.epoch >= t.num_epoch {
            stopped = "num_epoch".into();
        }
        while stopped.is_empty() && self.state.epoch < t.num_epoch {
            let epoch_start = Instant::now();
            let plan = epoch_plan(t.seed, self.state.epoch, &sizes, t.batch_size);
            let bar = bar_on.then(|| {
                let b = indicatif::ProgressBar::new(plan.len() as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "epoch {prefix} [{bar:30}] {pos}/{len} {msg}",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("{}/{}", self.state.epoch + 1, t.num_epoch));
                b.set_position(self.state.step_in_epoch as u64);
                b
            });
            let (mut n_graphs, mut n_atoms) = (0usize, 0usize);
            for (d, idx) in plan.iter().skip(self.state.step_in_epoch) {
                let loss = self.step(*d, idx)?;
                let atoms: usize = idx.iter().map(|&i| self.datasets[*d].train_atoms[i]).sum();
                n_graphs += idx.len();
                n_atoms += atoms;
                self.state.step += 1;
                self.state.step_in_epoch += 1;
                self.state.epoch_loss.0 += loss;
                self.state.epoch_loss.1 += 1;
                let line = format!(
                    "{},{},{},{},{},{:e},{:e}\n",
                    self.state.step,
                    self.state.epoch + 1,
                    self.datasets[*d].name,
                    idx.len(),
                    atoms,
                    loss,
                    self.opt.lr
                );
                self.log.line(&line, &steps_path)?;
                if let Some(b) = &bar {
                    let secs = epoch_start.elapsed().as_secs_f64().max(1e-9);
                    b.set_message(format!(
                        "loss {loss:.3e} | {:.0} graphs/s {:.0} atoms/s",
                        n_graphs as f64 / secs,
                        n_atoms as f64 / secs
                    ));
                    b.inc(1);
                }
                if t.checkpoint_every > 0 && self.state.step.is_multiple_of(t.checkpoint_every) {
                    self.save_checkpoint()?;
                }
                if t.max_steps.is_some_and(|m| self.state.step >= m) {
                    stopped = "max_steps".into();
                    break;
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            if !stopped.is_empty() {
                self.save_checkpoint()?;
                break;
            }
            // End of epoch: validate, schedule, early-stop, export the best model.
            let (branches, val_loss) = self.validate()?;
            if !val_loss.is_finite() {
                return Err(Error::Diverged(format!(
                    "validation loss is {val_loss} after epoch {}",
                    self.state.epoch + 1
                )));
            }
            let epoch = self.state.epoch + 1;
            let lr_used = self.opt.lr;
            let (sum, n) = self.state.epoch_loss;
            let rec = EpochRecord {
                epoch,
                step: self.state.step,
                lr: lr_used,
                train_loss: if n > 0 { sum / n as f64 } else { f64::NAN },
                val_loss,
                time_s: self.elapsed(),
                branches: branches.clone(),
            };
            self.opt.lr = self.state.plateau.step(val_loss, self.opt.lr, &t.scheduler);
            let stop_early = t.early_stopping && self.state.early.step(val_loss, t.patience);
            if self.state.best.is_none_or(|(b, _)| val_loss < b) {
                self.state.best = Some((val_loss, epoch));
                self.export_best(&rec)?;
            }
            if self.verbose >= 1 && root {
                let mut msg = format!(
                    "epoch {epoch}/{} step {} | train {:.4e} | val {:.4e} | lr {:.2e} | {:.1} s",
                    t.num_epoch,
                    self.state.step,
                    rec.train_loss,
                    val_loss,
                    lr_used,
                    epoch_start.elapsed().as_secs_f64()
                );
                for (b, m) in &branches {
                    msg.push_str(&format!("\n    {b}: {}", m.summary()));
                }
                eprintln!("{msg}");
            }
            self.state.history.push(rec);
            self.state.epoch += 1;
            self.state.step_in_epoch = 0;
            self.state.epoch_loss = (0.0, 0);
            last_epoch_secs = epoch_start.elapsed().as_secs_f64();
            if stop_early {
                stopped = "early_stopping".into();
            } else if t
                .max_time
                .is_some_and(|m| self.started.elapsed().as_secs_f64() + last_epoch_secs > m)
            {
                stopped = "max_time".into();
            } else if self.state.epoch >= t.num_epoch {
                stopped = "num_epoch".into();
            }
            self.state.finished = !stopped.is_empty();
            if root {
                self.write_metrics()?;
            }
            self.save_checkpoint()?;
        }
        let _ = last_epoch_secs;
        if stopped.is_empty() {
            stopped = "num_epoch".into();
        }
        let mut summary = TrainSummary {
            out_dir: self.opts.out_dir.clone(),
            steps: self.state.step,
            epochs: self.state.history.len(),
            stopped: stopped.clone(),
            best: self
                .state
                .best
                .map(|(_, e)| (e, self.state.history[e - 1].branches.clone())),
            final_metrics: BTreeMap::new(),
        };
        if stopped != "max_steps" && root && self.state.best.is_some() {
            summary.final_metrics = self.final_outputs()?;
        }
        self.dist.barrier();
        Ok(summary)
    }

    fn provenance(&self, rec: &EpochRecord) -> BTreeMap<String, String> {
        let datasets: Vec<serde_json::Value> = self
            .datasets
            .iter()
            .map(|d| {
                serde_json::json!({
                    "branch": d.name, "path": d.path.display().to_string(), "dataset_name": d.meta.name,
                    "splits": d.meta.splits, "sources": d.meta.sources,
                    "reference_energies": d.meta.elements.iter().zip(&d.meta.reference_energies).map(|(z, e)| (mlip::elements::symbol(*z).to_string(), *e)).collect::<BTreeMap<_, _>>(),
                })
            })
            .collect();
        let mut p = BTreeMap::new();
        p.insert(
            "trainer".into(),
            format!("hydragnn-rs {} (hydragnn train)", env!("CARGO_PKG_VERSION")),
        );
        p.insert("command".into(), self.opts.command.clone());
        p.insert("ranks".into(), self.dist.size().to_string());
        p.insert("config".into(), self.cfg.text.clone());
        p.insert(
            "datasets".into(),
            serde_json::Value::Array(datasets).to_string(),
        );
        p.insert("epoch".into(), rec.epoch.to_string());
        p.insert("step".into(), rec.step.to_string());
        p.insert(
            "validation_metrics".into(),
            serde_json::to_string(&rec.branches).unwrap_or_default(),
        );
        p
    }

    fn export_best(&self, rec: &EpochRecord) -> Result<()> {
        if !self.dist.is_root() {
            return Ok(());
        }
        let path = self.opts.out_dir.join(files::BEST_MODEL);
        self.model.save(&path, &self.provenance(rec))?;
        Ok(())
    }

    /// Rewrites metrics.csv and metrics.json from the history (atomically).
    fn write_metrics(&self) -> Result<()> {
        let h = &self.state.history;
        let mut cols: Vec<String> = vec!["epoch", "step", "lr", "train_loss", "val_loss", "time_s"]
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(r) = h.first() {
            for (b, m) in &r.branches {
                cols.extend(m.columns().into_iter().map(|(c, _)| format!("{b}/{c}")));
            }
        }
        let mut csv = cols.join(",") + "\n";
        for r in h {
            let mut v = vec![
                r.epoch.to_string(),
                r.step.to_string(),
                format!("{:e}", r.lr),
                format!("{:e}", r.train_loss),
                format!("{:e}", r.val_loss),
                format!("{:.3}", r.time_s),
            ];
            for m in r.branches.values() {
                v.extend(m.columns().into_iter().map(|(_, x)| format!("{x:e}")));
            }
            csv += &(v.join(",") + "\n");
        }
        checkpoint::write_atomic(&self.opts.out_dir.join(files::METRICS_CSV), csv.as_bytes())?;
        let json = serde_json::json!({
            "run": self.cfg.config.dataset.name,
            "best_epoch": self.state.best.map(|(_, e)| e),
            "epochs": h,
        });
        checkpoint::write_atomic(
            &self.opts.out_dir.join(files::METRICS_JSON),
            serde_json::to_string_pretty(&json)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// Rank 0: the best model on the full validation and test splits, parity plots, metrics.json.
    fn final_outputs(&self) -> Result<BTreeMap<String, BTreeMap<String, BranchMetrics>>> {
        let t = self.cfg.training();
        let best = load_model(
            &self.opts.out_dir.join(files::BEST_MODEL),
            self.kind,
            self.device,
        )?;
        let gs = GraphSpec::new(
            best.cutoff(),
            best.species(),
            !self.cfg.arch().periodic_boundary_conditions,
        );
        let bs = t.val_batch_size.unwrap_or(t.batch_size);
        let mut all = BTreeMap::new();
        for split in ["valset", "testset"] {
            let mut per = BTreeMap::new();
            for run in &self.datasets {
                if run.meta.n_graphs(split) == 0 {
                    continue;
                }
                let ds = Dataset::open(&run.path)?;
                let sr = ds.split(split)?;
                let graphs = gs.load(
                    &sr,
                    0..sr.n_graphs(),
                    &format!("{} {split}", run.path.display()),
                )?;
                let mut parity = Parity::default();
                let s = eval_sums(
                    &best,
                    &run.spec,
                    &graphs,
                    bs,
                    t.loss_function_type,
                    self.kind,
                    self.device,
                    Some(&mut parity),
                )?;
                let m = finish(&run.spec, &s);
                if split == "valset" && self.cfg.config.visualization.create_plots {
                    for (name, (x, y)) in &parity.series {
                        let file = self
                            .opts
                            .out_dir
                            .join(format!("parity_{}_{name}.png", run.name));
                        let unit = match name.as_str() {
                            "energy_per_atom" => "eV/atom",
                            "forces" => "eV/A",
                            n => run
                                .meta
                                .units
                                .get(&format!("graph/{n}"))
                                .or_else(|| run.meta.units.get(&format!("atom/{n}")))
                                .map_or("", |s| s.as_str()),
                        };
                        let title = format!("{} {} ({})", run.name, name, unit);
                        crate::plots::parity_png(&file, &title, x, y)?;
                    }
                }
                per.insert(run.name.clone(), m);
            }
            if !per.is_empty() {
                all.insert(split.to_string(), per);
            }
        }
        let h = &self.state.history;
        let json = serde_json::json!({
            "run": self.cfg.config.dataset.name,
            "best_epoch": self.state.best.map(|(_, e)| e),
            "best_model": files::BEST_MODEL,
            "best_model_metrics": all,
            "epochs": h,
        });
        checkpoint::write_atomic(
            &self.opts.out_dir.join(files::METRICS_JSON),
            serde_json::to_string_pretty(&json)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(all)
    }
}

/// The parts of a config that must not change on --resume, as comparable JSON.
fn resume_key(c: &TrainConfig) -> String {
    let mut cfg = c.config.clone();
    let t = &mut cfg.neural_network.training;
    t.num_epoch = 0;
    t.max_time = None;
    t.max_steps = None;
    t.checkpoint_every = 0;
    t.checkpoint = true;
    t.early_stopping = false;
    t.patience = 0;
    t.val_batch_size = None;
    cfg.verbosity = Default::default();
    cfg.visualization = Default::default();
    serde_json::to_string(&cfg).unwrap_or_default()
}

/// Runs a whole training (the `hydragnn train` command as a library call).
pub fn train(cfg: &TrainConfig, opts: TrainOptions, dist: &Dist) -> Result<TrainSummary> {
    let mut t = Trainer::new(cfg, opts, dist)?;
    t.run()
}
