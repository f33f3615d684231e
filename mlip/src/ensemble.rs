//! Ensembles (committees) of K models and their model deviation: the ensemble file, evaluation
//! of every member on one shared neighbour list, the mean (or member 0) that drives the dynamics,
//! and the deviations DeePMD-kit and DP-GEN use (energy std, per-atom force deviation, max / min /
//! average force and virial deviations).
//!
//! The ensemble file is a safetensors container like the model file ([`crate::file`]): metadata
//! `format` = [`FORMAT`], `format_version` = [`FORMAT_VERSION`], `info` (JSON: `num_members`,
//! cutoff, layers, species, units, and each member's source file and checksum) and `checksum`
//! (SHA-256 over the tensors and every other metadata entry, as in model files of version 2);
//! one `u8` tensor per member, `member.0` .. `member.{K-1}`, holding that member's whole model
//! file, which is loaded (its own checksum verified) exactly as a model file is. Members share
//! one species list (same order), one cutoff and one layer count; they may differ in anything
//! else (architecture, width, precision of the file, seed).
//!
//! Definitions (population statistics over the K members, no K-1 correction, as `numpy.std`
//! and DeePMD-kit):
//! - energy std: std of the total energies;
//! - per-atom force deviation: e_i = sqrt(<|F_i - <F_i>|^2>), the average over members;
//!   max / min / avg over the atoms give `max_devi_f`, `min_devi_f`, `avg_devi_f`;
//! - virial deviation: the std of each of the 9 components of the virial divided by the number
//!   of atoms (DeePMD-kit's `calc_model_devi_v(virial / natoms)`); max / min / avg over the 9
//!   components give `max_devi_v`, `min_devi_v`, `avg_devi_v`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Kind};

use crate::compute::{GraphInput, Request, Results};
use crate::error::{Error, Result};
use crate::file::{checksum, covered_metadata};
use crate::model::Model;
use crate::structure::Structure;

/// Value of the `format` metadata key of an ensemble file.
pub const FORMAT: &str = "hydragnn-rs-ensemble";
/// The ensemble format version this engine writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Which result drives the dynamics (what `energy`, `forces`, `virial` are in the clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Drive {
    /// The committee mean (the default).
    #[default]
    Mean,
    /// Member 0, as DeePMD-kit's `pair_style deepmd m0 m1 ...` does.
    First,
}

impl Drive {
    /// Parses `mean` or `first` (also `member0`, `0`).
    pub fn parse(s: &str) -> Result<Drive> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(Drive::Mean),
            "first" | "member0" | "0" => Ok(Drive::First),
            _ => Err(Error::InvalidInput(format!(
                "ensemble drive '{s}' is not one of: mean, first"
            ))),
        }
    }
}

/// The committee's spread for one structure (see the module's definitions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deviation {
    /// Std of the members' total energies (eV).
    pub energy_std: f64,
    /// Per-atom force deviation sqrt(<|F_i - <F_i>|^2>) (eV/Å), one per atom of the results.
    pub force: Vec<f64>,
    /// Largest per-atom force deviation (eV/Å); 0 without atoms or forces.
    pub max_f: f64,
    /// Smallest per-atom force deviation (eV/Å).
    pub min_f: f64,
    /// Average per-atom force deviation (eV/Å).
    pub avg_f: f64,
    /// Std of each virial component (eV), not divided by the atom count.
    pub virial_std: [[f64; 3]; 3],
    /// Largest of the 9 virial-component stds divided by the atom count (eV/atom).
    pub max_v: f64,
    /// Smallest of them (eV/atom).
    pub min_v: f64,
    /// Their average (eV/atom).
    pub avg_v: f64,
}

/// Every member's results for one structure, their mean and their deviation.
#[derive(Debug, Clone, Default)]
pub struct EnsembleResults {
    /// Member k's results, in the file's order.
    pub members: Vec<Results>,
    /// The mean of energy, forces, virial, per-atom energies and virials over the members.
    pub mean: Results,
    /// The spread.
    pub deviation: Deviation,
}

impl EnsembleResults {
    /// The results that drive the dynamics under `drive`.
    pub fn driving(&self, drive: Drive) -> &Results {
        match drive {
            Drive::Mean => &self.mean,
            Drive::First => &self.members[0],
        }
    }

