//! A HydraGNN checkpoint's weights: the safetensors export of `tools/import_hydragnn.py`, or an
//! `.npz` of the state dict.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Kind, Tensor};

use super::npz::{is_npz, parse_npz};
use crate::error::{Error, Result};

/// `format` metadata of the state-dict export written by `tools/import_hydragnn.py`.
pub const EXPORT_FORMAT: &str = "hydragnn-state-dict";

/// Reads a state dict (keys without the `module.` prefix) as f64 CPU tensors: the safetensors
/// export of `tools/import_hydragnn.py`, or an uncompressed `.npz` of float arrays
/// (`np.savez(path, **{k: v.numpy() for k, v in state_dict.items()})`), which needs no torch.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bad = |m: String| Error::ModelFile {
        path: path.to_path_buf(),
        msg: m,
    };
    if is_npz(&bytes) {
        let arrays = parse_npz(&bytes).map_err(bad)?;
        let mut out = BTreeMap::new();
        for (k, t) in arrays {
            let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
            out.insert(k, t.f_to_kind(Kind::Double)?);
        }
        return Ok(out);
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors state-dict export: {e:?}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("unreadable header: {e:?}")))?;
    match header.metadata().as_ref().and_then(|m| m.get("format")) {
        Some(f) if f == EXPORT_FORMAT => {}
        _ => {
            return Err(bad(format!(
                "not written by tools/import_hydragnn.py (no format '{EXPORT_FORMAT}')"
            )))
        }
    }
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F64 => Kind::Double,
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            d => {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {d:?}, expected a float"
                )))
            }
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_kind(Kind::Double)?;
        out.insert(name, t);
    }
    Ok(out)
}
