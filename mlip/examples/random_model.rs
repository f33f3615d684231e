//! Writes a model file with random weights, for tests and for trying the clients before training:
//! `cargo run --release -p mlip --example random_model -- OUT [SchNet|PAINN] [Cu,Ni,...] [radius] [layers] [float32|float64] [seed] [heads]`.
//! With `heads` as the eighth argument the branch also has extra heads of every kind: `gap`
//! (graph, mean), `total` (graph, sum, 2 values), `top` (graph, max), `pooled` (graph, mean,
//! pool-first through a shared layer), `charges` (node) and `spins` (node, 2 values).
//! Further arguments from the eighth on: `zbl=INNER:OUTER` (the ZBL core repulsion, Å) and
//! `dmin=D` (the shortest distance of the training data the model claims, Å).

use std::collections::BTreeMap;

use mlip::model::config::{HeadConfig, HeadKind, ModelConfig, MpnnType, Pooling};
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
    for extra in a.iter().skip(8) {
        if let Some(v) = extra.strip_prefix("zbl=") {
            let (i, o) = v.split_once(':').expect("zbl=INNER:OUTER");
            c.zbl = Some(mlip::zbl::ZblConfig {
                inner: i.parse().expect("zbl inner"),
                outer: o.parse().expect("zbl outer"),
            });
        } else if let Some(v) = extra.strip_prefix("dmin=") {
            c.min_training_distance = Some(v.parse().expect("dmin"));
        }
    }
    if a.get(8).map(|s| s.as_str()) == Some("heads") {
        let mut pooled = HeadConfig::new("pooled", HeadKind::Graph, 1, vec![8], Pooling::Mean);
        pooled.pool_first = true;
        let b = &mut c.branches[0];
        b.shared_layers = vec![8];
        b.output_heads.extend([
            HeadConfig::new("gap", HeadKind::Graph, 1, vec![8], Pooling::Mean),
            HeadConfig::new("total", HeadKind::Graph, 2, vec![8], Pooling::Sum),
            HeadConfig::new("top", HeadKind::Graph, 1, vec![8], Pooling::Max),
            pooled,
            HeadConfig::new("charges", HeadKind::Node, 1, vec![8], Pooling::Sum),
            HeadConfig::new("spins", HeadKind::Node, 2, vec![8], Pooling::Sum),
        ]);
    }
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