    /// Combines the members' results of one structure (`n_atoms` atoms, for the virial's
    /// per-atom normalisation) into mean and deviation.
    pub fn from_members(members: Vec<Results>, n_atoms: usize) -> EnsembleResults {
        let k = members.len().max(1) as f64;
        let mut mean = Results {
            energy: members.iter().map(|r| r.energy).sum::<f64>() / k,
            ..Default::default()
        };
        let first = &members[0];
        mean.forces = (0..first.forces.len())
            .map(|i| [0, 1, 2].map(|c| members.iter().map(|r| r.forces[i][c]).sum::<f64>() / k))
            .collect();
        mean.virial = [0, 1, 2]
            .map(|a| [0, 1, 2].map(|b| members.iter().map(|r| r.virial[a][b]).sum::<f64>() / k));
        mean.energies = (0..first.energies.len())
            .map(|i| members.iter().map(|r| r.energies[i]).sum::<f64>() / k)
            .collect();
        mean.virials = (0..first.virials.len())
            .map(|i| {
                [0, 1, 2].map(|a| {
                    [0, 1, 2].map(|b| members.iter().map(|r| r.virials[i][a][b]).sum::<f64>() / k)
                })
            })
            .collect();
        let mut d = Deviation {
            energy_std: (members
                .iter()
                .map(|r| (r.energy - mean.energy).powi(2))
                .sum::<f64>()
                / k)
                .sqrt(),
            ..Default::default()
        };
        d.force = mean
            .forces
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let s: f64 = members
                    .iter()
                    .map(|r| (0..3).map(|c| (r.forces[i][c] - m[c]).powi(2)).sum::<f64>())
                    .sum();
                (s / k).sqrt()
            })
            .collect();
        if !d.force.is_empty() {
            d.max_f = d.force.iter().copied().fold(f64::MIN, f64::max);
            d.min_f = d.force.iter().copied().fold(f64::MAX, f64::min);
            d.avg_f = d.force.iter().sum::<f64>() / d.force.len() as f64;
        }
        d.virial_std = [0, 1, 2].map(|a| {
            [0, 1, 2].map(|b| {
                (members
                    .iter()
                    .map(|r| (r.virial[a][b] - mean.virial[a][b]).powi(2))
                    .sum::<f64>()
                    / k)
                    .sqrt()
            })
        });
        let per_atom: Vec<f64> = d
            .virial_std
            .as_flattened()
            .iter()
            .map(|v| v / n_atoms.max(1) as f64)
            .collect();
        d.max_v = per_atom.iter().copied().fold(f64::MIN, f64::max);
        d.min_v = per_atom.iter().copied().fold(f64::MAX, f64::min);
        d.avg_v = per_atom.iter().sum::<f64>() / 9.0;
        mean.properties = BTreeMap::new();
        EnsembleResults {
            members,
            mean,
            deviation: d,
        }
    }
}

/// Checks that `members` form an ensemble: at least one, one species list, one cutoff, one
/// layer count. `what(k)` names member k in messages.
pub fn check_members(members: &[&Model], what: impl Fn(usize) -> String) -> Result<()> {
    let Some(m0) = members.first() else {
        return Err(Error::InvalidInput(
            "an ensemble needs at least one member".into(),
        ));
    };
    for (k, m) in members.iter().enumerate().skip(1) {
        if m.species() != m0.species() {
            return Err(Error::InvalidInput(format!(
                "{} has species {:?}, {} has {:?}: ensemble members must share one species list \
                 (same order)",
                what(k),
                m.species(),
                what(0),
                m0.species()
            )));
        }
        if (m.cutoff() - m0.cutoff()).abs() > 1e-12 * m0.cutoff().abs().max(1.0) {
            return Err(Error::InvalidInput(format!(
                "{} has cutoff {} Å, {} has {} Å: ensemble members must share one cutoff",
                what(k),
                m.cutoff(),
                what(0),
                m0.cutoff()
            )));
        }
        if m.num_layers() != m0.num_layers() {
            return Err(Error::InvalidInput(format!(
                "{} has {} layers, {} has {}: ensemble members must share one layer count",
                what(k),
                m.num_layers(),
                what(0),
                m0.num_layers()
            )));
        }
    }
    Ok(())
}

/// Evaluates every member on whole structures, the neighbour list of each structure built once
/// and shared by all members.
pub fn compute_members(
    members: &[&Model],
    structures: &[Structure],
    req: Request,
) -> Result<Vec<EnsembleResults>> {
    check_members(members, |k| format!("member {k}"))?;
    let lists = crate::compute::whole_structure_lists(structures, members[0].cutoff())?;
    let inputs = crate::compute::whole_structure_inputs(structures, &lists);
    compute_graphs_members(members, &inputs, req)
}

