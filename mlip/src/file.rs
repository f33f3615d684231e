//! The model file: one self-describing safetensors file. Tensors are the weights, named by their
//! variable-store path; the safetensors metadata block holds `format` ("hydragnn-rs-model"),
//! `format_version`, `config` (the [`ModelConfig`] as JSON), `info` (cutoff, number of layers,
//! species, units, dtype, provenance, as JSON) and `checksum` (SHA-256 over names, shapes and
//! bytes of every tensor and, from format version 2, over every other metadata entry: `format`,
//! `format_version`, `config`, `info`), so truncated, corrupted, wrong-version and non-model files
//! are told apart with a clear error, and a flipped bit in the config (a cutoff, a layer count)
//! is refused instead of changing the physics. Version 1 files (checksum over the weights only)
//! still load; their header is not protected. The info's cutoff, layer count and species must
//! agree with the config (the config is what the engine runs; clients read the info).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::Model;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "hydragnn-rs-model";
/// The format version this engine writes; it reads this one and older. Version 2: the checksum
/// also covers the metadata (config, info); version 1: the weights only.
pub const FORMAT_VERSION: u32 = 2;

/// The metadata entries a version >= 2 checksum covers, as `key`, `value` pairs in key order:
/// every entry but the checksum itself.
pub(crate) fn covered_metadata<'a>(
    meta: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<&'a str> {
    let mut items: Vec<(&String, &String)> =
        meta.into_iter().filter(|(k, _)| *k != "checksum").collect();
    items.sort();
    items
        .into_iter()
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .collect()
}

