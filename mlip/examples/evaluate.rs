//! Loads a model file and prints the energy, forces and stress of a rattled fcc crystal:
//! `cargo run --release -p mlip --example evaluate -- MODEL [ELEMENT] [LATTICE_CONSTANT] [REPEAT]`
//! (defaults: the model's first element, 3.61 Å, 3×3×3 conventional cells).

use mlip::{Model, Request, Structure};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: evaluate MODEL [ELEMENT] [LATTICE_CONSTANT] [REPEAT]");
        std::process::exit(2);
    }
    let model = match Model::load(&args[1], tch::Kind::Double, tch::Device::Cpu) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let z = match args.get(2) {
        Some(sym) => mlip::elements::atomic_number(sym).unwrap_or_else(|| {
            eprintln!("error: '{sym}' is not a chemical symbol");
            std::process::exit(2)
        }),
        None => model.species()[0],
    };
    let a: f64 = args
        .get(3)
        .map(|s| s.parse().expect("lattice constant"))
        .unwrap_or(3.61);
    let n: usize = args.get(4).map(|s| s.parse().expect("repeat")).unwrap_or(3);
    let basis = [
        [0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.0, 0.5],
        [0.0, 0.5, 0.5],
    ];
    let cell = [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]];
    let unit = Structure::new(
        basis.iter().map(|b| b.map(|x| x * a)).collect(),
        vec![z; 4],
        cell,
        [true; 3],
    )
    .unwrap();
    let mut s = unit.supercell([n, n, n]);
    for (i, p) in s.positions.iter_mut().enumerate() {
        let t = i as f64;
        p[0] += 0.05 * (1.3 * t).sin();
        p[1] += 0.05 * (2.1 * t).cos();
        p[2] += 0.05 * (0.7 * t).sin();
    }
    let r = match model.compute(&s, Request::ALL) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let info: serde_json::Value = serde_json::from_str(
        model
            .metadata
            .get("info")
            .map(|s| s.as_str())
            .unwrap_or("{}"),
    )
    .unwrap_or_default();
    println!(
        "model: {} ({:?}, cutoff {} Å, {} layers, species {})",
        args[1],
        model.config().mpnn_type,
        model.cutoff(),
        model.num_layers(),
        info["species"]
    );
    println!(
        "structure: {} × fcc {} a = {a} Å, {} atoms, rattled by 0.05 Å",
        n * n * n,
        mlip::elements::symbol(z),
        s.len()
    );
    println!(
        "energy: {:.6} eV ({:.6} eV/atom)",
        r.energy,
        r.energy / s.len() as f64
    );
    println!("forces (eV/Å), first 4 atoms:");
    for f in r.forces.iter().take(4) {
        println!("  {:>12.6} {:>12.6} {:>12.6}", f[0], f[1], f[2]);
    }
    let fmax = r
        .forces
        .iter()
        .map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt())
        .fold(0.0, f64::max);
    println!("max |F|: {fmax:.6} eV/Å");
    let st = r.stress(s.volume());
    const EV_A3_TO_GPA: f64 = 160.21766208;
    println!("stress (GPa):");
    for row in st {
        println!(
            "  {:>12.6} {:>12.6} {:>12.6}",
            row[0] * EV_A3_TO_GPA,
            row[1] * EV_A3_TO_GPA,
            row[2] * EV_A3_TO_GPA
        );
    }
}
