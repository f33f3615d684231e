//! Ensembles through the C ABI: `hgnn_model_load` takes an ensemble file as well as a model file
//! (member 0 is the model every other accessor describes; the other members are kept here),
//! `hgnn_compute` / `hgnn_compute_batch` return the results that drive the dynamics (the mean by
//! default, `hgnn_model_set_ensemble_drive`), and `hgnn_compute_ensemble` adds the deviations and
//! the committee's arrays. Paths that evaluate one model on a caller's graph (`hgnn_compute_graph`,
//! `hgnn_eval_begin`) refuse an ensemble of more than one member instead of running member 0
//! alone; `hgnn_eval_begin_member` runs one chosen member layer by layer (the LAMMPS plugin's
//! committee: each member with its own ghost exchange, the caller combines the members).

use std::path::Path;
use std::sync::Arc;

use mlip::ensemble::{compute_members, Drive, EnsembleResults};
use mlip::{Model, Request, Structure};

use crate::compute::{hgnn_results_t, hgnn_structure_t, request, structure_at, write_results};
use crate::model::{hgnn_model_t, model_ref};
use crate::status::{arg, hgnn_status_t, null, out, wrap, Fail};

/// The committee mean drives the dynamics (the default).
pub const HGNN_DRIVE_MEAN: i32 = 0;
/// Member 0 drives the dynamics (DeePMD-kit's choice); the deviations are the same.
pub const HGNN_DRIVE_FIRST: i32 = 1;

/// The members after member 0, and which result drives the dynamics.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// Shared with the layer-by-layer evaluations of a member in progress (`hgnn_eval_t`).
    pub(crate) rest: Vec<Arc<Model>>,
    pub(crate) drive: Drive,
}

/// Loads a model file (one member) or an ensemble file: member 0 and the others.
pub(crate) fn load(
    path: &str,
    kind: tch::Kind,
    device: tch::Device,
) -> mlip::Result<(Model, Members)> {
    let mut e = mlip::ensemble::Ensemble::load(Path::new(path), kind, device)?;
    // An Arc although Model is not Sync, as hgnn_model_t's member 0 (see hgnn_model_load).
    #[allow(clippy::arc_with_non_send_sync)]
    let rest = e.members.split_off(1).into_iter().map(Arc::new).collect();
    let mut m0 = e.members.pop().expect("one member");
    if !e.metadata.is_empty() {
        // clients read the ensemble's info (num_members, members' sources), member 0 runs
        if let Some(info) = e.metadata.get("info") {
            m0.metadata.insert("info".into(), info.clone());
        }
    }
    Ok((
        m0,
        Members {
            rest,
            drive: Drive::Mean,
        },
    ))
}

/// Every member, member 0 first.
fn all(h: &hgnn_model_t) -> Vec<&Model> {
    std::iter::once(&*h.model)
        .chain(h.ensemble.rest.iter().map(|m| &**m))
        .collect()
}

/// Refuses an ensemble of more than one member on a path that evaluates one model (`what`).
pub(crate) fn single<'a>(h: &'a hgnn_model_t, what: &str) -> Result<&'a hgnn_model_t, Fail> {
    if h.ensemble.rest.is_empty() {
        Ok(h)
    } else {
        Err(arg(format!(
            "{what} evaluates one model, and this is an ensemble of {} members: use \
             hgnn_compute / hgnn_compute_ensemble (whole structures), or one member's model file",
            h.ensemble.rest.len() + 1
        )))
    }
}

/// Whole structures through every member (one neighbour list per structure): the driving
/// results, for `hgnn_compute_batch`; one member runs alone.
pub(crate) fn compute_driving(
    h: &hgnn_model_t,
    structures: &[Structure],
    req: Request,
) -> mlip::Result<Vec<mlip::Results>> {
    if h.ensemble.rest.is_empty() {
        return h.model.compute_batch(structures, req);
    }
    let drive = h.ensemble.drive;
    Ok(compute_members(&all(h), structures, req)?
        .into_iter()
        .map(|r| match drive {
            Drive::Mean => r.mean,
            Drive::First => r.members.into_iter().next().expect("one member"),
        })
        .collect())
}

