//! HydraGNN's CGCNN, GAT, GIN, SAGE and MFC checkpoints through the C ABI, number for number:
//! each upstream golden `GFM_<NAME>_node` (tests/hydragnn_golden_extra) goes checkpoint →
//! tools/import_hydragnn.py → mlip::hydragnn → model file → `hgnn_model_load`; the
//! whole-structure path (`hgnn_compute`, the engine's own neighbour list) and the layer-by-layer
//! protocol on HydraGNN's own edge list (one piece, periodic images as shifts) reproduce
//! HydraGNN's energy, per-atom energies and forces to 1e-8 relative.

use hydragnn::*;
use mlip::hydragnn::read_npz;

mod common;

use common::*;

#[allow(unused_macros)]
#[path = "../../tests/support/golden.rs"]
mod golden;

/// A directory with `GFM_<name>_checkpoint.pk` (written from the golden's state dict as the
/// golden README says: `torch.save({"model_state_dict": {"module." + k: v}})`, the layout of
/// HydraGNN's checkpoints) and the golden's config.
fn checkpoint_dir(name: &str) -> std::path::PathBuf {
    let d = golden::extra_dir();
    let out =
        std::env::temp_dir().join(format!("hgnn-capi-backbones-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let config = format!("GFM_{name}_config.json");
    std::fs::copy(d.join(&config), out.join(&config)).unwrap();
    let script = "import sys, numpy as np, torch\n\
                  sd = np.load(sys.argv[1])\n\
                  torch.save({'model_state_dict': {'module.' + k: torch.from_numpy(sd[k]) for k in sd.files}}, sys.argv[2])\n";
    let st = std::process::Command::new(python())
        .args(["-c", script])
        .arg(d.join(format!("GFM_{name}_state_dict.npz")))
        .arg(out.join(format!("GFM_{name}_checkpoint.pk")))
        .status()
        .expect("run python");
    assert!(st.success(), "writing the checkpoint of GFM_{name}");
    out
}

fn through_the_c_abi(name: &str) {
    let d = golden::extra_dir();
    let path = import_gfm_to_file(&checkpoint_dir(name), name);
    let golden_file = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let f = p.file_name().unwrap().to_string_lossy().to_string();
            f.starts_with(&format!("GFM_{name}_")) && f.ends_with("_golden.npz")
        })
        .unwrap_or_else(|| panic!("no golden of GFM_{name} in {}", d.display()));
    let g = read_npz(&golden_file).unwrap();
    let pos = flat(&g["pos"]);
    let n = pos.len() / 3;
    let z: Vec<i32> = flat(&g["atomic_numbers"])
        .iter()
        .map(|&x| x as i32)
        .collect();
    let pbc = flat(&g["pbc"]);
    let e_gold = flat(&g["energy"])[0];
    let (ne_gold, f_gold) = (flat(&g["node_energy"]), flat(&g["forces"]));
    let fmax = f_gold.iter().map(|x| x.abs()).fold(0.0, f64::max);
    // relative to the golden forces; absolute where HydraGNN's forces are zero (GIN, SAGE, MFC)
    let f_err = |f: &[f64]| {
        let d = f
            .iter()
            .zip(&f_gold)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        if fmax > 0.0 {
            d / fmax
        } else {
            d
        }
    };
    let model = load(&path, "branch-0");

    // whole structure
    let s = hgnn_structure_t {
        n_atoms: n as i64,
        positions: pos.as_ptr(),
        atomic_numbers: z.as_ptr(),
        cell: flat(&g["cell"]).try_into().unwrap(),
        pbc: [pbc[0] as i32, pbc[1] as i32, pbc[2] as i32],
    };
    let mut forces = vec![0.0; 3 * n];
    let mut energies = vec![0.0; n];
    let mut res = hgnn_results_t {
        energy: 0.0,
        forces: forces.as_mut_ptr(),
        virial: std::ptr::null_mut(),
        energies: energies.as_mut_ptr(),
        virials: std::ptr::null_mut(),
    };
    assert_eq!(
        unsafe { hgnn_compute(model, &s, &mut res) },
        HGNN_SUCCESS,
        "{}",
        last_error()
    );
    let e_rel = (res.energy - e_gold).abs() / e_gold.abs();
    let ne_rel = max_rel(&energies, &ne_gold);
    let f_rel = f_err(&forces);
    eprintln!(
        "GFM_{name} via hgnn_compute: energy rel {e_rel:.1e}, per-atom rel {ne_rel:.1e}, forces {f_rel:.1e}"
    );
    assert!(
        e_rel < 1e-8 && ne_rel < 1e-8 && f_rel < 1e-8,
        "{name}: {e_rel:e} {ne_rel:e} {f_rel:e}"
    );

    // layer by layer on HydraGNN's edge list (one piece, no ghosts)
    let ei = Vec::<i64>::try_from(g["edge_index"].contiguous().view([-1])).unwrap();
    let ne = ei.len() / 2;
    let shifts = flat(&g["edge_shifts"]);
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
    unsafe {
        let r = run_layered(model, &graph);
        hgnn_model_free(model);
        let e_rel = (r.energy - e_gold).abs() / e_gold.abs();
        let ne_rel = max_rel(&r.energies, &ne_gold);
        let f_rel = f_err(&r.forces);
        eprintln!(
            "GFM_{name} layer by layer: energy rel {e_rel:.1e}, per-atom rel {ne_rel:.1e}, forces {f_rel:.1e}"
        );
        assert_eq!(r.energy, r.local);
        assert!(
            e_rel < 1e-8 && ne_rel < 1e-8 && f_rel < 1e-8,
            "{name} layered: {e_rel:e} {ne_rel:e} {f_rel:e}"
        );
    }
}

#[test]
fn gfm_cgcnn_through_the_c_abi_matches_hydragnn() {
    through_the_c_abi("CGCNN_node");
}

#[test]
fn gfm_gat_through_the_c_abi_matches_hydragnn() {
    through_the_c_abi("GAT_node");
}

#[test]
fn gfm_gin_through_the_c_abi_matches_hydragnn() {
    through_the_c_abi("GIN_node");
}

#[test]
fn gfm_sage_through_the_c_abi_matches_hydragnn() {
    through_the_c_abi("SAGE_node");
}

#[test]
fn gfm_mfc_through_the_c_abi_matches_hydragnn() {
    through_the_c_abi("MFC_node");
}
