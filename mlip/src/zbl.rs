//! The optional ZBL core repulsion of a model: the Ziegler-Biersack-Littmark universal screened
//! nuclear repulsion, switched smoothly to zero between an inner and an outer radius, as LAMMPS's
//! `pair_style zbl` does it. A model whose config has `"zbl": {"inner": r1, "outer": r2}` adds it
//! to its energy in every evaluation path (libtorch autograd, the fast path, layer by layer), so
//! forces and stress stay the derivatives of the energy; the network learns the residual.
//!
//! For a pair of atomic numbers Zi, Zj at distance r (Å, eV):
//!
//! ```text
//! φ(r) = (Zi Zj e²/4πε0) / r · Σ_k c_k exp(−d_k r / a),   a = 0.46850 / (Zi^0.23 + Zj^0.23)
//! c = (0.18175, 0.50986, 0.28022, 0.02817),  d = (3.19980, 0.94229, 0.40290, 0.20162)
//! E(r) = φ(r) + S(r) for r < outer, 0 beyond; S(r) = C for r ≤ inner, and
//! S(r) = C + A/3 t³ + B/4 t⁴ with t = r − inner between inner and outer,
//! ```
//!
//! where A, B and C make E, E' and E'' vanish at the outer radius (LAMMPS `pair_zbl.cpp`,
//! `set_coeff`). With a full neighbour list every pair appears as two directed edges; each edge
//! gives ½E(r) to its centre atom, so per-atom energies add up to the pair sum and every
//! decomposition into ranks (centres local, neighbours possibly ghosts) sums to the same total.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{Error, Result};

/// e²/(4πε0) in eV·Å (LAMMPS metal units: `force->qqr2e * qelectron²`).
pub const COULOMB: f64 = 14.399645;
/// Screening length prefactor (Å).
const A0: f64 = 0.46850;
/// Universal screening function coefficients.
const C: [f64; 4] = [0.18175, 0.50986, 0.28022, 0.02817];
/// Universal screening function exponents.
const D: [f64; 4] = [3.19980, 0.94229, 0.40290, 0.20162];

/// The `zbl` key of a model config: the switching radii (Å), 0 < inner < outer ≤ the cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZblConfig {
    /// Below this distance the repulsion is the plain ZBL φ(r) (plus a constant).
    pub inner: f64,
    /// At and beyond this distance the repulsion is exactly zero.
    pub outer: f64,
}

impl ZblConfig {
    /// Checks 0 < inner < outer ≤ `cutoff` (the model's cutoff: the repulsion needs the pair in
    /// the graph).
    pub fn validate(&self, cutoff: f64) -> Result<()> {
        if !(self.inner.is_finite() && self.outer.is_finite())
            || self.inner <= 0.0
            || self.inner >= self.outer
            || self.outer > cutoff
        {
            return Err(Error::Config(format!(
                "zbl: need 0 < inner < outer <= radius ({cutoff}), got inner {} and outer {}",
                self.inner, self.outer
            )));
        }
        Ok(())
    }
}

/// φ(r), φ'(r), φ''(r) of the pair (zi, zj).
fn phi(zi: f64, zj: f64, r: f64) -> (f64, f64, f64) {
    let a = A0 / (zi.powf(0.23) + zj.powf(0.23));
    let k = COULOMB * zi * zj;
    let (mut s, mut s1, mut s2) = (0.0, 0.0, 0.0);
    for (c, d) in C.iter().zip(D) {
        let b = d / a;
        let e = c * (-b * r).exp();
        s += e;
        s1 -= b * e;
        s2 += b * b * e;
    }
    let e = k * s / r;
    let e1 = k * (s1 / r - s / (r * r));
    let e2 = k * (s2 / r - 2.0 * s1 / (r * r) + 2.0 * s / (r * r * r));
    (e, e1, e2)
}

/// The switching coefficients (A, B, C) of the pair (LAMMPS's swa, swb, swc).
fn switch(zi: f64, zj: f64, cfg: &ZblConfig) -> (f64, f64, f64) {
    let t = cfg.outer - cfg.inner;
    let (fc, fcp, fcpp) = phi(zi, zj, cfg.outer);
    let a = (-3.0 * fcp + t * fcpp) / (t * t);
    let b = (2.0 * fcp - t * fcpp) / (t * t * t);
    let c = -fc + 0.5 * t * fcp - t * t / 12.0 * fcpp;
    (a, b, c)
}