/// Evaluates every member on caller-supplied graphs (the force deviation covers local and ghost
/// atoms; the virial deviation is normalised by the local atom count).
pub fn compute_graphs_members(
    members: &[&Model],
    graphs: &[GraphInput],
    req: Request,
) -> Result<Vec<EnsembleResults>> {
    check_members(members, |k| format!("member {k}"))?;
    // one set of graph arrays (species indices, edge vectors, checks) for every member
    let mut per_member = crate::compute::compute_graphs_shared(members, graphs, req)?;
    let mut out = Vec::with_capacity(graphs.len());
    for (g, graph) in graphs.iter().enumerate() {
        let rs: Vec<Results> = per_member
            .iter_mut()
            .map(|v| std::mem::take(&mut v[g]))
            .collect();
        out.push(EnsembleResults::from_members(rs, graph.n_local));
    }
    Ok(out)
}

/// The spread across the branches of a multi-branch model (e.g. one branch per source dataset or
/// level of theory) for one structure: every branch's results as the "members", their mean and
/// the deviations of the module's definitions. The model's active branch is restored. A model
/// with a single branch is refused (it has no spread).
pub fn branch_spread(model: &mut Model, s: &Structure, req: Request) -> Result<EnsembleResults> {
    let names = model.branch_names();
    if names.len() < 2 {
        return Err(Error::InvalidInput(format!(
            "branch spread needs a model with several branches; this one has {} ({})",
            names.len(),
            names.join(", ")
        )));
    }
    let active = names[model.active_branch()].clone();
    let mut members = Vec::with_capacity(names.len());
    let mut failed = None;
    for n in &names {
        model.set_branch(n)?;
        match model.compute(s, req) {
            Ok(r) => members.push(r),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    model.set_branch(&active)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(EnsembleResults::from_members(members, s.len())),
    }
}

/// A loaded ensemble: K models evaluated together.
#[derive(Debug)]
pub struct Ensemble {
    /// The members, in the file's order.
    pub members: Vec<Model>,
    /// The ensemble file's metadata (empty for an ensemble built in memory).
    pub metadata: BTreeMap<String, String>,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Whether `bytes` are an ensemble file (a safetensors header whose `format` is [`FORMAT`]).
pub fn is_ensemble(bytes: &[u8]) -> bool {
    SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, h)| h.metadata().clone())
        .is_some_and(|m| m.get("format").map(String::as_str) == Some(FORMAT))
}

impl Ensemble {
    /// An ensemble of models already in memory (checked as [`check_members`] does).
    pub fn new(members: Vec<Model>) -> Result<Ensemble> {
        check_members(&members.iter().collect::<Vec<_>>(), |k| {
            format!("member {k}")
        })?;
        Ok(Ensemble {
            members,
            metadata: BTreeMap::new(),
        })
    }

    /// Number of members K.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members (never true for a loaded ensemble).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member on whole structures, sharing the neighbour lists.
    pub fn compute_batch(
        &self,
        structures: &[Structure],
        req: Request,
    ) -> Result<Vec<EnsembleResults>> {
        compute_members(&self.members.iter().collect::<Vec<_>>(), structures, req)
    }

    /// Every member on one whole structure.
    pub fn compute(&self, s: &Structure, req: Request) -> Result<EnsembleResults> {
        Ok(self
            .compute_batch(std::slice::from_ref(s), req)?
            .pop()
            .expect("one result"))
    }

