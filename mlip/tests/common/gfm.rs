//! Helpers of the tests of imported HydraGNN models (`hydragnn_gfm.rs`, `hydragnn_backbones.rs`):
//! reading a golden file, comparing with HydraGNN's numbers, finite differences of forces and
//! virial, rotation and permutation invariance, and the layer-by-layer protocol over simulated
//! ranks with ghost atoms.

// Index loops mirror the physics (atom i, axis c), as in the formulas.
#![allow(clippy::needless_range_loop)]

use std::path::Path;

use mlip::hydragnn::read_npz;
use mlip::model::HeadPartials;
use mlip::{GraphInput, LayeredEval, Model, Request, Structure};
use tch::{Kind, Tensor};

pub fn flat(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
}

pub fn vec3(v: &[f64]) -> Vec<[f64; 3]> {
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// max |a - b| / max |b|.
pub fn max_rel(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |k| (x[k] - y[k]).abs()))
        .fold(0.0, f64::max);
    num / b.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max)
}

/// The golden structure of `GFM_<name>_<structure>_golden.npz` and HydraGNN's energies and
/// forces per branch.
pub struct Golden {
    pub structure: Structure,
    pub energy: Vec<f64>,
    pub forces: Vec<Vec<[f64; 3]>>,
}

pub fn read_golden(path: &Path) -> Golden {
    let g = read_npz(path).unwrap();
    let pos = vec3(&flat(&g["pos"]));
    let n = pos.len();
    let z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let c = vec3(&flat(&g["cell"]));
    let pbc = flat(&g["pbc"])
        .iter()
        .map(|&x| x != 0.0)
        .collect::<Vec<_>>();
    let structure = Structure::new(pos, z, [c[0], c[1], c[2]], [pbc[0], pbc[1], pbc[2]]).unwrap();
    let f = vec3(&flat(&g["forces"]));
    Golden {
        structure,
        energy: flat(&g["energy"]),
        forces: f.chunks(n).map(|c| c.to_vec()).collect(),
    }
}

/// One simulated rank: its local atoms (structure indices), then ghosts (images of any atom
/// within one cutoff of a local atom), edges centred on local atoms.
pub struct Piece {
    pub positions: Vec<[f64; 3]>,
    pub numbers: Vec<i32>,
    /// Structure index of every row's atom (local and ghost).
    pub atom: Vec<usize>,
    pub n_local: usize,
    pub centers: Vec<usize>,
    pub neighbors: Vec<usize>,
}

pub fn pieces(s: &Structure, rc: f64, owner_of: &[usize], n_pieces: usize) -> Vec<Piece> {
    let nl = mlip::neighbors::neighbor_list(s, rc).unwrap();
    (0..n_pieces)
        .map(|p| {
            let local: Vec<usize> = (0..s.len()).filter(|&i| owner_of[i] == p).collect();
            let mut row = std::collections::HashMap::new();
            let mut pc = Piece {
                positions: Vec::new(),
                numbers: Vec::new(),
                atom: Vec::new(),
                n_local: local.len(),
                centers: Vec::new(),
                neighbors: Vec::new(),
            };
            for &i in &local {
                row.insert((i, [0i32; 3]), pc.atom.len());
                pc.positions.push(s.positions[i]);
                pc.numbers.push(s.numbers[i]);
                pc.atom.push(i);
            }
            for e in 0..nl.len() {
                let (i, j, sh) = (nl.centers[e], nl.neighbors[e], nl.shifts[e]);
                if owner_of[i] != p {
                    continue;
                }
                let k = *row.entry((j, sh)).or_insert_with(|| {
                    pc.positions.push([0, 1, 2].map(|c| {
                        s.positions[j][c] + (0..3).map(|a| sh[a] as f64 * s.cell[a][c]).sum::<f64>()
                    }));
                    pc.numbers.push(s.numbers[j]);
                    pc.atom.push(j);
                    pc.atom.len() - 1
                });
                pc.centers.push(row[&(i, [0, 0, 0])]);
                pc.neighbors.push(k);
            }
            pc
        })
        .collect()
}

