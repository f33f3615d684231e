//! `hydragnn train --ensemble K`: K members of one config that differ by seed (member k trains
//! with `Training.seed + k`, which sets both its initial weights and its data order), each in
//! `DIR/member_k/` as a single run would write it, then `DIR/ensemble.model` (the members' best
//! models, [`mlip::ensemble::build`]), `DIR/best.model` (a copy of the member with the lowest
//! validation loss) and `DIR/ensemble.json` (per member: seed, directory, stop reason, validation
//! loss and metrics).
//!
//! Ranks. With G = min(np, K) groups, rank r belongs to group `r * G / np` (contiguous blocks of
//! ranks) and its group trains members g, g + G, g + 2G, ... one after the other on its own
//! sub-communicator ([`Dist::split`]), data-parallel inside the group exactly as a single run.
//! np ≥ K: every member trains at the same time on np/K ranks; np < K: members go round-robin
//! over single-rank groups. Member 0 is the run that the same config without `--ensemble`
//! would make (same seed, same steps).
//!
//! The config key `NeuralNetwork.Training.ensemble` (`{"size": K, "bootstrap": false}` or K)
//! does the same as `--ensemble K`; the flag overrides its size ([`ensemble_size`]). With
//! `bootstrap: true`, member k ≥ 1 trains on a bootstrap resample of every trainset (n draws
//! with replacement, seeded by its seed: [`bootstrap_indices`]) and writes the counts to
//! `member_k/bootstrap.json`; member 0 keeps the plain split, so it stays the single run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::metrics::BranchMetrics;

use super::{files, train, TrainOptions};

pub use super::setup::{bootstrap_indices, BOOTSTRAP_JSON};

/// File names of an ensemble run's output directory.
pub mod ensemble_files {
    /// The ensemble file of the members' best models.
    pub const ENSEMBLE_MODEL: &str = "ensemble.model";
    /// The members' seeds, directories and validation metrics.
    pub const SUMMARY: &str = "ensemble.json";
}

/// The directory of member `k` inside the output directory.
pub fn member_dir(out_dir: &Path, k: usize) -> PathBuf {
    out_dir.join(format!("member_{k}"))
}

/// The seed of member `k`: the config's seed plus k (member 0 is the single run's seed).
pub fn member_seed(base: u64, k: usize) -> u64 {
    base.wrapping_add(k as u64)
}

/// Which group of ranks rank `rank` of `size` belongs to when `k` members are trained, and how
/// many groups there are: G = min(size, k) contiguous blocks.
pub fn rank_group(rank: usize, size: usize, k: usize) -> (usize, usize) {
    let g = size.min(k).max(1);
    (rank * g / size.max(1), g)
}

/// One member as recorded in `ensemble.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    /// Member index (its place in the ensemble file).
    pub index: usize,
    /// `Training.seed` it trained with.
    pub seed: u64,
    /// Its output directory.
    pub dir: PathBuf,
    /// The validation loss of its best model, summed over branches (None without a valset).
    pub val_loss: Option<f64>,
    /// Its best model's metrics per split and branch.
    pub metrics: BTreeMap<String, BTreeMap<String, BranchMetrics>>,
}

/// What an ensemble run did (on the world's rank 0; other ranks get the members they trained).
#[derive(Debug, Clone)]
pub struct EnsembleSummary {
    /// The output directory.
    pub out_dir: PathBuf,
    /// The members trained by this rank's group (all of them on rank 0 after the gather of
    /// validation losses; metrics only for the members this rank trained).
    pub members: Vec<MemberRecord>,
    /// The member copied to `best.model` (lowest validation loss).
    pub best_member: usize,
    /// The number of ranks of each group (group g trains members g, g + G, ...).
    pub groups: Vec<usize>,
}

/// The ensemble size of a run: `--ensemble K` (`flag`) if given, else the config's
/// `Training.ensemble.size`; None: a single model. Refuses sizes below 2 and a config that sets
/// `ensemble.member` (the trainer writes it into the members' own configs).
pub fn ensemble_size(cfg: &TrainConfig, flag: Option<usize>) -> Result<Option<usize>> {
    if let Some(m) = cfg.training().ensemble.as_ref().and_then(|e| e.member) {
        return Err(Error::config(
            &cfg.path,
            "NeuralNetwork.Training.ensemble.member",
            format!("{m}: set by the trainer in a member's own config (DIR/member_k), not an input; remove it"),
        ));
    }
    let k = flag.or_else(|| cfg.training().ensemble.as_ref().map(|e| e.size));
    if let Some(k) = k {
        check_size(k)?;
    }
    Ok(k)
}

