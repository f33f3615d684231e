//! Periodic neighbour lists: every pair (center, neighbour, integer cell shift) closer than a
//! cutoff, found with cell lists in O(N), for triclinic cells of any size, mixed periodicity and
//! molecules; the only place in the engine that knows about periodic images.
//!
//! How it works. Each structure gets a full-rank *binning basis*: the lattice vector along a
//! periodic direction, and along a non-periodic direction an orthonormal vector perpendicular to
//! the periodic ones (the cell given there is ignored, so a zero or tiny vector is fine).
//! Positions get fractional coordinates in that basis; along periodic directions they are wrapped
//! into `[0, 1)` and the integer wrap is folded back into the returned shift, so edge vectors are
//! right for the caller's own (possibly unwrapped) positions. Bins are at least one cutoff thick,
//! measured along the perpendicular height of the cell (volume / |a_j × a_k|), not along the
//! vector lengths, so strongly skewed cells are handled. A cell thinner than the cutoff gets a
//! single bin in that direction and as many images as the cutoff needs. Non-periodic directions
//! are binned over the bounding box of the atoms.
//!
//! Exactness. The candidates are filtered with a slightly loose test on wrapped positions; each
//! accepted edge is then re-checked with exactly the arithmetic of [`NeighborList::edge_vectors`]
//! (`0 < |r|² < cutoff²`), so every returned edge vector is strictly inside the cutoff. Two atoms
//! at the same position (`|r|² <` [`MIN_DISTANCE2`], an atom and another's periodic image
//! included) are an error naming both, never a pair silently dropped.

use crate::error::{invalid, Result};
use crate::structure::{cross, dot, norm, scale, sub, Structure};
use rayon::prelude::*;

/// Above this many atoms the per-atom search runs on rayon's thread pool (same result).
const PARALLEL_THRESHOLD: usize = 1000;
/// Centers per parallel task.
const CHUNK: usize = 256;
/// Relative safety margin on bin thickness and on the candidate filter, far above rounding.
const SLACK: f64 = 1e-6;
/// Atoms further than this many cells outside the cell are rejected (shifts are `i32`: two wraps
/// plus the images stay below 2^31).
const MAX_WRAP: f64 = (1u64 << 29) as f64;
/// Largest number of images searched along one direction on each side (cutoff / height).
const MAX_IMAGES: f64 = 1e6;
/// Two atoms (or an atom and a periodic image of another) closer than this (Å, squared: 1e-10 Å)
/// are "at the same position": the structure is refused, as in a caller-supplied graph and in
/// LAMMPS, rather than the pair being dropped.
pub const MIN_DISTANCE2: f64 = 1e-20;

/// Full (both directions) neighbour list; edge e goes center -> neighbor.
///
/// Every pair appears twice, as (i, j, S) and (j, i, -S). Edges are sorted by
/// (center, neighbor, shift), so the list is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighborList {
    /// Center atom of each edge.
    pub centers: Vec<usize>,
    /// Neighbour atom of each edge.
    pub neighbors: Vec<usize>,
    /// Integer cell shift S of edge e:
    /// `r_e = pos[neighbors[e]] - pos[centers[e]] + S[0]*cell[0] + S[1]*cell[1] + S[2]*cell[2]`
    pub shifts: Vec<[i32; 3]>,
}

impl NeighborList {
    /// Number of edges.
    pub fn len(&self) -> usize {
        self.centers.len()
    }

    /// True when there is no edge.
    pub fn is_empty(&self) -> bool {
        self.centers.is_empty()
    }

    /// r_e for every edge, computed with the formula above from the (unwrapped) positions.
    ///
    /// `s` must be the structure the list was built for (panics if an atom index is out of range).
    pub fn edge_vectors(&self, s: &Structure) -> Vec<[f64; 3]> {
        self.centers
            .iter()
            .zip(&self.neighbors)
            .zip(&self.shifts)
            .map(|((&i, &j), &sh)| edge_vector(s.positions[i], s.positions[j], sh, &s.cell))
            .collect()
    }
}

