//! The training loop: optimiser steps on the planned batches, validation at the end of every
//! epoch, the learning-rate schedule, early stopping and the other ends of a run.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::evaluate::eval_sums;
use crate::graphs::{collate, Graph};
use crate::metrics::{batch_loss_counted, finish, predict, BranchMetrics, LossCounts};
use crate::optim::AdamW;

use crate::config::BatchMixing;

use super::{batch_plan, files, EpochRecord, TrainSummary, Trainer};

impl Trainer<'_> {
    /// The autocast region of a `bf16` run (None in fp32 and fp64): the forward, force and loss
    /// computations of a step run inside it, the backward pass after it is closed.
    pub(super) fn autocast(&self) -> Result<Option<mlip::precision::Autocast>> {
        match self.cfg.training().precision.autocast() {
            Some(k) => Ok(Some(mlip::precision::Autocast::new(self.device, k)?)),
            None => Ok(None),
        }
    }

    /// One optimiser step on the global batch `idx` of dataset `d`; returns the global loss.
    pub(super) fn step(&mut self, d: usize, idx: &[usize]) -> Result<f64> {
        let run = &self.datasets[d];
        let spec = &run.spec;
        // With the ddstore, this rank's part of the batch fetched from wherever it is stored.
        let fetched = match &run.store {
            Some(s) => s.fetch(&s.my_part(idx))?,
            None => Vec::new(),
        };
        let local: Vec<&Graph> = match &run.store {
            Some(_) => fetched.iter().collect(),
            None => idx
                .iter()
                .filter(|i| run.train_shard.contains(i))
                .map(|&i| &run.train[i - run.train_shard.start])
                .collect(),
        };
        self.opt.zero_grad();
        let c = (!local.is_empty()).then(|| {
            collate(
                &local,
                &spec.graph_props(),
                &spec.node_props(),
                self.kind,
                self.device,
                spec.forces || spec.stress,
            )
        });
        // Entries present in the global batch (labels may be missing from some graphs): the
        // denominators of the loss terms, added over ranks.
        let mut counts = c
            .as_ref()
            .map_or_else(
                || LossCounts::all(spec, 0.0, 0.0),
                |c| LossCounts::of(spec, c),
            )
            .to_vec();
        self.dist.allreduce_sum(&mut counts);
        let counts = LossCounts::from_slice(&counts);
        let mut local_loss = 0.0;
        if let Some(c) = &c {
            let autocast = self.autocast()?;
            let p = predict(&self.model, spec, c, true)?;
            let now = self.scheduled_spec(spec);
            let mut loss =
                batch_loss_counted(&now, &p, c, self.cfg.training().loss_function_type, &counts);
            let w = self.cfg.config.dataset.datasets[d].loss_weight;
            if w != 1.0 {
                loss *= w;
            }
            drop(autocast);
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
        // A batch of one dataset updates the shared parameters and its own branch only.
        let (model, branch) = (&self.model, spec.branch);
        self.opt
            .step(|v| model.parameter_branch(v).is_none_or(|b| b == branch));
        Ok(loss)
    }

    /// `spec` with the weights of this step under `Training.loss_weights_start` (itself when
    /// the map is empty).
    pub(super) fn scheduled_spec<'s>(
        &self,
        spec: &'s crate::metrics::BranchSpec,
    ) -> std::borrow::Cow<'s, crate::metrics::BranchSpec> {
        let t = self.cfg.training();
        if t.loss_weights_start.is_empty() {
            return std::borrow::Cow::Borrowed(spec);
        }
        let ratio = self.opt.lr / t.optimizer.learning_rate;
        std::borrow::Cow::Owned(spec.with_start_weights(&t.loss_weights_start, ratio))
    }

    /// Validation metrics per branch (summed over ranks) and the total validation loss.
    pub(super) fn validate(&self) -> Result<(BTreeMap<String, BranchMetrics>, f64)> {
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
            // The dataset's loss_weight (1 by default: x * 1.0 is exact).
            let w = self
                .cfg
                .config
                .dataset
                .datasets
                .iter()
                .find(|e| e.name == run.name)
                .map_or(1.0, |e| e.loss_weight);
            total += w * m.loss;
            out.insert(run.name.clone(), m);
        }
        Ok((out, total))
    }

    /// The rate of the next step under `ExponentialDecay` (unchanged for the other schedules).
    fn set_scheduled_lr(&mut self) {
        let t = self.cfg.training();
        if let Some(lr) = t.scheduler.lr_at_step(
            t.optimizer.learning_rate,
            self.state.step,
            self.state.lr_horizon,
        ) {
            self.opt.lr = lr;
        }
    }

    /// Under `max_time`, at the end of an epoch: the steps the run will take in all, from the
    /// mean epoch time of this session so far (averaged over ranks, so every rank plans the
    /// same), with the stop rule of `run` (another epoch starts while the time so far plus one
    /// epoch stays within `max_time`).
    fn replan_horizon(&mut self, max_time: f64, steps_per_epoch: usize, num_epoch: usize) {
        let epochs_here = self
            .state
            .history
            .iter()
            .filter(|r| r.time_s > self.base_elapsed)
            .count()
            .max(1);
        let mut t = [self.started.elapsed().as_secs_f64() + clock_skew()];
        self.dist.allreduce_sum(&mut t);
        let elapsed = t[0] / self.dist.size() as f64;
        let per_epoch = elapsed / epochs_here as f64;
        let fit = ((max_time - elapsed) / per_epoch).floor().max(0.0) as usize;
        let more = fit.min(num_epoch.saturating_sub(self.state.epoch));
        self.state.lr_horizon = (self.state.step + more * steps_per_epoch).max(1);
        self.set_scheduled_lr();
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
        // Joules per epoch from RAPL (rank 0's node) into energy.csv; absent counters: one note.
        let mut meter = root.then(crate::energy::EnergyMeter::open).flatten();
        if root && meter.is_none() && self.verbose >= 1 {
            eprintln!(
                "energy: no readable RAPL counters (/sys/class/powercap) and no NVML GPU counters: energy.csv not written"
            );
        }
        if let (Some(m), true) = (&meter, self.verbose >= 1) {
            let mut from: Vec<String> = m.zones().to_vec();
            from.extend(m.gpus().iter().cloned());
            eprintln!(
                "energy: joules per epoch into energy.csv from {}",
                from.join(", ")
            );
        }
        // Joules of each epoch of this session (rank 0), for the energy-aware stop.
        let mut epoch_joules: Vec<f64> = Vec::new();
        if let (Some(_), true, true) = (&t.energy_stopping, root, meter.is_none()) {
            eprintln!(
                "EnergyStopping: no readable RAPL counters or NVML GPU counters, so the energy-aware stop is off in this run"
            );
        }
        if self.state.finished && self.state.epoch >= t.num_epoch {
            stopped = "num_epoch".into();
        }
        while stopped.is_empty() && self.state.epoch < t.num_epoch {
            let epoch_start = Instant::now();
            let plan = batch_plan(
                t.seed,
                self.state.epoch,
                &sizes,
                t.batch_size,
                t.batch_mixing,
                &self.cfg.config.dataset.sampling,
            );
            let plan = self.resample_plan(plan);
            if self.state.lr_horizon == 0 {
                // Until an epoch has been timed: every epoch of this length (`max_steps` is an
                // interruption, which --resume may lift: it does not shorten the plan).
                self.state.lr_horizon = (t.num_epoch * plan.len()).max(1);
                self.set_scheduled_lr();
            }
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
            for batch in plan.iter().skip(self.state.step_in_epoch) {
                // Warm-up: this step's rate is the scheduled one scaled by (step + 1) / warmup.
                let scheduled = self.opt.lr;
                if self.state.step < t.warmup_steps {
                    self.opt.lr = super::warmup_lr(scheduled, self.state.step, t.warmup_steps);
                }
                let loss = match t.batch_mixing {
                    BatchMixing::PerDataset => {
                        let idx: Vec<usize> = batch.iter().map(|&(_, i)| i).collect();
                        self.step(batch[0].0, &idx)?
                    }
                    BatchMixing::Mixed => self.step_mixed(batch)?,
                };
                if let Some(ema) = &mut self.ema {
                    ema.update(&self.opt);
                }
                let atoms: usize = batch
                    .iter()
                    .map(|&(d, i)| self.datasets[d].train_atoms[i])
                    .sum();
                // The datasets of the batch, in the config's order ("a+c" for a mixed batch).
                let mut names: Vec<usize> = batch.iter().map(|&(d, _)| d).collect();
                names.sort_unstable();
                names.dedup();
                let names: Vec<&str> = names
                    .iter()
                    .map(|&d| self.datasets[d].name.as_str())
                    .collect();
                n_graphs += batch.len();
                n_atoms += atoms;
                self.state.step += 1;
                self.state.step_in_epoch += 1;
                self.state.epoch_loss.0 += loss;
                self.state.epoch_loss.1 += 1;
                let line = format!(
                    "{},{},{},{},{},{:e},{:e}\n",
                    self.state.step,
                    self.state.epoch + 1,
                    names.join("+"),
                    batch.len(),
                    atoms,
                    loss,
                    self.opt.lr
                );
                self.log.line(&line, &steps_path)?;
                self.opt.lr = scheduled;
                // ExponentialDecay: the rate of the next step (a function of the step count).
                if let Some(lr) = t.scheduler.lr_at_step(
                    t.optimizer.learning_rate,
                    self.state.step,
                    self.state.lr_horizon,
                ) {
                    self.opt.lr = lr;
                }
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
            // End of epoch: validate, schedule, early-stop, export the best model (with
            // `ema_decay`, all of it on the averaged weights, swapped back in below).
            if let Some(ema) = &mut self.ema {
                ema.swap(&mut self.opt);
            }
            let (branches, val_loss) = self.validate()?;
            if !val_loss.is_finite() {
                return Err(Error::Diverged(format!(
                    "validation loss is {val_loss} after epoch {}",
                    self.state.epoch + 1
                )));
            }
            let epoch = self.state.epoch + 1;
            for run in &self.datasets {
                if let Some(s) = &run.store {
                    s.end_epoch(
                        &run.name,
                        epoch,
                        self.dist,
                        &self.opts.out_dir,
                        self.verbose >= 1,
                    )?;
                }
            }
            if let Some(m) = &mut meter {
                let j = m.epoch_end(epoch, &self.opts.out_dir)?;
                epoch_joules.push(j);
                if self.verbose >= 1 {
                    eprintln!(
                        "    energy: {j:.1} J this epoch (RAPL {})",
                        m.zones().join(" ")
                    );
                }
            }
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
            if !t.scheduler.by_step() {
                self.opt.lr = self.state.plateau.step(val_loss, self.opt.lr, &t.scheduler);
            }
            let stop_early = t.early_stopping && self.state.early.step(val_loss, t.patience);
            // The energy-aware stop, decided on rank 0 (which reads the counters) for all.
            let mut energy_note = None;
            if let (Some(es), false) = (&t.energy_stopping, epoch_joules.is_empty()) {
                // This session's epochs: the last len(epoch_joules) records plus this one.
                let mut vals: Vec<f64> = self
                    .state
                    .history
                    .iter()
                    .rev()
                    .take(epoch_joules.len() - 1)
                    .map(|r| r.val_loss)
                    .collect();
                vals.reverse();
                vals.push(val_loss);
                if let Some((gain, kj)) =
                    crate::energy::gain_per_window(&vals, &epoch_joules, es.window)
                {
                    if gain / kj < es.min_gain_per_kj {
                        energy_note = Some(format!(
                            "energy_stopping: the best validation loss fell {:.3}% over the last {} epochs for {kj:.3} kJ ({:.3e} per kJ < min_gain_per_kj {:e})",
                            100.0 * gain,
                            es.window,
                            gain / kj,
                            es.min_gain_per_kj
                        ));
                    }
                }
            }
            let stop_energy = t.energy_stopping.is_some() && self.dist.any(energy_note.is_some());
            if self.state.best.is_none_or(|(b, _)| val_loss < b) {
                self.state.best = Some((val_loss, epoch));
                self.export_best(&rec)?;
            }
            if let Some(ema) = &mut self.ema {
                ema.swap(&mut self.opt);
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
            if let Some(m) = t.max_time {
                self.replan_horizon(m, plan.len(), t.num_epoch);
            }
            if stop_early {
                stopped = "early_stopping".into();
            } else if stop_energy {
                if let (Some(note), true) = (&energy_note, self.verbose >= 1) {
                    eprintln!("{note}");
                }
                stopped = "energy_stopping".into();
            } else if self.dist.any(
                // Every rank must stop at the same epoch: each reads its own clock, so one rank
                // may be past the limit while another is not (an MPI run then hung in the next
                // epoch's collectives); the stop is the OR over ranks.
                t.max_time.is_some_and(|m| {
                    self.started.elapsed().as_secs_f64() + clock_skew() + last_epoch_secs > m
                }),
            ) {
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
}

/// Seconds added to this process's clock in the `max_time` decision: 0, or the value of
/// `HYDRAGNN_TEST_CLOCK_SKEW` (a test hook: one rank of an MPI run given a skewed clock must not
/// stop alone, `train/tests/train_mpi.rs`).
fn clock_skew() -> f64 {
    std::env::var("HYDRAGNN_TEST_CLOCK_SKEW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
