//! Per-element reference energies: the least-squares fit `E_g ≈ Σ_Z n_{g,Z} e_Z` over a set of
//! graphs (the training split), solved by SVD so a rank-deficient composition matrix (e.g. every
//! graph with the same stoichiometry) gives the minimum-norm solution instead of failing.
//!
//! The trainer subtracts `Σ_Z n_Z e_Z` from each energy before learning, so the model fits the
//! small, size-intensive remainder; the same `e_Z` travel with the dataset and the model file.

use nalgebra::{DMatrix, DVector};

use super::error::{DataError, Result};

/// Fitted per-element reference energies.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceEnergies {
    /// Atomic numbers, ascending.
    pub elements: Vec<i32>,
    /// Reference energy per element, eV, aligned with `elements`.
    pub energies: Vec<f64>,
    /// Root-mean-square residual of the fit per graph, eV.
    pub rmse: f64,
    /// Rank of the composition matrix (less than `elements.len()` when compositions are collinear).
    pub rank: usize,
}

impl ReferenceEnergies {
    /// The reference energy of element `z` (0 for an element the fit did not see).
    pub fn of(&self, z: i32) -> f64 {
        self.elements
            .binary_search(&z)
            .map(|i| self.energies[i])
            .unwrap_or(0.0)
    }

    /// `Σ_i e_{Z_i}` over the atoms of a structure.
    pub fn total(&self, numbers: &[i32]) -> f64 {
        numbers.iter().map(|&z| self.of(z)).sum()
    }
}

/// Fits reference energies to `energies[g] ≈ Σ_i e_{numbers[g][i]}` by least squares (SVD).
pub fn fit_reference_energies<'a>(
    numbers: impl IntoIterator<Item = &'a [i32]>,
    energies: &[f64],
) -> Result<ReferenceEnergies> {
    let numbers: Vec<&[i32]> = numbers.into_iter().collect();
    if numbers.len() != energies.len() {
        return Err(DataError::Invalid(format!(
            "reference-energy fit: {} structures but {} energies",
            numbers.len(),
            energies.len()
        )));
    }
    if numbers.is_empty() {
        return Err(DataError::Invalid(
            "reference-energy fit: no structures (empty training split)".into(),
        ));
    }
    let mut elements: Vec<i32> = numbers.iter().flat_map(|n| n.iter().copied()).collect();
    elements.sort_unstable();
    elements.dedup();
    let (g, k) = (numbers.len(), elements.len());
    let mut a = DMatrix::<f64>::zeros(g, k);
    for (row, n) in numbers.iter().enumerate() {
        for z in n.iter() {
            let col = elements.binary_search(z).expect("collected above");
            a[(row, col)] += 1.0;
        }
    }
    let b = DVector::from_column_slice(energies);
    let svd = a.clone().svd(true, true);
    let smax = svd.singular_values.iter().cloned().fold(0.0, f64::max);
    let eps = smax * (g.max(k) as f64) * f64::EPSILON;
    let rank = svd.singular_values.iter().filter(|&&s| s > eps).count();
    let x = svd
        .solve(&b, eps)
        .map_err(|e| DataError::Invalid(format!("reference-energy fit: {e}")))?;
    let r = &a * &x - &b;
    let rmse = (r.norm_squared() / g as f64).sqrt();
    Ok(ReferenceEnergies {
        elements,
        energies: x.iter().copied().collect(),
        rmse,
        rank,
    })
}
