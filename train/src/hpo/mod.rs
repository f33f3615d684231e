//! `hydragnn hpo`: an asynchronous model-based hyperparameter search. Each trial is a real
//! `hydragnn train` process on a config derived from the base config by setting the space's
//! dotted paths ([`space`]); up to `parallel` trials run at once, and whenever one ends the next
//! point is drawn from everything finished so far (TPE-like, see [`space`]).
//!
//! Launch: a local process per trial (`mpirun -np R` when `ranks` > 1); inside a Slurm
//! allocation (`SLURM_JOB_ID` set) an `srun --exclusive -N 1 -n R` job step per trial, so trials
//! share the allocation. `HYDRAGNN_NUM_THREADS` is set to the cores divided among the running
//! ranks unless already set.
//!
//! Early stopping (median rule, as in Google Vizier): after `grace` epochs, a running trial whose
//! best validation loss up to epoch e is worse than the median of the other trials' best up to
//! epoch e (at least two of them having reached e) is stopped and recorded as `pruned` with the
//! loss it reached. The validation losses are read from the trial's `metrics.csv` while it runs.
//!
//! Outputs in the search directory: `trial_NNN/` (config.json, log.txt, the run), `hpo.csv`
//! (one row per trial: status, best validation loss, epochs, seconds, the parameter values;
//! rewritten after each trial) and `hpo.png` (validation loss per trial and best so far).

pub mod space;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::TrainConfig;
pub use space::{set_path, Domain, Param, Point, Space};

/// File names in the search directory.
pub const RESULTS_CSV: &str = "hpo.csv";
/// The plot of the search.
pub const RESULTS_PNG: &str = "hpo.png";

/// How to search.
#[derive(Debug, Clone)]
pub struct HpoOptions {
    /// The base training config.
    pub config: PathBuf,
    /// The search space (JSON).
    pub space: PathBuf,
    /// Number of trials.
    pub trials: usize,
    /// Trials run at once.
    pub parallel: usize,
    /// MPI ranks per trial.
    pub ranks: usize,
    /// Output directory.
    pub out: PathBuf,
    /// Random trials before the model-based sampler takes over.
    pub startup: usize,
    /// Seed of the sampler.
    pub seed: u64,
    /// Epochs a trial runs before it may be pruned (0: no pruning).
    pub grace: usize,
    /// The `hydragnn` executable that runs the trials.
    pub bin: PathBuf,
}

/// One finished trial.
#[derive(Debug, Clone)]
pub struct TrialResult {
    /// Trial number (0-based, in launch order).
    pub id: usize,
    /// Parameter values, in the space's order.
    pub values: Vec<Value>,
    /// `done`, `pruned` or `failed`.
    pub status: String,
    /// Best validation loss (infinite when the trial finished no epoch).
    pub val_loss: f64,
    /// Epochs completed.
    pub epochs: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// The trial's directory.
    pub dir: PathBuf,
}

struct Running {
    id: usize,
    point: Point,
    child: Child,
    dir: PathBuf,
    started: Instant,
    checked: usize,
    pruned: bool,
}

/// The validation losses per epoch in a run's metrics.csv (empty if none yet).
pub fn val_curve(run_dir: &Path) -> Vec<f64> {
    let Ok(text) = std::fs::read_to_string(run_dir.join(crate::trainer::files::METRICS_CSV)) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let Some(col) = lines
        .next()
        .and_then(|h| h.split(',').position(|c| c == "val_loss"))
    else {
        return Vec::new();
    };
    lines
        .filter_map(|l| l.split(',').nth(col).and_then(|v| v.parse().ok()))
        .collect()
}

