//! The `hydragnn` binary: clear errors naming file, line or key, with nothing written half-way
//! (malformed extxyz, unknown config key, a dataset lacking a requested property), distinct exit
//! codes, and `hydragnn eval` printing the metrics the trainer reported.

mod common;

use std::process::Command;

use common::*;
use hydragnn_train::data::write_extxyz;

fn hydragnn(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .env("HYDRAGNN_NO_MPI", "1")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn malformed_extxyz_names_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = "2\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"T T T\"\nCu 0 0 0 0.1 0 0\nCu 1.5 1.5 1.5 -0.1 0 0\n";
    let cases = [
        // (name, text, line the error must name)
        (
            "nan.xyz",
            good.to_string() + &good.replace("1.5 1.5 1.5", "1.5 nan 1.5"),
            8,
        ),
        (
            "columns.xyz",
            good.to_string() + &good.replace("-0.1 0 0", "-0.1 0"),
            8,
        ),
        (
            "noforces.xyz",
            good.replace(":forces:R:3", "")
                .replace(" 0.1 0 0", "")
                .replace(" -0.1 0 0", ""),
            2,
        ),
    ];
    for (name, text, line) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let out = dir.path().join(format!("{name}.bp"));
        let (code, _, err) = hydragnn(&[
            "ingest",
            "-o",
            out.to_str().unwrap(),
            "-n",
            "x",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code, 4, "{name}: {err}");
        assert!(
            err.contains(&format!("{name}:{line}")),
            "{name}: the error does not name line {line}: {err}"
        );
        assert!(!out.exists(), "{name}: a dataset was written");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".bp"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: left {leftovers:?}");
    }
}

#[test]
fn config_errors_name_the_key_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let out = dir.path().join("out");

    // Unknown key.
    let mut c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({}),
    );
    c["NeuralNetwork"]["Architecture"]["hiden_dim"] = serde_json::json!(8);
    let cp = write_config(dir.path(), "typo.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("typo.json")
            && err.contains("NeuralNetwork.Architecture")
            && err.contains("hiden_dim"),
        "{err}"
    );
    assert!(!out.exists());

    // A property the dataset does not have.
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({}),
    );
    let cp = write_config(dir.path(), "gap.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("Variables_of_interest.output_names[1]")
            && err.contains("'gap'")
            && err.contains("metals.bp"),
        "{err}"
    );
    assert!(!out.exists());

    // A bad value.
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"batch_size": 0}),
    );
    let cp = write_config(dir.path(), "zero.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("NeuralNetwork.Training.batch_size"), "{err}");
    assert!(!out.exists());
}

