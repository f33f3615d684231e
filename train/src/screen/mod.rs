//! Screening (`hydragnn screen`): energy, energy per atom, max |F|, stress and every other head
//! of a model branch for many structures, streamed and batched, over MPI ranks, resumable.
//!
//! The input (extxyz files, dataset splits, generated variants: [`input`]) is one global sequence
//! of structures cut into fixed windows of [`ScreenPlan::window`] structures. Ranks take
//! contiguous ranges of windows. On each rank a pipeline of threads overlaps the stages:
//! reader (a window's structures) -> graph (neighbour lists, on `threads` threads) -> evaluate
//! (the window sorted by size into batches of at most `batch_atoms` atoms, one engine call each:
//! [`eval`]) -> writer (the window's rows as one chunk file, renamed into place: [`output`]).
//! A window's batches depend on nothing but the window, so the numbers do not depend on the
//! number of ranks or on where a run was interrupted; a rerun with `resume` skips the windows
//! whose chunk is there. Rank 0 then merges the chunks into one CSV in input order, an ADIOS2
//! file, the top-k and a histogram.
//!
//! An ensemble file screens with the committee mean in every column and adds the members'
//! deviations (`energy_std`, `max_devi_f`, `avg_devi_f`, `max_devi_v`: [`output::Columns`]).

pub mod eval;
pub mod generate;
pub mod input;
pub mod output;

use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use mlip::compute::Request;
use mlip::model::SpeciesIndex;
use mlip::Model;
use tch::{Device, Kind};

use crate::dist::Dist;
use crate::error::{Error, Result};
use crate::plots::histogram_png;

use eval::{evaluate_window, evaluate_window_members, GraphRules, Prepared};
use generate::Generator;
use input::{Inputs, Item};
use output::{parts_dir, suffixed, Columns, Table};

/// A screening run, validated.
#[derive(Debug, Clone)]
pub struct ScreenPlan {
    /// The model file.
    pub model: PathBuf,
    /// Input files: extended XYZ, or ADIOS2 datasets (`.bp`).
    pub inputs: Vec<PathBuf>,
    /// Only this split of the datasets (default: every non-empty split).
    pub split: Option<String>,
    /// Generated variants of a template (after the inputs).
    pub generate: Option<Generator>,
    /// Output prefix: `<prefix>.csv`, `.bp`, `.top.csv`, `.hist.png`, `.summary.json`.
    pub output: PathBuf,
    /// Model branch (default: the only one).
    pub branch: Option<String>,
    /// Largest number of atoms in one batch.
    pub batch_atoms: usize,
    /// Structures per window (the unit of sorting, of writing and of resume).
    pub window: usize,
    /// Threads for the graph stage and libtorch.
    pub threads: usize,
    /// Rows of the top-k table.
    pub top_k: usize,
    /// Column ranked by the top-k and drawn in the histogram.
    pub sort_by: String,
    /// Rank the largest first.
    pub descending: bool,
    /// Compute forces (the `fmax` column).
    pub forces: bool,
    /// Compute the stress of periodic structures.
    pub stress: bool,
    /// libtorch autograd instead of the fast path.
    pub exact: bool,
    /// Compute in float32 instead of float64.
    pub fp32: bool,
    /// Atoms closer than this (Å) make the structure's row an error.
    pub min_distance: f64,
    /// Continue the run whose chunk files are in `<prefix>.parts`.
    pub resume: bool,
    /// Draw a progress bar on rank 0.
    pub progress: bool,
}