/// All pairs (i, j, S) with 0 < |r| < cutoff (strict), i.e. also an atom with its own periodic images (i == j, S != 0),
/// and several images of the same neighbour when the cell is smaller than the cutoff.
/// Sorted by (center, neighbor, shift) so the result is deterministic. Errors (Error::InvalidInput with a clear message)
/// for cutoff <= 0 or non-finite; calls s.validate() first.
///
/// The test is `0 < |r|² < cutoff²` on the vector that [`NeighborList::edge_vectors`] returns;
/// two atoms with `|r|² <` [`MIN_DISTANCE2`] (the same position) are an `InvalidInput` error
/// naming both atom indices (0-based), the lower first.
/// Shift components along non-periodic directions are always 0. Above 1000 atoms the search runs
/// in parallel with rayon; the result is identical to the serial one.
pub fn neighbor_list(s: &Structure, cutoff: f64) -> Result<NeighborList> {
    neighbor_list_impl(s, cutoff, s.len() > PARALLEL_THRESHOLD)
}

/// The edge vector of (i -> j, shift), in the one floating-point order used everywhere.
#[inline]
fn edge_vector(pi: [f64; 3], pj: [f64; 3], sh: [i32; 3], cell: &[[f64; 3]; 3]) -> [f64; 3] {
    let (s0, s1, s2) = (sh[0] as f64, sh[1] as f64, sh[2] as f64);
    let mut r = [0.0; 3];
    for x in 0..3 {
        r[x] = (pj[x] - pi[x]) + s0 * cell[0][x] + s1 * cell[1][x] + s2 * cell[2][x];
    }
    r
}

/// One direction of the bin grid.
#[derive(Debug, Clone, Copy)]
struct Axis {
    /// Periodic along this direction.
    periodic: bool,
    /// Number of bins.
    n: usize,
    /// Bins searched on each side of an atom's own bin.
    m: i64,
    /// Lowest fractional coordinate (bounding box; 0 along periodic directions).
    lo: f64,
    /// Fractional extent binned (1 along periodic directions).
    len: f64,
}

impl Axis {
    /// Bin of a (wrapped, for periodic axes) fractional coordinate.
    #[inline]
    fn bin(&self, f: f64) -> usize {
        if self.n == 1 || self.len <= 0.0 {
            return 0;
        }
        let x = ((f - self.lo) / self.len * self.n as f64).floor();
        (x.max(0.0) as usize).min(self.n - 1)
    }

    /// The (bin, cell shift) pairs within reach of bin `b`, in order.
    fn reach(&self, b: usize, out: &mut Vec<(usize, i32)>) {
        out.clear();
        let n = self.n as i64;
        for d in -self.m..=self.m {
            let t = b as i64 + d;
            if self.periodic {
                out.push((t.rem_euclid(n) as usize, t.div_euclid(n) as i32));
            } else if (0..n).contains(&t) {
                out.push((t as usize, 0));
            }
        }
    }
}

/// The binned atoms, shared by all searching threads.
struct Grid {
    axes: [Axis; 3],
    /// `start[b]..start[b + 1]` are the entries of bin b in `pos`/`idx`.
    start: Vec<usize>,
    /// Wrapped positions, in bin order.
    pos: Vec<[f64; 3]>,
    /// Original atom index, in bin order.
    idx: Vec<usize>,
    /// Per atom: its bin.
    bin_of: Vec<usize>,
    /// Per atom: its wrapped position.
    wrapped: Vec<[f64; 3]>,
    /// Per atom: the integer wrap w, position = wrapped + w · cell.
    wrap: Vec<[i32; 3]>,
}