/// Checks that `info` (JSON) states the cutoff, layer count and species of `config`, the one
/// source of truth the engine runs; clients (LAMMPS, ASE) read the same values through the
/// engine. A missing key is accepted (older writers), a different value is not.
fn check_info(path: &Path, info: &str, config: &ModelConfig) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(info)
        .map_err(|e| bad(path, format!("'info' metadata is not valid JSON: {e}")))?;
    if let Some(c) = v.get("cutoff") {
        let ok = c
            .as_f64()
            .is_some_and(|c| (c - config.radius).abs() <= 1e-12 * config.radius.abs().max(1.0));
        if !ok {
            return Err(bad(
                path,
                format!(
                    "info.cutoff = {c} disagrees with config.radius = {} (the cutoff the model \
                     was built with); the file is inconsistent",
                    config.radius
                ),
            ));
        }
    }
    if let Some(l) = v.get("num_layers") {
        if l.as_u64() != Some(config.num_conv_layers as u64) {
            return Err(bad(
                path,
                format!(
                    "info.num_layers = {l} disagrees with config.num_conv_layers = {}; the file \
                     is inconsistent",
                    config.num_conv_layers
                ),
            ));
        }
    }
    if let Some(z) = v.get("atomic_numbers") {
        let same = z.as_array().is_some_and(|a| {
            a.len() == config.species.len()
                && a.iter()
                    .zip(&config.species)
                    .all(|(x, &y)| x.as_i64() == Some(y as i64))
        });
        if !same {
            return Err(bad(
                path,
                format!(
                    "info.atomic_numbers = {z} disagrees with config.species = {:?}; the file \
                     is inconsistent",
                    config.species
                ),
            ));
        }
    }
    Ok(())
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// SHA-256 (hex) over the names, shapes and bytes of `tensors` (in name order), then over each
/// `extra` string (separated by a zero byte). Model files use no extras; the trainer's
/// checkpoints add their training state and config.
pub fn checksum<'a>(
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>,
    extra: &[&str],
) -> String {
    let mut items: Vec<_> = tensors.collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, shape, data) in items {
        h.update(name.as_bytes());
        h.update([0u8]);
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(data);
    }
    for (k, e) in extra.iter().enumerate() {
        if k > 0 {
            h.update([0u8]);
        }
        h.update(e.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites the model file `src` as `dst` in the current format version: the same tensors (the
/// same bytes), the same `config` and `info` text, `format_version` = [`FORMAT_VERSION`] and the
/// checksum recomputed over weights and header. `src` must load (its own checksum is verified
/// first, so corruption is never sealed in). The content is deterministic; the order of the
/// header's metadata entries is not (safetensors writes them from a hash map). `dst` is written
/// atomically and may be `src`.
pub fn upgrade(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<()> {
    let (src, dst) = (src.as_ref(), dst.as_ref());
    let bytes = std::fs::read(src).map_err(|e| Error::Io {
        path: src.to_path_buf(),
        source: e,
    })?;
    // every check of a load (format, version, checksum, info against config, the tensors)
    Model::from_bytes(&bytes, src, Kind::Double, Device::Cpu)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(src, format!("{e:?}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(src, format!("{e:?}")))?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    meta.insert("format_version".into(), FORMAT_VERSION.to_string());
    meta.remove("checksum");
    let tensors = st.tensors();
    let sum = checksum(
        tensors
            .iter()
            .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
        &covered_metadata(&meta),
    );
    meta.insert("checksum".into(), sum);
    let out = safetensors::tensor::serialize(tensors, &Some(meta))
        .map_err(|e| bad(dst, e.to_string()))?;
    let tmp = dst.with_extension(format!("tmp{}", std::process::id()));
    let io = |e: std::io::Error| Error::Io {
        path: dst.to_path_buf(),
        source: e,
    };
    std::fs::write(&tmp, out).map_err(io)?;
    std::fs::rename(&tmp, dst).map_err(io)?;
    Ok(())
}

impl Model {
    /// Writes the model file atomically (a temporary file renamed into place). `provenance` is
    /// stored under `info.provenance` (training data, command, git revision ...).
    pub fn save(
        &self,
        path: impl AsRef<Path>,
        provenance: &BTreeMap<String, String>,
    ) -> Result<()> {
        let path = path.as_ref();
        let (dtype, kind) = match self.kind() {
            Kind::Double => (Dtype::F64, Kind::Double),
            _ => (Dtype::F32, Kind::Float),
        };
        let mut vars: Vec<(String, Tensor)> = self.var_store().variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut blobs = Vec::with_capacity(vars.len());
        for (name, t) in &vars {
            let t = t
                .f_to_device(Device::Cpu)?
                .f_to_kind(kind)?
                .f_contiguous()?;
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let numel: usize = shape.iter().product();
            let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
            t.f_copy_data_u8(&mut bytes, numel)?;
            blobs.push((name.clone(), shape, bytes));
        }
        let c = self.config();
        let info = serde_json::json!({
            "cutoff": c.radius,
            "num_layers": c.num_conv_layers,
            "species": c.species.iter().map(|&z| crate::elements::symbol(z)).collect::<Vec<_>>(),
            "atomic_numbers": c.species,
            "units": {"energy": "eV", "length": "Angstrom", "lammps": "metal"},
            "dtype": if kind == Kind::Double { "float64" } else { "float32" },
            "branches": self.branch_names(),
            "engine": format!("hydragnn-rs {}", env!("CARGO_PKG_VERSION")),
            "provenance": provenance,
        });
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert(
            "config".to_string(),
            serde_json::to_string(c).expect("config serialises"),
        );
        meta.insert("info".to_string(), info.to_string());
        let sum = checksum(
            blobs
                .iter()
                .map(|(n, s, b)| (n.as_str(), s.as_slice(), b.as_slice())),
            &covered_metadata(&meta),
        );
        meta.insert("checksum".to_string(), sum);
        let views = blobs
            .iter()
            .map(|(n, s, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(dtype, s.clone(), b).map_err(|e| bad(path, e.to_string()))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let io = |e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let bytes = safetensors::tensor::serialize(views, &Some(meta))
            .map_err(|e| bad(path, e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    /// Reads a model file into a model of precision `kind` (Float or Double) on `device`.
    pub fn load(path: impl AsRef<Path>, kind: Kind, device: Device) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_bytes(&bytes, path, kind, device)
    }

    /// Parses the bytes of a model file (`path` is only used in messages).
    pub fn from_bytes(bytes: &[u8], path: &Path, kind: Kind, device: Device) -> Result<Model> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            bad(
                path,
                format!("not a model file, or truncated or corrupted (safetensors: {e:?})"),
            )
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(path, format!("unreadable header: {e:?}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) if f == crate::ensemble::FORMAT => {
                return Err(bad(
                    path,
                    "an ensemble file (several models), not a single model: load it as an \
                     ensemble (mlip::ensemble::Ensemble::load; hgnn_model_load takes both)",
                ))
            }
            Some(f) => return Err(bad(path, format!("format is '{f}', expected '{FORMAT}'"))),
            None => {
                return Err(bad(
                    path,
                    "a safetensors file but not a hydragnn-rs model (no 'format' metadata)",
                ))
            }
        }
        let version: u32 = meta
            .get("format_version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(path, "missing or invalid 'format_version'"))?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(bad(path, format!("format version {version} is not supported by this engine (it reads 1..={FORMAT_VERSION}); upgrade hydragnn-rs")));
        }
        let tensors = st.tensors();
        // Version 1 files checksum the weights only; from version 2 the header is covered too.
        let covered = if version >= 2 {
            covered_metadata(&meta)
        } else {
            Vec::new()
        };
        let sum = checksum(
            tensors
                .iter()
                .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
            &covered,
        );
        match meta.get("checksum") {
            Some(stored) if *stored == sum => {}
            stored => {
                let what = if version >= 2 {
                    "the weights or the header (config, info) are corrupted"
                } else {
                    "the weights are corrupted"
                };
                return Err(bad(
                    path,
                    format!(
                        "checksum mismatch: {what} (stored checksum {}, computed {sum})",
                        stored.map_or("missing", |s| s.as_str())
                    ),
                ));
            }
        }
        let config_text = meta
            .get("config")
            .ok_or_else(|| bad(path, "missing 'config' metadata"))?;
        let config = ModelConfig::from_json(config_text).map_err(|e| bad(path, e.to_string()))?;
        if let Some(info) = meta.get("info") {
            check_info(path, info, &config)?;
        }
        let mut model = Model::new(config, kind, device, 0)?;
        let mut vars = model.var_store().variables();
        let mut seen = 0;
        for (name, view) in &tensors {
            let var = vars.get_mut(name).ok_or_else(|| {
                bad(
                    path,
                    format!("unexpected tensor '{name}' for this architecture"),
                )
            })?;
            let src_kind = match view.dtype() {
                Dtype::F64 => Kind::Double,
                Dtype::F32 => Kind::Float,
                d => {
                    return Err(bad(
                        path,
                        format!("tensor '{name}' has unsupported dtype {d:?}"),
                    ))
                }
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                return Err(bad(
                    path,
                    format!(
                        "tensor '{name}' has shape {shape:?}, the architecture expects {:?}",
                        var.size()
                    ),
                ));
            }
            let t = Tensor::f_from_data_size(view.data(), &shape, src_kind)?;
            tch::no_grad(|| var.f_copy_(&t.to_kind(kind).to_device(device)))?;
            seen += 1;
        }
        if seen != vars.len() {
            let missing: Vec<_> = vars
                .keys()
                .filter(|k| !tensors.iter().any(|(n, _)| n == *k))
                .cloned()
                .collect();
            return Err(bad(
                path,
                format!("missing tensors: {}", missing.join(", ")),
            ));
        }
        model.metadata = meta.into_iter().collect();
        Ok(model)
    }
}