/// The layer-by-layer protocol over simulated ranks, ghost rows exchanged with their owners'
/// local rows, the graph-level energy reduced across pieces: (energy, forces folded onto the
/// structure's atoms, virial).
pub fn run_pieces(m: &Model, ps: &[Piece]) -> (f64, Vec<[f64; 3]>, [[f64; 3]; 3]) {
    let n = ps.iter().map(|p| p.n_local).sum::<usize>();
    // (piece, local row) of every structure atom
    let mut home = vec![(0, 0); n];
    for (k, p) in ps.iter().enumerate() {
        for r in 0..p.n_local {
            home[p.atom[r]] = (k, r);
        }
    }
    let graphs: Vec<GraphInput> = ps
        .iter()
        .map(|p| GraphInput {
            n_local: p.n_local,
            positions: &p.positions,
            numbers: &p.numbers,
            centers: &p.centers,
            neighbors: &p.neighbors,
            shifts: None,
        })
        .collect();
    let mut evs: Vec<Option<LayeredEval>> = graphs
        .iter()
        .zip(ps)
        .map(|(g, p)| (p.n_local > 0).then(|| LayeredEval::new(m, g).unwrap()))
        .collect();
    let layers = m.num_layers();
    for l in 0..layers {
        if l > 0 {
            let w = evs.iter().flatten().next().unwrap().width(l);
            let owned: Vec<Vec<f64>> = evs
                .iter()
                .map(|e| {
                    e.as_ref()
                        .map(|e| e.features(l).to_vec())
                        .unwrap_or_default()
                })
                .collect();
            for (k, p) in ps.iter().enumerate() {
                let Some(e) = evs[k].as_mut() else { continue };
                let f = e.features_mut(l);
                for r in p.n_local..p.atom.len() {
                    let (hk, hr) = home[p.atom[r]];
                    f[r * w..(r + 1) * w].copy_from_slice(&owned[hk][hr * w..(hr + 1) * w]);
                }
            }
        }
        evs.iter_mut()
            .flatten()
            .for_each(|e| e.forward_layer(l).unwrap());
    }
    let (ns, nm) = m.head_partials_len(None).unwrap();
    let mut total = HeadPartials {
        sums: vec![0.0; ns],
        maxs: vec![f64::NEG_INFINITY; nm],
    };
    for e in evs.iter_mut().flatten() {
        let local = e.readout().unwrap();
        assert!(m.energy_is_pooled(None) == (local == 0.0));
        let p = e.head_partials().unwrap();
        total
            .sums
            .iter_mut()
            .zip(&p.sums)
            .for_each(|(t, x)| *t += x);
        total
            .maxs
            .iter_mut()
            .zip(&p.maxs)
            .for_each(|(t, x)| *t = t.max(*x));
    }
    let mut energy = None;
    if m.energy_is_pooled(None) {
        for e in evs.iter_mut().flatten() {
            let x = e.reduce(&total).unwrap();
            assert!(
                energy.is_none() || energy == Some(x),
                "every piece gets the same energy"
            );
            energy = Some(x);
        }
    } else {
        // a sum of per-atom energies: each piece's local energy, summed
        energy = Some(total.sums[0]);
    }
    for l in (0..layers).rev() {
        evs.iter_mut()
            .flatten()
            .for_each(|e| e.backward_layer(l).unwrap());
        if l > 0 {
            let w = evs.iter().flatten().next().unwrap().width(l);
            let mut add: Vec<(usize, usize, Vec<f64>)> = Vec::new();
            for (k, p) in ps.iter().enumerate() {
                let Some(e) = evs[k].as_ref() else { continue };
                let g = e.grads(l);
                for r in p.n_local..p.atom.len() {
                    let (hk, hr) = home[p.atom[r]];
                    add.push((hk, hr, g[r * w..(r + 1) * w].to_vec()));
                }
            }
            for (hk, hr, v) in add {
                let g = evs[hk].as_mut().unwrap().grads_mut(l);
                g[hr * w..(hr + 1) * w]
                    .iter_mut()
                    .zip(&v)
                    .for_each(|(a, b)| *a += b);
            }
        }
    }
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let mut forces = vec![[0.0; 3]; n];
    let mut virial = [[0.0; 3]; 3];
    for (k, p) in ps.iter().enumerate() {
        let Some(e) = evs[k].as_ref() else { continue };
        if m.energy_is_pooled(None) {
            let err = e.results(Request::ALL).unwrap_err().to_string();
            assert!(err.contains("per-atom energies are not defined"), "{err}");
        }
        let r = e.results(req).unwrap();
        for (row, f) in r.forces.iter().enumerate() {
            for c in 0..3 {
                forces[p.atom[row]][c] += f[c];
            }
        }
        for a in 0..3 {
            for b in 0..3 {
                virial[a][b] += r.virial[a][b];
            }
        }
    }
    (energy.unwrap(), forces, virial)
}

