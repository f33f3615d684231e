//! `hydragnn screen`: the same numbers as evaluating each structure alone; bad rows get an
//! error and the run goes on; 2 MPI ranks write the same output as 1; a run killed with kill -9
//! and resumed writes the same output as an uninterrupted one; generated variants.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hydragnn_train::data::{write_extxyz, Frame};
use hydragnn_train::screen::output::split_csv;
use mlip::{Model, Request, Structure};

fn joint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("potentials/joint_schnet.model")
}

fn screen_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("screen")
        .arg(joint())
        .args(args)
        .arg("--quiet")
        .env("HYDRAGNN_NO_MPI", "1")
        .env("HYDRAGNN_NUM_THREADS", "1");
    c
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The table as (header, rows of fields).
fn table(csv: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap());
    (header, lines.map(split_csv).collect())
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-10 * b.abs().max(1e-3),
        "{what}: screen {a} vs alone {b}"
    );
}

/// The model as screening loads it: float64, the branch active, the fast path.
fn model(branch: &str) -> Model {
    let mut m = Model::load(joint(), tch::Kind::Double, tch::Device::Cpu).unwrap();
    m.set_branch(branch).unwrap();
    m.enable_fast(mlip::fast::DEFAULT_TOLERANCE).unwrap();
    m
}

#[test]
fn screen_equals_each_structure_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Molecules (gap head) in small windows and batches: many windows, batches of mixed sizes.
    let mols = molecule_frames(37, 3);
    let xyz = dir.path().join("mols.xyz");
    write_extxyz(&xyz, &mols).unwrap();
    let out = dir.path().join("mols");
    let stdout = ok(screen_cmd(&[
        xyz.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--branch",
        "molecules",
        "--window",
        "8",
        "--batch-atoms",
        "13",
        "--top-k",
        "3",
        "--sort-by",
        "gap",
        "--descending",
    ])
    .output()
    .unwrap());
    assert!(stdout.contains("errors: none"), "{stdout}");
    let (h, rows) = table(&out.with_extension("csv"));
    assert_eq!(rows.len(), mols.len());
    let m = model("molecules");
    let mut gaps = Vec::new();
    for (i, (r, f)) in rows.iter().zip(&mols).enumerate() {
        assert_eq!(r[col(&h, "index")], i.to_string());
        assert_eq!(r[col(&h, "frame")], i.to_string());
        assert_eq!(r[col(&h, "n_atoms")], f.n_atoms().to_string());
        assert_eq!(r[col(&h, "error")], "");
        let s = Structure::molecule(f.positions.clone(), f.numbers.clone()).unwrap();
        let alone = m.compute(&s, Request::EFV).unwrap();
        let v = |c: &str| r[col(&h, c)].parse::<f64>().unwrap();
        close(v("energy"), alone.energy, "energy");
        close(
            v("energy_per_atom"),
            alone.energy / f.n_atoms() as f64,
            "energy_per_atom",
        );
        let fmax = alone
            .forces
            .iter()
            .map(|x| (x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).sqrt())
            .fold(0.0, f64::max);
        close(v("fmax"), fmax, "fmax");
        close(v("gap"), alone.properties["gap"][0], "gap");
        gaps.push((v("gap"), i));
    }
    // The top-k: the largest gaps, in order, printed and written.
    gaps.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (_, top) = table(&PathBuf::from(format!("{}.top.csv", out.display())));
    let top: Vec<usize> = top.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(top, gaps[..3].iter().map(|g| g.1).collect::<Vec<_>>());
    let png = std::fs::read(format!("{}.hist.png", out.display())).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // Periodic crystals with the stress, from an ADIOS2 dataset (every split, in order).
    let metals = metal_frames(9, 5);
    let ds = dataset(dir.path(), "m", &metals[..6], &metals[6..], &[]);
    let out = dir.path().join("metals");
    ok(screen_cmd(&[
        ds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--branch",
        "metals",
        "--stress",
        "--window",
        "4",
        "--batch-atoms",
        "20",
    ])
    .output()
    .unwrap());
    let (h, rows) = table(&out.with_extension("csv"));
    assert_eq!(rows.len(), 9);
    let m = model("metals");
    for (i, (r, f)) in rows.iter().zip(&metals).enumerate() {
        let split = if i < 6 { "trainset" } else { "valset" };
        assert_eq!(r[col(&h, "source")], format!("{}:{split}", ds.display()));
        let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
        let alone = m.compute(&s, Request::EFV).unwrap();
        let st = alone.stress(s.volume());
        let v = |c: &str| r[col(&h, c)].parse::<f64>().unwrap();
        close(v("energy"), alone.energy, "energy");
        for (c, (a, b)) in [
            ("stress_xx", (0, 0)),
            ("stress_yy", (1, 1)),
            ("stress_zz", (2, 2)),
            ("stress_yz", (1, 2)),
            ("stress_xz", (0, 2)),
            ("stress_xy", (0, 1)),
        ] {
            close(v(c), st[a][b], c);
        }
    }
    // The ADIOS2 output holds the same numbers.
    let bp = hydragnn_train::data::adios::Reader::open(out.with_extension("bp")).unwrap();
    let (_, e) = bp.read_all::<f64>("energy").unwrap();
    let csv_e: Vec<f64> = rows
        .iter()
        .map(|r| r[col(&h, "energy")].parse().unwrap())
        .collect();
    assert_eq!(e, csv_e);
}

