//! The distributed in-memory store (`"Training": {"ddstore": true}`): under real `mpirun -np 2`
//! the ranks fetch each other's graphs with one-sided MPI, and the run takes the same batches
//! (the union of the ranks' fetched ids is each step's global batch of the single-rank run) and
//! the same losses as one rank without the store; with one rank the store is bit-identical to
//! the default data path. Bytes fetched remotely per epoch are reported in ddstore.csv.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn run(args: &[&str], mpi: Option<&Path>, trace: &Path) {
    let mut c = match mpi {
        Some(m) => {
            let mut c = Command::new(m);
            c.args(["-np", "2"]).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    std::fs::create_dir_all(trace).unwrap();
    let o = c
        .args(args)
        .env("HYDRAGNN_NUM_THREADS", "1")
        .env("HYDRAGNN_DDSTORE_TRACE", trace)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// steps.csv without the loss column (step, epoch, dataset, graphs, atoms, lr).
fn batches(out: &Path) -> Vec<String> {
    lines(&out.join("steps.csv"))
        .iter()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(5);
            f.join(",")
        })
        .collect()
}

fn sorted_ids(l: &str) -> Vec<usize> {
    let mut v: Vec<usize> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn two_ranks_with_ddstore_equal_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let m = metals(dir.path(), 11, 5);
    let mol = molecules(dir.path(), 7, 3);
    let mk = |store: bool, name: &str| {
        let c = config(
            &[("metals", &m, Some(&["energy"])), ("molecules", &mol, None)],
            &[("energy", "graph"), ("gap", "graph")],
            serde_json::json!({"num_epoch": 2, "batch_size": 3, "precision": "fp64",
                               "clip_grad_norm": 10.0, "ddstore": store}),
        );
        write_config(dir.path(), name, &c)
    };
    let (plain, store) = (mk(false, "plain.json"), mk(true, "store.json"));
    let d = |s: &str| dir.path().join(s);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // Reference: one rank, the default data path (no store, no trace written).
    run(
        &["train", &s(&plain), "--out", &s(&d("ref"))],
        None,
        &d("t_ref"),
    );
    assert!(lines(&d("t_ref/trace.0.txt")).is_empty());
    // One rank with the store: everything local, bit-identical losses.
    run(
        &["train", &s(&store), "--out", &s(&d("one"))],
        None,
        &d("t_one"),
    );
    assert_eq!(lines(&d("ref/steps.csv")), lines(&d("one/steps.csv")));
    let one = lines(&d("one/ddstore.csv"));
    assert_eq!(one.len(), 1 + 2 * 2, "{one:?}");
    for l in &one[1..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[3], "0", "one rank fetches nothing remotely: {l}");
    }

    let Some(mpirun) = mpirun() else {
        eprintln!("skipped the 2-rank half: no mpirun in the project's venv");
        return;
    };
    run(
        &["train", &s(&store), "--out", &s(&d("two"))],
        Some(&mpirun),
        &d("t_two"),
    );
    // Same batches: steps.csv agrees except for rounding in the loss ...
    assert_eq!(batches(&d("ref")), batches(&d("two")));
    let (a, b) = (step_losses(&d("ref")), step_losses(&d("two")));
    assert_eq!(a.len(), 2 * (4 + 3));
    for ((st, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-9 * x.abs(),
            "step {st}: np1 {x} vs np2+ddstore {y}"
        );
    }
    // ... and every step the two ranks fetched disjoint halves of the single-rank batch.
    let (r, t0, t1) = (
        lines(&d("t_one/trace.0.txt")),
        lines(&d("t_two/trace.0.txt")),
        lines(&d("t_two/trace.1.txt")),
    );
    assert_eq!(r.len(), 14);
    assert_eq!((t0.len(), t1.len()), (14, 14));
    for k in 0..r.len() {
        let union = sorted_ids(&format!("{} {}", t0[k], t1[k]));
        assert_eq!(union, sorted_ids(&r[k]), "step {}", k + 1);
        let (n0, n1) = (sorted_ids(&t0[k]).len(), sorted_ids(&t1[k]).len());
        assert!(n0.abs_diff(n1) <= 1, "step {}: {n0} vs {n1} graphs", k + 1);
    }
    // Remote bytes reported per epoch and dataset; half the records stored per rank.
    let two = lines(&d("two/ddstore.csv"));
    assert_eq!(two.len(), 1 + 2 * 2, "{two:?}");
    for (l1, l2) in one[1..].iter().zip(&two[1..]) {
        let (f1, f2): (Vec<&str>, Vec<&str>) = (l1.split(',').collect(), l2.split(',').collect());
        assert_eq!(f2[2], "2");
        let remote: f64 = f2[3].parse().unwrap();
        let graphs: f64 = f2[4].parse::<f64>().unwrap() + f2[5].parse::<f64>().unwrap();
        assert!(remote > 0.0, "{l2}");
        assert_eq!(graphs, f1[5].parse::<f64>().unwrap(), "{l1} / {l2}");
        let (s1, s2): (f64, f64) = (f1[7].parse().unwrap(), f2[7].parse().unwrap());
        assert!(
            (s2 - s1 / 2.0).abs() < 0.2 * s1,
            "stored per rank {s2} vs {s1} on one rank"
        );
    }
}
