//! `hydragnn import-hydragnn CONFIG.json CHECKPOINT.pk -o MODEL`: a model trained by HydraGNN
//! (PyTorch) becomes this engine's model file. A Python helper with torch
//! (`tools/import_hydragnn.py`, embedded in this binary) exports the checkpoint's state dict to
//! safetensors; [`mlip::hydragnn`] maps HydraGNN's config and weights onto the engine's
//! model options. The model file it writes needs no Python. See docs/hydragnn-import.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use mlip::hydragnn;

/// The Python helper, run as `python - CHECKPOINT OUT` with this text on stdin.
const HELPER: &str = include_str!("../../tools/import_hydragnn.py");

/// Options of [`import_hydragnn`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `--species`: comma-separated `Symbol` (`x = [Z]`) or `Symbol=v1[:v2...]` (HydraGNN's node
    /// features of that element), e.g. `Ar=1.0`. None: every element with `x = [Z]`.
    pub species: Option<String>,
    /// `--energy-head`: index of the scalar output head that is the energy (0): a node head
    /// (its per-atom values summed) or a graph head (a graph-level energy).
    pub energy_head: usize,
    /// `--python`: interpreter with torch. None: `$HYDRAGNN_PYTHON`, then `$VIRTUAL_ENV/bin/python`,
    /// then `python3`.
    pub python: Option<PathBuf>,
    /// `--float32`: store the weights in single precision (default: float64).
    pub float32: bool,
}

/// What [`import_hydragnn`] did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The model file written.
    pub model: PathBuf,
    /// HydraGNN's `mpnn_type`.
    pub mpnn_type: String,
    /// Number of message-passing layers.
    pub num_layers: usize,
    /// Cutoff radius (Å).
    pub cutoff: f64,
    /// Element → node-feature mapping.
    pub species_map: Vec<String>,
    /// HydraGNN's `max_neighbours`, if it was set.
    pub max_neighbours: Option<i64>,
    /// Number of weight tensors read from the checkpoint.
    pub tensors: usize,
    /// Warnings for the user (printed by the CLI).
    pub warnings: Vec<String>,
}

fn python(opts: &ImportOptions) -> PathBuf {
    if let Some(p) = &opts.python {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("HYDRAGNN_PYTHON") {
        return p.into();
    }
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        let p = Path::new(&v).join("bin/python");
        if p.exists() {
            return p;
        }
    }
    "python3".into()
}

fn is_npz(p: &Path) -> bool {
    let mut head = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 512), &mut head))
        .is_ok()
        && hydragnn::is_npz(&head)
}

/// Refuses, before Python is started, a file that cannot be a HydraGNN checkpoint: what
/// `torch.save` writes is a zip archive (or, before torch 1.6, a pickle), and a state dict saved
/// with `np.savez` is a zip archive of `.npy` files.
fn check_checkpoint_kind(p: &Path) -> anyhow::Result<()> {
    let mut head = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 8), &mut head))
        .with_context(|| format!("reading checkpoint '{}'", p.display()))?;
    let not = |what: &str| -> anyhow::Result<()> {
        bail!(
            "'{}' is not a HydraGNN checkpoint: {what} (expected the .pk that HydraGNN's torch.save wrote, \
             or its state dict saved with np.savez)",
            p.display()
        )
    };
    if head.is_empty() {
        return not("the file is empty");
    }
    if head.starts_with(b"PK\x05\x06") {
        return not("an empty zip archive (an .npz with no arrays?)");
    }
    if head.starts_with(b"PK\x03\x04") || head[0] == 0x80 {
        return Ok(());
    }
    not("neither a zip archive nor a pickle (a text file?)")
}