/// Builds the list; `parallel` picks the rayon path (tests compare both).
fn neighbor_list_impl(s: &Structure, cutoff: f64, parallel: bool) -> Result<NeighborList> {
    s.validate()?;
    if !cutoff.is_finite() || cutoff <= 0.0 {
        return invalid(format!(
            "neighbour-list cutoff must be finite and > 0, got {cutoff}"
        ));
    }
    if s.is_empty() {
        return Ok(NeighborList::default());
    }
    let grid = build_grid(s, cutoff)?;
    let n = s.len();
    // rayon's pool does not survive a fork: a forked child searches serially.
    let parallel = parallel && !crate::fork::in_forked_child();
    let found: Vec<(NeighborList, Option<Overlap>)> = if parallel {
        (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| search(s, &grid, cutoff, c * CHUNK..((c + 1) * CHUNK).min(n)))
            .collect()
    } else {
        vec![search(s, &grid, cutoff, 0..n)]
    };
    if let Some((i, j, sh)) = found.iter().filter_map(|f| f.1).min() {
        let r = edge_vector(s.positions[i], s.positions[j], sh, &s.cell);
        let image = if sh == [0; 3] {
            String::new()
        } else {
            format!(" (the periodic image of atom {j} shifted by {sh:?} cell vectors)")
        };
        return invalid(format!(
            "atoms {i} and {j} are at the same position{image}: {:?} and {:?}, {:.2e} Å apart \
             (closer than {:.0e} Å); remove one of them",
            s.positions[i],
            s.positions[j],
            dot(r, r).sqrt(),
            MIN_DISTANCE2.sqrt()
        ));
    }
    let lists: Vec<NeighborList> = found.into_iter().map(|f| f.0).collect();
    if lists.len() == 1 {
        return Ok(lists.into_iter().next().unwrap_or_default());
    }
    // Concatenate, copying the parts into disjoint slices of the output in parallel.
    let total = lists.iter().map(NeighborList::len).sum();
    let mut out = NeighborList {
        centers: vec![0; total],
        neighbors: vec![0; total],
        shifts: vec![[0; 3]; total],
    };
    let mut slots = Vec::with_capacity(lists.len());
    let (mut c, mut nb, mut sh) = (
        &mut out.centers[..],
        &mut out.neighbors[..],
        &mut out.shifts[..],
    );
    for l in &lists {
        let (c0, c1) = std::mem::take(&mut c).split_at_mut(l.len());
        let (n0, n1) = std::mem::take(&mut nb).split_at_mut(l.len());
        let (s0, s1) = std::mem::take(&mut sh).split_at_mut(l.len());
        slots.push((c0, n0, s0));
        (c, nb, sh) = (c1, n1, s1);
    }
    lists.par_iter().zip(slots).for_each(|(l, (c, n, s))| {
        c.copy_from_slice(&l.centers);
        n.copy_from_slice(&l.neighbors);
        s.copy_from_slice(&l.shifts);
    });
    Ok(out)
}

/// The binning basis: periodic lattice vectors, completed by orthonormal vectors perpendicular
/// to them along non-periodic directions.
fn binning_basis(s: &Structure) -> [[f64; 3]; 3] {
    let unit = |v: [f64; 3]| scale(v, 1.0 / norm(v));
    let periodic: Vec<usize> = (0..3).filter(|&k| s.pbc[k]).collect();
    let open: Vec<usize> = (0..3).filter(|&k| !s.pbc[k]).collect();
    let mut b = s.cell;
    match periodic.len() {
        3 => {}
        2 => b[open[0]] = unit(cross(s.cell[periodic[0]], s.cell[periodic[1]])),
        1 => {
            let u = unit(s.cell[periodic[0]]);
            // The Cartesian axis least aligned with u, made perpendicular to it.
            let e = (0..3)
                .min_by(|&x, &y| u[x].abs().total_cmp(&u[y].abs()))
                .map(|x| {
                    let mut e = [0.0; 3];
                    e[x] = 1.0;
                    e
                })
                .unwrap_or([1.0, 0.0, 0.0]);
            let v = unit(sub(e, scale(u, dot(e, u))));
            b[open[0]] = v;
            b[open[1]] = cross(u, v);
        }
        _ => b = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    }
    b
}