fn prefix_min(c: &[f64], e: usize) -> f64 {
    c[..e].iter().cloned().fold(f64::INFINITY, f64::min)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The median rule: whether a trial whose curve is `mine` should stop at epoch `e`, given the
/// curves of the other trials.
pub fn should_prune(mine: &[f64], others: &[Vec<f64>], e: usize) -> bool {
    if e == 0 || mine.len() < e {
        return false;
    }
    let peers: Vec<f64> = others
        .iter()
        .filter(|c| c.len() >= e)
        .map(|c| prefix_min(c, e))
        .collect();
    peers.len() >= 2 && prefix_min(mine, e) > median(peers)
}

/// The base config as JSON with its dataset paths made absolute (trial configs live elsewhere).
fn base_config(path: &Path) -> Result<Value> {
    TrainConfig::load(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    if let Some(ds) = v
        .pointer_mut("/Dataset/datasets")
        .and_then(Value::as_array_mut)
    {
        for d in ds {
            if let Some(p) = d.get("path").and_then(Value::as_str) {
                if Path::new(p).is_relative() {
                    d["path"] = Value::from(dir.join(p).to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(v)
}

fn launch(o: &HpoOptions, cfg: &Path, run: &Path, log: &Path) -> Result<Child> {
    let log_file = std::fs::File::create(log).map_err(|e| Error::io(log, e))?;
    let err_file = log_file.try_clone().map_err(|e| Error::io(log, e))?;
    let train = [
        "train".as_ref(),
        cfg.as_os_str(),
        "--out".as_ref(),
        run.as_os_str(),
    ];
    let mut c = if std::env::var_os("SLURM_JOB_ID").is_some() {
        let mut c = Command::new("srun");
        c.args(["--exclusive", "-N", "1", "-n", &o.ranks.to_string()])
            .arg(&o.bin);
        c
    } else if o.ranks > 1 {
        let mut c = Command::new("mpirun");
        c.args(["-np", &o.ranks.to_string()]).arg(&o.bin);
        c
    } else {
        Command::new(&o.bin)
    };
    c.args(train);
    if std::env::var_os("HYDRAGNN_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        c.env(
            "HYDRAGNN_NUM_THREADS",
            (cores / (o.parallel * o.ranks)).max(1).to_string(),
        );
    }
    c.stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot start a trial ({}): {e}", o.bin.display())))
}

fn stop(child: &mut Child) {
    // SIGTERM (mpirun and srun forward it to their ranks), then reap.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Writes hpo.csv and hpo.png from the finished trials.
pub fn write_results(out: &Path, space: &Space, results: &[TrialResult]) -> Result<()> {
    let mut rows = results.to_vec();
    rows.sort_by_key(|r| r.id);
    let mut csv = String::from("trial,status,val_loss,epochs,seconds");
    for p in &space.params {
        csv.push(',');
        csv.push_str(&p.path);
    }
    csv.push('\n');
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{:e},{},{:.1}",
            r.id, r.status, r.val_loss, r.epochs, r.seconds
        ));
        for v in &r.values {
            csv.push(',');
            csv.push_str(&v.to_string().replace(',', ";"));
        }
        csv.push('\n');
    }
    let path = out.join(RESULTS_CSV);
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, csv).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let pts: Vec<(f64, f64, bool)> = rows
        .iter()
        .map(|r| (r.id as f64, r.val_loss, r.status != "done"))
        .collect();
    crate::plots::search_png(&out.join(RESULTS_PNG), "HYPERPARAMETER SEARCH", &pts)
}

/// Runs the search; returns the trials in the order they finished.
pub fn search(o: &HpoOptions) -> Result<Vec<TrialResult>> {
    let bad = |key: &str, msg: String| Error::Config {
        path: PathBuf::from("hydragnn hpo"),
        key: key.into(),
        msg,
    };
    if o.trials == 0 {
        return Err(bad("--trials", "must be >= 1, not 0".into()));
    }
    if o.parallel == 0 || o.ranks == 0 {
        return Err(bad("--parallel/--ranks", "must be >= 1".into()));
    }
    let space = Space::load(&o.space)?;
    let base = base_config(&o.config)?;
    if o.out.join(RESULTS_CSV).exists() {
        return Err(Error::Invalid(format!(
            "{}: exists: choose another --out for a new search",
            o.out.join(RESULTS_CSV).display()
        )));
    }
    std::fs::create_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    let out = std::fs::canonicalize(&o.out).map_err(|e| Error::io(&o.out, e))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
    let mut running: Vec<Running> = Vec::new();
    let mut results: Vec<TrialResult> = Vec::new();
    let mut done: Vec<(Point, f64)> = Vec::new();
    let mut curves: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut launched = 0;
    let bar = indicatif::ProgressBar::new(o.trials as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("hpo [{bar:30}] {pos}/{len} trials {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    while results.len() < o.trials {
        while running.len() < o.parallel && launched < o.trials {
            let id = launched;
            let point = space.suggest(&done, o.startup, &mut rng);
            let mut cfg = base.clone();
            for (p, v) in space.params.iter().zip(space.values(&point)) {
                set_path(&mut cfg, &p.path, v).map_err(|m| Error::Config {
                    path: o.space.clone(),
                    key: p.path.clone(),
                    msg: m,
                })?;
            }
            let dir = out.join(format!("trial_{id:03}"));
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let cfg_path = dir.join("config.json");
            let text = serde_json::to_string_pretty(&cfg).expect("JSON");
            // A sampled value the trainer would refuse fails the search here, naming the key.
            TrainConfig::parse(&text, &cfg_path)?;
            std::fs::write(&cfg_path, &text).map_err(|e| Error::io(&cfg_path, e))?;
            let child = launch(o, &cfg_path, &dir.join("run"), &dir.join("log.txt"))?;
            running.push(Running {
                id,
                point,
                child,
                dir,
                started: Instant::now(),
                checked: 0,
                pruned: false,
            });
            launched += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
        // Current curves of the running trials, for the median rule.
        let live: Vec<(usize, Vec<f64>)> = running
            .iter()
            .map(|r| (r.id, val_curve(&r.dir.join("run"))))
            .collect();
        let mut k = 0;
        while k < running.len() {
            let exited = running[k]
                .child
                .try_wait()
                .map_err(|e| Error::Invalid(format!("trial {}: {e}", running[k].id)))?;
            let curve = val_curve(&running[k].dir.join("run"));
            if exited.is_none() && o.grace > 0 && curve.len() > running[k].checked {
                let e = curve.len();
                running[k].checked = e;
                let others: Vec<Vec<f64>> = curves
                    .iter()
                    .chain(live.iter())
                    .filter(|(id, _)| *id != running[k].id)
                    .map(|(_, c)| c.clone())
                    .collect();
                if e >= o.grace && should_prune(&curve, &others, e) {
                    stop(&mut running[k].child);
                    running[k].pruned = true;
                }
            }
            let finished = running[k].pruned || exited.is_some();
            if !finished {
                k += 1;
                continue;
            }
            let r = running.remove(k);
            let curve = val_curve(&r.dir.join("run"));
            let ok = exited.is_some_and(|s| s.success());
            let status = if r.pruned {
                "pruned"
            } else if ok {
                "done"
            } else {
                "failed"
            };
            let val_loss = prefix_min(&curve, curve.len());
            if status == "failed" {
                bar.println(format!(
                    "trial {} failed ({}): see {}",
                    r.id,
                    exited.map_or("stopped".into(), |s| s.to_string()),
                    r.dir.join("log.txt").display()
                ));
            }
            done.push((
                r.point.clone(),
                if val_loss.is_finite() {
                    val_loss
                } else {
                    f64::INFINITY
                },
            ));
            curves.push((r.id, curve.clone()));
            results.push(TrialResult {
                id: r.id,
                values: space.values(&r.point),
                status: status.into(),
                val_loss,
                epochs: curve.len(),
                seconds: r.started.elapsed().as_secs_f64(),
                dir: r.dir,
            });
            write_results(&out, &space, &results)?;
            let best = results
                .iter()
                .map(|r| r.val_loss)
                .fold(f64::INFINITY, f64::min);
            bar.set_message(format!("best val loss {best:.4e}"));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if results.iter().all(|r| r.status == "failed") {
        return Err(Error::Invalid(format!(
            "every trial failed; see {}",
            out.join("trial_000/log.txt").display()
        )));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_rule() {
        let others = vec![vec![1.0, 0.5, 0.4], vec![2.0, 1.0], vec![3.0]];
        // Epoch 1: peers' bests 1, 2, 3 (median 2).
        assert!(should_prune(&[2.5], &others, 1));
        assert!(!should_prune(&[1.5], &others, 1));
        // Epoch 2: only two peers reached it (bests 0.5 and 1.0, median 0.75).
        assert!(should_prune(&[3.0, 0.8], &others, 2));
        assert!(!should_prune(&[3.0, 0.7], &others, 2));
        // Epoch 3: one peer only: never prune.
        assert!(!should_prune(&[9.0, 9.0, 9.0], &others, 3));
    }
}
