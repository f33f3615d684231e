//! Setting a run up: the model (initialised from the seed, heads zeroed), this rank's shards of
//! every dataset as graphs, the optimiser, and the output directory.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mlip::model::config::ModelConfig;
use mlip::Model;
use tch::{Device, Kind};

use super::{files, plan_model, StepLog, TrainOptions, Trainer};
use crate::checkpoint::TrainState;
use crate::config::TrainConfig;
use crate::data::{shard_range, Dataset, DatasetMeta};
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::graphs::{Graph, GraphSpec};
use crate::metrics::BranchSpec;
use crate::optim::{AdamW, Ema};

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
    /// With `Training.ddstore`: the trainset in the distributed store (`train` is then empty).
    pub store: Option<crate::ddstore::DdStore>,
    /// A bootstrapped ensemble member's resample of the trainset ([`bootstrap_indices`]): the
    /// epoch plan's index i stands for trainset graph `bootstrap[i]`. None: the plain split.
    pub bootstrap: Option<Vec<usize>>,
}

/// The file of a bootstrapped ensemble member's draws: per dataset, how often each trainset
/// graph was drawn.
pub const BOOTSTRAP_JSON: &str = "bootstrap.json";

/// A bootstrap resample of a trainset of `n` graphs for dataset `d`: n draws with replacement,
/// ChaCha8 seeded by `seed` (the member's `Training.seed`) on a stream of its own per dataset
/// (the epoch plans use streams 0, 1, ...), so the same for every rank and every resumed run.
pub fn bootstrap_indices(seed: u64, d: usize, n: usize) -> Vec<usize> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((1u64 << 63) | d as u64);
    (0..n).map(|_| rng.gen_range(0..n)).collect()
}

/// How often each of `n` graphs occurs in `draws`.
fn draw_counts(draws: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &i in draws {
        c[i] += 1;
    }
    c
}

/// [`Model::new`] with the trainer's error type (the engine serialises seeding and
/// initialisation, so concurrent creations stay deterministic).
pub fn new_model(config: ModelConfig, kind: Kind, device: Device, seed: i64) -> Result<Model> {
    Ok(Model::new(config, kind, device, seed)?)
}

/// [`Model::load`] with the trainer's error type.
pub fn load_model(path: &Path, kind: Kind, device: Device) -> Result<Model> {
    Ok(Model::load(path, kind, device)?)
}

/// The shortest edge of every dataset's trainset, over all ranks' shards (None: no edges).
fn shortest_distance(datasets: &[DatasetRun], dist: &Dist) -> Option<f64> {
    let mine = datasets
        .iter()
        .flat_map(|d| &d.train)
        .flat_map(|g| g.edge_vec.chunks_exact(3))
        .map(|v| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt())
        .fold(f64::INFINITY, f64::min);
    // A minimum through the sum reduction: one slot per rank.
    let mut slots = vec![0.0; dist.size()];
    slots[dist.rank()] = if mine.is_finite() { mine } else { -1.0 };
    dist.allreduce_sum(&mut slots);
    let d = slots
        .into_iter()
        .filter(|&x| x > 0.0)
        .fold(f64::INFINITY, f64::min);
    // Rounded to 1e-6 Å: the same value on every rank and in every resumed run.
    d.is_finite().then(|| (d * 1e6).floor() / 1e6)
}