/// Applies `f` (the evaluation path's switch) to the members after member 0.
pub(crate) fn for_rest(
    members: &mut Members,
    mut f: impl FnMut(&mut Model) -> Result<(), Fail>,
) -> Result<(), Fail> {
    members.rest.iter_mut().try_for_each(|m| {
        f(Arc::get_mut(m).ok_or_else(|| {
            arg(
                "the evaluation path cannot change while an evaluation (hgnn_eval_*) of an \
                 ensemble member is in progress: free it first"
                    .into(),
            )
        })?)
    })
}

/// Member `k` (0 = the model every accessor describes) of a model or ensemble, shared.
pub(crate) fn member(h: &hgnn_model_t, k: i32) -> Result<Arc<Model>, Fail> {
    let n = h.ensemble.rest.len() + 1;
    match k {
        0 => Ok(Arc::clone(&h.model)),
        k if k > 0 && (k as usize) < n => Ok(Arc::clone(&h.ensemble.rest[k as usize - 1])),
        _ => Err(arg(format!(
            "member {k} is outside 0..{n}: the model has {n} member{}",
            if n == 1 { "" } else { "s" }
        ))),
    }
}

/// The committee's spread for one structure, and where its arrays go. The scalars are written;
/// set each pointer to a buffer of the given size to receive that array, or to NULL to skip it.
/// Definitions (population statistics over the K members, as DeePMD-kit): `energy_std` the std
/// of the total energies; the per-atom force deviation sqrt(<|F_i - <F_i>|^2>) and its max / min /
/// average over the atoms; the std of each virial component divided by the atom count and its
/// max / min / average over the 9 components.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_ensemble_results_t {
    /// Std of the members' energies (eV), written.
    pub energy_std: f64,
    /// Largest per-atom force deviation (eV/Å), written.
    pub max_devi_f: f64,
    /// Smallest per-atom force deviation (eV/Å), written.
    pub min_devi_f: f64,
    /// Average per-atom force deviation (eV/Å), written.
    pub avg_devi_f: f64,
    /// Largest virial-component std / n_atoms (eV), written (0 unless the virial is requested).
    pub max_devi_v: f64,
    /// Smallest virial-component std / n_atoms (eV), written.
    pub min_devi_v: f64,
    /// Average virial-component std / n_atoms (eV), written.
    pub avg_devi_v: f64,
    /// Std of each virial component, 3 × 3 row-major (eV), written.
    pub virial_std: [f64; 9],
    /// Per-atom force deviation, n_atoms (eV/Å), or NULL.
    pub force_dev: *mut f64,
    /// Each member's energy, K (eV), or NULL.
    pub member_energies: *mut f64,
    /// Each member's forces, K × n_atoms × 3 (eV/Å), or NULL.
    pub member_forces: *mut f64,
    /// Each member's virial, K × 9 (eV), or NULL.
    pub member_virials: *mut f64,
}

/// The number of members K of a model: 1 for a model file, K for an ensemble file.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_ensemble_size(
    model: *const hgnn_model_t,
    size: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        *out(size, "size")? = model_ref(model)?.ensemble.rest.len() as i32 + 1;
        Ok(())
    })
}

/// Chooses what `hgnn_compute` and `hgnn_compute_ensemble`'s `results` return for an ensemble:
/// `HGNN_DRIVE_MEAN` (the committee mean, the default) or `HGNN_DRIVE_FIRST` (member 0).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_set_ensemble_drive(
    model: *mut hgnn_model_t,
    drive: i32,
) -> hgnn_status_t {
    wrap(|| {
        let h = model.as_mut().ok_or_else(|| null("model"))?;
        h.ensemble.drive = match drive {
            HGNN_DRIVE_MEAN => Drive::Mean,
            HGNN_DRIVE_FIRST => Drive::First,
            d => {
                return Err(arg(format!(
                    "drive must be HGNN_DRIVE_MEAN (0) or HGNN_DRIVE_FIRST (1), got {d}"
                )))
            }
        };
        Ok(())
    })
}

