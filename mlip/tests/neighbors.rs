//! Tests of the periodic neighbour list against a brute-force reference (all pairs, all images
//! within a range set by the cell heights), on random triclinic cells and explicit crystals.

use mlip::error::Error;
use mlip::neighbors::*;
use mlip::structure::Structure;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

type Edge = (usize, usize, [i32; 3]);

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cartesian position of fractional coordinates `f` in `cell` (rows are lattice vectors).
fn cart(f: [f64; 3], cell: &[[f64; 3]; 3]) -> [f64; 3] {
    let mut p = [0.0; 3];
    for k in 0..3 {
        for x in 0..3 {
            p[x] += f[k] * cell[k][x];
        }
    }
    p
}

/// Reciprocal vectors (fractional coordinate k of r is r · g[k]) and heights of a full-rank cell.
fn reciprocal(cell: &[[f64; 3]; 3]) -> ([[f64; 3]; 3], [f64; 3]) {
    let v = dot(cell[0], cross(cell[1], cell[2]));
    let mut g = [[0.0; 3]; 3];
    let mut h = [0.0; 3];
    for k in 0..3 {
        let c = cross(cell[(k + 1) % 3], cell[(k + 2) % 3]);
        g[k] = [c[0] / v, c[1] / v, c[2] / v];
        h[k] = v.abs() / dot(c, c).sqrt();
    }
    (g, h)
}

/// The edge vector, written out independently (same floating-point order as the contract).
fn edge_vec(s: &Structure, i: usize, j: usize, sh: [i32; 3]) -> [f64; 3] {
    let (pi, pj, c) = (s.positions[i], s.positions[j], &s.cell);
    let mut r = [0.0; 3];
    for x in 0..3 {
        r[x] = (pj[x] - pi[x])
            + sh[0] as f64 * c[0][x]
            + sh[1] as f64 * c[1][x]
            + sh[2] as f64 * c[2][x];
    }
    r
}

/// Brute force: every pair and every image shift that can be within the cutoff. `full` is any
/// full-rank cell whose periodic rows are those of `s.cell` (non-periodic rows of `s.cell` may be
/// zero); since |r · g_k| <= |r| / h_k, shift k lies within cutoff / h_k of -Δf_k.
/// Also says whether two atoms (or an atom and another's image) are at the same position
/// (`|r|² <` [`MIN_DISTANCE2`]), which the list must refuse.
fn brute_force(s: &Structure, cutoff: f64, full: &[[f64; 3]; 3]) -> (BTreeSet<Edge>, bool) {
    let (g, h) = reciprocal(full);
    let frac: Vec<[f64; 3]> = s
        .positions
        .iter()
        .map(|&p| [dot(p, g[0]), dot(p, g[1]), dot(p, g[2])])
        .collect();
    let mut out = BTreeSet::new();
    let mut overlap = false;
    for i in 0..s.len() {
        for j in 0..s.len() {
            let mut range = [(0i64, 0i64); 3];
            for k in 0..3 {
                if s.pbc[k] {
                    let df = frac[j][k] - frac[i][k];
                    let r = cutoff / h[k];
                    range[k] = ((-r - df).floor() as i64, (r - df).ceil() as i64);
                }
            }
            for a in range[0].0..=range[0].1 {
                for b in range[1].0..=range[1].1 {
                    for c in range[2].0..=range[2].1 {
                        let sh = [a as i32, b as i32, c as i32];
                        let r = edge_vec(s, i, j, sh);
                        let r2 = dot(r, r);
                        if r2 < MIN_DISTANCE2 {
                            overlap |= i != j || sh != [0; 3];
                        } else if r2 < cutoff * cutoff {
                            out.insert((i, j, sh));
                        }
                    }
                }
            }
        }
    }
    (out, overlap)
}