#[test]
fn eval_prints_the_trainers_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = molecules(dir.path(), 8, 4);
    let c = config(
        &[("molecules", &data, None)],
        &[("energy", "graph"), ("gap", "graph")],
        serde_json::json!({"num_epoch": 2}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let (code, stdout, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let best = &m["best_model_metrics"]["valset"]["molecules"];
    let model = out.join("best.model");
    let (code, stdout, err) = hydragnn(&[
        "eval",
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        "--split",
        "valset",
        "--batch-size",
        "4",
    ]);
    assert_eq!(code, 0, "{err}");
    let value = |key: &str| -> f64 {
        let tok = stdout
            .split_whitespace()
            .find(|t| t.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"));
        tok.split('=').nth(1).unwrap().parse().unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-8);
    assert!(
        close(value("force_mae"), best["forces"]["mae"].as_f64().unwrap()),
        "{stdout} vs {best}"
    );
    assert!(
        close(
            value("gap_mae"),
            best["props"]["gap"]["mae"].as_f64().unwrap()
        ),
        "{stdout} vs {best}"
    );
    assert!(
        close(
            value("energy_mae_per_atom"),
            best["energy_per_atom"]["mae"].as_f64().unwrap()
        ),
        "{stdout}"
    );

    // The same frames as extxyz.
    let xyz = dir.path().join("molecules_val.xyz");
    let (code, stdout2, err) = hydragnn(&["eval", model.to_str().unwrap(), xyz.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout2.contains("force_mae="), "{stdout2}");

    // A corrupted model file is a clear error.
    let bad = dir.path().join("bad.model");
    std::fs::write(&bad, b"not a model").unwrap();
    let (code, _, err) = hydragnn(&["eval", bad.to_str().unwrap(), data.to_str().unwrap()]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("bad.model"), "{err}");
}

/// The committed potential (Cu, Al, Ni; trained by an older trainer, so its file records no loss).
fn committed_model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../potentials/metals_schnet.model")
}

#[test]
fn eval_of_an_empty_file_fails_and_batch_size_0_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model();
    let empty = dir.path().join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    let (code, out, err) = hydragnn(&["eval", model.to_str().unwrap(), empty.to_str().unwrap()]);
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("empty.xyz") && err.contains("no structures"),
        "{err}"
    );

    let xyz = dir.path().join("cu.xyz");
    write_extxyz(&xyz, &metal_frames(2, 3)).unwrap();
    for cmd in [
        vec!["eval", model.to_str().unwrap(), xyz.to_str().unwrap()],
        vec![
            "screen",
            model.to_str().unwrap(),
            xyz.to_str().unwrap(),
            "-o",
            "x",
        ],
    ] {
        let mut args = cmd.clone();
        args.extend(["--batch-size", "0"]);
        let (code, _, err) = hydragnn(&args);
        if cmd[0] == "screen" && err.contains("unrecognized subcommand") {
            continue; // `hydragnn screen` is not in this build
        }
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(err.contains("--batch-size"), "{err}");
    }
}

#[test]
fn ingest_accepts_fractions_with_commas_as_the_docs_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("m.xyz");
    write_extxyz(&xyz, &metal_frames(8, 5)).unwrap();
    let mut splits = Vec::new();
    for (i, form) in [
        vec!["--fractions", "0.5,0.25,0.25", xyz.to_str().unwrap()],
        vec![xyz.to_str().unwrap(), "--fractions", "0.5", "0.25", "0.25"],
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("m{i}.bp"));
        let mut args = vec!["ingest", "-o", out.to_str().unwrap(), "-n", "m"];
        args.extend(form.iter().copied());
        let (code, stdout, err) = hydragnn(&args);
        assert_eq!(code, 0, "{form:?}: {err}");
        let counts: Vec<String> = stdout
            .lines()
            .filter(|l| l.contains(" graphs "))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(counts, ["trainset 4", "valset 2", "testset 2"], "{stdout}");
        splits.push(counts);
    }
    let out = dir.path().join("bad.bp");
    let (code, _, err) = hydragnn(&[
        "ingest",
        "-o",
        out.to_str().unwrap(),
        "-n",
        "m",
        "--fractions",
        "0.5,0.5",
        xyz.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--fractions") && err.contains("three"),
        "{err}"
    );
}

#[test]
fn eval_on_extxyz_with_stress_in_some_frames_scores_the_frames_that_have_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = metal_frames(3, 9);
    for (i, f) in frames.iter_mut().enumerate() {
        if i != 1 {
            f.stress = Some([0.01, 0.0, 0.0, 0.0, 0.02, 0.0, 0.0, 0.0, -0.01]);
        }
    }
    let xyz = dir.path().join("partial.xyz");
    write_extxyz(&xyz, &frames).unwrap();
    let model = committed_model();
    let (code, out, err) = hydragnn(&["eval", model.to_str().unwrap(), xyz.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("graphs=3") && out.contains("counted_stress=2") && out.contains("stress_mae="),
        "{out}"
    );
}