/// Wraps and bins all atoms.
fn build_grid(s: &Structure, cutoff: f64) -> Result<Grid> {
    let n_atoms = s.len();
    let basis = binning_basis(s);
    let vol = dot(basis[0], cross(basis[1], basis[2]));
    // Reciprocal vectors: fractional coordinate k of r is r · g[k]; height k is 1 / |g[k]|.
    let mut g = [[0.0; 3]; 3];
    for k in 0..3 {
        g[k] = scale(cross(basis[(k + 1) % 3], basis[(k + 2) % 3]), 1.0 / vol);
    }
    let height = [1.0 / norm(g[0]), 1.0 / norm(g[1]), 1.0 / norm(g[2])];

    // Fractional coordinates, wrapped along periodic directions.
    let mut frac = Vec::with_capacity(n_atoms);
    let mut wrap = Vec::with_capacity(n_atoms);
    let mut wrapped = Vec::with_capacity(n_atoms);
    for (i, &p) in s.positions.iter().enumerate() {
        let mut f = [dot(p, g[0]), dot(p, g[1]), dot(p, g[2])];
        let mut w = [0i32; 3];
        let mut q = p;
        for k in 0..3 {
            if s.pbc[k] {
                let fl = f[k].floor();
                if fl.abs() > MAX_WRAP {
                    return invalid(format!(
                        "atom {i} lies {fl} cells away along periodic direction {k}; wrap the positions"
                    ));
                }
                f[k] -= fl;
                w[k] = fl as i32;
                q = sub(q, scale(s.cell[k], fl));
            }
        }
        frac.push(f);
        wrap.push(w);
        wrapped.push(q);
    }

    // Bin counts: bins at least one cutoff (plus slack) thick.
    let thick = cutoff * (1.0 + SLACK);
    let mut axes = [Axis {
        periodic: false,
        n: 1,
        m: 0,
        lo: 0.0,
        len: 1.0,
    }; 3];
    for k in 0..3 {
        let (lo, len) = if s.pbc[k] {
            (0.0, 1.0)
        } else {
            let lo = frac
                .iter()
                .map(|f: &[f64; 3]| f[k])
                .fold(f64::INFINITY, f64::min);
            let hi = frac
                .iter()
                .map(|f: &[f64; 3]| f[k])
                .fold(f64::NEG_INFINITY, f64::max);
            (lo, hi - lo)
        };
        let span = len * height[k];
        let max_bins = (4 * n_atoms + 64) as f64;
        let nb = (span / thick).floor().clamp(1.0, max_bins) as usize;
        axes[k] = Axis {
            periodic: s.pbc[k],
            n: nb,
            m: 0,
            lo,
            len,
        };
    }
    // Keep the grid O(N) for dilute systems (vacuum, far-apart molecules): coarser bins.
    let max_total = 4 * n_atoms + 64;
    while axes.iter().map(|a| a.n as f64).product::<f64>() > max_total as f64 {
        let k = (0..3).max_by_key(|&k| axes[k].n).unwrap_or(0);
        axes[k].n = axes[k].n.div_ceil(2);
    }
    for k in 0..3 {
        let a = &mut axes[k];
        let span = a.len * height[k];
        if a.periodic {
            let m = (thick * a.n as f64 / span).ceil();
            if m > MAX_IMAGES {
                return invalid(format!(
                    "cutoff {cutoff} Å is more than {MAX_IMAGES:e} times the cell height {} Å along direction {k}",
                    height[k]
                ));
            }
            a.m = m.max(1.0) as i64;
        } else if a.n > 1 {
            a.m = ((thick * a.n as f64 / span).ceil() as i64).clamp(1, a.n as i64 - 1);
        }
    }

    // Counting sort of the atoms into bins.
    let [n0, n1, n2] = [axes[0].n, axes[1].n, axes[2].n];
    let n_bins = n0 * n1 * n2;
    let bin_of: Vec<usize> = frac
        .iter()
        .map(|f| (axes[0].bin(f[0]) * n1 + axes[1].bin(f[1])) * n2 + axes[2].bin(f[2]))
        .collect();
    let mut start = vec![0usize; n_bins + 1];
    for &b in &bin_of {
        start[b + 1] += 1;
    }
    for b in 0..n_bins {
        start[b + 1] += start[b];
    }
    let mut fill = start.clone();
    let mut pos = vec![[0.0; 3]; n_atoms];
    let mut idx = vec![0usize; n_atoms];
    for (i, &b) in bin_of.iter().enumerate() {
        pos[fill[b]] = wrapped[i];
        idx[fill[b]] = i;
        fill[b] += 1;
    }
    Ok(Grid {
        axes,
        start,
        pos,
        idx,
        bin_of,
        wrapped,
        wrap,
    })
}

/// Two atoms at the same position: (lower index, higher index, shift of the higher one's image).
type Overlap = (usize, usize, [i32; 3]);

