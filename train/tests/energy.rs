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

/// A fixture package counter that a thread advances at `watts` (written atomically, as the
/// kernel's counter reads whole), until the returned flag is set.
fn running_counter(
    dir: &Path,
    watts: f64,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let pc = dir.join("intel-rapl:0");
    std::fs::create_dir_all(&pc).unwrap();
    std::fs::write(pc.join("max_energy_range_uj"), "9000000000000000000\n").unwrap();
    std::fs::write(pc.join("name"), "package-0\n").unwrap();
    std::fs::write(pc.join("energy_uj"), "0\n").unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let t0 = std::time::Instant::now();
    let h = std::thread::spawn(move || {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let uj = (t0.elapsed().as_secs_f64() * watts * 1e6) as u64;
            let tmp = pc.join("energy_uj.tmp");
            std::fs::write(&tmp, format!("{uj}\n")).unwrap();
            std::fs::rename(&tmp, pc.join("energy_uj")).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    (done, h)
}

#[test]
fn energy_aware_stop_ends_a_run_whose_loss_per_joule_has_flattened() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 6, 3);
    let mut c = config(
        &[("metals", &m, Some(&["energy"]))],
        &[("energy", "graph")],
        serde_json::json!({
            "num_epoch": 12, "batch_size": 3,
            "Optimizer": {"type": "AdamW", "learning_rate": 1e-3},
            "EnergyStopping": {"window": 3, "min_gain_per_kj": 1.0}
        }),
    );
    c["Verbosity"]["level"] = serde_json::json!(1);
    let cfg = write_config(dir.path(), "c.json", &c);
    let epochs = |out: &Path| -> usize {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        m["epochs"].as_array().unwrap().len()
    };
    // A node drawing 100 kW: no gain (at most 100%) is worth the kilojoules of 3 epochs; the run
    // stops after window + 1 epochs, saying why.
    let (done, h) = running_counter(&dir.path().join("hot"), 1e5);
    let out = dir.path().join("hot_run");
    let err = train(&cfg, &out, &dir.path().join("hot"));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    assert!(
        err.contains("energy_stopping: the best validation loss fell"),
        "{err}"
    );
    assert_eq!(epochs(&out), 4, "{err}");
    // A node drawing 1 mW: any gain is worth its energy; only a window with no gain at all
    // (a plateau) can stop the run.
    let (done, h) = running_counter(&dir.path().join("cool"), 1e-3);
    let out = dir.path().join("cool_run");
    let err = train(&cfg, &out, &dir.path().join("cool"));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    let n = epochs(&out);
    assert!(n > 4, "{err}");
    assert!(
        n == 12 || err.contains("energy_stopping: the best validation loss fell 0.000%"),
        "{err}"
    );
    // Without counters: said once, and the run trains to the end.
    let out = dir.path().join("none_run");
    let err = train(&cfg, &out, &dir.path().join("absent"));
    assert_eq!(err.matches("energy-aware stop is off").count(), 1, "{err}");
    assert_eq!(epochs(&out), 12);
}
