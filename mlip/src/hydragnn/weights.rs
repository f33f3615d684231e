//! Copying HydraGNN's tensors into the engine's variables: each engine weight names its source
//! tensor and how it is reordered; every checkpoint tensor must find a place.

use std::collections::{BTreeMap, BTreeSet};

use tch::{Kind, Tensor};

use super::cfg;
use crate::error::{Error, Result};
use crate::model::Model;

/// One engine variable and where its values come from.
pub(super) enum Source {
    /// The HydraGNN tensor as it is.
    Copy(String),
    /// Rows in three chunks of `f`, reordered (HydraGNN chunk k goes to engine chunk `order[k]`).
    PermuteRows(String, i64, [i64; 3]),
    /// Columns in two halves of `f`, swapped.
    SwapCols(String, i64),
    /// The first `n` rows (drops HydraGNN's variance outputs).
    FirstRows(String, i64),
}

/// Loads every variable of `model` from `state` through its entry in `sources`.
pub(super) fn load_weights(
    model: &Model,
    state: &BTreeMap<String, Tensor>,
    sources: &BTreeMap<String, Source>,
    kind: Kind,
) -> Result<()> {
    let vars = model.var_store().variables();
    let mut used = BTreeSet::new();
    for (name, var) in &vars {
        let src = sources.get(name).ok_or_else(|| {
            Error::Internal(format!("no HydraGNN source for engine weight '{name}'"))
        })?;
        let key = match src {
            Source::Copy(k)
            | Source::PermuteRows(k, ..)
            | Source::SwapCols(k, _)
            | Source::FirstRows(k, _) => k,
        };
        let t = state.get(key).ok_or_else(|| {
            cfg(format!("the checkpoint has no tensor '{key}' (needed for '{name}'); is the config the one it was trained with?"))
        })?;
        used.insert(key.clone());
        let t = match src {
            Source::Copy(_) => t.shallow_clone(),
            Source::PermuteRows(_, f, order) => {
                if t.size()[0] != 3 * f {
                    return Err(cfg(format!(
                        "'{key}' has {} rows, expected 3 x {f}",
                        t.size()[0]
                    )));
                }
                let chunks = t.split(*f, 0);
                let mut out: Vec<&Tensor> = vec![&chunks[0]; 3];
                for (k, &o) in order.iter().enumerate() {
                    out[o as usize] = &chunks[k];
                }
                Tensor::cat(&out, 0)
            }
            Source::SwapCols(_, f) => {
                if t.dim() != 2 || t.size()[1] != 2 * f {
                    return Err(cfg(format!(
                        "'{key}' has shape {:?}, expected (_, 2 x {f})",
                        t.size()
                    )));
                }
                Tensor::cat(&[t.narrow(1, *f, *f), t.narrow(1, 0, *f)], 1)
            }
            Source::FirstRows(_, n) => t.narrow(0, 0, *n),
        };
        if t.size() != var.size() {
            return Err(cfg(format!(
                "'{key}' has shape {:?}, the engine's '{name}' needs {:?}",
                t.size(),
                var.size()
            )));
        }
        let mut var = var.shallow_clone();
        tch::no_grad(|| var.f_copy_(&t.to_kind(kind)))?;
    }
    let unused: Vec<&String> = state.keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().take(8).map(|s| s.as_str()).collect();
        return Err(cfg(format!(
            "the checkpoint has {} tensors the engine's model has no place for (a feature the importer does not support?): {}",
            unused.len(),
            list.join(", ")
        )));
    }
    Ok(())
}