/// The repulsion E(r) of the pair (zi, zj) and dE/dr; (0, 0) at and beyond `cfg.outer`.
pub fn pair(zi: i32, zj: i32, r: f64, cfg: &ZblConfig) -> (f64, f64) {
    if r >= cfg.outer {
        return (0.0, 0.0);
    }
    let (zi, zj) = (zi as f64, zj as f64);
    let (p, p1, _) = phi(zi, zj, r);
    let (a, b, c) = switch(zi, zj, cfg);
    let (mut e, mut de) = (p + c, p1);
    if r > cfg.inner {
        let t = r - cfg.inner;
        e += t * t * t * (a / 3.0 + b / 4.0 * t);
        de += t * t * (a + b * t);
    }
    (e, de)
}

/// Adds the repulsion of the directed edges (`centers[e]`, `neighbors[e]`, vector `vecs[3e..]`)
/// whose centre `counts`: ½E(r) to `energies[centre]`, and ½ dE/dr · r̂ to `edge_grad[3e..]`
/// (the gradient of the summed energies with respect to the edge vector). `z` is the atomic
/// number of each node.
#[allow(clippy::too_many_arguments)]
pub fn add_edges(
    cfg: &ZblConfig,
    z: &[i32],
    centers: &[i64],
    neighbors: &[i64],
    vecs: &[f64],
    counts: impl Fn(usize) -> bool,
    energies: &mut [f64],
    mut edge_grad: Option<&mut [f64]>,
) {
    for (e, (&i, &j)) in centers.iter().zip(neighbors).enumerate() {
        let v = &vecs[3 * e..3 * e + 3];
        let r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
        let (i, j) = (i as usize, j as usize);
        if r2 >= cfg.outer * cfg.outer || r2 == 0.0 || !counts(i) {
            continue;
        }
        let r = r2.sqrt();
        let (en, de) = pair(z[i], z[j], r, cfg);
        energies[i] += 0.5 * en;
        if let Some(g) = edge_grad.as_deref_mut() {
            for k in 0..3 {
                g[3 * e + k] += 0.5 * de * v[k] / r;
            }
        }
    }
}

