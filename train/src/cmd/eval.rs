//! `hydragnn eval MODEL DATA`: the metrics the trainer reports per epoch (energy MAE/RMSE per
//! atom, force MAE/RMSE, MAE/RMSE of every other head the data carries), for a model file on an
//! ADIOS2 dataset (every non-empty split, or `--split`) or an extended XYZ file. Labels that
//! only some frames carry are scored over the frames that have them; the loss uses the training
//! run's weights when the model file records them (`info.provenance.loss`), and says so.
//!
//! On an ensemble file (docs/ensembles.md): the committee mean's metrics (as for a model), each
//! member's, and how well the spread predicts the mean's error: Spearman rank correlations of
//! per-structure and per-atom force deviation against the actual force error, and a calibration
//! plot (binned per-atom deviation against observed RMS error) per split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hydragnn_train::config::LossType;
use hydragnn_train::data::{
    read_extxyz, DataError, Dataset, DatasetMeta, FrameBlock, Layout, ParseOptions, PropertyInfo,
    SPLITS,
};
use hydragnn_train::evaluate::{
    calibration, eval_ensemble_sums, eval_sums, recorded_loss, spearman, spec_for_model,
    LossWeights, StructureDeviation,
};
use hydragnn_train::graphs::{Graph, GraphSpec};
use hydragnn_train::metrics::{finish, BranchMetrics, BranchSpec};
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
    /// Where to compute: `auto` (a GPU when libtorch can use one, else the CPU), `cpu`, `cuda`
    /// or `cuda:N`. Default: the environment variable `HYDRAGNN_DEVICE`, else `auto`.
    #[arg(long, value_name = "DEVICE")]
    device: Option<mlip::device::DeviceChoice>,
    /// Also write the metrics as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Ensemble files: the directory of the calibration plots (default: the model file's).
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Ensemble files: bins of the calibration plot (at least 1).
    #[arg(long, default_value_t = 10, value_parser = super::positive)]
    calibration_bins: usize,
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
    let device = match a.device {
        Some(c) => c,
        None => mlip::device::DeviceChoice::from_env()?,
    }
    .resolve(0)?;
    let ens = mlip::ensemble::Ensemble::load(&a.model, kind, device)?;
    let members: Vec<&Model> = ens.members.iter().collect();
    let model = members[0];
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
    let mut spec = spec_for_model(model, branch, &meta)?;
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
    if members.len() > 1 {
        return eval_ensemble(&a, &members, &spec, &parts, loss_type, kind, device);
    }
    let mut all: BTreeMap<String, BranchMetrics> = BTreeMap::new();
    for (split, graphs) in &parts {
        let s = eval_sums(
            model,
            &spec,
            graphs,
            a.batch_size,
            loss_type,
            kind,
            device,
            None,
        )?;
        let m = finish(&spec, &s);
        print_metrics(split, &spec.name, &m)?;
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

/// Prints one split's metrics: a line of columns (`label`: the split, or the split and a
/// member) and the summary.
fn print_metrics(label: &str, branch: &str, m: &BranchMetrics) -> anyhow::Result<()> {
    let mut cols: Vec<String> = m
        .columns()
        .into_iter()
        .skip(1) // the loss: printed in the JSON, with the weights above
        .map(|(c, v)| format!("{c}={v:.6e}"))
        .collect();
    // How many entries each output was scored on (labels may be missing from some graphs).
    cols.extend(m.counted.iter().map(|(k, n)| format!("counted_{k}={n}")));
    outln!(
        "{label} {branch}: graphs={} atoms={} {}",
        m.n_graphs,
        m.n_atoms,
        cols.join(" ")
    )?;
    outln!("    {}", m.summary())?;
    Ok(())
}

fn fmt_rho(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.4}"))
}

