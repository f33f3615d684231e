//! Ingestion: extended XYZ files -> one ADIOS2 BP dataset, atomically.
//!
//! Every input file is assigned to a split, or to `random`, whose frames are dealt to the three
//! splits by a seeded shuffle in the given fractions. All frames are parsed and checked before
//! anything is written. A label or property that only some frames carry (stress in bulk frames but
//! not in slabs, say) is kept with a per-frame presence mask, or dropped everywhere with
//! [`IngestOptions::drop_partial`]; energy and forces are required in every frame unless the parser
//! options say otherwise (`--no-energy`, `--no-forces`), and are then masked like the rest; the per-element reference energies are fitted on the trainset only; the dataset is
//! written to `<out>.tmp` and renamed to `<out>` only when complete, so a failure at any point
//! leaves no `<out>` (and no `<out>.tmp`) behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::dataset::{tmp_path, write_dataset, DatasetInfo, DatasetMeta, Layout, SPLITS};
use super::error::{DataError, Result};
use super::extxyz::{read_extxyz_lines, Frame, ParseOptions};
use super::refenergy::{fit_reference_energies, ReferenceEnergies};

/// Where the frames of an input file go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitSpec {
    /// All to `trainset`.
    Train,
    /// All to `valset`.
    Val,
    /// All to `testset`.
    Test,
    /// Dealt to the three splits by [`IngestOptions::fractions`] and [`IngestOptions::seed`].
    Random,
}

impl FromStr for SplitSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "trainset" | "train" => Ok(SplitSpec::Train),
            "valset" | "val" | "validation" => Ok(SplitSpec::Val),
            "testset" | "test" => Ok(SplitSpec::Test),
            "random" => Ok(SplitSpec::Random),
            _ => Err(DataError::Invalid(format!(
                "unknown split '{s}' (trainset, valset, testset or random)"
            ))),
        }
    }
}

/// Options of [`ingest`].
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Parser options; by default energy and forces are required.
    pub parse: ParseOptions,
    /// Train, validation and test fractions for [`SplitSpec::Random`] inputs (sum 1).
    pub fractions: [f64; 3],
    /// Seed of the random split.
    pub seed: u64,
    /// Units of properties by name (see [`super::dataset::default_unit`] for the defaults).
    pub units: BTreeMap<String, String>,
    /// Drop a label or property that only some frames carry, instead of keeping it with a
    /// per-frame presence mask.
    pub drop_partial: bool,
    /// Replace an existing dataset at the output path.
    pub overwrite: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            parse: ParseOptions {
                require_energy: true,
                require_forces: true,
                ..Default::default()
            },
            fractions: [0.8, 0.1, 0.1],
            seed: 0,
            units: BTreeMap::new(),
            drop_partial: false,
            overwrite: false,
        }
    }
}

/// What [`ingest`] wrote.
#[derive(Clone, Debug)]
pub struct IngestSummary {
    /// The dataset written.
    pub path: PathBuf,
    /// Its description (as [`super::Dataset::open`] would read it).
    pub meta: DatasetMeta,
    /// The reference-energy fit on the trainset (`None` without energies or training frames).
    pub reference: Option<ReferenceEnergies>,
    /// Per split: graphs and atoms.
    pub counts: Vec<(String, usize, usize)>,
    /// Labels and properties dropped because only some frames had them (`drop_partial`).
    pub dropped: Vec<String>,
}

/// Removes a path (file or directory) on drop unless disarmed.
struct Cleanup(Option<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            remove_any(&p);
        }
    }
}

fn remove_any(p: &Path) {
    if p.is_dir() {
        let _ = std::fs::remove_dir_all(p);
    } else if p.exists() {
        let _ = std::fs::remove_file(p);
    }
}