/// The per-node repulsion energies (n,) of a batch of graphs as a differentiable function of the
/// edge vectors `edge_vec` (E, 3): ½E(|r_e|) added at `dst[e]` (the centre). `z` is the atomic
/// number of each species index; `species` (n,) the species index of each node.
pub fn node_energies(
    cfg: &ZblConfig,
    z: &[i32],
    species: &Tensor,
    src: &Tensor,
    dst: &Tensor,
    edge_vec: &Tensor,
) -> Result<Tensor> {
    let n = species.size()[0];
    let (kind, dev) = (edge_vec.kind(), edge_vec.device());
    let zeros = Tensor::f_zeros([n], (kind, dev))?;
    if edge_vec.size()[0] == 0 {
        return Ok(zeros);
    }
    // Only the (rare) edges inside the outer radius: selected without gradients, then evaluated
    // differentiably.
    let r_all = tch::no_grad(|| edge_vec.f_square()?.f_sum_dim_intlist(-1, false, kind))?;
    let short = r_all
        .f_lt(cfg.outer * cfg.outer)?
        .f_nonzero()?
        .f_squeeze_dim(-1)?;
    let m = short.size()[0];
    if m == 0 {
        return Ok(zeros);
    }
    let (d_v, s_v) = (
        Vec::<i64>::try_from(
            dst.f_index_select(0, &short)?
                .f_to_device(tch::Device::Cpu)?,
        )
        .map_err(|e| Error::Internal(format!("zbl: {e}")))?,
        Vec::<i64>::try_from(
            src.f_index_select(0, &short)?
                .f_to_device(tch::Device::Cpu)?,
        )
        .map_err(|e| Error::Internal(format!("zbl: {e}")))?,
    );
    let sp = Vec::<i64>::try_from(species.f_to_device(tch::Device::Cpu)?)
        .map_err(|e| Error::Internal(format!("zbl: {e}")))?;
    // Per-edge constants: k = e² Zi Zj, b_k = d_k / a, and the switch (A, B, C).
    let mut consts: Vec<Vec<f64>> = (0..8).map(|_| Vec::with_capacity(m as usize)).collect();
    for (&i, &j) in d_v.iter().zip(&s_v) {
        let (zi, zj) = (
            z[sp[i as usize] as usize] as f64,
            z[sp[j as usize] as usize] as f64,
        );
        let a = A0 / (zi.powf(0.23) + zj.powf(0.23));
        let (sa, sb, sc) = switch(zi, zj, cfg);
        let row = [
            COULOMB * zi * zj,
            D[0] / a,
            D[1] / a,
            D[2] / a,
            D[3] / a,
            sa,
            sb,
            sc,
        ];
        for (c, x) in consts.iter_mut().zip(row) {
            c.push(x);
        }
    }
    let col = |k: usize| -> Result<Tensor> {
        Ok(Tensor::from_slice(&consts[k])
            .f_to_kind(kind)?
            .f_to_device(dev)?)
    };
    let v = edge_vec.f_index_select(0, &short)?;
    let r = v.f_square()?.f_sum_dim_intlist(-1, false, kind)?.f_sqrt()?;
    let mut s = r.f_zeros_like()?;
    for (k, c) in C.iter().enumerate() {
        s = s.f_add(&col(1 + k)?.f_mul(&r)?.f_neg()?.f_exp()?.f_mul_scalar(*c)?)?;
    }
    let phi = col(0)?.f_mul(&s)?.f_div(&r)?;
    let t = r.f_sub_scalar(cfg.inner)?.f_clamp_min(0.0)?;
    let t3 = t.f_pow_tensor_scalar(3)?;
    let poly = col(5)?
        .f_div_scalar(3.0)?
        .f_mul(&t3)?
        .f_add(&col(6)?.f_div_scalar(4.0)?.f_mul(&t3.f_mul(&t)?)?)?;
    let e = phi.f_add(&col(7)?)?.f_add(&poly)?.f_mul_scalar(0.5)?;
    let centres = Tensor::from_slice(&d_v).f_to_device(dev)?;
    Ok(zeros.f_index_add(0, &centres, &e)?)
}

/// The shortest edge (centre, neighbour, distance) among `centers`/`neighbors` with vectors
/// `vecs` (E×3) whose centre `counts`, if any edge is shorter than `limit`.
pub fn closest_below(
    centers: &[i64],
    neighbors: &[i64],
    vecs: &[f64],
    counts: impl Fn(usize) -> bool,
    limit: f64,
) -> Option<(usize, usize, f64)> {
    let mut best: Option<(usize, usize, f64)> = None;
    for (e, (&i, &j)) in centers.iter().zip(neighbors).enumerate() {
        let v = &vecs[3 * e..3 * e + 3];
        let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if r < limit && counts(i as usize) && best.is_none_or(|b| r < b.2) {
            best = Some((i as usize, j as usize, r));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_makes_energy_and_two_derivatives_vanish_at_the_outer_radius() {
        let cfg = ZblConfig {
            inner: 1.0,
            outer: 1.8,
        };
        let h = 1e-5;
        let e = |r: f64| pair(29, 13, r, &cfg).0;
        let r = cfg.outer - 1e-9;
        assert!(e(r).abs() < 1e-6, "{}", e(r));
        let d1 = (e(r - h) - e(r - 2.0 * h)) / h;
        assert!(d1.abs() < 1e-3, "{d1}");
        // dE/dr agrees with the energy's finite difference everywhere, both sides of inner.
        for &r in &[0.3, 0.7, 0.999, 1.001, 1.3, 1.79] {
            let fd = (e(r + h) - e(r - h)) / (2.0 * h);
            let de = pair(29, 13, r, &cfg).1;
            assert!(
                (fd - de).abs() <= 1e-6 * de.abs().max(1.0),
                "r {r}: {fd} vs {de}"
            );
        }
    }
}