impl DatasetRun {
    /// Dataset `i` of the config with this rank's shards of its trainset and valset as graphs.
    fn load(
        cfg: &TrainConfig,
        i: usize,
        meta: DatasetMeta,
        spec: BranchSpec,
        gs: &GraphSpec,
        dist: &Dist,
    ) -> Result<Self> {
        let (rank, size) = (dist.rank(), dist.size());
        let path = cfg.dataset_path(i);
        let ds = Dataset::open(&path)?;
        let tr = ds.split("trainset")?;
        let shard = shard_range(tr.n_graphs(), rank, size);
        let label = format!("{} trainset", path.display());
        let mut train = gs.load(&tr, shard.clone(), &label)?;
        let store = if cfg.training().ddstore {
            let s = crate::ddstore::DdStore::new(&train, shard.clone(), tr.n_graphs(), dist)?;
            train = Vec::new();
            Some(s)
        } else {
            None
        };
        let train_atoms = tr.n_atoms().to_vec();
        let va = ds.split("valset")?;
        let vshard = shard_range(va.n_graphs(), rank, size);
        let val = gs.load(&va, vshard, &format!("{} valset", path.display()))?;
        Ok(DatasetRun {
            name: spec.name.clone(),
            path,
            meta,
            spec,
            train,
            train_shard: shard,
            train_atoms,
            val,
            store,
            bootstrap: None,
        })
    }
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
        if dist.is_root() {
            // Temporaries of a run killed mid-write (kill -9, a full disk) would keep the disk
            // full and make this run fail: remove ours, only ours.
            for name in crate::checkpoint::remove_stale_temporaries(&opts.out_dir)? {
                eprintln!(
                    "hydragnn train: removed {}, a temporary left by an interrupted run",
                    opts.out_dir.join(name).display()
                );
            }
        }
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
        let kind = t.precision.master().kind();
        let device = dist.device()?;
        if t.precision.autocast().is_some() && dist.is_root() && cfg.config.verbosity.level >= 1 {
            let native = device != Device::Cpu
                || std::fs::read_to_string("/proc/cpuinfo")
                    .is_ok_and(|c| c.contains("avx512_bf16") || c.contains("amx_bf16"));
            eprintln!(
                "precision bf16: float32 master weights and optimiser state, bfloat16 autocast \
                 for the forward, force and backward passes on {device:?}{}; the model file is float32",
                if native { "" } else { " (this CPU has no AVX512-BF16/AMX: emulated, slow)" }
            );
        }
        let gs = GraphSpec::new(
            mc.radius,
            &mc.species,
            !cfg.arch().periodic_boundary_conditions,
        );
        let mut datasets = metas
            .into_iter()
            .enumerate()
            .map(|(i, (meta, spec))| DatasetRun::load(cfg, i, meta, spec, &gs, dist))
            .collect::<Result<Vec<_>>>()?;
        // A bootstrapped ensemble member k >= 1 (docs/ensembles.md): its resample of each trainset.
        if t.ensemble
            .as_ref()
            .is_some_and(|e| e.bootstrap && e.member.is_some_and(|m| m >= 1))
        {
            for (d, run) in datasets.iter_mut().enumerate() {
                run.bootstrap = Some(bootstrap_indices(t.seed, d, run.train_atoms.len()));
            }
        }
        // The shortest pair of the trainset (over every rank's shard) goes into the model file,
        // and sets the ZBL radii of the repulsion that new models get (docs/training.md).
        let mut mc = mc;
        let d_min = shortest_distance(&datasets, dist);
        mc.min_training_distance = d_min;
        mc.zbl = cfg.arch().zbl.resolve(d_min, mc.radius);
        let mut model = new_model(mc.clone(), kind, device, t.seed as i64)?;
        if cfg.arch().zero_init_heads {
            model.zero_head_outputs();
        }
        if !opts.resume {
            if let Some(base) = super::finetune::load_base(cfg, kind, device)? {
                let (shared, branch) = super::finetune::copy_weights(cfg, &mut model, &base)?;
                if dist.is_root() && cfg.config.verbosity.level >= 1 {
                    eprintln!(
                        "init_from {}: {shared} shared and {branch} branch weights",
                        super::finetune::init_path(cfg).expect("set").display()
                    );
                }
            }
        }
        if cfg.arch().freeze_conv_layers {
            super::finetune::freeze_shared(&mut model);
        }
        let opt = AdamW::new(model.var_store(), &t.optimizer);
        let ema = t.ema_decay.map(|d| Ema::new(&opt, d));
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
            lr_horizon: 0,
        };
        let verbose = cfg.config.verbosity.level;
        let mut tr = Trainer {
            cfg,
            opts,
            dist,
            model,
            datasets,
            opt,
            ema,
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
            let resumed = tr.opts.resume.then_some(tr.state.steps_log_len);
            tr.log = StepLog::open(&steps, resumed)?;
            if resumed.is_some() {
                tr.write_metrics()?;
            }
            tr.write_bootstrap()?;
        }
        Ok(tr)
    }

    /// `bootstrap.json` of a bootstrapped ensemble member: its seed and, per dataset, how often
    /// each trainset graph is drawn (nothing is written for the plain split).
    fn write_bootstrap(&self) -> Result<()> {
        if self.datasets.iter().all(|d| d.bootstrap.is_none()) {
            return Ok(());
        }
        let per: Vec<serde_json::Value> = self
            .datasets
            .iter()
            .map(|d| {
                let n = d.train_atoms.len();
                let counts = draw_counts(d.bootstrap.as_deref().unwrap_or(&[]), n);
                serde_json::json!({
                    "name": d.name,
                    "n": n,
                    "distinct": counts.iter().filter(|&&c| c > 0).count(),
                    "counts": counts,
                })
            })
            .collect();
        let v = serde_json::json!({
            "seed": self.cfg.training().seed,
            "member": self.cfg.training().ensemble.as_ref().and_then(|e| e.member),
            "datasets": per,
        });
        let path = self.opts.out_dir.join(BOOTSTRAP_JSON);
        crate::checkpoint::write_atomic(
            &path,
            serde_json::to_string_pretty(&v)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// The epoch plan with a bootstrapped member's plan indices replaced by the trainset graphs
    /// they stand for (unchanged for the plain split).
    pub(super) fn resample_plan(&self, plan: Vec<super::PlannedBatch>) -> Vec<super::PlannedBatch> {
        if self.datasets.iter().all(|d| d.bootstrap.is_none()) {
            return plan;
        }
        plan.into_iter()
            .map(|b| {
                b.into_iter()
                    .map(|(d, i)| (d, self.datasets[d].bootstrap.as_ref().map_or(i, |m| m[i])))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_draws_repeat_and_miss_and_depend_on_seed_and_dataset() {
        let a = bootstrap_indices(2, 0, 50);
        assert_eq!(a, bootstrap_indices(2, 0, 50));
        assert_ne!(a, bootstrap_indices(3, 0, 50));
        assert_ne!(a, bootstrap_indices(2, 1, 50));
        let c = draw_counts(&a, 50);
        assert_eq!(c.iter().sum::<usize>(), 50);
        assert!(c.iter().any(|&x| x >= 2) && c.contains(&0), "{c:?}");
    }
}