/// Checks the invariants of a list and returns it as a set.
fn checked_set(s: &Structure, nl: &NeighborList, cutoff: f64) -> BTreeSet<Edge> {
    assert_eq!(nl.centers.len(), nl.len());
    assert_eq!(nl.neighbors.len(), nl.len());
    assert_eq!(nl.shifts.len(), nl.len());
    assert_eq!(nl.is_empty(), nl.centers.is_empty());
    let edges: Vec<Edge> = (0..nl.len())
        .map(|e| (nl.centers[e], nl.neighbors[e], nl.shifts[e]))
        .collect();
    // Strictly sorted by (center, neighbor, shift): deterministic, no duplicates.
    assert!(
        edges.windows(2).all(|w| w[0] < w[1]),
        "edges not strictly sorted"
    );
    let vecs = nl.edge_vectors(s);
    assert_eq!(vecs.len(), nl.len());
    for (e, &(i, j, sh)) in edges.iter().enumerate() {
        for (k, (&p, &x)) in s.pbc.iter().zip(&sh).enumerate() {
            assert!(
                p || x == 0,
                "non-zero shift along non-periodic direction {k}"
            );
        }
        let r = edge_vec(s, i, j, sh);
        assert_eq!(vecs[e], r);
        let r2 = dot(r, r);
        assert!(
            r2 > 0.0 && r2 < cutoff * cutoff,
            "edge {e} has |r| = {} (cutoff {cutoff})",
            r2.sqrt()
        );
    }
    let set: BTreeSet<Edge> = edges.into_iter().collect();
    // Full list: every edge has its reverse.
    for &(i, j, sh) in &set {
        assert!(
            set.contains(&(j, i, [-sh[0], -sh[1], -sh[2]])),
            "missing reverse of ({i}, {j}, {sh:?})"
        );
    }
    set
}

fn assert_matches_brute_force(s: &Structure, cutoff: f64, full: &[[f64; 3]; 3]) {
    let (want, overlap) = brute_force(s, cutoff, full);
    if overlap {
        let e = neighbor_list(s, cutoff).unwrap_err().to_string();
        assert!(e.contains("same position"), "{e}");
        return;
    }
    let nl = neighbor_list(s, cutoff).unwrap();
    let got = checked_set(s, &nl, cutoff);
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} edges vs {} brute force; missing {missing:?}, extra {extra:?}\ncell {:?} pbc {:?} cutoff {cutoff}",
        got.len(),
        want.len(),
        s.cell,
        s.pbc
    );
}

/// fcc conventional cell (4 atoms), lattice constant `a`.
fn fcc(a: f64) -> Structure {
    let f = [
        [0.0, 0.0, 0.0],
        [0.0, 0.5, 0.5],
        [0.5, 0.0, 0.5],
        [0.5, 0.5, 0.0],
    ];
    let positions = f.iter().map(|p| [p[0] * a, p[1] * a, p[2] * a]).collect();
    let cell = [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]];
    Structure::new(positions, vec![29; 4], cell, [true; 3]).unwrap()
}

fn counts_per_atom(s: &Structure, nl: &NeighborList) -> Vec<usize> {
    let mut c = vec![0; s.len()];
    for &i in &nl.centers {
        c[i] += 1;
    }
    c
}

const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

#[test]
fn fcc_copper_shell_counts() {
    let a = 3.61;
    // Conventional cell (smaller than twice the cutoff: images), a supercell, and the skewed
    // one-atom primitive cell all give 12 neighbours within 3.0 Å and 18 within 3.7 Å.
    let prim = Structure::new(
        vec![[0.3, -0.2, 0.1]],
        vec![29],
        [
            [0.0, a / 2.0, a / 2.0],
            [a / 2.0, 0.0, a / 2.0],
            [a / 2.0, a / 2.0, 0.0],
        ],
        [true; 3],
    )
    .unwrap();
    for s in [fcc(a), fcc(a).supercell([3, 2, 2]), prim] {
        for (cutoff, want) in [(3.0, 12), (3.7, 18), (5.0, 42)] {
            let nl = neighbor_list(&s, cutoff).unwrap();
            assert!(
                counts_per_atom(&s, &nl).iter().all(|&c| c == want),
                "cutoff {cutoff}: {:?}",
                counts_per_atom(&s, &nl)
            );
            assert_matches_brute_force(&s, cutoff, &s.cell);
        }
    }
}

