//! The Slurm launch scripts of examples/hpc/ (Perlmutter, Frontier) cannot run here (no Slurm,
//! no GPU); this checks what can be checked on one machine: each script is valid bash, carries
//! the site's GPU options, sources the project's environment and sets the thread count; its
//! `hydragnn train` line uses only flags that the real CLI accepts (`hydragnn train --help`);
//! the config it names is a valid trainer config with the distributed store on; and that config,
//! pointed at the committed metals slice, trains for a few steps with the script's flags under
//! `mpirun -np 2` (the store's one-sided fetches included), when the venv has mpirun.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hydragnn_train::data::{ingest, IngestOptions, SplitSpec};
use hydragnn_train::TrainConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const SCRIPTS: [&str; 2] = ["perlmutter_train.slurm", "frontier_train.slurm"];

/// The script's lines with backslash continuations joined.
fn joined_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// The arguments after `hydragnn train` on the script's launch line.
fn train_args(text: &str) -> Vec<String> {
    let lines: Vec<String> = joined_lines(text)
        .into_iter()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("hydragnn train"))
        .collect();
    assert_eq!(lines.len(), 1, "one `hydragnn train` line: {lines:?}");
    let tail = lines[0].split("hydragnn train").nth(1).unwrap();
    tail.split_whitespace().map(|s| s.to_string()).collect()
}

/// The value assigned to `NAME=` in the script.
fn assignment(text: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in the script"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn scripts_are_bash_with_site_options() {
    for s in SCRIPTS {
        let path = root().join("examples/hpc").join(s);
        let text = std::fs::read_to_string(&path).unwrap();
        let o = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            o.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(text.starts_with("#!/bin/bash"), "{s}: shebang");
        for needle in [
            ". scripts/env.sh",
            "export HYDRAGNN_NUM_THREADS=",
            "--gpus-per-task 1",
            "srun ",
        ] {
            assert!(text.contains(needle), "{s} lacks `{needle}`");
        }
        let needles: &[&str] = if s.starts_with("perlmutter") {
            &["#SBATCH -C gpu", "#SBATCH --gpus-per-node 4"]
        } else {
            &[
                "#SBATCH -p batch",
                "#SBATCH --gpus-per-node 8",
                "--gpu-bind closest",
                "export MPICH_GPU_SUPPORT_ENABLED=",
            ]
        };
        for needle in needles {
            assert!(text.contains(needle), "{s} lacks `{needle}`");
        }
    }
}

#[test]
fn train_line_matches_the_cli_and_the_config_is_valid() {
    let help = Command::new(bin())
        .args(["train", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for s in SCRIPTS {
        let text = std::fs::read_to_string(root().join("examples/hpc").join(s)).unwrap();
        let args = train_args(&text);
        // The config (first positional argument) is the script's $CONFIG.
        assert_eq!(args[0], "\"$CONFIG\"", "{s}: the config argument");
        for a in args.iter().filter(|a| a.starts_with('-')) {
            assert!(
                help.contains(&format!("{a} ")) || help.contains(&format!("{a}\n")),
                "{s}: `hydragnn train` has no flag {a}:\n{help}"
            );
        }
        let config = root().join(assignment(&text, "CONFIG"));
        let cfg = TrainConfig::load(&config).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(cfg.training().ddstore, "{s}: the config turns on ddstore");
    }
}

#[test]
fn the_scripts_config_trains_under_mpirun_with_the_scripts_flags() {
    let Some(mpirun) = mpirun() else {
        eprintln!("skipped: no mpirun in the venv");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("metals.bp");
    ingest(
        &[(root().join("train/data/metals.xyz"), SplitSpec::Random)],
        &data,
        "metals",
        &IngestOptions::default(),
    )
    .unwrap();
    let text = std::fs::read_to_string(root().join("examples/hpc/perlmutter_train.slurm")).unwrap();
    let config = root().join(assignment(&text, "CONFIG"));
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    c["Dataset"]["datasets"][0]["path"] = serde_json::json!(data);
    c["NeuralNetwork"]["Training"]["max_steps"] = serde_json::json!(3);
    c["Verbosity"]["level"] = serde_json::json!(0);
    let cfg = write_config(dir.path(), "hpc.json", &c);
    let out = dir.path().join("out");
    // The script's arguments with $CONFIG and $OUT substituted.
    let args: Vec<String> = train_args(&text)
        .iter()
        .map(|a| match a.as_str() {
            "\"$CONFIG\"" => cfg.to_string_lossy().into_owned(),
            "\"$OUT\"" => out.to_string_lossy().into_owned(),
            // The script's GPU: this machine's CPU stands in.
            "\"$DEVICE\"" => "cpu".to_string(),
            other => other.to_string(),
        })
        .collect();
    let o = Command::new(mpirun)
        .args(["-np", "2"])
        .arg(bin())
        .arg("train")
        .args(&args)
        .env("HYDRAGNN_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(step_losses(&out).len(), 3, "3 steps in steps.csv");
}