/// `hydragnn eval` on an ensemble of K > 1 members: the mean's and every member's metrics,
/// rank correlations of deviation and error, calibration plots, and `--json`.
#[allow(clippy::too_many_arguments)]
fn eval_ensemble(
    a: &Args,
    members: &[&Model],
    spec: &BranchSpec,
    parts: &[(String, Vec<Graph>)],
    loss_type: LossType,
    kind: Kind,
    device: Device,
) -> anyhow::Result<()> {
    // Each member's branch of the same name (members may order their branches differently).
    let specs = members
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let names = m.branch_names();
            let b = names
                .iter()
                .position(|n| *n == spec.name)
                .with_context(|| {
                    format!(
                        "{}: member {k} has no branch '{}' (its branches: {})",
                        a.model.display(),
                        spec.name,
                        names.join(", ")
                    )
                })?;
            Ok(BranchSpec {
                branch: b,
                ..spec.clone()
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plot_dir = match &a.plots {
        Some(d) => d.clone(),
        None => a.model.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let stem = a
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "ensemble".into());
    outln!("ensemble of {} members", members.len())?;
    let mut all = BTreeMap::new();
    let mut ens_json = BTreeMap::new();
    for (split, graphs) in parts {
        let s = eval_ensemble_sums(
            members,
            &specs,
            graphs,
            a.batch_size,
            loss_type,
            kind,
            device,
        )?;
        let mean = finish(spec, &s.mean);
        print_metrics(&format!("{split} mean"), &spec.name, &mean)?;
        let per: Vec<BranchMetrics> = s.members.iter().map(|m| finish(spec, m)).collect();
        for (k, m) in per.iter().enumerate() {
            print_metrics(&format!("{split} member {k}"), &spec.name, m)?;
        }
        let st = &s.structures;
        let pairs = |f: &dyn Fn(&StructureDeviation) -> Option<(f64, f64)>| -> Vec<(f64, f64)> {
            st.iter().filter_map(f).collect()
        };
        let rho = serde_json::json!({
            "structure_max_devi_f_vs_max_force_error":
                spearman(&pairs(&|d| Some((d.max_devi_f?, d.max_force_error?)))),
            "structure_max_devi_f_vs_rms_force_error":
                spearman(&pairs(&|d| Some((d.max_devi_f?, d.rms_force_error?)))),
            "structure_avg_devi_f_vs_rms_force_error":
                spearman(&pairs(&|d| Some((d.avg_devi_f?, d.rms_force_error?)))),
            "atom_devi_f_vs_force_error": spearman(&s.atoms),
            "structure_energy_std_vs_energy_error":
                spearman(&pairs(&|d| Some((d.energy_std, d.energy_error?)))),
        });
        let get = |k: &str| rho[k].as_f64();
        outln!(
            "{split} deviation: spearman(max_devi_f, max force error)={} spearman(avg_devi_f, rms force error)={} spearman(atom devi_f, atom force error)={} spearman(energy_std, energy error)={} over {} structures, {} atoms",
            fmt_rho(get("structure_max_devi_f_vs_max_force_error")),
            fmt_rho(get("structure_avg_devi_f_vs_rms_force_error")),
            fmt_rho(get("atom_devi_f_vs_force_error")),
            fmt_rho(get("structure_energy_std_vs_energy_error")),
            st.len(),
            s.atoms.len()
        )?;
        let mut calib = Vec::new();
        let mut plot = None;
        if !s.atoms.is_empty() {
            calib = calibration(&s.atoms, a.calibration_bins);
            std::fs::create_dir_all(&plot_dir)
                .with_context(|| format!("creating {}", plot_dir.display()))?;
            let p = plot_dir.join(format!("{stem}_calibration_forces_{split}.png"));
            hydragnn_train::plots::calibration_png(
                &p,
                &format!("{} FORCES {split}", spec.name),
                &calib
                    .iter()
                    .map(|b| (b.predicted, b.observed_rms))
                    .collect::<Vec<_>>(),
                get("atom_devi_f_vs_force_error"),
            )?;
            outln!("{split} calibration plot: {}", p.display())?;
            plot = Some(p);
        }
        let members_best = per
            .iter()
            .filter_map(|m| m.forces.map(|f| f.mae))
            .fold(f64::INFINITY, f64::min);
        ens_json.insert(
            split.clone(),
            serde_json::json!({
                "mean": mean, "members": per, "spearman": rho,
                "calibration_forces": calib, "calibration_plot": plot,
                "best_member_force_mae": members_best.is_finite().then_some(members_best),
                "structures": st,
            }),
        );
        all.insert(split.clone(), mean);
    }
    if let Some(j) = &a.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "model": a.model, "data": a.data, "branch": spec.name, "metrics": all,
            "loss_function_type": loss_type, "loss_weights": LossWeights::of(spec),
            "ensemble": {"num_members": members.len(), "splits": ens_json},
        }))?;
        std::fs::write(j, text).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
