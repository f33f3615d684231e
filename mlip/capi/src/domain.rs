//! The model's domain: the shortest interatomic distance of its training data, the closest pair
//! of a structure below it (clients warn once per run: ASE with a Python warning, LAMMPS on rank
//! 0 with the atom IDs), and its ZBL core repulsion radii.

use crate::compute::{hgnn_structure_t, structure_at};
use crate::model::{hgnn_model_t, model_ref};
use crate::status::{hgnn_status_t, null, out, wrap};

/// The shortest interatomic distance (Å) in the model's training data; 0 when the model file
/// does not record it (imported models, files written before it was recorded).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_min_training_distance(
    model: *const hgnn_model_t,
    distance: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        let m = model_ref(model)?;
        *out(distance, "distance")? = m.model.config().min_training_distance.unwrap_or(0.0);
        Ok(())
    })
}

/// The radii (Å) between which the model's ZBL core repulsion switches off; both 0 when the
/// model has none.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_model_zbl(
    model: *const hgnn_model_t,
    inner: *mut f64,
    outer: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        let m = model_ref(model)?;
        let (i, o) = m
            .model
            .config()
            .zbl
            .map_or((0.0, 0.0), |z| (z.inner, z.outer));
        *out(inner, "inner")? = i;
        *out(outer, "outer")? = o;
        Ok(())
    })
}

/// The closest pair of atoms (indices `atom_i` < `atom_j`, distance `distance`, Å, periodic
/// images included) of `structure` that is closer than the shortest distance of the model's
/// training data; `atom_i` = `atom_j` = -1 and `distance` = 0 when there is none (or the model
/// does not record that distance).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn hgnn_closest_pair(
    model: *const hgnn_model_t,
    structure: *const hgnn_structure_t,
    atom_i: *mut i64,
    atom_j: *mut i64,
    distance: *mut f64,
) -> hgnn_status_t {
    wrap(|| {
        let m = model_ref(model)?;
        let s = structure_at(structure.as_ref().ok_or_else(|| null("structure"))?, None)?;
        let (ai, aj, d) = (
            out(atom_i, "atom_i")?,
            out(atom_j, "atom_j")?,
            out(distance, "distance")?,
        );
        (*ai, *aj, *d) = (-1, -1, 0.0);
        let Some(limit) = m.model.config().min_training_distance else {
            return Ok(());
        };
        let nl = mlip::neighbors::neighbor_list(&s, limit)?;
        let vecs: Vec<f64> = nl.edge_vectors(&s).into_iter().flatten().collect();
        let centers: Vec<i64> = nl.centers.iter().map(|&i| i as i64).collect();
        let neighbors: Vec<i64> = nl.neighbors.iter().map(|&j| j as i64).collect();
        if let Some((i, j, r)) =
            mlip::zbl::closest_below(&centers, &neighbors, &vecs, |_| true, limit)
        {
            (*ai, *aj, *d) = (i.min(j) as i64, i.max(j) as i64, r);
        }
        Ok(())
    })
}