fn frame(numbers: &[i32], positions: &[[f64; 3]]) -> Frame {
    Frame {
        numbers: numbers.to_vec(),
        positions: positions.to_vec(),
        ..Default::default()
    }
}

#[test]
fn bad_rows_get_an_error_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = molecule_frames(2, 9);
    let water = [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]];
    let mut text = hydragnn_train::data::extxyz::to_extxyz_string(&good[..1]);
    // 1: uranium, which the model does not know.
    text += &hydragnn_train::data::extxyz::to_extxyz_string(&[frame(&[92, 1, 1], &water)]);
    // 2: a NaN position.
    text += "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH nan 0 0\nH -0.24 0.93 0\n";
    // 3: two atoms at the same place.
    text += &hydragnn_train::data::extxyz::to_extxyz_string(&[frame(
        &[8, 1, 1],
        &[water[0], water[1], water[1]],
    )]);
    // 4: two atoms 0.1 Angstrom apart.
    text += &hydragnn_train::data::extxyz::to_extxyz_string(&[frame(
        &[8, 1, 1],
        &[water[0], water[1], [0.96, 0.1, 0.0]],
    )]);
    // 5: not an element symbol (a parse error of this frame only).
    text += "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nXx 0.96 0 0\nH -0.24 0.93 0\n";
    text += &hydragnn_train::data::extxyz::to_extxyz_string(&good[1..]);
    let xyz = dir.path().join("bad.xyz");
    std::fs::write(&xyz, text).unwrap();
    // A dataset whose second graph has a NaN position (the extxyz reader refuses those itself).
    let mut nan = good[1].clone();
    nan.positions[1][2] = f64::NAN;
    let ds = dir.path().join("nan.bp");
    hydragnn_train::data::write_dataset(
        &ds,
        &Default::default(),
        &[("testset".to_string(), vec![good[0].clone(), nan])],
    )
    .unwrap();
    let out = dir.path().join("bad");
    let stdout = ok(screen_cmd(&[
        xyz.to_str().unwrap(),
        ds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--branch",
        "molecules",
        "--window",
        "3",
    ])
    .output()
    .unwrap());
    let (h, rows) = table(&out.with_extension("csv"));
    assert_eq!(rows.len(), 9);
    let err: Vec<&str> = rows.iter().map(|r| r[col(&h, "error")].as_str()).collect();
    assert_eq!(err[0], "");
    assert_eq!(err[6], "");
    assert!(
        err[1].starts_with("unknown element: atom 0 is U (Z=92)"),
        "{}",
        err[1]
    );
    assert!(
        err[2].starts_with("parse:") && err[2].contains("non-finite"),
        "{}",
        err[2]
    );
    assert_eq!(err[7], "");
    assert!(
        err[8].starts_with("invalid structure") && err[8].contains("atom 1"),
        "{}",
        err[8]
    );
    assert!(
        err[3].starts_with("overlapping atoms: atoms 1 and 2 are at the same position"),
        "{}",
        err[3]
    );
    assert!(
        err[4].starts_with("overlapping atoms: atoms 1 and 2 are 0.1000 Å apart"),
        "{}",
        err[4]
    );
    // The line of the Xx atom: frame 0, four 3-atom frames of 5 lines, then 3 lines in.
    let line = 2 + good[0].n_atoms() + 4 * 5 + 4;
    assert!(
        err[5].starts_with("parse:") && err[5].contains(&format!("bad.xyz:{line}")),
        "{} (line {line})",
        err[5]
    );
    // The good rows have their numbers, the bad ones none.
    let e = col(&h, "energy");
    assert!(rows[0][e].parse::<f64>().unwrap().is_finite());
    assert!(rows[6][e].parse::<f64>().unwrap().is_finite());
    assert!(rows[1..6].iter().all(|r| r[e].is_empty()));
    assert!(
        stdout.contains(
            "errors: 6 of 9 structures (invalid structure 1, overlapping atoms 2, parse 2, unknown element 1)"
        ),
        "{stdout}"
    );
    let bp = hydragnn_train::data::adios::Reader::open(out.with_extension("bp")).unwrap();
    let (_, okf) = bp.read_all::<u8>("ok").unwrap();
    assert_eq!(okf, vec![1, 0, 0, 0, 0, 0, 1, 1, 0]);
}

