//! Whole structures: the engine builds the neighbour list (`hgnn_compute`, `hgnn_compute_batch`),
//! and the results struct every evaluation writes.

use mlip::{Error, Request, Results, Structure};

use crate::model::{hgnn_model_t, model_ref};
use crate::status::{arg, as_vec3, count, hgnn_status_t, null, slice, wrap, Fail};

/// A whole structure.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_structure_t {
    /// Number of atoms.
    pub n_atoms: i64,
    /// Positions, n_atoms × 3 (Å).
    pub positions: *const f64,
    /// Atomic numbers, n_atoms.
    pub atomic_numbers: *const i32,
    /// Lattice vectors as rows, row-major 3 × 3 (Å); ignored along non-periodic directions.
    pub cell: [f64; 9],
    /// Periodicity along each lattice vector (0 or 1).
    pub pbc: [i32; 3],
}

/// Where results go. Set each pointer to a buffer of the given size to request that quantity,
/// or to NULL to skip it. `energy` is always written.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct hgnn_results_t {
    /// Energy of the local atoms (eV), written.
    pub energy: f64,
    /// Forces, n_total × 3 (eV/Å), or NULL. Ghost forces belong to the ghosts' owners.
    pub forces: *mut f64,
    /// Virial, 3 × 3 row-major (eV), or NULL.
    pub virial: *mut f64,
    /// Per-atom energies, n_local (eV), or NULL.
    pub energies: *mut f64,
    /// Per-atom virials, n_total × 9 row-major (eV), or NULL.
    pub virials: *mut f64,
}

/// Reads one structure; `batch_index` tags its errors with its position in a batch of several.
pub(crate) unsafe fn structure_at(
    s: &hgnn_structure_t,
    batch_index: Option<usize>,
) -> Result<Structure, Fail> {
    let n = count(s.n_atoms, "n_atoms")?;
    let pos = slice(s.positions, 3 * n, "positions")?;
    let z = slice(s.atomic_numbers, n, "atomic_numbers")?;
    let c = s.cell;
    let cell = [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]];
    let pbc = s.pbc.map(|p| p != 0);
    Structure::new(as_vec3(pos), z.to_vec(), cell, pbc).map_err(|e| {
        Fail::from(match batch_index {
            None => e,
            Some(index) => Error::InStructure {
                index,
                source: Box::new(e),
            },
        })
    })
}

pub(crate) fn request(r: &hgnn_results_t) -> Request {
    Request {
        forces: !r.forces.is_null(),
        virial: !r.virial.is_null(),
        energies: !r.energies.is_null(),
        virials: !r.virials.is_null(),
    }
}

pub(crate) unsafe fn write_results(
    src: &Results,
    dst: &mut hgnn_results_t,
    n_total: usize,
    n_local: usize,
) {
    dst.energy = src.energy;
    if !dst.forces.is_null() {
        std::slice::from_raw_parts_mut(dst.forces, 3 * n_total)
            .copy_from_slice(src.forces.as_flattened());
    }
    if !dst.virial.is_null() {
        std::slice::from_raw_parts_mut(dst.virial, 9).copy_from_slice(src.virial.as_flattened());
    }
    if !dst.energies.is_null() {
        std::slice::from_raw_parts_mut(dst.energies, n_local).copy_from_slice(&src.energies);
    }
    if !dst.virials.is_null() {
        let flat: Vec<f64> = src
            .virials
            .iter()
            .flat_map(|m| m.as_flattened().iter().copied())
            .collect();
        std::slice::from_raw_parts_mut(dst.virials, 9 * n_total).copy_from_slice(&flat);
    }
}

/// Energy (and the requested forces, virial, per-atom energies and virials) of one structure.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_compute(
    model: *const hgnn_model_t,
    structure: *const hgnn_structure_t,
    results: *mut hgnn_results_t,
) -> hgnn_status_t {
    hgnn_compute_batch(model, 1, structure, results)
}

/// Evaluates `n_structures` structures as one batch; `results[k]` receives structure k's. On an
/// ensemble, every member runs and the results are the driving ones (the mean by default,
/// `hgnn_model_set_ensemble_drive`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_compute_batch(
    model: *const hgnn_model_t,
    n_structures: i64,
    structures: *const hgnn_structure_t,
    results: *mut hgnn_results_t,
) -> hgnn_status_t {
    wrap(|| {
        let h = model_ref(model)?;
        let n = count(n_structures, "n_structures")?;
        let ss = slice(structures, n, "structures")?;
        if results.is_null() && n > 0 {
            return Err(null("results"));
        }
        let rs = if n > 0 {
            std::slice::from_raw_parts_mut(results, n)
        } else {
            &mut []
        };
        let tag = |k: usize| (n != 1).then_some(k);
        let parsed = ss
            .iter()
            .enumerate()
            .map(|(k, s)| structure_at(s, tag(k)))
            .collect::<Result<Vec<_>, _>>()?;
        let req = rs.first().map(request).unwrap_or(Request::ENERGY);
        if rs.iter().any(|r| request(r) != req) {
            return Err(arg(
                "every results entry of a batch must request the same quantities".into(),
            ));
        }
        let out = crate::ensemble::compute_driving(h, &parsed, req)?;
        for ((r, s), dst) in out.iter().zip(&parsed).zip(rs.iter_mut()) {
            write_results(r, dst, s.len(), s.len());
        }
        Ok(())
    })
}
