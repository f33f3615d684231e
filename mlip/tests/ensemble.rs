//! Ensembles: the file round trip, mean and deviations equal to K separate evaluations, and a
//! clear error for members that do not fit together and for corrupted files.

mod common;
use common::*;
use mlip::ensemble::{self, Drive, Ensemble};
use mlip::model::config::MpnnType;
use mlip::{Model, Request};

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hgnn-ens-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_members(d: &std::path::Path, specs: &[(MpnnType, f64, i64)]) -> Vec<std::path::PathBuf> {
    specs
        .iter()
        .enumerate()
        .map(|(k, &(mpnn, rc, seed))| {
            let p = d.join(format!("m{k}.model"));
            model(mpnn, rc, seed).save(&p, &Default::default()).unwrap();
            p
        })
        .collect()
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-12 * scale.max(1.0)
}

#[test]
fn mean_and_deviations_equal_separate_evaluations() {
    let d = tmpdir("eq");
    // members of different architectures: only species, cutoff and layers must agree
    let files = write_members(
        &d,
        &[
            (MpnnType::SchNet, 4.5, 1),
            (MpnnType::SchNet, 4.5, 2),
            (MpnnType::PaiNN, 4.5, 3),
        ],
    );
    let ens_path = d.join("ens.model");
    ensemble::build(&files, &ens_path).unwrap();
    let ens = Ensemble::load(&ens_path, tch::Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(ens.len(), 3);
    let s = random_periodic(9, 11);
    let n = s.len();
    let r = ens.compute(&s, Request::ALL).unwrap();
    let sep: Vec<mlip::Results> = files
        .iter()
        .map(|p| {
            Model::load(p, tch::Kind::Double, tch::Device::Cpu)
                .unwrap()
                .compute(&s, Request::ALL)
                .unwrap()
        })
        .collect();
    let k = sep.len() as f64;
    let fscale = sep
        .iter()
        .flat_map(|r| r.forces.iter().flatten())
        .fold(0.0f64, |a, b| a.max(b.abs()));
    let e_mean = sep.iter().map(|r| r.energy).sum::<f64>() / k;
    assert!(close(r.mean.energy, e_mean, e_mean.abs()));
    assert!(close(
        r.driving(Drive::First).energy,
        sep[0].energy,
        e_mean.abs()
    ));
    let e_std = (sep.iter().map(|r| (r.energy - e_mean).powi(2)).sum::<f64>() / k).sqrt();
    assert!(e_std > 1e-3, "members should disagree, std {e_std}");
    assert!(close(r.deviation.energy_std, e_std, e_mean.abs()));
    let mut devs = Vec::new();
    for i in 0..n {
        let m: [f64; 3] = [0, 1, 2].map(|c| sep.iter().map(|r| r.forces[i][c]).sum::<f64>() / k);
        for (a, b) in r.mean.forces[i].iter().zip(&m) {
            assert!(close(*a, *b, fscale));
        }
        let dev = (sep
            .iter()
            .map(|r| (0..3).map(|c| (r.forces[i][c] - m[c]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / k)
            .sqrt();
        assert!(close(r.deviation.force[i], dev, fscale));
        devs.push(dev);
    }
    let max = devs.iter().copied().fold(0.0, f64::max);
    let min = devs.iter().copied().fold(f64::MAX, f64::min);
    let avg = devs.iter().sum::<f64>() / n as f64;
    assert!(close(r.deviation.max_f, max, fscale));
    assert!(close(r.deviation.min_f, min, fscale));
    assert!(close(r.deviation.avg_f, avg, fscale));
    let mut vs = Vec::new();
    for a in 0..3 {
        for b in 0..3 {
            let m = sep.iter().map(|r| r.virial[a][b]).sum::<f64>() / k;
            assert!(close(r.mean.virial[a][b], m, m.abs()));
            let sd = (sep
                .iter()
                .map(|r| (r.virial[a][b] - m).powi(2))
                .sum::<f64>()
                / k)
                .sqrt();
            vs.push(sd / n as f64);
        }
    }
    assert!(close(
        r.deviation.max_v,
        vs.iter().copied().fold(0.0, f64::max),
        1.0
    ));
    assert!(close(
        r.deviation.min_v,
        vs.iter().copied().fold(f64::MAX, f64::min),
        1.0
    ));
    assert!(close(r.deviation.avg_v, vs.iter().sum::<f64>() / 9.0, 1.0));
    for (i, e) in r.mean.energies.iter().enumerate() {
        let m = sep.iter().map(|r| r.energies[i]).sum::<f64>() / k;
        assert!(close(*e, m, m.abs()));
    }
    // the members are the files, bit for bit
    for (a, b) in r.members.iter().zip(&sep) {
        assert_eq!(a.energy, b.energy);
        assert_eq!(a.forces, b.forces);
    }
    // a batch gives the same as one by one
    let s2 = random_molecule(6, 4);
    let b = ens
        .compute_batch(&[s.clone(), s2.clone()], Request::EFV)
        .unwrap();
    let one = ens.compute(&s2, Request::EFV).unwrap();
    assert!(close(b[1].deviation.max_f, one.deviation.max_f, 1.0));
    assert!(close(b[0].deviation.energy_std, e_std, e_mean.abs()));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn plain_model_file_is_an_ensemble_of_one() {
    let d = tmpdir("one");
    let files = write_members(&d, &[(MpnnType::SchNet, 4.0, 7)]);
    let ens = Ensemble::load(&files[0], tch::Kind::Double, tch::Device::Cpu).unwrap();
    assert_eq!(ens.len(), 1);
    let r = ens.compute(&random_periodic(5, 2), Request::EFV).unwrap();
    assert_eq!(r.deviation.energy_std, 0.0);
    assert_eq!(r.deviation.max_f, 0.0);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn mismatched_members_and_bad_files_are_refused_by_name() {
    let d = tmpdir("bad");
    let files = write_members(
        &d,
        &[(MpnnType::SchNet, 4.0, 1), (MpnnType::SchNet, 5.0, 2)],
    );
    let out = d.join("ens.model");
    let e = ensemble::build(&files, &out).unwrap_err().to_string();
    assert!(e.contains("cutoff") && e.contains("m1.model"), "{e}");
    assert!(!out.exists());
    let e = ensemble::build(&[] as &[&std::path::Path], &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one"), "{e}");

    // a good ensemble, then a flipped byte inside member 1
    let ok = write_members(
        &d,
        &[(MpnnType::SchNet, 4.0, 1), (MpnnType::SchNet, 4.0, 2)],
    );
    ensemble::build(&ok, &out).unwrap();
    let e = Model::load(&out, tch::Kind::Double, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ensemble file"), "{e}");
    let e = ensemble::build(&[&out], d.join("nested.model"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nested"), "{e}");
    let mut bytes = std::fs::read(&out).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x40;
    let bad = d.join("corrupt.model");
    std::fs::write(&bad, &bytes).unwrap();
    let e = Ensemble::load(&bad, tch::Kind::Double, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checksum mismatch") && e.contains("corrupt.model"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// The spread across a model's branches equals the deviation of its branches evaluated one by
/// one; the active branch is restored; a single-branch model is refused.
#[test]
fn branch_spread_equals_branches_evaluated_apart() {
    use mlip::model::config::{BranchConfig, HeadConfig, ModelConfig};
    let mut c = ModelConfig::small(MpnnType::SchNet, vec![28, 29], 4.5);
    let n = c.species.len();
    c.branches = (0..3)
        .map(|k| {
            BranchConfig::new(
                format!("b{k}"),
                vec![HeadConfig::energy(vec![16])],
                vec![-0.5 * k as f64; n],
            )
        })
        .collect();
    let mut m = Model::new(c, tch::Kind::Double, tch::Device::Cpu, 5).unwrap();
    m.set_branch("b1").unwrap();
    let mut s = fcc_cu(2, 3.6);
    s.numbers[3] = 28;
    s.positions[5][0] += 0.07;
    let spread = ensemble::branch_spread(&mut m, &s, Request::EFV).unwrap();
    assert_eq!(m.active_branch(), 1, "the active branch is restored");
    let mut apart = Vec::new();
    for b in ["b0", "b1", "b2"] {
        m.set_branch(b).unwrap();
        apart.push(m.compute(&s, Request::EFV).unwrap());
    }
    let want = ensemble::EnsembleResults::from_members(apart.clone(), s.len());
    assert!(spread.deviation.energy_std > 0.0);
    assert!(close(
        spread.deviation.energy_std,
        want.deviation.energy_std,
        1.0
    ));
    assert!(close(spread.deviation.max_f, want.deviation.max_f, 1.0));
    assert!(close(
        spread.mean.energy,
        want.mean.energy,
        want.mean.energy.abs()
    ));
    for (k, r) in spread.members.iter().enumerate() {
        assert!(
            close(r.energy, apart[k].energy, r.energy.abs()),
            "branch {k}"
        );
    }
    let mut single = model(MpnnType::SchNet, 4.5, 1);
    let e = ensemble::branch_spread(&mut single, &s, Request::EFV).unwrap_err();
    assert!(e.to_string().contains("several branches"), "{e}");
}
