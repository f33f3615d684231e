//! The model file: round trip, self-description, and a clear error for every kind of bad file.

mod common;
use common::*;
use mlip::{Error, Model, Request};

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hgnn-file-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_err(path: &std::path::Path) -> String {
    match Model::load(path, tch::Kind::Double, tch::Device::Cpu) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn round_trip_is_exact_and_self_describing() {
    let d = tmpdir("rt");
    for (k, mpnn) in BACKBONES.iter().enumerate() {
        let m = model(*mpnn, 4.2, 5 + k as i64);
        let p = d.join(format!("m{k}.model"));
        let mut prov = std::collections::BTreeMap::new();
        prov.insert("dataset".to_string(), "unit test".to_string());
        m.save(&p, &prov).unwrap();
        let l = Model::load(&p, tch::Kind::Double, tch::Device::Cpu).unwrap();
        assert_eq!(l.config(), m.config());
        assert_eq!(l.cutoff(), 4.2);
        assert_eq!(l.num_layers(), 3);
        assert_eq!(l.species(), &[29, 28, 8]);
        let info: serde_json::Value = serde_json::from_str(&l.metadata["info"]).unwrap();
        assert_eq!(info["units"]["lammps"], "metal");
        assert_eq!(info["provenance"]["dataset"], "unit test");
        assert_eq!(info["species"][0], "Cu");
        let s = random_periodic(7, 3);
        let (a, b) = (
            m.compute(&s, Request::EFV).unwrap(),
            l.compute(&s, Request::EFV).unwrap(),
        );
        assert_eq!(a.energy, b.energy);
        assert_eq!(a.forces, b.forces);
    }
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn bad_files_give_clear_errors() {
    let d = tmpdir("bad");
    let good = d.join("good.model");
    model(BACKBONES[0], 4.0, 1)
        .save(&good, &Default::default())
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    // missing
    let e = load_err(&d.join("nope.model"));
    assert!(
        e.contains("nope.model") && e.contains("No such file"),
        "{e}"
    );
    assert!(matches!(
        Model::load(d.join("nope.model"), tch::Kind::Double, tch::Device::Cpu),
        Err(Error::Io { .. })
    ));
    // truncated
    let p = d.join("truncated.model");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("truncated.model") && e.contains("truncated or corrupted"),
        "{e}"
    );
    // corrupted weights (flip bytes at the end of the data)
    let p = d.join("corrupt.model");
    let mut c = bytes.clone();
    let n = c.len();
    for b in &mut c[n - 16..] {
        *b ^= 0x5a;
    }
    std::fs::write(&p, &c).unwrap();
    let e = load_err(&p);
    assert!(e.contains("checksum mismatch"), "{e}");
    // not a model at all
    let p = d.join("notes.txt");
    std::fs::write(&p, "pair_style eam\npair_coeff * * Cu_u3.eam\n").unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("notes.txt") && e.contains("not a model file"),
        "{e}"
    );
    // an empty file
    let p = d.join("empty.model");
    std::fs::write(&p, b"").unwrap();
    assert!(load_err(&p).contains("empty.model"));
    // a future format version: rewrite the header's version field
    let p = d.join("future.model");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains("\"format_version\":\"1\""));
    let f = bytes.clone();
    let pos = text.find("\"format_version\":\"1\"").unwrap() + "\"format_version\":\"".len();
    let mut f2 = f.clone();
    f2[pos] = b'9';
    std::fs::write(&p, &f2).unwrap();
    let e = load_err(&p);
    assert!(e.contains("format version 9 is not supported"), "{e}");
    // a safetensors file that is not a model
    let p = d.join("plain.safetensors");
    let data = vec![0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    safetensors::tensor::serialize_to_file(vec![("w", view)], &None, &p).unwrap();
    let e = load_err(&p);
    assert!(e.contains("not a hydragnn-rs model"), "{e}");
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn bad_structures_give_clear_errors() {
    let m = model(BACKBONES[0], 4.0, 2);
    let mut s = random_periodic(5, 1);
    s.positions[3][1] = f64::NAN;
    let e = m.compute(&s, Request::EFV).unwrap_err().to_string();
    assert!(e.contains("atom 3") && e.contains("not finite"), "{e}");
    let mut s = random_periodic(5, 1);
    s.numbers[2] = 79;
    let e = m.compute(&s, Request::EFV).unwrap_err().to_string();
    assert!(
        e.contains("atom 2") && e.contains("Au") && e.contains("Cu, Ni, O"),
        "{e}"
    );
    let mut s = random_periodic(5, 1);
    s.cell[2] = s.cell[0];
    let e = m.compute(&s, Request::EFV).unwrap_err().to_string();
    assert!(e.contains("zero volume"), "{e}");
    let s = mlip::Structure::molecule(vec![[0.0; 3], [0.0; 3]], vec![29, 29]).unwrap();
    let nl_edges = (vec![0usize, 1], vec![1usize, 0]);
    let g = mlip::GraphInput {
        n_local: 2,
        positions: &s.positions,
        numbers: &s.numbers,
        centers: &nl_edges.0,
        neighbors: &nl_edges.1,
        shifts: None,
    };
    let e = m.compute_graph(&g, Request::EFV).unwrap_err().to_string();
    assert!(e.contains("same position"), "{e}");
}
