//! kill -9 in the middle of training (checkpoints every step) never leaves a corrupt checkpoint,
//! and `--resume` then gives exactly the losses and metrics of an uninterrupted run.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn train_cmd(cfg: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(bin());
    c.arg("train")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .env("HYDRAGNN_NO_MPI", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

fn lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("steps.csv"))
        .map_or(0, |t| t.lines().count().saturating_sub(1))
}

fn metrics_without_time(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let col = text
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "time_s")
        .unwrap();
    text.lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != col)
                .map(|(_, x)| x)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[test]
fn resume_after_kill_9_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = metals(dir.path(), 20, 4);
    let c = config(
        &[("metals", &data, None)],
        &[("energy", "graph")],
        serde_json::json!({"num_epoch": 6, "batch_size": 2, "checkpoint_every": 1}),
    );
    let cfg = write_config(dir.path(), "c.json", &c);
    let total = 60;

    let full = dir.path().join("full");
    let o = train_cmd(&cfg, &full, false).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = step_losses(&full);
    assert_eq!(reference.len(), total);

    // Kill twice, at different points, then let it finish.
    let run = dir.path().join("killed");
    let mut resume = false;
    for kill_after in [12, 37] {
        let mut child = train_cmd(&cfg, &run, resume).spawn().unwrap();
        let t0 = Instant::now();
        while lines(&run) < kill_after && t0.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the run finished before it could be killed"
        );
        // Whatever the moment, the checkpoint reads back and is consistent.
        let ck = hydragnn_train::checkpoint::load(&run.join("checkpoint.st"))
            .expect("checkpoint readable after kill -9");
        assert!(
            ck.state.step <= lines(&run),
            "checkpoint step {} ahead of the log {}",
            ck.state.step,
            lines(&run)
        );
        resume = true;
    }
    let o = train_cmd(&cfg, &run, true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        step_losses(&run),
        reference,
        "resumed losses differ from the uninterrupted run"
    );
    assert_eq!(metrics_without_time(&run), metrics_without_time(&full));
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(
        leftovers.len() <= 2,
        "temporary files left behind: {leftovers:?}"
    );
}
