//! What a run writes (rank 0): steps.csv, metrics.csv and metrics.json, the best model with its
//! provenance, and at the end the best model's metrics on every split with parity plots.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{files, load_model, Trainer};
use crate::checkpoint;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::evaluate::eval_sums;
use crate::graphs::GraphSpec;
use crate::metrics::{finish, BranchMetrics, Parity};

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

/// Appends lines to steps.csv and knows its length (rank 0 only).
pub(super) struct StepLog {
    pub(super) file: Option<std::fs::File>,
    pub(super) len: u64,
}

impl StepLog {
    /// Opens steps.csv: a new run truncates it and writes the header; a resumed run cuts it
    /// back to `resumed` bytes (its length at the checkpoint) and appends from there.
    pub(super) fn open(path: &Path, resumed: Option<u64>) -> Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = resumed.unwrap_or(0);
        f.set_len(len).map_err(|e| Error::io(path, e))?;
        let mut log = StepLog { file: Some(f), len };
        if resumed.is_none() {
            log.line("step,epoch,dataset,graphs,atoms,loss,lr\n", path)?;
        }
        Ok(log)
    }

    pub(super) fn line(&mut self, s: &str, path: &Path) -> Result<()> {
        if let Some(f) = &mut self.file {
            f.write_all(s.as_bytes()).map_err(|e| Error::io(path, e))?;
            self.len += s.len() as u64;
        }
        Ok(())
    }
}

impl Trainer<'_> {
    pub(super) fn provenance(&self, rec: &EpochRecord) -> BTreeMap<String, String> {
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
        // The loss, so that `hydragnn eval` scores with the same weights.
        let loss = crate::evaluate::LossRecord {
            loss_function_type: self.cfg.training().loss_function_type,
            branches: self
                .datasets
                .iter()
                .map(|d| (d.name.clone(), crate::evaluate::LossWeights::of(&d.spec)))
                .collect(),
        };
        p.insert(
            "loss".into(),
            serde_json::to_string(&loss).unwrap_or_default(),
        );
        p.insert("epoch".into(), rec.epoch.to_string());
        p.insert("step".into(), rec.step.to_string());
        p.insert(
            "validation_metrics".into(),
            serde_json::to_string(&rec.branches).unwrap_or_default(),
        );
        p
    }

    pub(super) fn export_best(&self, rec: &EpochRecord) -> Result<()> {
        if !self.dist.is_root() {
            return Ok(());
        }
        let path = self.opts.out_dir.join(files::BEST_MODEL);
        if let Err(e) = self.model.save(&path, &self.provenance(rec)) {
            // The engine writes best.tmp<pid> first; a full disk must not leave it behind.
            let _ = std::fs::remove_file(path.with_extension(format!("tmp{}", std::process::id())));
            return Err(e.into());
        }
        Ok(())
    }

    /// Rewrites metrics.csv and metrics.json from the history (atomically).
    pub(super) fn write_metrics(&self) -> Result<()> {
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
        self.write_metrics_json(None)
    }

    /// Writes metrics.json: the run, the best epoch and the per-epoch history, plus the best
    /// model's metrics per split and branch once training has finished (`best`).
    fn write_metrics_json(
        &self,
        best: Option<&BTreeMap<String, BTreeMap<String, BranchMetrics>>>,
    ) -> Result<()> {
        let mut json = serde_json::json!({
            "run": self.cfg.config.dataset.name,
            "best_epoch": self.state.best.map(|(_, e)| e),
            "epochs": &self.state.history,
        });
        if let Some(all) = best {
            json["best_model"] = files::BEST_MODEL.into();
            json["best_model_metrics"] = serde_json::to_value(all).unwrap_or_default();
        }
        checkpoint::write_atomic(
            &self.opts.out_dir.join(files::METRICS_JSON),
            serde_json::to_string_pretty(&json)
                .unwrap_or_default()
                .as_bytes(),
        )
    }

    /// Rank 0: the best model on the full validation and test splits, parity plots, metrics.json.
    pub(super) fn final_outputs(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, BranchMetrics>>> {
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
        self.write_metrics_json(Some(&all))?;
        Ok(all)
    }
}
