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
    let current = format!("\"format_version\":\"{}\"", mlip::file::FORMAT_VERSION);
    assert!(text.contains(&current));
    let f = bytes.clone();
    let pos = text.find(&current).unwrap() + "\"format_version\":\"".len();
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

/// The metadata and tensors of a model file, rewritten with `edit` applied to the metadata and a
/// checksum computed as format version `version` defines it (1: the weights; 2: the weights and
/// every other metadata entry, key and value, in key order): a well-formed file whose header says
/// what the test wants.
fn rewrite(
    src: &std::path::Path,
    dst: &std::path::Path,
    version: u32,
    edit: impl FnOnce(&mut std::collections::HashMap<String, String>),
) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert("format_version".into(), version.to_string());
    edit(&mut meta);
    meta.remove("checksum");
    let tensors = st.tensors();
    let mut extra: Vec<(&String, &String)> = meta.iter().collect();
    extra.sort();
    let extra: Vec<&str> = if version >= 2 {
        extra
            .into_iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect()
    } else {
        Vec::new()
    };
    let sum = mlip::file::checksum(
        tensors
            .iter()
            .map(|(n, v)| (n.as_str(), v.shape(), v.data())),
        &extra,
    );
    meta.insert("checksum".into(), sum);
    safetensors::tensor::serialize_to_file(tensors, &Some(meta), dst).unwrap();
}