#[test]
fn one_atom_unit_cube_counts_its_images() {
    let mk = |pbc| Structure::new(vec![[0.25, 0.5, -0.75]], vec![1], IDENTITY, pbc).unwrap();
    // Integer vectors with 0 < |S|^2 <= 6: 6 + 12 + 8 + 6 + 24 + 24 = 80.
    let s = mk([true; 3]);
    let nl = neighbor_list(&s, 2.5).unwrap();
    assert_eq!(nl.len(), 80);
    assert!(nl.centers.iter().chain(&nl.neighbors).all(|&i| i == 0));
    assert_matches_brute_force(&s, 2.5, &IDENTITY);
    // In a plane: 4 + 4 + 4 + 8 = 20; along a line: 2 * 2 = 4.
    assert_eq!(
        neighbor_list(&mk([true, true, false]), 2.5).unwrap().len(),
        20
    );
    assert_eq!(
        neighbor_list(&mk([false, true, false]), 2.5).unwrap().len(),
        4
    );
    assert_eq!(neighbor_list(&mk([false; 3]), 2.5).unwrap().len(), 0);
}

#[test]
fn molecule_with_zero_cell() {
    // Water plus a far-away atom (the bounding box must not blow up the bin grid).
    let positions = vec![
        [0.0, 0.0, 0.0],
        [0.9572, 0.0, 0.0],
        [-0.2400, 0.9266, 0.0],
        [1.0e4, -3.0e4, 2.0e4],
    ];
    let s = Structure::molecule(positions, vec![8, 1, 1, 1]).unwrap();
    let nl = neighbor_list(&s, 1.2).unwrap();
    let set = checked_set(&s, &nl, 1.2);
    let want: BTreeSet<Edge> = [
        (0, 1, [0; 3]),
        (0, 2, [0; 3]),
        (1, 0, [0; 3]),
        (2, 0, [0; 3]),
    ]
    .into_iter()
    .collect();
    assert_eq!(set, want);
    assert_eq!(neighbor_list(&s, 2.0).unwrap().len(), 6);
    assert_matches_brute_force(&s, 2.0, &IDENTITY);
    // A random cluster.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let positions: Vec<[f64; 3]> = (0..200)
        .map(|_| {
            [
                rng.gen_range(-8.0..8.0),
                rng.gen_range(-8.0..8.0),
                rng.gen_range(-3.0..3.0),
            ]
        })
        .collect();
    let s = Structure::molecule(positions, vec![6; 200]).unwrap();
    assert_matches_brute_force(&s, 2.7, &IDENTITY);
}

#[test]
fn slab_with_zero_out_of_plane_cell_vector() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let a = [4.0, 0.0, 0.0];
    let b = [3.0, 2.5, 0.4];
    let full = [a, b, [0.0, -0.3, 1.0]];
    let positions: Vec<[f64; 3]> = (0..40)
        .map(|_| {
            cart(
                [
                    rng.gen_range(-1.0..2.0),
                    rng.gen_range(-1.0..2.0),
                    rng.gen_range(-6.0..6.0),
                ],
                &full,
            )
        })
        .collect();
    let s = Structure::new(
        positions,
        vec![6; 40],
        [a, b, [0.0; 3]],
        [true, true, false],
    )
    .unwrap();
    assert_matches_brute_force(&s, 3.5, &full);
}

