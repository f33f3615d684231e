//! HydraGNN's foundation-model recipe through the C ABI, number for number: the GFM PaiNN
//! checkpoint with a graph-level energy head and two branches (../shared/hydragnn_golden/
//! GFM_PAINN_graph2_*) goes through the importer (tools/import_hydragnn.py reads the .pk with
//! torch, mlip::hydragnn maps config and weights) into a model file, which `hgnn_model_load`
//! opens with each branch selected by name. In float64, the whole-structure path
//! (`hgnn_compute`, the engine's own neighbour list) and the layer-by-layer protocol with its
//! reduction step (`hgnn_eval_head_partials`, `hgnn_eval_reduce`) reproduce HydraGNN's energy and
//! forces to 1e-8 relative. The fast path (the default) declines such a model, so the exact path
//! runs; per-atom energies are an error that says why.

use std::ffi::CStr;
use std::path::PathBuf;

use hydragnn::*;
use mlip::hydragnn::read_npz;

mod common;

use common::*;

#[macro_use]
#[path = "../../tests/support/golden.rs"]
mod golden;

/// Checkpoint → model file, through the same two steps as `hydragnn import-hydragnn`.
fn import_to_file(name: &str) -> PathBuf {
    import_gfm_to_file(&golden::dir(), name)
}