#[test]
fn bit_flips_in_the_header_config_are_refused_by_the_checksum() {
    // Issue 13: the checksum covered the weights only, and a flipped bit in `config` (e.g.
    // "radius":5.0 -> 7.0) loaded and changed the physics. Flip one bit in every byte of the
    // config and of the info: every file must be refused.
    let d = tmpdir("flip");
    let good = d.join("good.model");
    model(BACKBONES[0], 5.0, 3)
        .save(&good, &Default::default())
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    // The radius itself: 5.0 -> 7.0 is one bit ('5' = 0x35, '7' = 0x37).
    let at = 8 + header.find("radius\\\":5.0").unwrap() + "radius\\\":".len();
    assert_eq!(bytes[at], b'5');
    let p = d.join("radius7.model");
    let mut f = bytes.clone();
    f[at] ^= 0x02;
    std::fs::write(&p, &f).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("radius7.model") && e.contains("checksum mismatch") && e.contains("config"),
        "{e}"
    );
    // Every byte of the config and info values, bit 1 flipped.
    let p = d.join("flipped.model");
    let mut tried = 0;
    for key in ["\"config\":\"", "\"info\":\""] {
        let start = 8 + header.find(key).unwrap() + key.len();
        let rest = &header[start - 8..];
        let end = start
            + [rest.find("\",\""), rest.find("\"}")]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
        for k in (start..end).step_by(3) {
            let mut f = bytes.clone();
            f[k] ^= 0x02;
            std::fs::write(&p, &f).unwrap();
            load_err(&p);
            tried += 1;
        }
    }
    assert!(tried > 100, "{tried} flips");
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn format_version_1_files_still_load() {
    // Files written before the header was checksummed (all of potentials/ at the time) load.
    let d = tmpdir("v1");
    let good = d.join("good.model");
    let m = model(BACKBONES[1], 4.5, 4);
    m.save(&good, &Default::default()).unwrap();
    let old = d.join("old.model");
    rewrite(&good, &old, 1, |_| {});
    let l = Model::load(&old, tch::Kind::Double, tch::Device::Cpu).unwrap();
    let s = random_periodic(6, 2);
    assert_eq!(
        m.compute(&s, Request::EFV).unwrap().energy,
        l.compute(&s, Request::EFV).unwrap().energy
    );
    // ... and their weights are still protected.
    let mut b = std::fs::read(&old).unwrap();
    let n = b.len();
    b[n - 3] ^= 0x10;
    std::fs::write(&old, &b).unwrap();
    let e = load_err(&old);
    assert!(e.contains("checksum mismatch: the weights"), "{e}");
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn upgrade_rewrites_version_1_as_version_2_with_the_same_model() {
    let d = tmpdir("upgrade");
    let good = d.join("good.model");
    let m = model(BACKBONES[0], 4.5, 6);
    m.save(&good, &Default::default()).unwrap();
    let old = d.join("old.model");
    rewrite(&good, &old, 1, |_| {});
    let new = d.join("new.model");
    mlip::file::upgrade(&old, &new).unwrap();
    let l = Model::load(&new, tch::Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(l.metadata["format_version"], "2");
    let o = Model::load(&old, tch::Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(l.config(), m.config());
    assert_eq!(l.metadata["config"], o.metadata["config"]);
    assert_eq!(l.metadata["info"], o.metadata["info"]);
    let s = random_periodic(6, 3);
    assert_eq!(
        m.compute(&s, Request::EFV).unwrap().energy,
        l.compute(&s, Request::EFV).unwrap().energy
    );
    // now the header is protected: the radius flipped 4.5 -> 6.5 ('4' ^ 0x02 = '6') is refused
    let mut b = std::fs::read(&new).unwrap();
    let text = String::from_utf8_lossy(&b).into_owned();
    let at = text.find("radius\\\":4.5").unwrap() + "radius\\\":".len();
    b[at] ^= 0x02;
    std::fs::write(&new, &b).unwrap();
    assert!(load_err(&new).contains("checksum mismatch"));
    // a corrupted file is not sealed in
    let mut b = std::fs::read(&old).unwrap();
    let n = b.len();
    b[n - 2] ^= 0x01;
    std::fs::write(&old, &b).unwrap();
    let e = mlip::file::upgrade(&old, &new).unwrap_err().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn committed_potentials_are_format_2_and_load() {
    for p in ["metals_schnet.model", "joint_schnet.model"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../potentials")
            .join(p);
        let m = Model::load(&path, tch::Kind::Double, tch::Device::Cpu).unwrap();
        assert_eq!(m.metadata["format_version"], "2", "{p}");
    }
}

#[test]
fn info_cutoff_disagreeing_with_config_is_refused() {
    // Issue 13: `info` said 7.0 while `config` said 5.0; the engine ran 5.0 and clients reported
    // 7.0. Refused on load, naming both values, with a valid checksum of either version.
    let d = tmpdir("cutoff");
    let good = d.join("good.model");
    model(BACKBONES[0], 5.0, 5)
        .save(&good, &Default::default())
        .unwrap();
    let set = |key: &'static str, value: serde_json::Value| {
        move |meta: &mut std::collections::HashMap<String, String>| {
            let mut info: serde_json::Value = serde_json::from_str(&meta["info"]).unwrap();
            info[key] = value;
            meta.insert("info".into(), info.to_string());
        }
    };
    for version in [1, 2] {
        let p = d.join(format!("cutoff7_v{version}.model"));
        rewrite(&good, &p, version, set("cutoff", serde_json::json!(7.0)));
        let e = load_err(&p);
        assert!(
            e.contains(&format!("cutoff7_v{version}.model"))
                && e.contains("info.cutoff = 7.0")
                && e.contains("config.radius = 5"),
            "{e}"
        );
    }
    let p = d.join("layers.model");
    rewrite(&good, &p, 2, set("num_layers", serde_json::json!(5)));
    let e = load_err(&p);
    assert!(
        e.contains("info.num_layers = 5") && e.contains("= 3"),
        "{e}"
    );
    let p = d.join("species.model");
    rewrite(
        &good,
        &p,
        2,
        set("atomic_numbers", serde_json::json!([29, 28, 79])),
    );
    let e = load_err(&p);
    assert!(
        e.contains("info.atomic_numbers") && e.contains("config.species"),
        "{e}"
    );
    // The same rewrite without a change loads (the helper writes valid files).
    let p = d.join("same.model");
    rewrite(&good, &p, 2, |_| {});
    Model::load(&p, tch::Kind::Double, tch::Device::Cpu).unwrap();
    std::fs::remove_dir_all(d).ok();
}