/// Ingests extended XYZ files into the dataset `out` named `name` (see the module docs).
pub fn ingest(
    inputs: &[(PathBuf, SplitSpec)],
    out: &Path,
    name: &str,
    opts: &IngestOptions,
) -> Result<IngestSummary> {
    if inputs.is_empty() {
        return Err(DataError::Invalid("ingest: no input files".into()));
    }
    if inputs.iter().any(|(_, s)| *s == SplitSpec::Random) {
        let f = opts.fractions;
        if f.iter().any(|x| !(0.0..=1.0).contains(x)) || (f.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return Err(DataError::Invalid(format!(
                "split fractions {f:?} must be in [0, 1] and add up to 1"
            )));
        }
    }
    if out.exists() && !opts.overwrite {
        return Err(DataError::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists (remove it, or ingest with overwrite)",
            ),
        ));
    }

    // Parse everything first: (file index, line, frame).
    let mut frames: Vec<(usize, usize, Frame)> = Vec::new();
    for (fi, (path, _)) in inputs.iter().enumerate() {
        let got = read_extxyz_lines(path, &opts.parse)?;
        if got.is_empty() {
            return Err(DataError::parse(path, 1, "no frames in file"));
        }
        frames.extend(got.into_iter().map(|(line, f)| (fi, line, f)));
    }

    // One layout for the whole dataset.
    let first = Layout::of(&frames[0].2);
    let mut dropped = Vec::new();
    if opts.drop_partial {
        let common = frames
            .iter()
            .fold(first.clone(), |l, (_, _, f)| l.intersect(&Layout::of(f)));
        let union_names = |l: &Layout| -> Vec<String> {
            let mut v: Vec<String> = [
                ("energy", l.energy),
                ("forces", l.forces),
                ("stress", l.stress),
            ]
            .iter()
            .filter(|(_, b)| *b)
            .map(|(n, _)| n.to_string())
            .collect();
            v.extend(l.scalars.iter().cloned());
            v.extend(l.atom_props.iter().map(|(n, _)| n.clone()));
            v
        };
        let kept = union_names(&common);
        for (_, _, f) in &frames {
            for n in union_names(&Layout::of(f)) {
                if !kept.contains(&n) && !dropped.contains(&n) {
                    dropped.push(n);
                }
            }
        }
        for (_, _, f) in &mut frames {
            common.restrict(f);
        }
    } else {
        // Keep what only some frames carry (masked per frame); only a per-atom property with
        // different widths in different frames is an error.
        let mut union = first.clone();
        for (fi, line, f) in &frames {
            union = union.union(&Layout::of(f)).map_err(|e| {
                DataError::parse(
                    &inputs[*fi].0,
                    *line,
                    format!("frame: {e} (rename one, or ingest with drop_partial)"),
                )
            })?;
        }
    }

    // Assign splits; each split keeps the input order.
    let mut assign: Vec<usize> = inputs
        .iter()
        .map(|(_, s)| match s {
            SplitSpec::Train => 0,
            SplitSpec::Val => 1,
            SplitSpec::Test => 2,
            SplitSpec::Random => usize::MAX,
        })
        .collect();
    let random: Vec<usize> = (0..frames.len())
        .filter(|&i| assign[frames[i].0] == usize::MAX)
        .collect();
    let mut split_of = vec![0usize; frames.len()];
    for (i, (fi, _, _)) in frames.iter().enumerate() {
        split_of[i] = assign[*fi];
    }
    if !random.is_empty() {
        let mut order = random.clone();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed));
        let n = order.len();
        let n_train = ((opts.fractions[0] * n as f64).round() as usize).min(n);
        let n_val = ((opts.fractions[1] * n as f64).round() as usize).min(n - n_train);
        for (k, &i) in order.iter().enumerate() {
            split_of[i] = if k < n_train {
                0
            } else if k < n_train + n_val {
                1
            } else {
                2
            };
        }
    }
    assign.clear();
    let mut splits: Vec<(String, Vec<Frame>)> =
        SPLITS.iter().map(|s| (s.to_string(), Vec::new())).collect();
    for (i, (_, _, f)) in frames.into_iter().enumerate() {
        splits[split_of[i]].1.push(f);
    }

    // Reference energies from the trainset only.
    let train = &splits[0].1;
    let with_energy: Vec<&Frame> = train.iter().filter(|f| f.energy.is_some()).collect();
    let reference = if !with_energy.is_empty() {
        let energies: Vec<f64> = with_energy
            .iter()
            .map(|f| f.energy.expect("filtered"))
            .collect();
        Some(fit_reference_energies(
            with_energy.iter().map(|f| f.numbers.as_slice()),
            &energies,
        )?)
    } else {
        None
    };

    let info = DatasetInfo {
        name: name.to_string(),
        reference: reference.clone(),
        units: opts.units.clone(),
        sources: inputs
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect(),
    };
    let counts = splits
        .iter()
        .map(|(s, f)| (s.clone(), f.len(), f.iter().map(Frame::n_atoms).sum()))
        .collect();

    // Write to <out>.tmp, then rename over <out>.
    let tmp = tmp_path(out);
    remove_any(&tmp);
    let mut guard = Cleanup(Some(tmp.clone()));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let meta = write_dataset(&tmp, &info, &splits)?;
    if out.exists() {
        // overwrite: move the old dataset aside, put the new one in place, then delete the old one.
        let mut old = out.as_os_str().to_os_string();
        old.push(".old");
        let old = PathBuf::from(old);
        remove_any(&old);
        std::fs::rename(out, &old).map_err(|e| DataError::io(out, e))?;
        if let Err(e) = std::fs::rename(&tmp, out) {
            let _ = std::fs::rename(&old, out);
            return Err(DataError::io(out, e));
        }
        remove_any(&old);
    } else {
        std::fs::rename(&tmp, out).map_err(|e| DataError::io(out, e))?;
    }
    guard.0 = None;
    Ok(IngestSummary {
        path: out.to_path_buf(),
        meta,
        reference,
        counts,
        dropped,
    })
}