#[test]
fn unwrapped_positions_give_the_same_edge_vectors() {
    let mut s = fcc(3.61).supercell([2, 2, 2]);
    s.cell[1] = [1.8, 7.22, 0.0]; // make it triclinic
    let wrapped = neighbor_list(&s, 4.0).unwrap();
    let mut moved = s.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for p in moved.positions.iter_mut() {
        let n = [
            rng.gen_range(-5..=5) as f64,
            rng.gen_range(-5..=5) as f64,
            rng.gen_range(-5..=5) as f64,
        ];
        *p = [
            p[0] + cart(n, &s.cell)[0],
            p[1] + cart(n, &s.cell)[1],
            p[2] + cart(n, &s.cell)[2],
        ];
    }
    let unwrapped = neighbor_list(&moved, 4.0).unwrap();
    assert_eq!(unwrapped.len(), wrapped.len());
    assert_eq!(unwrapped.centers, wrapped.centers);
    let key = |v: Vec<[f64; 3]>, nl: &NeighborList| {
        let mut k: Vec<(usize, usize, [i64; 3])> = v
            .iter()
            .enumerate()
            .map(|(e, r)| {
                (
                    nl.centers[e],
                    nl.neighbors[e],
                    r.map(|x| (x * 1e6).round() as i64),
                )
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(
        key(wrapped.edge_vectors(&s), &wrapped),
        key(unwrapped.edge_vectors(&moved), &unwrapped)
    );
    assert_matches_brute_force(&moved, 4.0, &moved.cell);
}

#[test]
fn invalid_cutoff_and_structure_are_errors() {
    let s = fcc(3.61);
    for c in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        match neighbor_list(&s, c) {
            Err(Error::InvalidInput(msg)) => assert!(msg.contains("cutoff"), "{msg}"),
            other => panic!("cutoff {c}: expected InvalidInput, got {other:?}"),
        }
    }
    let mut bad = s.clone();
    bad.positions[2][1] = f64::NAN;
    assert!(matches!(
        neighbor_list(&bad, 3.0),
        Err(Error::InvalidInput(_))
    ));
    let mut flat = s.clone();
    flat.cell[2] = [0.0; 3];
    assert!(matches!(
        neighbor_list(&flat, 3.0),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn empty_structure_has_no_edges() {
    let s = Structure::new(vec![], vec![], IDENTITY, [true; 3]).unwrap();
    assert!(neighbor_list(&s, 3.0).unwrap().is_empty());
}

#[test]
fn large_structures_on_the_parallel_path_match_brute_force() {
    // More atoms than the parallel threshold (1000).
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let cell = [[16.0, 0.0, 0.0], [7.0, 14.0, 0.0], [-4.0, 3.0, 15.0]];
    for pbc in [[true; 3], [true, false, true], [false, false, true]] {
        let n = 1050;
        let positions: Vec<[f64; 3]> = (0..n)
            .map(|_| {
                cart(
                    [
                        rng.gen_range(-0.5..1.5),
                        rng.gen_range(0.0..1.0),
                        rng.gen_range(-1.0..1.0),
                    ],
                    &cell,
                )
            })
            .collect();
        let s = Structure::new(positions, vec![14; n], cell, pbc).unwrap();
        assert_matches_brute_force(&s, 3.1, &cell);
    }
}

#[test]
fn fcc_copper_4000_atoms() {
    let s = fcc(3.61).supercell([10, 10, 10]);
    assert_eq!(s.len(), 4000);
    let mut best = f64::INFINITY;
    let mut nl = NeighborList::default();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        nl = neighbor_list(&s, 5.0).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "fcc Cu, 4000 atoms, cutoff 5 A: {} edges in {:.2} ms (best of 10)",
        nl.len(),
        best * 1e3
    );
    assert_eq!(nl.len(), 4000 * 42);
    assert!(counts_per_atom(&s, &nl).iter().all(|&c| c == 42));
    // The duplicate-edge check of caller-supplied graphs, on the same 168,000 edges.
    let shifts: Vec<[f64; 3]> = nl
        .shifts
        .iter()
        .map(|sh| [0, 1, 2].map(|x| (0..3).map(|k| sh[k] as f64 * s.cell[k][x]).sum()))
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let t = std::time::Instant::now();
        check_unique_edges(s.len(), &nl.centers, &nl.neighbors, Some(&shifts)).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "duplicate-edge check of the same {} edges: {:.2} ms (best of 10)",
        nl.len(),
        best * 1e3
    );
}

#[test]
fn coincident_atoms_are_an_error_naming_both() {
    // Issue 13: an atom exactly on another was silently left out of the list. On the serial
    // path (108 atoms) and the parallel one (4,001 atoms), and on a periodic image.
    for reps in [3, 10] {
        let mut s = fcc(3.61).supercell([reps; 3]);
        let n = s.len();
        s.positions.push(s.positions[7]);
        s.numbers.push(29);
        let e = neighbor_list(&s, 5.0).unwrap_err().to_string();
        assert!(
            e.contains(&format!("atoms 7 and {n} are at the same position")),
            "{e}"
        );
        // on the image of atom 0 one cell vector away
        s.positions[n] = s.cell[1];
        let e = neighbor_list(&s, 5.0).unwrap_err().to_string();
        assert!(
            e.contains(&format!("atoms 0 and {n}")) && e.contains("periodic image"),
            "{e}"
        );
    }
    // a molecule: atoms 1 and 2 10^-11 Å apart
    let s = Structure::molecule(
        vec![[0.0; 3], [1.0, 0.0, 0.0], [1.0 + 1e-11, 0.0, 0.0]],
        vec![1; 3],
    )
    .unwrap();
    let e = neighbor_list(&s, 3.0).unwrap_err().to_string();
    assert!(e.contains("atoms 1 and 2 are at the same position"), "{e}");
}

#[test]
fn duplicate_edges_are_found() {
    // Caller-supplied graphs (issue 13): the same (centre, neighbour, shift) twice is an error;
    // two images of one neighbour are two edges.
    let c = [0usize, 1, 0, 2, 0];
    let n = [1usize, 0, 2, 0, 1];
    let e = check_unique_edges(3, &c, &n, None).unwrap_err().to_string();
    assert!(
        e.contains("edges 0 and 4") && e.contains("centre atom 0"),
        "{e}"
    );
    let sh = [[0.0; 3], [0.0; 3], [0.0; 3], [0.0; 3], [5.0, 0.0, 0.0]];
    check_unique_edges(3, &c, &n, Some(&sh)).unwrap();
    check_unique_edges(3, &c[..4], &n[..4], None).unwrap();
    let e = check_unique_edges(2, &c, &n, None).unwrap_err().to_string();
    assert!(e.contains("edge 2 (0 -> 2)"), "{e}");
}

/// `s` with every atom dropped that sits (within 1e-9 in fractional coordinates of the full-rank
/// `full`, modulo periodic images) on an earlier one.
fn without_coincident_atoms(s: &Structure, full: &[[f64; 3]; 3]) -> Structure {
    let (g, _) = reciprocal(full);
    let mut kept: Vec<[f64; 3]> = Vec::new();
    let mut out = s.clone();
    out.positions.clear();
    out.numbers.clear();
    for (p, &z) in s.positions.iter().zip(&s.numbers) {
        let f = [dot(*p, g[0]), dot(*p, g[1]), dot(*p, g[2])];
        let same = kept.iter().any(|q| {
            (0..3).all(|k| {
                let d = f[k] - q[k];
                let d = if s.pbc[k] { d - d.round() } else { d };
                d.abs() < 1e-9
            })
        });
        if !same {
            kept.push(f);
            out.positions.push(*p);
            out.numbers.push(z);
        }
    }
    out
}

/// A random cell: lattice vector k has length scale L_k along axis k plus skew components of up
/// to 1.5 L_k along the other axes.
fn cell_strategy() -> impl Strategy<Value = [[f64; 3]; 3]> {
    (
        prop::array::uniform3(0.7f64..7.0),
        prop::array::uniform3(prop::array::uniform3(-1.5f64..1.5)),
    )
        .prop_map(|(l, t)| {
            let mut c = [[0.0; 3]; 3];
            for k in 0..3 {
                for x in 0..3 {
                    c[k][x] = if x == k { l[k] } else { t[k][x] * l[k] };
                }
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_cells_match_brute_force(
        cell in cell_strategy(),
        pbc in prop::array::uniform3(any::<bool>()),
        cutoff in 0.3f64..6.0,
        open_cell in 0u8..3,
        atoms in prop::collection::vec((prop::array::uniform3(-2.5f64..3.5), 0u8..4), 1..=30),
    ) {
        let (_, h) = reciprocal(&cell);
        let hmin = h.iter().cloned().fold(f64::INFINITY, f64::min);
        // Keep the brute force affordable: not more than ~4.5 images per side.
        prop_assume!(hmin > 0.2 && cutoff / hmin < 4.5);
        let positions: Vec<[f64; 3]> = atoms
            .iter()
            .map(|&(f, snap)| {
                // Some atoms sit exactly on cell faces / half-cell points.
                let f = if snap == 0 { f.map(|x| (2.0 * x).round() / 2.0) } else { f };
                cart(f, &cell)
            })
            .collect();
        // Along non-periodic directions the given cell vector may be kept, zero or tiny.
        let mut given = cell;
        for k in 0..3 {
            if !pbc[k] {
                match open_cell {
                    1 => given[k] = [0.0; 3],
                    2 => given[k] = given[k].map(|x| x * 1e-12),
                    _ => {}
                }
            }
        }
        let n = positions.len();
        let s = Structure::new(positions, vec![1; n], given, pbc).unwrap();
        // Snapped atoms may land on one another (or on an image): refused, then compared again
        // with one atom of each such group kept.
        assert_matches_brute_force(&s, cutoff, &cell);
        let s = without_coincident_atoms(&s, &cell);
        if !s.is_empty() {
            assert_matches_brute_force(&s, cutoff, &cell);
        }
    }
}