/// Whether the members k ≥ 1 train on bootstrap resamples (`Training.ensemble.bootstrap`).
pub fn bootstrap(cfg: &TrainConfig) -> bool {
    cfg.training()
        .ensemble
        .as_ref()
        .is_some_and(|e| e.bootstrap)
}

/// The config of member `k` of `size`: `Training.seed` replaced by [`member_seed`] in the text
/// too, so that the member's checkpoint and model provenance record the config it really ran.
/// With bootstrap, `Training.ensemble` becomes `{"size": size, "bootstrap": true, "member": k}`
/// (the member's trainer resamples when `member` ≥ 1).
pub fn member_config(cfg: &TrainConfig, k: usize, size: usize) -> Result<TrainConfig> {
    let seed = member_seed(cfg.training().seed, k);
    let mut v: serde_json::Value = serde_json::from_str(&cfg.text)
        .map_err(|e| Error::config(&cfg.path, ".", format!("not JSON: {e}")))?;
    let t = v
        .get_mut("NeuralNetwork")
        .and_then(|n| n.get_mut("Training"))
        .and_then(|t| t.as_object_mut())
        .ok_or_else(|| Error::config(&cfg.path, "NeuralNetwork.Training", "missing"))?;
    t.insert("seed".into(), seed.into());
    if bootstrap(cfg) {
        t.insert(
            "ensemble".into(),
            serde_json::json!({"size": size, "bootstrap": true, "member": k}),
        );
    }
    let text = serde_json::to_string_pretty(&v)
        .map_err(|e| Error::config(&cfg.path, ".", e.to_string()))?;
    TrainConfig::parse(&text, &cfg.path)
}

