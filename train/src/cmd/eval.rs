//! `hydragnn eval MODEL DATA`: the metrics the trainer reports per epoch (energy MAE/RMSE per
//! atom, force MAE/RMSE, MAE/RMSE of every other head the data carries), for a model file on an
//! ADIOS2 dataset (every non-empty split, or `--split`) or an extended XYZ file. Labels that
//! only some frames carry are scored over the frames that have them; the loss uses the training
//! run's weights when the model file records them (`info.provenance.loss`), and says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hydragnn_train::config::LossType;
use hydragnn_train::data::{
    read_extxyz, DataError, Dataset, DatasetMeta, FrameBlock, Layout, ParseOptions, PropertyInfo,
    SPLITS,
};
use hydragnn_train::evaluate::{eval_sums, recorded_loss, spec_for_model, LossWeights};
use hydragnn_train::graphs::{Graph, GraphSpec};
use hydragnn_train::metrics::{finish, BranchMetrics};
use mlip::Model;
use tch::{Device, Kind};

use super::outln;

/// Arguments of `hydragnn eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file.
    model: PathBuf,
    /// An ADIOS2 dataset (.bp) or an extended XYZ file.
    data: PathBuf,
    /// Split of an ADIOS2 dataset: trainset, valset, testset or all (default: all non-empty).
    #[arg(long, default_value = "all")]
    split: String,
    /// Model branch (default: the one named like the dataset, or the only one).
    #[arg(long)]
    branch: Option<String>,
    /// Graphs per batch (at least 1).
    #[arg(long, default_value_t = 32, value_parser = super::positive)]
    batch_size: usize,
    /// Compute in float64 instead of float32.
    #[arg(long)]
    fp64: bool,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn is_dataset(p: &Path) -> bool {
    p.is_dir() || p.extension().is_some_and(|e| e == "bp")
}

/// The description of frames read from extxyz, as if they were a dataset.
fn meta_of_frames(path: &Path, b: &FrameBlock) -> anyhow::Result<DatasetMeta> {
    let mut layout = Layout::default();
    for (i, f) in b.frames().iter().enumerate() {
        layout = layout
            .union(&Layout::of(f))
            .map_err(|e| anyhow::anyhow!("{}: frame {i}: {e}", path.display()))?;
    }
    let mut elements: Vec<i32> = b.numbers.clone();
    elements.sort_unstable();
    elements.dedup();
    Ok(DatasetMeta {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        schema_version: 0,
        reference_energies: vec![0.0; elements.len()],
        elements,
        scalars: layout
            .scalars
            .iter()
            .map(|n| PropertyInfo {
                name: n.clone(),
                width: 1,
                unit: String::new(),
            })
            .collect(),
        atom_props: layout
            .atom_props
            .iter()
            .map(|(n, w)| PropertyInfo {
                name: n.clone(),
                width: *w,
                unit: String::new(),
            })
            .collect(),
        layout,
        partial: b.present.keys().cloned().collect(),
        splits: vec![("all".into(), b.n_graphs())],
        sources: vec![path.display().to_string()],
        units: BTreeMap::new(),
    })
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    mlip::compute::threads_from_env()?;
    let kind = if a.fp64 { Kind::Double } else { Kind::Float };
    let device = if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    let model = Model::load(&a.model, kind, device)?;
    let gs = GraphSpec::new(model.cutoff(), model.species(), false);

    // (split name, graphs) to evaluate, and the data's description.
    let (meta, parts): (DatasetMeta, Vec<(String, Vec<Graph>)>) = if is_dataset(&a.data) {
        let ds = Dataset::open(&a.data)?;
        let meta = ds.meta().clone();
        let splits: Vec<String> = if a.split == "all" {
            SPLITS
                .iter()
                .filter(|s| meta.n_graphs(s) > 0)
                .map(|s| s.to_string())
                .collect()
        } else {
            vec![a.split.clone()]
        };
        let mut parts = Vec::new();
        for s in splits {
            let sr = ds.split(&s)?;
            let label = format!("{} {s}", a.data.display());
            parts.push((s.clone(), gs.load(&sr, 0..sr.n_graphs(), &label)?));
        }
        (meta, parts)
    } else {
        let frames = read_extxyz(&a.data, &ParseOptions::default())?;
        let b = FrameBlock::from_frames(&frames)
            .with_context(|| format!("reading {}", a.data.display()))?;
        let meta = meta_of_frames(&a.data, &b)?;
        let graphs = gs.graphs_of_block(&b, &a.data.display().to_string())?;
        (meta, vec![("all".to_string(), graphs)])
    };

    let names = model.branch_names();
    let branch = match &a.branch {
        Some(b) => names.iter().position(|n| n == b).with_context(|| {
            format!(
                "--branch '{b}': the model's branches are {}",
                names.join(", ")
            )
        })?,
        None => match names.iter().position(|n| *n == meta.name) {
            Some(i) => i,
            None if names.len() == 1 => 0,
            None => bail!(
                "the model has branches {} and none is named '{}': choose one with --branch",
                names.join(", "),
                meta.name
            ),
        },
    };
    let total: usize = parts.iter().map(|(_, g)| g.len()).sum();
    if total == 0 {
        return Err(hydragnn_train::Error::Data(DataError::Invalid(format!(
            "{}: no structures to evaluate{}",
            a.data.display(),
            if is_dataset(&a.data) {
                format!(" (split '{}' is empty)", a.split)
            } else {
                String::new()
            }
        )))
        .into());
    }
    let mut spec = spec_for_model(&model, branch, &meta)?;
    let recorded = recorded_loss(&a.model)?;
    let (loss_type, weights_from) = match recorded.as_ref().and_then(|r| {
        r.branches
            .get(&spec.name)
            .map(|w| (r.loss_function_type, w))
    }) {
        Some((t, w)) => {
            w.apply(&mut spec);
            (t, "the training run's loss type and weights")
        }
        None => (
            LossType::Mse,
            "HydraGNN's defaults, as the model file does not record its training loss",
        ),
    };
    outln!(
        "model {} (branch '{}'), data {}",
        a.model.display(),
        spec.name,
        a.data.display()
    )?;
    outln!(
        "loss: {} with {}: {weights_from}",
        serde_json::to_value(loss_type)?
            .as_str()
            .unwrap_or_default(),
        LossWeights::of(&spec).describe()
    )?;
    let mut all: BTreeMap<String, BranchMetrics> = BTreeMap::new();
    for (split, graphs) in &parts {
        let s = eval_sums(
            &model,
            &spec,
            graphs,
            a.batch_size,
            loss_type,
            kind,
            device,
            None,
        )?;
        let m = finish(&spec, &s);
        let mut cols: Vec<String> = m
            .columns()
            .into_iter()
            .skip(1) // the loss: printed in the JSON, with the weights above
            .map(|(c, v)| format!("{c}={v:.6e}"))
            .collect();
        // How many entries each output was scored on (labels may be missing from some graphs).
        cols.extend(m.counted.iter().map(|(k, n)| format!("counted_{k}={n}")));
        outln!(
            "{split} {}: graphs={} atoms={} {}",
            spec.name,
            m.n_graphs,
            m.n_atoms,
            cols.join(" ")
        )?;
        outln!("    {}", m.summary())?;
        all.insert(split.clone(), m);
    }
    if let Some(j) = &a.json {
        let text = serde_json::to_string_pretty(
            &serde_json::json!({"model": a.model, "data": a.data, "branch": spec.name, "metrics": all,
                "loss_function_type": loss_type, "loss_weights": LossWeights::of(&spec)}),
        )?;
        std::fs::write(j, text).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