/// max |F - F_fd| / max |F| over a few atoms, and the same for the virial under strain.
pub fn fd_errors(model: &Model, s0: &Structure, h: f64) -> (f64, f64) {
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let r = model.compute(s0, req).unwrap();
    let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
    let fmax = r
        .forces
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    let mut wf: f64 = 0.0;
    for i in [0, 5, 11] {
        for k in 0..3 {
            let mut p = s0.clone();
            p.positions[i][k] += h;
            let mut m = s0.clone();
            m.positions[i][k] -= h;
            wf = wf.max(((e(&m) - e(&p)) / (2.0 * h) - r.forces[i][k]).abs() / fmax);
        }
    }
    let wmax = r
        .virial
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    let mut ww: f64 = 0.0;
    for a in 0..3 {
        for b in 0..3 {
            let strained = |eps: f64| {
                let mut s = s0.clone();
                let apply = |v: &mut [f64; 3]| {
                    let x = v[b];
                    v[a] += eps * x;
                };
                s.positions.iter_mut().for_each(apply);
                s.cell.iter_mut().for_each(apply);
                s
            };
            let fd = -(e(&strained(h)) - e(&strained(-h))) / (2.0 * h);
            ww = ww.max((fd - r.virial[a][b]).abs() / wmax);
        }
    }
    (wf, ww)
}

/// Energy and forces of `m` on the golden file `path` (`GFM_<name>_<structure>_golden.npz`) against HydraGNN's:
/// (energy rel, per-atom energy rel (0 when the golden has none), forces rel).
pub fn golden_errors_at(m: &Model, path: &Path) -> (f64, f64, f64) {
    let g = read_golden(path);
    let npz = read_npz(path).unwrap();
    let req = if m.energy_is_pooled(None) {
        Request {
            forces: true,
            virial: false,
            energies: false,
            virials: false,
        }
    } else {
        Request::ALL
    };
    let r = m.compute(&g.structure, req).unwrap();
    let e_rel = (r.energy - g.energy[0]).abs() / g.energy[0].abs();
    let f_rel = max_rel(&r.forces, &g.forces[0]);
    let ne = match npz.get("node_energy") {
        Some(t) if !m.energy_is_pooled(None) => {
            r.energies
                .iter()
                .zip(&flat(t))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
                / g.energy[0].abs()
        }
        _ => 0.0,
    };
    (e_rel, ne, f_rel)
}

/// Rotation and permutation invariance of `m` on `s0`: (max relative change of the energy, of
/// the (rotated back / permuted back) forces) over a rotation of atoms and cell and a
/// permutation of the atoms.
pub fn invariance_errors(m: &Model, s0: &Structure) -> (f64, f64) {
    let req = Request {
        forces: true,
        virial: false,
        energies: false,
        virials: false,
    };
    let r0 = m.compute(s0, req).unwrap();
    // rotation about (1, 2, 3)/|.| by 0.7 rad
    let (a, b, c) = {
        let n = (1.0f64 + 4.0 + 9.0).sqrt();
        (1.0 / n, 2.0 / n, 3.0 / n)
    };
    let (st, ct) = 0.7f64.sin_cos();
    let rot = [
        [
            ct + a * a * (1.0 - ct),
            a * b * (1.0 - ct) - c * st,
            a * c * (1.0 - ct) + b * st,
        ],
        [
            b * a * (1.0 - ct) + c * st,
            ct + b * b * (1.0 - ct),
            b * c * (1.0 - ct) - a * st,
        ],
        [
            c * a * (1.0 - ct) - b * st,
            c * b * (1.0 - ct) + a * st,
            ct + c * c * (1.0 - ct),
        ],
    ];
    let apply = |v: &[f64; 3]| [0, 1, 2].map(|i| (0..3).map(|k| rot[i][k] * v[k]).sum::<f64>());
    let mut s = s0.clone();
    s.positions = s0.positions.iter().map(apply).collect();
    s.cell = [apply(&s0.cell[0]), apply(&s0.cell[1]), apply(&s0.cell[2])];
    let rr = m.compute(&s, req).unwrap();
    let back: Vec<[f64; 3]> = r0.forces.iter().map(apply).collect();
    let de_rot = (rr.energy - r0.energy).abs() / r0.energy.abs();
    let df_rot = max_rel(&rr.forces, &back);
    // permutation: reversed order
    let n = s0.len();
    let mut s = s0.clone();
    s.positions = (0..n).map(|i| s0.positions[n - 1 - i]).collect();
    s.numbers = (0..n).map(|i| s0.numbers[n - 1 - i]).collect();
    let rp = m.compute(&s, req).unwrap();
    let permuted: Vec<[f64; 3]> = (0..n).map(|i| r0.forces[n - 1 - i]).collect();
    let de_perm = (rp.energy - r0.energy).abs() / r0.energy.abs();
    let df_perm = max_rel(&rp.forces, &permuted);
    (de_rot.max(de_perm), df_rot.max(df_perm))
}