/// Runs the Python helper: the checkpoint's state dict into a safetensors file at `export`.
fn export_state_dict(py: &Path, checkpoint: &Path, export: &Path) -> anyhow::Result<()> {
    let mut child = Command::new(py)
        .arg("-")
        .arg(checkpoint)
        .arg(export)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("cannot run '{}' (the Python with torch that reads the checkpoint; set --python or HYDRAGNN_PYTHON)", py.display())
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(HELPER.as_bytes())
        .context("writing the helper to Python")?;
    let out = child
        .wait_with_output()
        .context("waiting for the Python helper")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        if err.contains("is not a HydraGNN checkpoint") {
            bail!("{err}");
        }
        if err.starts_with("not a HydraGNN checkpoint") {
            bail!("'{}' is {err}", checkpoint.display());
        }
        bail!(
            "reading checkpoint '{}' failed ({}): {err}",
            checkpoint.display(),
            out.status,
        );
    }
    Ok(())
}

/// Imports a HydraGNN model: `config` (HydraGNN's `config.json`), `checkpoint` (its `.pk`, or
/// its state dict as an uncompressed `.npz`) → the engine's model file `out`.
pub fn import_hydragnn(
    config: &Path,
    checkpoint: &Path,
    out: &Path,
    opts: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("reading HydraGNN config '{}'", config.display()))?;
    if !checkpoint.is_file() {
        bail!("checkpoint '{}' does not exist", checkpoint.display());
    }
    let out_dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = out_dir.filter(|d| !d.is_dir()) {
        bail!(
            "output directory '{}' (of -o {}) does not exist",
            d.display(),
            out.display()
        );
    }
    check_checkpoint_kind(checkpoint)?;
    let species = opts
        .species
        .as_deref()
        .map(hydragnn::parse_species)
        .transpose()
        .context("--species")?;
    let state = if is_npz(checkpoint) {
        // A state dict saved with np.savez: no torch needed.
        hydragnn::read_state_dict(checkpoint)?
    } else {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let export = out.with_extension(format!("state-dict.tmp{}-{k}", std::process::id()));
        let exported = export_state_dict(&python(opts), checkpoint, &export);
        let state =
            exported.and_then(|_| hydragnn::read_state_dict(&export).map_err(anyhow::Error::from));
        let _ = std::fs::remove_file(&export);
        state?
    };
    let kind = if opts.float32 {
        tch::Kind::Float
    } else {
        tch::Kind::Double
    };
    let hopts = hydragnn::ImportOptions {
        species,
        energy_head: opts.energy_head,
        kind,
    };
    let imported = mlip::compute::guarded(|| hydragnn::import(&text, &state, &hopts))
        .with_context(|| {
            format!(
                "importing '{}' with '{}'",
                checkpoint.display(),
                config.display()
            )
        })?;
    let m = &imported.model;
    let mpnn_type = serde_json::to_value(m.config().mpnn_type)?
        .as_str()
        .unwrap_or("?")
        .to_string();
    let mut prov = BTreeMap::new();
    prov.insert(
        "source".to_string(),
        "HydraGNN (import-hydragnn)".to_string(),
    );
    prov.insert("hydragnn_config".to_string(), config.display().to_string());
    prov.insert(
        "hydragnn_checkpoint".to_string(),
        checkpoint.display().to_string(),
    );
    prov.insert("species_map".to_string(), imported.species_map.join("; "));
    if let Some(k) = imported.max_neighbours {
        prov.insert("hydragnn_max_neighbours".to_string(), k.to_string());
    }
    prov.insert(
        "graph".to_string(),
        "plain radius graph at inference (no max_neighbours truncation)".to_string(),
    );
    m.save(out, &prov)
        .with_context(|| format!("writing model file '{}'", out.display()))?;
    Ok(ImportReport {
        model: out.to_path_buf(),
        mpnn_type,
        num_layers: m.num_layers(),
        cutoff: m.cutoff(),
        species_map: imported.species_map.clone(),
        max_neighbours: imported.max_neighbours,
        tensors: state.len(),
        warnings: imported.warnings,
    })
}