/// Seconds each stage was busy, summed over ranks.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    /// Reading (parsing extxyz, slice reads of datasets, generating).
    pub read_s: f64,
    /// Validation, neighbour lists, overlap checks.
    pub graph_s: f64,
    /// The engine.
    pub evaluate_s: f64,
    /// Formatting rows and committing chunk files.
    pub write_s: f64,
    /// Rank 0's merge (CSV, ADIOS2, top-k, histogram).
    pub merge_s: f64,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScreenSummary {
    /// Structures in the input.
    pub n_structures: usize,
    /// Atoms over the structures that could be read.
    pub n_atoms: usize,
    /// Structures evaluated by this run (not counting those a resumed run found done).
    pub n_evaluated_now: usize,
    /// Rows with an error.
    pub n_failed: usize,
    /// Failed rows by kind of error.
    pub failures: std::collections::BTreeMap<String, usize>,
    /// Ranks.
    pub ranks: usize,
    /// Wall-clock seconds (all stages, merge included).
    pub wall_s: f64,
    /// Busy time per stage.
    pub timings: Timings,
    /// Top-k rows: (index, value of the sort column).
    pub top: Vec<(usize, f64)>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The branch index of `name` (or the only branch).
pub fn branch_index(model: &Model, name: Option<&str>) -> Result<usize> {
    let names = model.branch_names();
    match name {
        Some(b) => names.iter().position(|n| n == b).ok_or_else(|| {
            Error::Invalid(format!(
                "--branch '{b}': the model's branches are {}",
                names.join(", ")
            ))
        }),
        None if names.len() == 1 => Ok(0),
        None => Err(Error::Invalid(format!(
            "the model has branches {}: choose one with --branch",
            names.join(", ")
        ))),
    }
}

/// Loads the model as screening evaluates it: on the CPU, float64 (or float32), the chosen
/// branch active, on the fast path unless `exact` (or the backbone has none).
pub fn load_model(plan: &ScreenPlan) -> Result<(Model, usize)> {
    let kind = if plan.fp32 { Kind::Float } else { Kind::Double };
    let mut model = Model::load(&plan.model, kind, Device::Cpu)?;
    let branch = branch_index(&model, plan.branch.as_deref())?;
    let name = model.branch_names()[branch].clone();
    model.set_branch(&name)?;
    if !plan.exact {
        let tol = if plan.fp32 {
            mlip::fast::F32_TOLERANCE
        } else {
            mlip::fast::DEFAULT_TOLERANCE
        };
        if model.enable_fast(tol).is_err() {
            model.disable_fast();
        }
    }
    Ok((model, branch))
}

/// [`load_model`] for a model or an ensemble file: every member as screening evaluates it, the
/// branch of member 0's name active in each (a member without it is refused, naming it).
pub fn load_members(plan: &ScreenPlan) -> Result<(Vec<Model>, usize)> {
    let kind = if plan.fp32 { Kind::Float } else { Kind::Double };
    let bytes = match std::fs::read(&plan.model) {
        Ok(b) => b,
        // The model path's own error (a missing file ...), as for a model file.
        Err(_) => return load_model(plan).map(|(m, b)| (vec![m], b)),
    };
    if !mlip::ensemble::is_ensemble(&bytes) {
        let (m, b) = load_model(plan)?;
        return Ok((vec![m], b));
    }
    let ens = mlip::ensemble::Ensemble::from_bytes(&bytes, &plan.model, kind, Device::Cpu)?;
    let mut members = ens.members;
    let branch = branch_index(&members[0], plan.branch.as_deref())?;
    let name = members[0].branch_names()[branch].clone();
    for (k, m) in members.iter_mut().enumerate() {
        m.set_branch(&name)
            .map_err(|e| Error::Invalid(format!("{}: member {k}: {e}", plan.model.display())))?;
        if !plan.exact {
            let tol = if plan.fp32 {
                mlip::fast::F32_TOLERANCE
            } else {
                mlip::fast::DEFAULT_TOLERANCE
            };
            if m.enable_fast(tol).is_err() {
                m.disable_fast();
            }
        }
    }
    Ok((members, branch))
}

/// What identifies a run's chunks: a resumed run must be the same run.
fn fingerprint(plan: &ScreenPlan, inputs: &Inputs, cols: &Columns, branch: &str) -> String {
    let model_len = std::fs::metadata(&plan.model).map_or(0, |m| m.len());
    serde_json::json!({
        "model": plan.model, "model_bytes": model_len, "branch": branch,
        "inputs": inputs.sources.iter().map(|s| (s.label.clone(), s.len)).collect::<Vec<_>>(),
        "window": plan.window, "batch_atoms": plan.batch_atoms, "columns": cols.all(),
        "exact": plan.exact, "fp32": plan.fp32, "min_distance": plan.min_distance,
    })
    .to_string()
}

/// A window on its way through the pipeline.
struct Window {
    range: std::ops::Range<usize>,
    items: Vec<Item>,
    prepared: Vec<std::result::Result<Prepared, String>>,
}

/// Runs a screening on every rank of `dist`; rank 0 merges and reports.
pub fn screen(plan: &ScreenPlan, dist: &Dist) -> Result<ScreenSummary> {
    let t0 = Instant::now();
    if plan.batch_atoms == 0 || plan.window == 0 || plan.threads == 0 {
        return Err(Error::Invalid(
            "--batch-atoms, --window and --threads must be at least 1".into(),
        ));
    }
    mlip::compute::set_num_threads(plan.threads as i32)?;
    let (members, branch) = load_members(plan)?;
    let model = &members[0];
    let member_refs: Vec<&Model> = members.iter().collect();
    let branch_name = model.branch_names()[branch].clone();
    let mut cols = Columns::of_model(model, branch, plan.forces, plan.stress);
    cols.ensemble = members.len() > 1;
    if !cols.numeric().contains(&plan.sort_by) {
        return Err(Error::Invalid(format!(
            "--sort-by '{}': the columns are {}",
            plan.sort_by,
            cols.numeric().join(", ")
        )));
    }
    let inputs = Inputs::open(&plan.inputs, plan.split.as_deref(), plan.generate.clone())?;
    let n = inputs.len();
    let dir = parts_dir(&plan.output);
    let fp = fingerprint(plan, &inputs, &cols, &branch_name);
    let fp_path = dir.join("run.json");
    // Rank 0 checks or starts the parts directory; the others wait for it.
    let mut setup_err = None;
    if dist.is_root() {
        setup_err = (|| -> Result<()> {
            if let Some(parent) = plan.output.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            if dir.exists() {
                if !plan.resume {
                    return Err(Error::Invalid(format!(
                        "{} holds the chunks of an interrupted run: pass --resume to continue it, or remove it",
                        dir.display()
                    )));
                }
                let old = std::fs::read_to_string(&fp_path).unwrap_or_default();
                if old != fp {
                    return Err(Error::Invalid(format!(
                        "--resume: {} belongs to a different run (model, inputs, branch or settings differ): {old} vs {fp}",
                        fp_path.display()
                    )));
                }
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                std::fs::write(&fp_path, &fp).map_err(|e| Error::io(&fp_path, e))?;
            }
            Ok(())
        })()
        .err();
    }
    if dist.any(setup_err.is_some()) {
        return Err(setup_err.unwrap_or_else(|| Error::Invalid("rank 0 failed to set up".into())));
    }

    // This rank's windows, less those already committed.
    let n_windows = n.div_ceil(plan.window);
    let mine = crate::data::shard_range(n_windows, dist.rank(), dist.size());
    let done: std::collections::BTreeSet<usize> = output::list_chunks(&dir)?
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    let todo: Vec<std::ops::Range<usize>> = mine
        .map(|w| w * plan.window..((w + 1) * plan.window).min(n))
        .filter(|r| !done.contains(&r.start))
        .collect();
    let todo_structs: usize = todo.iter().map(|r| r.len()).sum();

    let bar = (plan.progress && dist.is_root()).then(|| {
        let b = indicatif::ProgressBar::new(todo_structs as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "screen [{bar:30}] {pos}/{len} structures, {per_sec}, eta {eta} (rank 0 of {prefix})",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        b.set_prefix(dist.size().to_string());
        b
    });

    let rules = GraphRules {
        cutoff: model.cutoff(),
        species: model.species().to_vec(),
        min_distance: plan.min_distance,
    };
    let species_index = SpeciesIndex::new(model.species());
    let req = Request {
        forces: plan.forces,
        virial: plan.stress,
        energies: false,
        virials: false,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {} threads: {e}", plan.threads)))?;

    let mut timings = Timings::default();
    let mut evaluated = 0usize;
    let (tx_read, rx_read) = sync_channel::<Window>(2);
    let (tx_graph, rx_graph) = sync_channel::<Window>(2);
    let (tx_eval, rx_eval) = sync_channel::<(std::ops::Range<usize>, Vec<String>)>(2);
    let result: Result<()> = std::thread::scope(|sc| {
        let inputs = &inputs;
        let todo = &todo;
        let reader = sc.spawn(move || -> Result<f64> {
            let mut busy = 0.0;
            let mut t = Instant::now();
            inputs.read_windows(todo, |range, items| {
                busy += t.elapsed().as_secs_f64();
                let ok = tx_read
                    .send(Window {
                        range,
                        items,
                        prepared: Vec::new(),
                    })
                    .is_ok();
                t = Instant::now();
                ok
            })?;
            Ok(busy)
        });
        let (rules, species_index, pool) = (&rules, &species_index, &pool);
        let grapher = sc.spawn(move || -> f64 {
            let mut busy = 0.0;
            for mut w in rx_read {
                let t = Instant::now();
                w.prepared = pool.install(|| {
                    use rayon::prelude::*;
                    w.items
                        .par_iter()
                        .map(|it| match &it.data {
                            Ok(f) => rules.prepare(species_index, f),
                            Err(e) => Err(e.clone()),
                        })
                        .collect()
                });
                busy += t.elapsed().as_secs_f64();
                if tx_graph.send(w).is_err() {
                    break;
                }
            }
            busy
        });
        let dir = &dir;
        let writer = sc.spawn(move || -> Result<f64> {
            let mut busy = 0.0;
            for (range, lines) in rx_eval {
                let t = Instant::now();
                output::write_chunk(dir, range.start, range.end, &lines)?;
                busy += t.elapsed().as_secs_f64();
            }
            Ok(busy)
        });
        // Evaluate here: the model stays on this thread.
        let n_numeric = cols.numeric().len();
        let mut eval_err = None;
        for w in rx_graph {
            let t = Instant::now();
            // (results, deviations): the deviations only for an ensemble.
            let results: Vec<
                std::result::Result<(mlip::Results, Option<mlip::ensemble::Deviation>), String>,
            > = if cols.ensemble {
                evaluate_window_members(&member_refs, req, plan.batch_atoms, &w.prepared)
                    .into_iter()
                    .map(|r| r.map(|e| (e.mean, Some(e.deviation))))
                    .collect()
            } else {
                evaluate_window(model, req, plan.batch_atoms, &w.prepared)
                    .into_iter()
                    .map(|r| r.map(|r| (r, None)))
                    .collect()
            };
            timings.evaluate_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let lines: Vec<String> = w
                .items
                .iter()
                .zip(&w.prepared)
                .zip(&results)
                .map(|((it, p), r)| {
                    let label = &inputs.sources[it.source].label;
                    let numbers = it.data.as_ref().ok().map(|f| f.numbers.as_slice());
                    match r {
                        Ok((r, dev)) => {
                            let p = p.as_ref().expect("evaluated");
                            let mut v = cols.values(p.numbers.len(), p.volume, r);
                            if let Some(d) = dev {
                                v.extend(cols.deviation_values(d));
                            }
                            output::row(it.index, label, it.frame, numbers, &v, n_numeric, "")
                        }
                        Err(e) => {
                            output::row(it.index, label, it.frame, numbers, &[], n_numeric, e)
                        }
                    }
                })
                .collect();
            timings.write_s += t.elapsed().as_secs_f64();
            evaluated += w.range.len();
            if let Some(b) = &bar {
                b.inc(w.range.len() as u64);
            }
            if tx_eval.send((w.range, lines)).is_err() {
                eval_err = Some(Error::Invalid("the writer thread stopped".into()));
                break;
            }
        }
        drop(tx_eval);
        let read = reader
            .join()
            .map_err(|_| Error::Invalid("the reader thread panicked".into()))?;
        let graph = grapher
            .join()
            .map_err(|_| Error::Invalid("the graph thread panicked".into()))?;
        let write = writer
            .join()
            .map_err(|_| Error::Invalid("the writer thread panicked".into()))?;
        timings.graph_s += graph;
        // The writer's error says more than the evaluator's "stopped".
        timings.write_s += write?;
        timings.read_s += read?;
        eval_err.map_or(Ok(()), Err)
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // A failure on one rank stops every rank before the merge.
    let failed = dist.any(result.is_err());
    result?;
    if failed {
        return Err(Error::Invalid("another rank failed (see its error)".into()));
    }
    let mut t = [
        timings.read_s,
        timings.graph_s,
        timings.evaluate_s,
        timings.write_s,
        evaluated as f64,
    ];
    dist.allreduce_sum(&mut t);
    let mut timings = Timings {
        read_s: t[0],
        graph_s: t[1],
        evaluate_s: t[2],
        write_s: t[3],
        merge_s: 0.0,
    };
    let evaluated = t[4] as usize;
    dist.barrier();

    let mut summary = ScreenSummary {
        n_structures: n,
        n_atoms: 0,
        n_evaluated_now: evaluated,
        n_failed: 0,
        failures: Default::default(),
        ranks: dist.size(),
        wall_s: 0.0,
        timings,
        top: Vec::new(),
        files: Vec::new(),
    };
    if dist.is_root() {
        let tm = Instant::now();
        let csv = suffixed(&plan.output, ".csv");
        let table = output::merge(&dir, n, &cols, &csv)?;
        let bp = suffixed(&plan.output, ".bp");
        table.write_bp(&bp, &plan.model, &branch_name)?;
        let top = table
            .top_k(&plan.sort_by, plan.top_k, plan.descending)
            .expect("column checked");
        let top_path = suffixed(&plan.output, ".top.csv");
        let mut text = table.header.clone();
        text.push('\n');
        for &i in &top {
            text.push_str(&table.lines[i]);
            text.push('\n');
        }
        std::fs::write(&top_path, text).map_err(|e| Error::io(&top_path, e))?;
        let png = suffixed(&plan.output, ".hist.png");
        let values: Vec<f64> = table
            .column(&plan.sort_by)
            .expect("column checked")
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        histogram_png(&png, &plan.sort_by, &values, 40)?;
        summary.top = top
            .iter()
            .map(|&i| (i, table.column(&plan.sort_by).expect("column")[i]))
            .collect();
        summary.n_atoms = table.n_atoms.iter().map(|&a| a.max(0) as usize).sum();
        summary.failures = table.error_counts();
        summary.n_failed = summary.failures.values().sum();
        timings.merge_s = tm.elapsed().as_secs_f64();
        summary.timings = timings;
        summary.wall_s = t0.elapsed().as_secs_f64();
        let js = suffixed(&plan.output, ".summary.json");
        summary.files = vec![csv, bp, top_path, png, js.clone()];
        let text = serde_json::to_string_pretty(&summary).expect("summary serialises");
        std::fs::write(&js, text).map_err(|e| Error::io(&js, e))?;
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        print_report(plan, &table, &summary);
    }
    dist.barrier();
    Ok(summary)
}

fn print_report(plan: &ScreenPlan, table: &Table, s: &ScreenSummary) {
    println!(
        "screened {} structures ({} atoms) on {} rank(s) in {:.2} s: {:.1} structures/s, {:.0} atoms/s",
        s.n_structures,
        s.n_atoms,
        s.ranks,
        s.wall_s,
        s.n_evaluated_now as f64 / s.wall_s.max(1e-9),
        s.n_atoms as f64 * s.n_evaluated_now as f64 / (s.n_structures.max(1) as f64) / s.wall_s.max(1e-9)
    );
    let t = &s.timings;
    println!(
        "busy time, summed over ranks: read {:.3} s, graph {:.3} s, evaluate {:.3} s, write {:.3} s; merge {:.3} s",
        t.read_s, t.graph_s, t.evaluate_s, t.write_s, t.merge_s
    );
    if s.n_failed == 0 {
        println!("errors: none");
    } else {
        let kinds: Vec<String> = s.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "errors: {} of {} structures ({}); see the error column",
            s.n_failed,
            s.n_structures,
            kinds.join(", ")
        );
    }
    println!(
        "top {} by {} ({}):",
        s.top.len(),
        plan.sort_by,
        if plan.descending {
            "largest first"
        } else {
            "smallest first"
        }
    );
    println!("{}", table.header);
    for &(i, _) in &s.top {
        println!("{}", table.lines[i]);
    }
    for f in &s.files {
        println!("wrote {}", f.display());
    }
}

/// `prefix` for an output given as `out.csv` (the extension is dropped) or `out`.
pub fn output_prefix(o: &Path) -> PathBuf {
    match o.extension() {
        Some(e) if e == "csv" => o.with_extension(""),
        _ => o.to_path_buf(),
    }
}