/// One structure through every member on one neighbour list: the driving results (mean or
/// member 0, `hgnn_model_set_ensemble_drive`) into `results`, as `hgnn_compute` writes them, and
/// the spread and committee arrays into `ensemble`. A model file is an ensemble of one (every
/// deviation 0). The force deviation needs forces requested in `results`, the virial deviation
/// the virial.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_compute_ensemble(
    model: *const hgnn_model_t,
    structure: *const hgnn_structure_t,
    results: *mut hgnn_results_t,
    ensemble: *mut hgnn_ensemble_results_t,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let s = structure_at(structure.as_ref().ok_or_else(|| null("structure"))?, None)?;
        let r = out(results, "results")?;
        let e = out(ensemble, "ensemble")?;
        let req = request(r);
        let mut rs: Vec<EnsembleResults> = compute_members(&all(h), std::slice::from_ref(&s), req)?;
        let er = rs.pop().expect("one structure");
        let n = s.len();
        if !e.force_dev.is_null() && !req.forces {
            return Err(arg(
                "force_dev requested without forces in results: request forces too".into(),
            ));
        }
        if !e.member_forces.is_null() && !req.forces {
            return Err(arg(
                "member_forces requested without forces in results: request forces too".into(),
            ));
        }
        if !e.member_virials.is_null() && !req.virial {
            return Err(arg(
                "member_virials requested without the virial in results: request it too".into(),
            ));
        }
        write_results(er.driving(h.ensemble.drive), r, n, n);
        let d = &er.deviation;
        e.energy_std = d.energy_std;
        (e.max_devi_f, e.min_devi_f, e.avg_devi_f) = (d.max_f, d.min_f, d.avg_f);
        (e.max_devi_v, e.min_devi_v, e.avg_devi_v) = (d.max_v, d.min_v, d.avg_v);
        e.virial_std.copy_from_slice(d.virial_std.as_flattened());
        let k = er.members.len();
        if !e.force_dev.is_null() {
            std::slice::from_raw_parts_mut(e.force_dev, n).copy_from_slice(&d.force);
        }
        if !e.member_energies.is_null() {
            let dst = std::slice::from_raw_parts_mut(e.member_energies, k);
            for (x, m) in dst.iter_mut().zip(&er.members) {
                *x = m.energy;
            }
        }
        if !e.member_forces.is_null() {
            let dst = std::slice::from_raw_parts_mut(e.member_forces, k * n * 3);
            for (c, m) in dst.chunks_mut(3 * n.max(1)).zip(&er.members) {
                c[..3 * n].copy_from_slice(m.forces.as_flattened());
            }
        }
        if !e.member_virials.is_null() {
            let dst = std::slice::from_raw_parts_mut(e.member_virials, k * 9);
            for (c, m) in dst.chunks_mut(9).zip(&er.members) {
                c.copy_from_slice(m.virial.as_flattened());
            }
        }
        Ok(())
    })
}

/// Number of values per atom in the features entering layer `layer` (0..=num_layers) of member
/// `member` (0..K-1): `hgnn_model_feature_width` of that member (members may differ in width),
/// the size of one atom's message in the ghost exchange of its `hgnn_eval_begin_member`
/// evaluation.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_member_feature_width(
    model: *const hgnn_model_t,
    member: i32,
    layer: i32,
    width: *mut i32,
) -> hgnn_status_t {
    wrap(|| {
        let m = self::member(model_ref(model)?, member)?;
        if layer < 0 || layer as usize > m.num_layers() {
            return Err(arg(format!(
                "layer {layer} is outside 0..={}",
                m.num_layers()
            )));
        }
        *out(width, "width")? = m.backbone().width(layer as usize) as i32;
        Ok(())
    })
}
