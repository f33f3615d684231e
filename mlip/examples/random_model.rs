//! Writes a model file with random weights, for tests and for trying the clients before training:
//! `cargo run --release -p mlip --example random_model -- OUT [SchNet|PAINN] [Cu,Ni,...] [radius] [layers] [float32|float64] [seed]`.

use std::collections::BTreeMap;

use mlip::model::config::{ModelConfig, MpnnType};
use mlip::Model;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 2 {
        eprintln!("usage: random_model OUT [SchNet|PAINN] [Cu,Ni,...] [radius] [layers] [float32|float64] [seed]");
        std::process::exit(2);
    }
    let mpnn = match a.get(2).map(|s| s.as_str()).unwrap_or("SchNet") {
        "SchNet" => MpnnType::SchNet,
        "PAINN" | "PaiNN" => MpnnType::PaiNN,
        m => {
            eprintln!("unknown mpnn_type '{m}' (SchNet or PAINN)");
            std::process::exit(2);
        }
    };
    let species: Vec<i32> = a
        .get(3)
        .map(|s| s.as_str())
        .unwrap_or("Cu")
        .split(',')
        .map(|e| {
            mlip::elements::atomic_number(e).unwrap_or_else(|| {
                eprintln!("unknown element '{e}'");
                std::process::exit(2)
            })
        })
        .collect();
    let radius: f64 = a.get(4).map(|s| s.parse().expect("radius")).unwrap_or(4.5);
    let layers: usize = a.get(5).map(|s| s.parse().expect("layers")).unwrap_or(2);
    let kind = if a.get(6).map(|s| s.as_str()) == Some("float32") {
        tch::Kind::Float
    } else {
        tch::Kind::Double
    };
    let seed: i64 = a.get(7).map(|s| s.parse().expect("seed")).unwrap_or(7);
    let mut c = ModelConfig::small(mpnn, species.clone(), radius);
    c.num_conv_layers = layers;
    c.branches[0].reference_energies = species.iter().map(|&z| -0.1 * z as f64).collect();
    let m = Model::new(c, kind, tch::Device::Cpu, seed).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let mut prov = BTreeMap::new();
    prov.insert(
        "note".to_string(),
        format!("random weights, seed {seed}, not trained"),
    );
    if let Err(e) = m.save(&a[1], &prov) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