/// Checks the ensemble size: 2 or more (one member is a single model: leave `--ensemble` out).
pub fn check_size(k: usize) -> Result<()> {
    match k {
        0 => Err(Error::Invalid(
            "--ensemble 0: an ensemble needs at least 2 members".into(),
        )),
        1 => Err(Error::Invalid(
            "--ensemble 1: one member is a single model (leave --ensemble out); an ensemble needs at least 2"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn val_loss(m: &BTreeMap<String, BTreeMap<String, BranchMetrics>>) -> Option<f64> {
    m.get("valset")
        .filter(|per| !per.is_empty())
        .map(|per| per.values().map(|b| b.loss).sum())
}

/// Trains `k` members (see the module documentation), then, on the world's rank 0, writes the
/// ensemble file, `best.model` and `ensemble.json`. `opts.out_dir` is the ensemble's directory;
/// `opts.resume` resumes every member from its own checkpoint.
pub fn train_ensemble(
    cfg: &TrainConfig,
    k: usize,
    opts: TrainOptions,
    world: &Dist,
) -> Result<EnsembleSummary> {
    check_size(k)?;
    ensemble_size(cfg, Some(k))?;
    // Every member's config is checked before any rank trains.
    let cfgs = (0..k)
        .map(|i| member_config(cfg, i, k))
        .collect::<Result<Vec<_>>>()?;
    let (group, n_groups) = rank_group(world.rank(), world.size(), k);
    let mut records = Vec::new();
    // Slot per member: validation loss (+1 so that 0 means "not mine"), gathered by a sum.
    let mut losses = vec![0.0; 2 * k];
    {
        let sub = world.split(group);
        for (i, mcfg) in cfgs.iter().enumerate().skip(group).step_by(n_groups) {
            let dir = member_dir(&opts.out_dir, i);
            if sub.is_root() && cfg.config.verbosity.level >= 1 {
                eprintln!(
                    "hydragnn train --ensemble {k}: member {i} (seed {}) on {} rank(s), output {}",
                    mcfg.training().seed,
                    sub.size(),
                    dir.display()
                );
            }
            let mopts = TrainOptions {
                out_dir: dir.clone(),
                resume: opts.resume,
                command: opts.command.clone(),
            };
            let s = train(mcfg, mopts, &sub).map_err(|e| match e {
                Error::Invalid(m) => Error::Invalid(format!("member {i}: {m}")),
                e => e,
            })?;
            let vl = val_loss(&s.final_metrics).or_else(|| {
                s.best
                    .as_ref()
                    .map(|(_, b)| b.values().map(|m| m.loss).sum())
            });
            if sub.is_root() {
                losses[2 * i] = 1.0;
                losses[2 * i + 1] = vl.unwrap_or(f64::NAN);
            }
            records.push(MemberRecord {
                index: i,
                seed: mcfg.training().seed,
                dir,
                val_loss: vl,
                metrics: s.final_metrics.clone(),
            });
        }
        // `sub` is freed here, before the world communicator.
    }
    world.allreduce_sum(&mut losses);
    let loss_of = |i: usize| {
        let l = losses[2 * i + 1];
        l.is_finite().then_some(l)
    };
    let best_member = (0..k)
        .min_by(|&a, &b| {
            let (la, lb) = (
                loss_of(a).unwrap_or(f64::INFINITY),
                loss_of(b).unwrap_or(f64::INFINITY),
            );
            la.total_cmp(&lb)
        })
        .unwrap_or(0);
    let ranks_per_group: Vec<usize> = (0..n_groups)
        .map(|g| {
            (0..world.size())
                .filter(|&r| rank_group(r, world.size(), k).0 == g)
                .count()
        })
        .collect();
    if world.is_root() {
        // Records of the members other groups trained: their metrics.json.
        let mut all: Vec<MemberRecord> = Vec::with_capacity(k);
        for (i, mcfg) in cfgs.iter().enumerate() {
            if let Some(r) = records.iter().find(|r| r.index == i) {
                all.push(r.clone());
            } else {
                let dir = member_dir(&opts.out_dir, i);
                all.push(MemberRecord {
                    index: i,
                    seed: mcfg.training().seed,
                    metrics: read_final_metrics(&dir)?,
                    dir,
                    val_loss: loss_of(i),
                });
            }
        }
        let models: Vec<PathBuf> = (0..k)
            .map(|i| member_dir(&opts.out_dir, i).join(files::BEST_MODEL))
            .collect();
        let ens = opts.out_dir.join(ensemble_files::ENSEMBLE_MODEL);
        mlip::ensemble::build(&models, &ens)?;
        let best = opts.out_dir.join(files::BEST_MODEL);
        std::fs::copy(&models[best_member], &best).map_err(|e| Error::io(&best, e))?;
        let json = serde_json::json!({
            "num_members": k,
            "bootstrap": bootstrap(cfg),
            "seeds": all.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "groups": n_groups,
            "ranks_per_group": &ranks_per_group,
            "best_member": best_member,
            "best_model": files::BEST_MODEL,
            "ensemble_model": ensemble_files::ENSEMBLE_MODEL,
            "members": all,
        });
        let path = opts.out_dir.join(ensemble_files::SUMMARY);
        crate::checkpoint::write_atomic(
            &path,
            serde_json::to_string_pretty(&json)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        records = all;
    }
    world.barrier();
    Ok(EnsembleSummary {
        out_dir: opts.out_dir,
        members: records,
        best_member,
        groups: ranks_per_group,
    })
}

/// `best_model_metrics` of a member's `metrics.json` (empty when absent).
fn read_final_metrics(dir: &Path) -> Result<BTreeMap<String, BTreeMap<String, BranchMetrics>>> {
    let path = dir.join(files::METRICS_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not JSON: {e}", path.display())))?;
    Ok(v.get("best_model_metrics")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_contiguous_blocks_and_cover_every_member() {
        // np >= K: K groups; np < K: np single-rank groups.
        assert_eq!(rank_group(0, 4, 2), (0, 2));
        assert_eq!(rank_group(1, 4, 2), (0, 2));
        assert_eq!(rank_group(2, 4, 2), (1, 2));
        assert_eq!(rank_group(3, 4, 2), (1, 2));
        assert_eq!(rank_group(1, 2, 4), (1, 2));
        assert_eq!(rank_group(0, 1, 3), (0, 1));
        for (np, k) in [(1, 2), (2, 2), (3, 2), (2, 5), (5, 3), (7, 7)] {
            let mut seen = vec![0; k];
            let groups: std::collections::BTreeSet<usize> =
                (0..np).map(|r| rank_group(r, np, k).0).collect();
            for g in &groups {
                for m in (*g..k).step_by(np.min(k)) {
                    seen[m] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "np {np} k {k}: {seen:?}");
        }
    }

    #[test]
    fn sizes_below_two_are_refused() {
        assert!(check_size(0)
            .unwrap_err()
            .to_string()
            .contains("--ensemble 0"));
        assert!(check_size(1)
            .unwrap_err()
            .to_string()
            .contains("single model"));
        assert!(check_size(2).is_ok());
    }
}
