
/// max |F - F_fd| / max |F| over a few atoms, and the same for the virial under strain.
fn fd_errors(model: &Model, s0: &Structure) -> (f64, f64) {
    let req = Request {
        forces: true,
        virial: true,
        energies: false,
        virials: false,
    };
    let r = model.compute(s0, req).unwrap();
    let e = |s: &Structure| model.compute(s, Request::ENERGY).unwrap().energy;
    let h = 1e-5;
    let fmax = r.forces.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
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
    let wmax = r.virial.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
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

/// The families whose goldens are molecules (PNAPlus; the charge/spin-conditioned PaiNN) are
/// conservative on the periodic Al5Cu7 cell too: forces and virial are the energy's derivatives.
#[test]
fn molecule_golden_families_are_conservative_on_the_periodic_cell() {
    skip_without_golden!();
    let s0 = golden("PAINN_graph2", "cual12").structure;
    let (pnaplus, _) = import_gfm("PNAPlus_node", |_| {});
    let (mut concat, _) = import_gfm("PAINN_graph2_concat", |_| {});
    concat.set_graph_attr(&[1.0, 0.5]).unwrap();
    for (name, m) in [("PNAPlus", &pnaplus), ("PAINN_graph2_concat", &concat)] {
        let (wf, ww) = fd_errors(m, &s0);
        eprintln!("{name} on Al5Cu7: FD forces rel {wf:.1e}, FD virial rel {ww:.1e}");
        assert!(wf < 1e-7 && ww < 1e-7, "{name}: forces {wf:e}, virial {ww:e}");
    }
}
