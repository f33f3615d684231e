//! `hydragnn ingest`: extended XYZ files -> one ADIOS2 BP dataset (schema: docs/dataset-schema.md),
//! through [`hydragnn_train::data::ingest`]. Nothing is left behind when it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use hydragnn_train::data::{ingest, IngestOptions, SplitSpec};

use super::outln;

/// Arguments of `hydragnn ingest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files whose frames are split at random into trainset/valset/testset (see --fractions).
    files: Vec<PathBuf>,
    /// The dataset to write (a BP directory, e.g. data/metals.bp).
    #[arg(short, long)]
    out: PathBuf,
    /// Dataset name (stored as an attribute; a model branch trained on it is usually named the same).
    #[arg(short, long)]
    name: String,
    /// Files whose frames all go to the trainset.
    #[arg(long = "train", value_name = "FILE")]
    train: Vec<PathBuf>,
    /// Files whose frames all go to the valset.
    #[arg(long = "val", value_name = "FILE")]
    val: Vec<PathBuf>,
    /// Files whose frames all go to the testset.
    #[arg(long = "test", value_name = "FILE")]
    test: Vec<PathBuf>,
    /// Train, validation and test fractions of the random split: `0.8,0.1,0.1` or `0.8 0.1 0.1`.
    /// (Up to three arguments are taken after it, so files right after the comma form are
    /// handed back to FILES by [`split_fractions`].)
    #[arg(long, value_delimiter = ',', num_args = 1..=3, default_values = ["0.8", "0.1", "0.1"])]
    fractions: Vec<String>,
    /// Seed of the random split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Do not require forces in every frame.
    #[arg(long)]
    no_forces: bool,
    /// Do not require an energy in every frame.
    #[arg(long)]
    no_energy: bool,
    /// Comment-line key of the energy.
    #[arg(long, default_value = "energy")]
    energy_key: String,
    /// Column name of the forces.
    #[arg(long, default_value = "forces")]
    forces_key: String,
    /// Unit of a property, NAME=UNIT (repeatable), e.g. --unit gap=eV.
    #[arg(long = "unit", value_name = "NAME=UNIT")]
    units: Vec<String>,
    /// Drop labels or properties that only some frames carry, instead of keeping them with a
    /// per-frame presence mask.
    #[arg(long)]
    drop_partial: bool,
    /// Replace an existing dataset.
    #[arg(long)]
    overwrite: bool,
}

/// The three fractions of `--fractions` (`0.8,0.1,0.1` or `0.8 0.1 0.1`), and the files that
/// clap gave it because they followed it (`--fractions 0.8,0.1,0.1 data.xyz`).
fn split_fractions(values: &[String]) -> anyhow::Result<([f64; 3], Vec<PathBuf>)> {
    let n = values
        .iter()
        .take_while(|v| v.trim().parse::<f64>().is_ok())
        .count();
    let numbers: Vec<f64> = values[..n]
        .iter()
        .map(|v| v.trim().parse().unwrap_or(f64::NAN))
        .collect();
    let [a, b, c] = numbers[..] else {
        bail!(
            "--fractions: expected three numbers (train, validation, test), e.g. 0.8,0.1,0.1 or 0.8 0.1 0.1; got {}",
            values.join(" ")
        )
    };
    Ok(([a, b, c], values[n..].iter().map(PathBuf::from).collect()))
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (fractions, files) = split_fractions(&a.fractions)?;
    let mut inputs: Vec<(PathBuf, SplitSpec)> = Vec::new();
    inputs.extend(a.train.iter().map(|p| (p.clone(), SplitSpec::Train)));
    inputs.extend(a.val.iter().map(|p| (p.clone(), SplitSpec::Val)));
    inputs.extend(a.test.iter().map(|p| (p.clone(), SplitSpec::Test)));
    inputs.extend(files.iter().map(|p| (p.clone(), SplitSpec::Random)));
    inputs.extend(a.files.iter().map(|p| (p.clone(), SplitSpec::Random)));
    if inputs.is_empty() {
        bail!("no input files: give extxyz files (random split) or --train/--val/--test FILE");
    }
    let mut units = BTreeMap::new();
    for u in &a.units {
        let Some((k, v)) = u.split_once('=') else {
            bail!("--unit '{u}': expected NAME=UNIT")
        };
        units.insert(k.to_string(), v.to_string());
    }
    let [f_train, f_val, f_test] = fractions;
    let mut opts = IngestOptions {
        seed: a.seed,
        units,
        drop_partial: a.drop_partial,
        overwrite: a.overwrite,
        ..Default::default()
    };
    opts.fractions = [f_train, f_val, f_test];
    opts.parse.require_forces = !a.no_forces;
    opts.parse.require_energy = !a.no_energy;
    opts.parse.energy_key = a.energy_key.clone();
    opts.parse.forces_key = a.forces_key.clone();
    let s = ingest(&inputs, &a.out, &a.name, &opts)
        .with_context(|| format!("ingesting into {}", a.out.display()))?;
    outln!("wrote {} (dataset '{}')", s.path.display(), s.meta.name)?;
    for (split, graphs, atoms) in &s.counts {
        outln!("  {split:9} {graphs:7} graphs {atoms:9} atoms")?;
    }
    let elements: Vec<String> = s
        .meta
        .elements
        .iter()
        .zip(&s.meta.reference_energies)
        .map(|(z, e)| format!("{}={e:.6}", mlip::elements::symbol(*z)))
        .collect();
    outln!("  reference energies (eV): {}", elements.join(" "))?;
    if let Some(r) = &s.reference {
        outln!(
            "  reference fit: rmse {:.4} eV/structure, rank {}",
            r.rmse,
            r.rank
        )?;
    }
    let mut props: Vec<String> = s.meta.scalars.iter().map(|p| p.name.clone()).collect();
    props.extend(
        s.meta
            .atom_props
            .iter()
            .map(|p| format!("{} (per atom, {})", p.name, p.width)),
    );
    if !props.is_empty() {
        outln!("  properties: {}", props.join(", "))?;
    }
    if !s.meta.partial.is_empty() {
        outln!(
            "  only in some frames (kept, masked per frame): {}",
            s.meta.partial.join(", ")
        )?;
    }
    if !s.dropped.is_empty() {
        outln!("  dropped (not in every frame): {}", s.dropped.join(", "))?;
    }
    Ok(())
}