/// The edges of the centers in `range`, sorted, and the first pair of atoms found at the same
/// position (closer than [`MIN_DISTANCE2`]), if any.
fn search(
    s: &Structure,
    grid: &Grid,
    cutoff: f64,
    range: std::ops::Range<usize>,
) -> (NeighborList, Option<Overlap>) {
    let c2 = cutoff * cutoff;
    let loose = c2 * (1.0 + 4.0 * SLACK);
    let cell = &s.cell;
    let [n1, n2] = [grid.axes[1].n, grid.axes[2].n];
    let mut out = NeighborList::default();
    let mut reach: [Vec<(usize, i32)>; 3] = Default::default();
    let mut found: Vec<(usize, [i32; 3])> = Vec::new();
    let mut keys: Vec<u64> = Vec::new();
    let mut overlap: Option<Overlap> = None;
    let (first, end) = (range.start, range.end);
    for i in range {
        if i - first == 32 {
            // Reserve for the rest of the range from the density seen so far (avoids regrowth).
            let per = out.len() as f64 / (i - first) as f64;
            let want = (per * 1.1 * (end - first) as f64) as usize + 16;
            out.centers.reserve(want.saturating_sub(out.len()));
            out.neighbors.reserve(want.saturating_sub(out.len()));
            out.shifts.reserve(want.saturating_sub(out.len()));
        }
        let b = grid.bin_of[i];
        let bins = [b / (n1 * n2), (b / n2) % n1, b % n2];
        for k in 0..3 {
            grid.axes[k].reach(bins[k], &mut reach[k]);
        }
        let pi = grid.wrapped[i];
        let wi = grid.wrap[i];
        found.clear();
        for &(t0, s0) in &reach[0] {
            for &(t1, s1) in &reach[1] {
                for &(t2, s2) in &reach[2] {
                    let bin = (t0 * n1 + t1) * n2 + t2;
                    let (lo, hi) = (grid.start[bin], grid.start[bin + 1]);
                    if lo == hi {
                        continue;
                    }
                    // r = wrapped_j + S'·cell - wrapped_i
                    let (f0, f1, f2) = (s0 as f64, s1 as f64, s2 as f64);
                    let mut base = [0.0; 3];
                    for x in 0..3 {
                        base[x] = f0 * cell[0][x] + f1 * cell[1][x] + f2 * cell[2][x] - pi[x];
                    }
                    let [b0, b1, b2] = base;
                    for (q, &j) in grid.pos[lo..hi].iter().zip(&grid.idx[lo..hi]) {
                        let (d0, d1, d2) = (q[0] + b0, q[1] + b1, q[2] + b2);
                        if d0 * d0 + d1 * d1 + d2 * d2 >= loose {
                            continue;
                        }
                        let wj = grid.wrap[j];
                        let sh = [s0 + wi[0] - wj[0], s1 + wi[1] - wj[1], s2 + wi[2] - wj[2]];
                        // Exact test, in the arithmetic of `edge_vectors`.
                        let r = edge_vector(s.positions[i], s.positions[j], sh, cell);
                        let r2 = dot(r, r);
                        if r2 < MIN_DISTANCE2 {
                            // An atom with itself (no shift) is no pair; anything else this close
                            // is two atoms at the same place.
                            if i != j || sh != [0; 3] {
                                let o = if i < j {
                                    (i, j, sh)
                                } else {
                                    (j, i, sh.map(|x| -x))
                                };
                                overlap = Some(overlap.map_or(o, |p| p.min(o)));
                            }
                        } else if r2 < c2 {
                            found.push((j, sh));
                        }
                    }
                }
            }
        }
        sort_edges(&mut found, &mut keys);
        out.centers.extend(std::iter::repeat_n(i, found.len()));
        for &(j, sh) in &found {
            out.neighbors.push(j);
            out.shifts.push(sh);
        }
    }
    (out, overlap)
}

