//! `hydragnn screen MODEL INPUT... -o OUTPUT`: energy, energy per atom, max |F|, stress and every
//! other head of a branch for many structures (extended XYZ files, ADIOS2 datasets, generated
//! variants of a template), streamed and batched, over MPI ranks, resumable after a kill; a CSV
//! in input order, an ADIOS2 file, the top-k and a histogram (docs/screening.md).

use std::path::PathBuf;

use anyhow::{bail, Context};
use hydragnn_train::screen::generate::Generator;
use hydragnn_train::screen::input::read_first_frame;
use hydragnn_train::screen::{output_prefix, screen, ScreenPlan};
use hydragnn_train::Dist;

/// Arguments of `hydragnn screen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file.
    model: PathBuf,
    /// Extended XYZ files and/or ADIOS2 datasets (.bp), screened in this order.
    inputs: Vec<PathBuf>,
    /// Output prefix: PREFIX.csv, .bp, .top.csv, .hist.png, .summary.json (a trailing .csv is dropped).
    #[arg(short, long)]
    output: PathBuf,
    /// Model branch (default: the only one).
    #[arg(long)]
    branch: Option<String>,
    /// Only this split of the datasets (default: every non-empty split, in the order trainset, valset, testset).
    #[arg(long)]
    split: Option<String>,
    /// Largest number of atoms evaluated in one batch.
    #[arg(long, default_value_t = 4096)]
    batch_atoms: usize,
    /// Structures per window: sorted by size into batches together, written (and resumed) together.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Threads per rank for the neighbour lists and libtorch (default: cores / ranks on the node).
    #[arg(long)]
    threads: Option<usize>,
    /// Rows of the top-k table.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Column ranked by the top-k and drawn in the histogram.
    #[arg(long, default_value = "energy_per_atom")]
    sort_by: String,
    /// Rank the largest values first.
    #[arg(long)]
    descending: bool,
    /// Skip the forces (no fmax column): energy and heads only, no backward pass.
    #[arg(long)]
    no_forces: bool,
    /// Also compute the stress of structures periodic in 3D (six columns, ASE's Voigt order).
    #[arg(long)]
    stress: bool,
    /// Evaluate with libtorch autograd instead of the fast path.
    #[arg(long)]
    exact: bool,
    /// Compute in float32 instead of float64.
    #[arg(long)]
    fp32: bool,
    /// Atoms closer than this (Å) mark the structure's row as an error.
    #[arg(long, default_value_t = 0.5)]
    min_distance: f64,
    /// Continue an interrupted run from its chunk files (PREFIX.parts).
    #[arg(long)]
    resume: bool,
    /// Template (first frame of an extended XYZ file) for --generate.
    #[arg(long, requires = "generate")]
    template: Option<PathBuf>,
    /// Variants of the template to screen after the inputs: substitute:A,B:N or rattle:SIGMA:N.
    #[arg(long, requires = "template")]
    generate: Option<String>,
    /// Seed of --generate.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs the command.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.inputs.is_empty() && a.generate.is_none() {
        bail!("nothing to screen: give input files, or --template and --generate");
    }
    if !(a.min_distance >= 0.0 && a.min_distance.is_finite()) {
        bail!("--min-distance {}: expected a length >= 0", a.min_distance);
    }
    let generate = match (&a.template, &a.generate) {
        (Some(t), Some(g)) => Some(Generator::parse(
            g,
            t.clone(),
            read_first_frame(t)?,
            a.seed,
        )?),
        _ => None,
    };
    let dist = if std::env::var_os("HYDRAGNN_NO_MPI").is_some() {
        Dist::single()
    } else {
        Dist::init()
    };
    let threads = match a.threads {
        Some(t) => t,
        None => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / dist.local_size().max(1)).max(1)
        }
    };
    let plan = ScreenPlan {
        model: a.model.clone(),
        inputs: a.inputs,
        split: a.split,
        generate,
        output: output_prefix(&a.output),
        branch: a.branch,
        batch_atoms: a.batch_atoms,
        window: a.window,
        threads,
        top_k: a.top_k,
        sort_by: a.sort_by,
        descending: a.descending,
        forces: !a.no_forces,
        stress: a.stress,
        exact: a.exact,
        fp32: a.fp32,
        min_distance: a.min_distance,
        resume: a.resume,
        progress: !a.quiet,
    };
    screen(&plan, &dist).with_context(|| format!("screening with {}", a.model.display()))?;
    Ok(())
}