#[test]
fn eval_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("cu.xyz");
    write_extxyz(&xyz, &metal_frames(2, 3)).unwrap();
    // The reader is gone before the first line is written (`hydragnn eval ... | head -0`).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(bin())
        .args([
            "eval",
            committed_model().to_str().unwrap(),
            xyz.to_str().unwrap(),
        ])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn eval_uses_the_loss_weights_of_the_training_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 6, 3);
    let mut c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1, "loss_function_type": "mae"}),
    );
    c["NeuralNetwork"]["Architecture"]["force_weight"] = serde_json::json!(3.0);
    c["NeuralNetwork"]["Architecture"]["energy_peratom_weight"] = serde_json::json!(2.0);
    let cp = write_config(dir.path(), "c.json", &c);
    let out = dir.path().join("out");
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let trained_loss = m["best_model_metrics"]["valset"]["metals"]["loss"]
        .as_f64()
        .unwrap();
    let json = dir.path().join("eval.json");
    let model = out.join("best.model");
    let (code, stdout, err) = hydragnn(&[
        "eval",
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        "--split",
        "valset",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("loss: mae with ")
            && stdout.contains(": the training run's loss type and weights")
            && stdout.contains("energy/atom 2")
            && stdout.contains("forces 3"),
        "{stdout}"
    );
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let loss = e["metrics"]["valset"]["loss"].as_f64().unwrap();
    assert!(
        (loss - trained_loss).abs() <= 1e-5 * trained_loss.abs(),
        "eval loss {loss} vs the trainer's {trained_loss}"
    );

    // A model file that does not record its loss: eval says which weights it uses.
    let xyz = dir.path().join("metals_val.xyz");
    let (code, stdout, err) = hydragnn(&[
        "eval",
        committed_model().to_str().unwrap(),
        xyz.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("HydraGNN's defaults"), "{stdout}");
}

#[test]
fn exit_codes_match_the_docs_for_an_unknown_element_and_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = metal_frames(1, 2);
    frames[0].numbers[3] = 78; // Pt: not in the model
    let xyz = dir.path().join("pt.xyz");
    write_extxyz(&xyz, &frames).unwrap();
    let model = committed_model();
    let (code, _, err) = hydragnn(&["eval", model.to_str().unwrap(), xyz.to_str().unwrap()]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("atom 3") && err.contains("78 (Pt)"), "{err}");

    // A full disk (/dev/full answers every write with ENOSPC): code 8, I/O.
    if std::path::Path::new("/dev/full").exists() {
        let ok = dir.path().join("ok.xyz");
        write_extxyz(&ok, &metal_frames(1, 2)).unwrap();
        let (code, _, err) = hydragnn(&[
            "eval",
            model.to_str().unwrap(),
            ok.to_str().unwrap(),
            "--json",
            "/dev/full",
        ]);
        assert_eq!(code, 8, "{err}");
        assert!(
            err.contains("/dev/full") && err.contains("No space left"),
            "{err}"
        );
    }
    // A model file that does not exist: I/O too.
    let (code, _, err) = hydragnn(&["eval", "nope.model", xyz.to_str().unwrap()]);
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("nope.model"), "{err}");
}

#[test]
fn stale_temporaries_of_a_killed_run_are_removed_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    let out = dir.path().join("out");
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // What kill -9 or a full disk leaves mid-write, and files that are not ours.
    let stale = [
        ".checkpoint.st.tmp99999",
        ".metrics.csv.tmp123",
        ".metrics.json.tmp7",
        "best.tmp4242",
        "parity_metals_energy.tmp.png",
    ];
    let foreign = [
        "notes.tmp1",
        ".hidden.tmp12",
        ".checkpoint.st.tmpx",
        "mine.txt",
    ];
    for n in stale.iter().chain(&foreign) {
        std::fs::write(out.join(n), vec![0u8; 4096]).unwrap();
    }
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 2}),
    );
    let cp = write_config(dir.path(), "c.json", &c);
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(code, 0, "{err}");
    for n in stale {
        assert!(!out.join(n).exists(), "{n} is still there");
    }
    for n in foreign {
        assert!(out.join(n).exists(), "{n} was removed");
    }
}