/// The graph-head checkpoint `GFM_<name>` (2 branches, Al5Cu7) through the C ABI, whole
/// structure and layer by layer with the reduction step, against HydraGNN for every branch.
fn graph_head_through_the_c_abi(name: &str) {
    let path = import_to_file(name);
    let g = read_npz(&golden::dir().join(format!("GFM_{name}_cual12_golden.npz"))).unwrap();
    let pos = flat(&g["pos"]);
    let n = pos.len() / 3;
    let z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let cell = flat(&g["cell"]);
    let (e_gold, f_gold) = (flat(&g["energy"]), flat(&g["forces"]));
    let ei = Vec::<i64>::try_from(g["edge_index"].contiguous().view([-1])).unwrap();
    let ne = ei.len() / 2;
    let shifts = flat(&g["edge_shifts"]);
    for (b, branch) in ["branch-0", "branch-1"].iter().enumerate() {
        let model = load(&path, branch);
        let mut pooled = 0;
        assert_eq!(
            unsafe { hgnn_model_energy_is_pooled(model, &mut pooled) },
            HGNN_SUCCESS
        );
        assert_eq!(pooled, 1);
        // the fast path is the default; it declines a graph-level energy
        let mut json = std::ptr::null();
        assert_eq!(unsafe { hgnn_model_path(model, &mut json) }, HGNN_SUCCESS);
        let json = unsafe { CStr::from_ptr(json) }
            .to_string_lossy()
            .into_owned();
        assert!(
            json.contains("\"exact\"") && json.contains("graph-level energy"),
            "{json}"
        );
        let f_want = &f_gold[b * 3 * n..(b + 1) * 3 * n];

        // whole structure
        let s = hgnn_structure_t {
            n_atoms: n as i64,
            positions: pos.as_ptr(),
            atomic_numbers: z.as_ptr(),
            cell: cell.clone().try_into().unwrap(),
            pbc: [1, 1, 1],
        };
        let mut forces = vec![0.0; 3 * n];
        let mut res = hgnn_results_t {
            energy: 0.0,
            forces: forces.as_mut_ptr(),
            virial: std::ptr::null_mut(),
            energies: std::ptr::null_mut(),
            virials: std::ptr::null_mut(),
        };
        assert_eq!(
            unsafe { hgnn_compute(model, &s, &mut res) },
            HGNN_SUCCESS,
            "{}",
            last_error()
        );
        let e_rel = (res.energy - e_gold[b]).abs() / e_gold[b].abs();
        let f_rel = max_rel(&forces, f_want);
        eprintln!(
            "GFM_{name} {branch} via hgnn_compute: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}"
        );
        assert!(e_rel < 1e-8, "{branch}: {} vs {}", res.energy, e_gold[b]);
        assert!(f_rel < 1e-8, "{branch}: forces off by {f_rel:e}");

        // per-atom energies: refused, with the reason
        let mut energies = vec![0.0; n];
        res.energies = energies.as_mut_ptr();
        assert_ne!(unsafe { hgnn_compute(model, &s, &mut res) }, HGNN_SUCCESS);
        let err = last_error();
        assert!(
            err.contains("per-atom energies are not defined") && err.contains(branch),
            "{err}"
        );

        // layer by layer on the golden edge list (one piece, no ghosts), with the reduction
        let graph = hgnn_graph_t {
            n_local: n as i64,
            n_total: n as i64,
            positions: pos.as_ptr(),
            atomic_numbers: z.as_ptr(),
            n_edges: ne as i64,
            centers: ei[..ne].as_ptr(),
            neighbors: ei[ne..].as_ptr(),
            shifts: shifts.as_ptr(),
        };
        let mut ev = std::ptr::null_mut();
        unsafe {
            assert_eq!(
                hgnn_eval_begin(model, &graph, &mut ev),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            let mut nl = 0;
            assert_eq!(hgnn_model_num_layers(model, &mut nl), HGNN_SUCCESS);
            for l in 0..nl {
                assert_eq!(
                    hgnn_eval_forward_layer(ev, l),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
            }
            let mut local = f64::NAN;
            assert_eq!(hgnn_eval_readout(ev, &mut local), HGNN_SUCCESS);
            assert_eq!(local, 0.0);
            // the backward pass needs the reduction first
            assert_ne!(hgnn_eval_backward_layer(ev, nl - 1), HGNN_SUCCESS);
            assert!(last_error().contains("reduce()"), "{}", last_error());
            let (mut ns, mut nm) = (0, 0);
            assert_eq!(
                hgnn_model_head_partials_size(model, &mut ns, &mut nm),
                HGNN_SUCCESS
            );
            let mut sums = vec![0.0; ns as usize];
            let mut maxs = vec![0.0; nm as usize];
            assert_eq!(
                hgnn_eval_head_partials(ev, sums.as_mut_ptr(), ns, maxs.as_mut_ptr(), nm),
                HGNN_SUCCESS
            );
            // wrong lengths are named
            let mut e = 0.0;
            assert_ne!(
                hgnn_eval_reduce(ev, sums.as_ptr(), ns - 1, maxs.as_ptr(), nm, &mut e),
                HGNN_SUCCESS
            );
            assert!(last_error().contains("sums"), "{}", last_error());
            assert_eq!(
                hgnn_eval_reduce(ev, sums.as_ptr(), ns, maxs.as_ptr(), nm, &mut e),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            for l in (0..nl).rev() {
                assert_eq!(
                    hgnn_eval_backward_layer(ev, l),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
            }
            let mut forces = vec![0.0; 3 * n];
            let mut r = hgnn_results_t {
                energy: 0.0,
                forces: forces.as_mut_ptr(),
                virial: std::ptr::null_mut(),
                energies: std::ptr::null_mut(),
                virials: std::ptr::null_mut(),
            };
            assert_eq!(
                hgnn_eval_results(ev, &mut r),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            hgnn_eval_free(ev);
            let e_rel = (r.energy - e_gold[b]).abs() / e_gold[b].abs();
            let f_rel = max_rel(&forces, f_want);
            eprintln!("GFM_{name} {branch} layer by layer: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}");
            assert_eq!(r.energy, e);
            assert!(
                e_rel < 1e-8 && f_rel < 1e-8,
                "{branch}: layered {e_rel:e} {f_rel:e}"
            );
            hgnn_model_free(model);
        }
    }
}

#[test]
fn gfm_painn_graph_head_through_the_c_abi_matches_hydragnn_for_every_branch() {
    skip_without_golden!();
    graph_head_through_the_c_abi("PAINN_graph2");
}

/// MACE's graph head (its earlier readouts carried in the layer state) through the C ABI,
/// whole structure and layer by layer with the reduction step.
#[test]
fn gfm_mace_graph_head_through_the_c_abi_matches_hydragnn_for_every_branch() {
    skip_without_golden!();
    graph_head_through_the_c_abi("MACE_graph2");
}

/// The charge/spin-conditioned GFM PaiNN through the C ABI: the attributes are named, required,
/// checked, and with HydraGNN's golden values the energy and forces are HydraGNN's to 1e-8.
#[test]
fn gfm_charge_spin_conditioning_through_the_c_abi_matches_hydragnn() {
    skip_without_golden!();
    let path = import_to_file("PAINN_graph2_concat");
    let g = read_npz(&golden::dir().join("GFM_PAINN_graph2_concat_ethanol_golden.npz")).unwrap();
    let pos = flat(&g["pos"]);
    let n = pos.len() / 3;
    let z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let (e_gold, f_gold, attr) = (
        flat(&g["energy"]),
        flat(&g["forces"]),
        flat(&g["graph_attr"]),
    );
    for (b, branch) in ["branch-0", "branch-1"].iter().enumerate() {
        let model = load(&path, branch);
        unsafe {
            let mut na = 0;
            assert_eq!(hgnn_model_num_graph_attr(model, &mut na), HGNN_SUCCESS);
            assert_eq!(na, 2);
            let names: Vec<String> = (0..na)
                .map(|k| {
                    let mut s = std::ptr::null();
                    assert_eq!(hgnn_model_graph_attr_name(model, k, &mut s), HGNN_SUCCESS);
                    CStr::from_ptr(s).to_string_lossy().into_owned()
                })
                .collect();
            assert_eq!(names, ["charge", "spin"]);
            let s = hgnn_structure_t {
                n_atoms: n as i64,
                positions: pos.as_ptr(),
                atomic_numbers: z.as_ptr(),
                cell: [0.0; 9],
                pbc: [0, 0, 0],
            };
            let mut forces = vec![0.0; 3 * n];
            let mut res = hgnn_results_t {
                energy: 0.0,
                forces: forces.as_mut_ptr(),
                virial: std::ptr::null_mut(),
                energies: std::ptr::null_mut(),
                virials: std::ptr::null_mut(),
            };
            assert_ne!(hgnn_compute(model, &s, &mut res), HGNN_SUCCESS);
            assert!(
                last_error().contains("hgnn_model_set_graph_attr"),
                "{}",
                last_error()
            );
            assert_ne!(
                hgnn_model_set_graph_attr(model, attr.as_ptr(), 3),
                HGNN_SUCCESS
            );
            assert!(last_error().contains("got 3 values"), "{}", last_error());
            assert_eq!(
                hgnn_model_set_graph_attr(model, attr.as_ptr(), 2),
                HGNN_SUCCESS
            );
            assert_eq!(
                hgnn_compute(model, &s, &mut res),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            hgnn_model_free(model);
            let e_rel = (res.energy - e_gold[b]).abs() / e_gold[b].abs();
            let f_rel = max_rel(&forces, &f_gold[b * 3 * n..(b + 1) * 3 * n]);
            eprintln!("GFM_PAINN_graph2_concat {branch} via the C ABI: energy rel {e_rel:.1e}, forces rel {f_rel:.1e}");
            assert!(
                e_rel < 1e-8 && f_rel < 1e-8,
                "{branch}: {e_rel:e} {f_rel:e}"
            );
        }
    }
}

/// HydraGNN's SchNet (ethanol), PNA (Al5Cu7, edge_dim 1, BatchNorm), PNAEq and DimeNet
/// (Al5Cu7) and MACE (ethanol) node-head checkpoints through the C ABI: energy, per-atom energies and forces to 1e-8 on the
/// whole-structure path.
#[test]
fn gfm_node_head_checkpoints_through_the_c_abi_match_hydragnn() {
    skip_without_golden!();
    for (name, structure) in [
        ("SchNet_node", "ethanol"),
        ("PNA_node", "cual12"),
        ("PNAEq_node", "cual12"),
        ("DimeNet_node", "cual12"),
        ("MACE_node", "ethanol"),
    ] {
        let path = import_to_file(name);
        let g =
            read_npz(&golden::dir().join(format!("GFM_{name}_{structure}_golden.npz"))).unwrap();
        let pos = flat(&g["pos"]);
        let n = pos.len() / 3;
        let z: Vec<i32> = flat(&g["atomic_numbers"])
            .iter()
            .map(|&x| x as i32)
            .collect();
        let pbc = flat(&g["pbc"]);
        let s = hgnn_structure_t {
            n_atoms: n as i64,
            positions: pos.as_ptr(),
            atomic_numbers: z.as_ptr(),
            cell: flat(&g["cell"]).try_into().unwrap(),
            pbc: [pbc[0] as i32, pbc[1] as i32, pbc[2] as i32],
        };
        let model = load(&path, "branch-0");
        let mut forces = vec![0.0; 3 * n];
        let mut energies = vec![0.0; n];
        let mut res = hgnn_results_t {
            energy: 0.0,
            forces: forces.as_mut_ptr(),
            virial: std::ptr::null_mut(),
            energies: energies.as_mut_ptr(),
            virials: std::ptr::null_mut(),
        };
        unsafe {
            assert_eq!(
                hgnn_compute(model, &s, &mut res),
                HGNN_SUCCESS,
                "{}",
                last_error()
            );
            hgnn_model_free(model);
        }
        let e_gold = flat(&g["energy"])[0];
        let e_rel = (res.energy - e_gold).abs() / e_gold.abs();
        let ne_rel = max_rel(&energies, &flat(&g["node_energy"]));
        let f_rel = max_rel(&forces, &flat(&g["forces"]));
        eprintln!("GFM_{name} via the C ABI: energy rel {e_rel:.1e}, per-atom rel {ne_rel:.1e}, forces rel {f_rel:.1e}");
        assert!(
            e_rel < 1e-8 && ne_rel < 1e-8 && f_rel < 1e-8,
            "{name}: {e_rel:e} {ne_rel:e} {f_rel:e}"
        );
    }
}

/// DimeNet through the layer-by-layer C ABI: on the golden edge list without ghost atoms the
/// layers reproduce HydraGNN's energy; a graph with a ghost atom (spatial decomposition, what
/// LAMMPS hands over) is refused with an error naming DimeNet and the reason.
#[test]
fn gfm_dimenet_layered_without_ghosts_matches_and_with_ghosts_is_refused() {
    skip_without_golden!();
    let path = import_to_file("DimeNet_node");
    let g = read_npz(&golden::dir().join("GFM_DimeNet_node_cual12_golden.npz")).unwrap();
    let mut pos = flat(&g["pos"]);
    let n = pos.len() / 3;
    let mut z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let cell = flat(&g["cell"]);
    let e_gold = flat(&g["energy"])[0];
    let ei = Vec::<i64>::try_from(g["edge_index"].contiguous().view([-1])).unwrap();
    let ne = ei.len() / 2;
    let shifts = flat(&g["edge_shifts"]);
    let model = load(&path, "branch-0");
    // a ghost: the image of atom 0 one cell vector away
    pos.extend([0, 1, 2].map(|c| pos[c] + cell[c]));
    z.push(z[0]);
    for n_total in [n, n + 1] {
        let graph = hgnn_graph_t {
            n_local: n as i64,
            n_total: n_total as i64,
            positions: pos.as_ptr(),
            atomic_numbers: z.as_ptr(),
            n_edges: ne as i64,
            centers: ei[..ne].as_ptr(),
            neighbors: ei[ne..].as_ptr(),
            shifts: shifts.as_ptr(),
        };
        let mut ev = std::ptr::null_mut();
        let status = unsafe { hgnn_eval_begin(model, &graph, &mut ev) };
        if n_total > n {
            assert_ne!(status, HGNN_SUCCESS);
            let err = last_error();
            assert!(err.contains("DimeNet") && err.contains("ghost"), "{err}");
            continue;
        }
        assert_eq!(status, HGNN_SUCCESS, "{}", last_error());
        let mut local = 0.0;
        unsafe {
            let mut nl = 0;
            assert_eq!(hgnn_model_num_layers(model, &mut nl), HGNN_SUCCESS);
            for l in 0..nl {
                assert_eq!(
                    hgnn_eval_forward_layer(ev, l),
                    HGNN_SUCCESS,
                    "{}",
                    last_error()
                );
            }
            assert_eq!(hgnn_eval_readout(ev, &mut local), HGNN_SUCCESS);
            hgnn_eval_free(ev);
        }
        let e_rel = (local - e_gold).abs() / e_gold.abs();
        eprintln!("GFM_DimeNet_node layer by layer without ghosts: energy rel {e_rel:.1e}");
        assert!(e_rel < 1e-8, "{local} vs {e_gold}");
    }
    unsafe { hgnn_model_free(model) };
}