fn mpi_screen(mpirun: &Path, np: usize, inputs: &[&Path], out: &Path) {
    let mut c = Command::new(mpirun);
    c.args(["-np", &np.to_string()])
        .arg(bin())
        .arg("screen")
        .arg(joint())
        .args(inputs)
        .args([
            "-o",
            out.to_str().unwrap(),
            "--branch",
            "molecules",
            "--window",
            "5",
            "--quiet",
        ])
        .env("HYDRAGNN_NUM_THREADS", "1");
    ok(c.output().unwrap());
}

#[test]
fn two_ranks_write_what_one_rank_writes() {
    let Some(mpirun) = mpirun() else {
        eprintln!("skipped: no mpirun in the project's venv (run scripts/bootstrap.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("a.xyz");
    write_extxyz(&xyz, &molecule_frames(23, 1)).unwrap();
    let f = molecule_frames(12, 2);
    let ds = dataset(dir.path(), "mol", &f[..7], &f[7..10], &f[10..]);
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    mpi_screen(&mpirun, 1, &[&xyz, &ds], &one);
    mpi_screen(&mpirun, 2, &[&xyz, &ds], &two);
    let a = std::fs::read_to_string(one.with_extension("csv")).unwrap();
    let b = std::fs::read_to_string(two.with_extension("csv")).unwrap();
    assert_eq!(a.lines().count(), 1 + 23 + 12);
    assert_eq!(a, b);
    let open =
        |p: &Path| hydragnn_train::data::adios::Reader::open(p.with_extension("bp")).unwrap();
    for v in ["energy", "energy_per_atom", "fmax", "gap"] {
        let (x, y) = (
            open(&one).read_all::<f64>(v).unwrap().1,
            open(&two).read_all::<f64>(v).unwrap().1,
        );
        assert_eq!(x.len(), 35);
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{v}"
        );
    }
    for v in ["index", "frame", "n_atoms"] {
        let (x, y) = (
            open(&one).read_all::<i64>(v).unwrap().1,
            open(&two).read_all::<i64>(v).unwrap().1,
        );
        assert_eq!(x.len(), 35);
        assert_eq!(x, y, "{v}");
    }
}

fn chunks(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("rows-"))
        })
        .count()
    })
}