#[test]
fn new_models_get_zbl_and_the_shortest_training_distance() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 4, 2);
    // The shortest pair of the trainset, from its frames (the same seed as `metals`).
    let frames = metal_frames(6, 7);
    let mut d_min = f64::INFINITY;
    for f in &frames[..4] {
        let s =
            mlip::Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
        let nl = mlip::neighbors::neighbor_list(&s, 3.5).unwrap();
        for v in nl.edge_vectors(&s) {
            d_min = d_min.min((v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt());
        }
    }
    for (name, zbl) in [
        ("default", None),
        ("off", Some(serde_json::json!(false))),
        (
            "radii",
            Some(serde_json::json!({"inner": 0.7, "outer": 1.4})),
        ),
    ] {
        let mut c = config(
            &[("metals", &data, None)],
            &[("energy", "graph")],
            serde_json::json!({"num_epoch": 1}),
        );
        if let Some(z) = zbl {
            c["NeuralNetwork"]["Architecture"]["zbl"] = z;
        }
        let cp = write_config(dir.path(), &format!("{name}.json"), &c);
        let out = dir.path().join(name);
        let (code, _, err) = hydragnn(&[
            "train",
            cp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        let m =
            mlip::Model::load(out.join("best.model"), tch::Kind::Double, tch::Device::Cpu).unwrap();
        let mc = m.config();
        let d = mc.min_training_distance.expect("recorded");
        assert!((d - d_min).abs() < 2e-6, "{name}: {d} vs {d_min}");
        match name {
            "default" => {
                let z = mc.zbl.expect("on by default");
                assert!((z.outer - 0.9 * d).abs() < 1e-12 && (z.inner - 0.45 * d).abs() < 1e-12);
            }
            "off" => assert_eq!(mc.zbl, None),
            _ => assert_eq!(
                mc.zbl,
                Some(mlip::zbl::ZblConfig {
                    inner: 0.7,
                    outer: 1.4
                })
            ),
        }
    }
    // Radii the model cannot use are a config error naming the key.
    let mut c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 1}),
    );
    c["NeuralNetwork"]["Architecture"]["zbl"] = serde_json::json!({"inner": 2.0, "outer": 1.0});
    let cp = write_config(dir.path(), "bad.json", &c);
    let out = dir.path().join("bad");
    let (code, _, err) = hydragnn(&[
        "train",
        cp.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("NeuralNetwork.Architecture.zbl"), "{err}");
}

#[test]
fn device_flag_errors_name_the_device_and_cpu_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = committed_model();
    let xyz = dir.path().join("cu.xyz");
    write_extxyz(&xyz, &metal_frames(2, 3)).unwrap();
    let m = model.to_str().unwrap();
    let x = xyz.to_str().unwrap();
    // An unknown device is a usage error naming it and the choices.
    let (code, _, err) = hydragnn(&["eval", m, x, "--device", "tpu"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tpu") && err.contains("auto, cpu, cuda"),
        "{err}"
    );
    // The CPU always works, and gives the same metrics as the default (auto) here.
    let (code, cpu, err) = hydragnn(&["eval", m, x, "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");
    if !mlip::device::cuda_available() {
        let (code, auto, err) = hydragnn(&["eval", m, x]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(auto, cpu);
        // Asking for a GPU where there is none says why, and does not fall back silently.
        let (code, _, err) = hydragnn(&["eval", m, x, "--device", "cuda"]);
        assert_ne!(code, 0);
        assert!(err.contains("no GPU is usable"), "{err}");
        let cfg = dir.path().join("c.json");
        std::fs::write(&cfg, "{}").unwrap();
        let (code, _, err) = hydragnn(&[
            "train",
            cfg.to_str().unwrap(),
            "--device",
            "cuda",
            "--out",
            dir.path().join("o").to_str().unwrap(),
        ]);
        assert_ne!(code, 0);
        assert!(
            err.contains("no GPU is usable") || err.contains("c.json"),
            "{err}"
        );
    }
    // HYDRAGNN_DEVICE is read when the flag is absent; a bad value names the variable.
    let o = Command::new(bin())
        .args(["eval", m, x])
        .env("HYDRAGNN_NO_MPI", "1")
        .env("HYDRAGNN_DEVICE", "tpu")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("HYDRAGNN_DEVICE") && err.contains("tpu"),
        "{err}"
    );
}
