//! Checkpoints: one safetensors file holding the weights (`model/<name>`), the AdamW moments
//! (`adam_m/<name>`, `adam_v/<name>`) in their own precision, and a metadata block with the
//! training state as JSON (epoch, step, position in the epoch, learning rate, scheduler and
//! early-stopping state, history, log lengths), the config text and a SHA-256 over all of it.
//!
//! Written atomically: a temporary file in the same directory is written, fsynced, renamed over
//! the checkpoint, and the directory is fsynced; a kill -9 at any moment leaves either the old
//! or the new checkpoint, never a partial one. Loading verifies format, version and checksum.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::optim::{EarlyStopping, Plateau};

/// `format` metadata value.
pub const FORMAT: &str = "hydragnn-rs-checkpoint";
/// Version written and read.
pub const VERSION: u32 = 1;

/// Everything besides tensors that a run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Current epoch (0-based; the next batch belongs to it).
    pub epoch: usize,
    /// Optimiser steps taken in total.
    pub step: usize,
    /// Batches of `epoch` already taken.
    pub step_in_epoch: usize,
    /// Learning rate.
    pub lr: f64,
    /// AdamW step counter.
    pub adam_t: i64,
    /// Scheduler state.
    pub plateau: Plateau,
    /// Early-stopping state.
    pub early: EarlyStopping,
    /// Best validation loss and its epoch.
    pub best: Option<(f64, usize)>,
    /// Sum of this epoch's step losses so far, and their number.
    pub epoch_loss: (f64, usize),
    /// Bytes of `steps.csv` written up to this checkpoint (the log is cut back to it on resume).
    pub steps_log_len: u64,
    /// Per-epoch records so far.
    pub history: Vec<crate::trainer::EpochRecord>,
    /// Training seconds so far (wall time of earlier sessions included).
    pub elapsed: f64,
    /// Training has ended (all epochs, early stop or time limit).
    pub finished: bool,
    /// Optimiser steps the run is planned to take (`Scheduler.stop_lr`: the rate reaches
    /// `stop_lr` there); re-estimated at each epoch end under `max_time`. 0: not yet planned.
    #[serde(default)]
    pub lr_horizon: usize,
}

fn kind_dtype(k: Kind) -> Result<(Dtype, usize)> {
    match k {
        Kind::Float => Ok((Dtype::F32, 4)),
        Kind::Double => Ok((Dtype::F64, 8)),
        k => Err(Error::Invalid(format!(
            "cannot checkpoint a tensor of kind {k:?}"
        ))),
    }
}

fn checksum<'a>(
    items: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>,
    state: &str,
    config: &str,
) -> String {
    mlip::file::checksum(items, &[state, config])
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let io = |e: std::io::Error| Error::io(path, e);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A full disk: do not leave a partial temporary behind to keep it full.
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `name` is a temporary file that a run of this trainer writes in its output directory:
/// `.<file>.tmp<pid>` ([`write_atomic`] of the checkpoint, metrics.csv, metrics.json), `best.tmp<pid>` (the model file) or `*.tmp.png` (plots).
pub fn is_own_temporary(name: &str) -> bool {
    let pid_suffix = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    use crate::trainer::files;
    if let Some((file, pid)) = name.strip_prefix('.').and_then(|r| r.rsplit_once(".tmp")) {
        let ours = [
            files::CHECKPOINT,
            files::METRICS_CSV,
            files::METRICS_JSON,
            files::STEPS,
        ];
        return ours.contains(&file) && pid_suffix(pid);
    }
    if let Some(pid) = name.strip_prefix("best.tmp") {
        return pid_suffix(pid);
    }
    name.starts_with("parity_") && name.ends_with(".tmp.png")
}

/// Removes the temporaries ([`is_own_temporary`]) that a killed run (kill -9, a full disk) left in
/// the output directory `dir`; returns their names. Nothing else is touched.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if is_own_temporary(&name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Saves a checkpoint. `tensors` are (name, tensor) pairs: weights and moments.
pub fn save(
    path: &Path,
    tensors: &[(String, &Tensor)],
    state: &TrainState,
    config_text: &str,
) -> Result<()> {
    let mut blobs = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let (dtype, size) = kind_dtype(t.kind())?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let numel: usize = shape.iter().product();
        let mut bytes = vec![0u8; numel * size];
        t.f_copy_data_u8(&mut bytes, numel)?;
        blobs.push((name.clone(), dtype, shape, bytes));
    }
    let state_json = serde_json::to_string(state)
        .map_err(|e| Error::checkpoint(path, format!("state does not serialise: {e}")))?;
    let sum = checksum(
        blobs
            .iter()
            .map(|(n, _, s, b)| (n.as_str(), s.as_slice(), b.as_slice())),
        &state_json,
        config_text,
    );
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("version".to_string(), VERSION.to_string());
    meta.insert("state".to_string(), state_json);
    meta.insert("config".to_string(), config_text.to_string());
    meta.insert("checksum".to_string(), sum);
    let views = blobs
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(*d, s.clone(), b)
                    .map_err(|e| Error::checkpoint(path, e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, &Some(meta))
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Loaded {
    /// Tensors by name, in their stored precision.
    pub tensors: BTreeMap<String, Tensor>,
    /// The training state.
    pub state: TrainState,
    /// The config text the run was started with.
    pub config: String,
}

/// Reads and verifies a checkpoint.
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(path, format!("not a checkpoint, or truncated ({e:?})")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::checkpoint(path, format!("unreadable header ({e:?})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::checkpoint(
            path,
            format!(
                "not a hydragnn-rs checkpoint (format {:?})",
                meta.get("format")
            ),
        ));
    }
    if meta.get("version").and_then(|v| v.parse::<u32>().ok()) != Some(VERSION) {
        return Err(Error::checkpoint(
            path,
            format!(
                "version {:?}, this build reads {VERSION}",
                meta.get("version")
            ),
        ));
    }
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| Error::checkpoint(path, format!("missing '{k}'")))
    };
    let (state_json, config) = (get("state")?, get("config")?);
    let views = st.tensors();
    let sum = checksum(
        views.iter().map(|(n, v)| (n.as_str(), v.shape(), v.data())),
        &state_json,
        &config,
    );
    if meta.get("checksum") != Some(&sum) {
        return Err(Error::checkpoint(
            path,
            "checksum mismatch: the file is corrupted",
        ));
    }
    let state: TrainState = serde_json::from_str(&state_json)
        .map_err(|e| Error::checkpoint(path, format!("bad state: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, v) in views {
        let kind = match v.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            d => {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor '{name}' has unsupported dtype {d:?}"),
                ))
            }
        };
        let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(name, Tensor::f_from_data_size(v.data(), &shape, kind)?);
    }
    Ok(Loaded {
        tensors,
        state,
        config,
    })
}
