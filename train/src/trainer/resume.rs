//! Checkpoints and --resume: the weights, the AdamW moments and the training state written
//! atomically; a resumed run checks that its config differs only in what may change.

use std::path::Path;

use tch::Tensor;

use super::{files, Trainer};
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::error::{Error, Result};

/// The parts of a config that must not change on --resume, as comparable JSON.
pub(super) fn resume_key(c: &TrainConfig) -> String {
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

impl Trainer<'_> {
    pub(super) fn restore(&mut self, path: &Path) -> Result<()> {
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
            if let Some(ema) = &mut self.ema {
                for (a, p) in ema.avg.iter_mut().zip(&self.opt.params) {
                    let t = ck.tensors.get(&format!("ema/{}", p.name)).ok_or_else(|| {
                        Error::checkpoint(path, format!("no ema for '{}'", p.name))
                    })?;
                    a.f_copy_(&t.to_kind(self.kind).to_device(self.device))?;
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

    pub(super) fn save_checkpoint(&mut self) -> Result<()> {
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
        if let Some(ema) = &self.ema {
            for (a, p) in ema.avg.iter().zip(&self.opt.params) {
                tensors.push((format!("ema/{}", p.name), a));
            }
        }
        checkpoint::save(
            &self.opts.out_dir.join(files::CHECKPOINT),
            &tensors,
            &self.state,
            &self.cfg.text,
        )
    }
}