/// Checks that a caller-supplied edge list (edge e: `centers[e]` <- `neighbors[e]`, Cartesian
/// `shifts[e]` or none) has no edge twice: a duplicate would count its pair twice in every sum
/// over edges. Two edges are the same when they have the same centre and neighbour and shifts
/// that differ by less than 1e-8 Å (distinct periodic images differ by a lattice vector). The
/// error names both edges and their atoms. O(edges) time: edges are grouped by centre with a
/// counting sort, and shifts compared only between edges of one centre with the same neighbour.
/// An index `>= n_atoms` is an error too; shifts, when given, are one per edge.
pub fn check_unique_edges(
    n_atoms: usize,
    centers: &[usize],
    neighbors: &[usize],
    shifts: Option<&[[f64; 3]]>,
) -> Result<()> {
    let n_edges = centers.len().min(neighbors.len());
    for e in 0..n_edges {
        if centers[e] >= n_atoms || neighbors[e] >= n_atoms {
            return invalid(format!(
                "edge {e} ({} -> {}) refers to an atom index >= {n_atoms}",
                centers[e], neighbors[e]
            ));
        }
    }
    if n_edges < 2 {
        return Ok(());
    }
    // Edges grouped by centre (stable: in input order within a centre).
    let mut start = vec![0usize; n_atoms + 1];
    for &c in &centers[..n_edges] {
        start[c + 1] += 1;
    }
    for a in 0..n_atoms {
        start[a + 1] += start[a];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; n_edges];
    for (e, &c) in centers[..n_edges].iter().enumerate() {
        order[fill[c]] = e;
        fill[c] += 1;
    }
    // seen[j] = (centre + 1, first edge of that centre with neighbour j)
    let mut seen = vec![(0usize, 0usize); n_atoms];
    let shift = |e: usize| shifts.and_then(|s| s.get(e).copied()).unwrap_or([0.0; 3]);
    for c in 0..n_atoms {
        let edges = &order[start[c]..start[c + 1]];
        for (k, &e) in edges.iter().enumerate() {
            let j = neighbors[e];
            if seen[j].0 != c + 1 {
                seen[j] = (c + 1, k);
                continue;
            }
            // Another edge of this centre has the same neighbour: compare the shifts.
            for &f in &edges[seen[j].1..k] {
                if neighbors[f] != j {
                    continue;
                }
                let (a, b) = (shift(f), shift(e));
                if (0..3).all(|x| (a[x] - b[x]).abs() < 1e-8) {
                    let (first, second) = (f.min(e), f.max(e));
                    let with = if shifts.is_some() {
                        format!(" with shift {a:?}")
                    } else {
                        String::new()
                    };
                    return invalid(format!(
                        "edges {first} and {second} are the same edge (centre atom {c}, neighbour \
                         atom {j}{with}): every edge must appear once, a duplicate would count \
                         its pair twice"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Sorts one center's edges by (neighbor, shift). The common case (shifts within ±127, fewer
/// than 2^40 atoms) sorts packed `u64` keys, which is several times faster than sorting tuples.
fn sort_edges(found: &mut [(usize, [i32; 3])], keys: &mut Vec<u64>) {
    const BIAS: i32 = 128;
    let fits = found
        .iter()
        .all(|&(j, sh)| j < (1 << 40) && sh.iter().all(|&x| (-BIAS..BIAS).contains(&x)));
    if !fits {
        found.sort_unstable();
        return;
    }
    keys.clear();
    // Biased shift bytes compare as unsigned in the same order as the signed shifts.
    keys.extend(found.iter().map(|&(j, sh)| {
        ((j as u64) << 24)
            | (((sh[0] + BIAS) as u64) << 16)
            | (((sh[1] + BIAS) as u64) << 8)
            | ((sh[2] + BIAS) as u64)
    }));
    keys.sort_unstable();
    for (f, &k) in found.iter_mut().zip(keys.iter()) {
        let byte = |b: u32| ((k >> b) & 0xff) as i32 - BIAS;
        *f = ((k >> 24) as usize, [byte(16), byte(8), byte(0)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_path_equals_serial_path() {
        // A few hundred atoms in a skewed, partly periodic cell: chunked rayon search == serial.
        let mut state = 12345u64;
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let cell = [[9.0, 0.0, 0.0], [6.0, 8.0, 0.0], [-3.0, 2.0, 7.0]];
        for pbc in [[true; 3], [true, false, true], [false; 3]] {
            let n = 700;
            let positions: Vec<[f64; 3]> = (0..n)
                .map(|_| {
                    let f = [3.0 * rnd() - 1.0, 3.0 * rnd() - 1.0, 3.0 * rnd() - 1.0];
                    let mut p = [0.0; 3];
                    for k in 0..3 {
                        for x in 0..3 {
                            p[x] += f[k] * cell[k][x];
                        }
                    }
                    p
                })
                .collect();
            let s = Structure::new(positions, vec![1; n], cell, pbc).unwrap();
            let a = neighbor_list_impl(&s, 3.3, false).unwrap();
            let b = neighbor_list_impl(&s, 3.3, true).unwrap();
            assert!(!a.is_empty());
            assert_eq!(a, b);
        }
    }
}