/// The layer-by-layer protocol over 1, 2, 3 and 4 simulated ranks (slabs along z; with 4
/// pieces the last one is left without atoms) against the whole structure: per piece count,
/// the relative differences of energy, forces and virial.
pub fn layered_errors(m: &Model, s: &Structure) -> Vec<(usize, f64, f64, f64)> {
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let whole = m.compute(s, req).unwrap();
    let wmax = whole
        .virial
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f64::max);
    (1..=4)
        .map(|n_pieces| {
            let slabs = if n_pieces == 4 { 3 } else { n_pieces };
            let owner: Vec<usize> = s
                .positions
                .iter()
                .map(|p| ((p[2] / s.cell[2][2]).rem_euclid(1.0) * slabs as f64) as usize % slabs)
                .collect();
            let (e, f, v) = run_pieces(m, &pieces(s, m.cutoff(), &owner, n_pieces));
            let dv = (0..9)
                .map(|k| (v[k / 3][k % 3] - whole.virial[k / 3][k % 3]).abs() / wmax)
                .fold(0.0, f64::max);
            let de = (e - whole.energy).abs() / whole.energy.abs();
            (n_pieces, de, max_rel(&f, &whole.forces), dv)
        })
        .collect()
}

/// [`layered_errors`] within 1e-12 (energy) and 1e-11 (forces, virial) for every piece count;
/// returns the largest difference. `what` names the model in the failure message.
pub fn assert_layered_equals_whole(m: &Model, s: &Structure, what: &str) -> f64 {
    let mut worst: f64 = 0.0;
    for (n, de, df, dv) in layered_errors(m, s) {
        assert!(
            de < 1e-12 && df < 1e-11 && dv < 1e-11,
            "{what}, {n} pieces: energy {de:e}, forces {df:e}, virial {dv:e}"
        );
        worst = worst.max(de).max(df).max(dv);
    }
    worst
}

/// Forces and virial, no per-atom quantities.
pub const FORCES: Request = Request {
    forces: true,
    virial: true,
    energies: false,
    virials: false,
};

/// The golden `GFM_<name>_<structure>_golden.npz` of the directory `dir`.
pub fn golden_in(dir: &Path, name: &str, structure: &str) -> Golden {
    read_golden(&dir.join(format!("GFM_{name}_{structure}_golden.npz")))
}

/// Energy and force errors against `GFM_<name>_<structure>_golden.npz` in `dir`, for every
/// branch of `m` (the golden's charge and spin set first when the model takes them); leaves
/// the first branch selected.
pub fn golden_errors_in_dir(m: &mut Model, dir: &Path, name: &str, structure: &str) -> (f64, f64) {
    let g = golden_in(dir, name, structure);
    let npz = read_npz(&dir.join(format!("GFM_{name}_{structure}_golden.npz"))).unwrap();
    if let (Some(a), false) = (npz.get("graph_attr"), m.graph_attr_names().is_empty()) {
        m.set_graph_attr(&flat(a)).unwrap();
    }
    let branches = m.branch_names();
    assert_eq!(
        g.energy.len(),
        branches.len(),
        "{name}: one energy per branch"
    );
    let (mut de, mut df) = (0.0f64, 0.0f64);
    for (b, bn) in branches.iter().enumerate() {
        m.set_branch(bn).unwrap();
        let r = m.compute(&g.structure, FORCES).unwrap();
        let e_rel = (r.energy - g.energy[b]).abs() / g.energy[b].abs();
        let f_rel = max_rel(&r.forces, &g.forces[b]);
        eprintln!(
            "{name} {bn} ({structure}): energy {} (HydraGNN {}), rel {e_rel:.1e}; forces rel {f_rel:.1e}",
            r.energy, g.energy[b]
        );
        de = de.max(e_rel);
        df = df.max(f_rel);
    }
    m.set_branch(&branches[0]).unwrap();
    (de, df)
}