    /// Loads an ensemble file, or a plain model file as an ensemble of one.
    pub fn load(path: impl AsRef<Path>, kind: Kind, device: Device) -> Result<Ensemble> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if !is_ensemble(&bytes) {
            let m = Model::from_bytes(&bytes, path, kind, device)?;
            return Ok(Ensemble {
                members: vec![m],
                metadata: BTreeMap::new(),
            });
        }
        Self::from_bytes(&bytes, path, kind, device)
    }

    /// Parses the bytes of an ensemble file (`path` is only used in messages).
    pub fn from_bytes(bytes: &[u8], path: &Path, kind: Kind, device: Device) -> Result<Ensemble> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            bad(
                path,
                format!("not an ensemble file, or truncated or corrupted (safetensors: {e:?})"),
            )
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(path, format!("unreadable header: {e:?}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(path, format!("format is not '{FORMAT}'")));
        }
        let version: u32 = meta
            .get("format_version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(path, "missing or invalid 'format_version'"))?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(bad(
                path,
                format!(
                    "ensemble format version {version} is not supported by this engine (it \
                     reads 1..={FORMAT_VERSION}); upgrade hydragnn-rs"
                ),
            ));
        }
        let tensors = st.tensors();
        let sum = checksum(
            tensors
                .iter()
                .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
            &covered_metadata(&meta),
        );
        match meta.get("checksum") {
            Some(s) if *s == sum => {}
            s => {
                return Err(bad(
                    path,
                    format!(
                        "checksum mismatch: the members or the header are corrupted (stored \
                         checksum {}, computed {sum})",
                        s.map_or("missing", |s| s.as_str())
                    ),
                ))
            }
        }
        let by_name: HashMap<&str, &TensorView> =
            tensors.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let k = tensors.len();
        if k == 0 {
            return Err(bad(path, "the ensemble has no members"));
        }
        let mut members = Vec::with_capacity(k);
        for i in 0..k {
            let name = format!("member.{i}");
            let v = by_name.get(name.as_str()).ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "missing tensor '{name}' (members must be member.0 .. member.{})",
                        k - 1
                    ),
                )
            })?;
            let label = path.with_file_name(format!(
                "{}[member {i}]",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("ensemble")
            ));
            members.push(Model::from_bytes(v.data(), &label, kind, device)?);
        }
        check_members(&members.iter().collect::<Vec<_>>(), |i| {
            format!("member {i}")
        })
        .map_err(|e| bad(path, e.to_string()))?;
        Ok(Ensemble {
            members,
            metadata: meta.into_iter().collect(),
        })
    }
}

/// Writes the ensemble file `out` from the model files `inputs` (each loaded and checked first:
/// its checksum, and one species list, cutoff and layer count across all). Written atomically.
pub fn build(inputs: &[impl AsRef<Path>], out: impl AsRef<Path>) -> Result<()> {
    let out = out.as_ref();
    if inputs.is_empty() {
        return Err(Error::InvalidInput(
            "an ensemble needs at least one member model file".into(),
        ));
    }
    let mut blobs = Vec::with_capacity(inputs.len());
    let mut models = Vec::with_capacity(inputs.len());
    let mut sources = Vec::new();
    for p in inputs {
        let p = p.as_ref();
        let bytes = std::fs::read(p).map_err(|e| Error::Io {
            path: p.to_path_buf(),
            source: e,
        })?;
        if is_ensemble(&bytes) {
            return Err(bad(
                p,
                "is an ensemble file; members must be model files (nested ensembles are not \
                 supported)",
            ));
        }
        let m = Model::from_bytes(&bytes, p, Kind::Double, Device::Cpu)?;
        sources.push(serde_json::json!({
            "file": p.display().to_string(),
            "checksum": m.metadata.get("checksum"),
        }));
        models.push(m);
        blobs.push(bytes);
    }
    let refs: Vec<&Model> = models.iter().collect();
    check_members(&refs, |k| format!("'{}'", inputs[k].as_ref().display()))?;
    let c = models[0].config();
    let info = serde_json::json!({
        "num_members": models.len(),
        "cutoff": c.radius,
        "num_layers": c.num_conv_layers,
        "species": c.species.iter().map(|&z| crate::elements::symbol(z)).collect::<Vec<_>>(),
        "atomic_numbers": c.species,
        "units": {"energy": "eV", "length": "Angstrom", "lammps": "metal"},
        "members": sources,
        "engine": format!("hydragnn-rs {}", env!("CARGO_PKG_VERSION")),
    });
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    meta.insert("info".to_string(), info.to_string());
    let names: Vec<String> = (0..blobs.len()).map(|k| format!("member.{k}")).collect();
    let shapes: Vec<Vec<usize>> = blobs.iter().map(|b| vec![b.len()]).collect();
    let sum = checksum(
        names
            .iter()
            .zip(&shapes)
            .zip(&blobs)
            .map(|((n, s), b)| (n.as_str(), s.as_slice(), b.as_slice())),
        &covered_metadata(&meta),
    );
    meta.insert("checksum".to_string(), sum);
    let views = names
        .iter()
        .zip(&shapes)
        .zip(&blobs)
        .map(|((n, s), b)| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::U8, s.clone(), b).map_err(|e| bad(out, e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::tensor::serialize(views, &Some(meta)).map_err(|e| bad(out, e.to_string()))?;
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let io = |e: std::io::Error| Error::Io {
        path: out.to_path_buf(),
        source: e,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(())
}
