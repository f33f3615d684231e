//! Energy per epoch (RAPL): a training run without readable counters says so once and succeeds,
//! writing no energy.csv; with counters (a fixture powercap directory) it writes one row per epoch.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn train(cfg: &Path, out: &Path, powercap: &Path) -> String {
    let o = Command::new(bin())
        .args([
            "train",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("HYDRAGNN_NO_MPI", "1")
        .env("HYDRAGNN_NUM_THREADS", "1")
        .env("HYDRAGNN_POWERCAP_DIR", powercap)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

#[test]
fn energy_per_epoch_with_and_without_counters() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 6, 3);
    let mut c = config(
        &[("metals", &m, Some(&["energy"]))],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 2, "batch_size": 3}),
    );
    c["Verbosity"]["level"] = serde_json::json!(1);
    let cfg = write_config(dir.path(), "c.json", &c);
    let err = train(
        &cfg,
        &dir.path().join("none"),
        &dir.path().join("no_powercap"),
    );
    assert_eq!(err.matches("no readable RAPL counters").count(), 1, "{err}");
    assert!(!dir.path().join("none/energy.csv").exists());

    let pc = dir.path().join("powercap/intel-rapl:0");
    std::fs::create_dir_all(&pc).unwrap();
    std::fs::write(pc.join("energy_uj"), "123456789\n").unwrap();
    std::fs::write(pc.join("max_energy_range_uj"), "262143328850\n").unwrap();
    std::fs::write(pc.join("name"), "package-0\n").unwrap();
    let err = train(&cfg, &dir.path().join("rapl"), &dir.path().join("powercap"));
    assert!(!err.contains("no readable RAPL counters"), "{err}");
    let text = std::fs::read_to_string(dir.path().join("rapl/energy.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# RAPL zones: package-0");
    assert_eq!(lines[1], "epoch,joules,total_joules,seconds,watts");
    assert_eq!(lines.len(), 4, "{text}");
    // The fixture counter does not move: 0 J per epoch.
    assert!(
        lines[2].starts_with("1,0.000,0.000,") && lines[3].starts_with("2,0.000,0.000,"),
        "{text}"
    );
}
