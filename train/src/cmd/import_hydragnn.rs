//! `hydragnn import-hydragnn CONFIG.json CHECKPOINT.pk -o MODEL`: a model trained by HydraGNN
//! (PyTorch) → this engine's model file, through [`hydragnn_train::import`]
//! (docs/hydragnn-import.md). Warnings (e.g. HydraGNN's `max_neighbours` truncation) are printed.

use std::path::PathBuf;

use hydragnn_train::import::{import_hydragnn, ImportOptions};

use super::outln;

/// Arguments of `hydragnn import-hydragnn`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// HydraGNN's config.json (logs/<name>/config.json, as it wrote it after training).
    config: PathBuf,
    /// HydraGNN's checkpoint (logs/<name>/<name>.pk), or its state dict saved with np.savez.
    checkpoint: PathBuf,
    /// The model file to write.
    #[arg(short, long)]
    out: PathBuf,
    /// Elements and the node features HydraGNN saw for them: `Ar=1.0`, `Cu=29:0.5`, or bare
    /// symbols `H,C,O` for x = [Z]. Default: every element with x = [Z].
    #[arg(long)]
    species: Option<String>,
    /// Index (in HydraGNN's output_type order) of the head that is the energy: a node head (its
    /// per-atom values summed) or a graph head (HydraGNN's foundation models: pooled features
    /// through shared layers and the head MLP).
    #[arg(long, default_value_t = 0)]
    energy_head: usize,
    /// Python interpreter with torch, to read the checkpoint (default: $HYDRAGNN_PYTHON,
    /// $VIRTUAL_ENV/bin/python, python3).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Store the weights in float32 (default float64; HydraGNN's float32 weights convert exactly).
    #[arg(long)]
    float32: bool,
}

/// Runs the import and prints what was written.
pub fn run(a: Args) -> anyhow::Result<()> {
    let opts = ImportOptions {
        species: a.species,
        energy_head: a.energy_head,
        python: a.python,
        float32: a.float32,
    };
    let r = import_hydragnn(&a.config, &a.checkpoint, &a.out, &opts)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    outln!(
        "wrote {}: {} with {} layers, cutoff {} Å, {} tensors; species: {}",
        r.model.display(),
        r.mpnn_type,
        r.num_layers,
        r.cutoff,
        r.tensors,
        r.species_map.join(", ")
    )?;
    Ok(())
}