#[test]
fn resume_after_kill_9_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let xyz = dir.path().join("many.xyz");
    let n = 3000;
    write_extxyz(&xyz, &molecule_frames(n, 4)).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            xyz.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--branch",
            "molecules",
            "--window",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = dir.path().join("full");
    ok(
        screen_cmd(&args(&full).iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .output()
            .unwrap(),
    );
    let reference = std::fs::read_to_string(full.with_extension("csv")).unwrap();
    assert_eq!(reference.lines().count(), n + 1);

    let run = dir.path().join("killed");
    let parts = dir.path().join("killed.parts");
    let a: Vec<String> = args(&run);
    let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    // Starts a run and kills it (SIGKILL: no destructor, no flush) once `kill_at` chunks are
    // committed; false when it finished first.
    let kill_at = |kill_at: usize, resume: bool| -> bool {
        let mut c = screen_cmd(&a);
        if resume {
            c.arg("--resume");
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while chunks(&parts) < kill_at && t0.elapsed() < Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        killed
    };
    assert!(
        kill_at(40, false),
        "the run finished before it could be killed"
    );
    let done = chunks(&parts);
    assert!(done >= 40 && done < n / 4, "{done} chunks");
    // A rerun without --resume refuses to mix runs.
    let o = screen_cmd(&a).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    // Killed again while resuming (should it finish first instead, the run below starts over,
    // and must still write the same table).
    kill_at(done + 200, true);
    let stdout = ok(screen_cmd(&a).arg("--resume").output().unwrap());
    assert!(
        stdout.contains(&format!("screened {n} structures")),
        "{stdout}"
    );
    let resumed = std::fs::read_to_string(run.with_extension("csv")).unwrap();
    assert_eq!(resumed, reference);
    assert!(!parts.exists(), "the chunks are removed after the merge");
}

#[test]
fn generated_variants_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("cu.xyz");
    let mut f = metal_frames(1, 3).remove(0);
    f.numbers = vec![29; 8];
    write_extxyz(&template, &[f]).unwrap();
    let run = |out: &Path, window: &str| {
        ok(screen_cmd(&[
            "-o",
            out.to_str().unwrap(),
            "--branch",
            "metals",
            "--template",
            template.to_str().unwrap(),
            "--generate",
            "substitute:Cu,Ni:25",
            "--seed",
            "7",
            "--window",
            window,
        ])
        .output()
        .unwrap());
        std::fs::read_to_string(out.with_extension("csv")).unwrap()
    };
    let a = run(&dir.path().join("a"), "4");
    let b = run(&dir.path().join("b"), "100");
    assert_eq!(a, b);
    let (h, rows) = table(&dir.path().join("a.csv"));
    assert_eq!(rows.len(), 25);
    let formulas: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r[col(&h, "formula")].as_str())
        .collect();
    assert!(formulas.len() > 3, "{formulas:?}");
    assert!(formulas
        .iter()
        .all(|f| f.starts_with("Cu") || f.starts_with("Ni")));
    let bad = screen_cmd(&[
        "-o",
        dir.path().join("c").to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
        "--generate",
        "substitute:Al,Ni:5",
    ])
    .output()
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no Al atom"));
}

#[test]
fn csv_fields_and_formulas() {
    use hydragnn_train::screen::output::{csv_field, formula, num};
    for s in ["plain", "a,b", "say \"hi\", twice", "", "line\nbreak"] {
        let line = [csv_field("x"), csv_field(s), csv_field(s)].join(",");
        assert_eq!(split_csv(&line), vec!["x", s, s], "{s:?}");
    }
    assert_eq!(formula(&[1, 8, 1]), "H2O");
    assert_eq!(formula(&[8, 6, 1, 1, 1, 1, 7]), "CH4NO");
    assert_eq!(formula(&[29, 28, 29, 13]), "AlCu2Ni");
    for x in [0.1, -1e-300, 123456.789, f64::MIN_POSITIVE, 1.0 / 3.0] {
        assert_eq!(num(x).parse::<f64>().unwrap().to_bits(), x.to_bits());
    }
    assert_eq!(num(f64::NAN), "");
}

#[test]
fn exact_path_and_one_split() {
    let dir = tempfile::tempdir().unwrap();
    let metals = metal_frames(7, 8);
    let ds = dataset(dir.path(), "m", &metals[..4], &metals[4..], &[]);
    let out = dir.path().join("val");
    ok(screen_cmd(&[
        ds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--branch",
        "metals",
        "--split",
        "valset",
        "--exact",
    ])
    .output()
    .unwrap());
    let (h, rows) = table(&out.with_extension("csv"));
    assert_eq!(rows.len(), 3);
    // libtorch autograd, not the fast path.
    let mut m = Model::load(joint(), tch::Kind::Double, tch::Device::Cpu).unwrap();
    m.set_branch("metals").unwrap();
    for (k, r) in rows.iter().enumerate() {
        let f = &metals[4 + k];
        assert_eq!(r[col(&h, "source")], format!("{}:valset", ds.display()));
        assert_eq!(r[col(&h, "frame")], k.to_string());
        let s = Structure::new(f.positions.clone(), f.numbers.clone(), f.cell, f.pbc).unwrap();
        let e = m.compute(&s, Request::ENERGY).unwrap().energy;
        close(r[col(&h, "energy")].parse().unwrap(), e, "energy");
    }
    let o = screen_cmd(&[
        ds.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--branch",
        "metals",
        "--split",
        "nosuch",
    ])
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no split 'nosuch'"));
}
