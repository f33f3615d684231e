//! The ADIOS2 BP dataset: ingest -> BP -> read back equals the parsed frames exactly; slice reads
//! of the middle of a split; shards; metadata and reference energies; atomic writes; errors.

use std::path::{Path, PathBuf};

use hydragnn_train::data::adios::{Reader, Writer};
use hydragnn_train::data::{
    fit_reference_energies, ingest, read_extxyz, shard_range, shard_strided, write_extxyz,
    DataError, Dataset, Frame, IngestOptions, ParseOptions, SplitSpec, SCHEMA_VERSION,
};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("hydragnn-data-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn committed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn frames(name: &str) -> Vec<Frame> {
    read_extxyz(committed(name), &ParseOptions::default()).unwrap()
}

/// Splits the committed molecules into three explicit files and ingests them.
fn molecules_dataset(dir: &Path) -> (PathBuf, [Vec<Frame>; 3]) {
    let all = frames("molecules.xyz");
    let parts = [
        all[..200].to_vec(),
        all[200..250].to_vec(),
        all[250..].to_vec(),
    ];
    let names = ["train.xyz", "val.xyz", "test.xyz"];
    for (p, n) in parts.iter().zip(names) {
        write_extxyz(dir.join(n), p).unwrap();
    }
    let out = dir.join("molecules.bp");
    let inputs = vec![
        (dir.join("train.xyz"), SplitSpec::Train),
        (dir.join("val.xyz"), SplitSpec::Val),
        (dir.join("test.xyz"), SplitSpec::Test),
    ];
    let s = ingest(&inputs, &out, "molecules", &IngestOptions::default()).unwrap();
    assert_eq!(
        s.counts.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![200, 50, 50]
    );
    (out, parts)
}

#[test]
fn ingest_then_read_back_equals_parsed_frames() {
    let dir = scratch("roundtrip");
    let (out, parts) = molecules_dataset(&dir);
    let ds = Dataset::open(&out).unwrap();
    for (split, want) in ["trainset", "valset", "testset"].iter().zip(&parts) {
        let sr = ds.split(split).unwrap();
        assert_eq!(sr.n_graphs(), want.len());
        assert_eq!(
            sr.total_atoms(),
            want.iter().map(Frame::n_atoms).sum::<usize>()
        );
        assert_eq!(&sr.read_graphs(0..sr.n_graphs()).unwrap(), want, "{split}");
    }
    let m = ds.meta();
    assert_eq!(m.name, "molecules");
    assert_eq!(m.schema_version, SCHEMA_VERSION);
    assert_eq!(m.elements, vec![1, 6, 7, 8]);
    assert!(m.layout.energy && m.layout.forces && !m.layout.stress);
    assert_eq!(
        m.scalars
            .iter()
            .map(|p| (p.name.as_str(), p.unit.as_str()))
            .collect::<Vec<_>>(),
        vec![("gap", "eV")]
    );
    assert_eq!(
        m.atom_props
            .iter()
            .map(|p| (p.name.as_str(), p.width, p.unit.as_str()))
            .collect::<Vec<_>>(),
        vec![("charge", 1, "e")]
    );
    assert_eq!(m.units["forces"], "eV/Angstrom");
    assert!(
        m.has("gap") && m.has("charge") && m.has("energy") && !m.has("stress") && !m.has("dipole")
    );
    assert_eq!(
        m.splits,
        vec![
            ("trainset".to_string(), 200),
            ("valset".to_string(), 50),
            ("testset".to_string(), 50)
        ]
    );
    // Reference energies: the least-squares fit on the trainset only.
    let train = &parts[0];
    let e: Vec<f64> = train.iter().map(|f| f.energy.unwrap()).collect();
    let fit = fit_reference_energies(train.iter().map(|f| f.numbers.as_slice()), &e).unwrap();
    assert_eq!(m.reference_energies, fit.energies);
    assert_eq!(m.reference_energy(8), fit.of(8));
}

#[test]
fn metals_random_split_is_seeded_and_complete() {
    let dir = scratch("metals");
    let all = frames("metals.xyz");
    let run = |seed: u64, out: &str| {
        let opts = IngestOptions {
            seed,
            ..Default::default()
        };
        let s = ingest(
            &[(committed("metals.xyz"), SplitSpec::Random)],
            &dir.join(out),
            "metals",
            &opts,
        )
        .unwrap();
        assert_eq!(
            s.counts.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![192, 24, 24]
        );
        let ds = Dataset::open(dir.join(out)).unwrap();
        let m = ds.meta().clone();
        assert_eq!(m.elements, vec![13, 28, 29]);
        assert!(m.layout.energy && m.layout.forces && m.layout.stress);
        assert_eq!(m.units["stress"], "eV/Angstrom^3");
        ["trainset", "valset", "testset"]
            .map(|s| ds.split(s).unwrap().read_graphs(0..m.n_graphs(s)).unwrap())
    };
    let a = run(1, "a.bp");
    let b = run(1, "b.bp");
    let c = run(2, "c.bp");
    assert_eq!(a, b, "same seed, same split");
    assert_ne!(a[0], c[0], "another seed, another split");
    // Every frame lands in exactly one split, and each split keeps the file order.
    let index = |f: &Frame| {
        all.iter()
            .position(|g| g == f)
            .expect("frame read back is one of the parsed frames")
    };
    let mut seen: Vec<usize> = Vec::new();
    for split in &a {
        let idx: Vec<usize> = split.iter().map(index).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        seen.extend(idx);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..all.len()).collect::<Vec<_>>());
}

#[test]
fn slice_reads_of_the_middle_of_a_split() {
    let dir = scratch("slices");
    let (out, parts) = molecules_dataset(&dir);
    let ds = Dataset::open(&out).unwrap();
    let train = ds.split("trainset").unwrap();
    for r in [37..61, 0..1, 199..200, 100..100, 0..200] {
        let b = train.read_block(r.clone()).unwrap();
        assert_eq!(b.n_graphs(), r.len());
        assert_eq!(b.graph_index, r.clone().collect::<Vec<_>>());
        assert_eq!(b.atom_offset.first().copied().unwrap_or(0), 0);
        assert_eq!(b.frames(), parts[0][r.clone()].to_vec(), "{r:?}");
        // The concatenated arrays line up with the frames.
        let atoms: usize = parts[0][r.clone()].iter().map(Frame::n_atoms).sum();
        assert_eq!(
            (
                b.total_atoms(),
                b.positions.len(),
                b.forces.as_ref().unwrap().len()
            ),
            (atoms, 3 * atoms, 3 * atoms)
        );
        assert_eq!(b.atom_props["charge"].values.len(), atoms);
        assert_eq!(b.scalars["gap"].len(), r.len());
    }
    let idx = [5, 2, 3, 190, 2, 4];
    let b = train.read_indices(&idx).unwrap();
    assert_eq!(b.graph_index, idx.to_vec());
    assert_eq!(
        b.frames(),
        idx.iter().map(|&i| parts[0][i].clone()).collect::<Vec<_>>()
    );
    assert!(train.read_block(150..201).is_err());
    assert!(train.read_indices(&[200]).is_err());
    let err = ds.split("holdout").err().unwrap();
    assert!(err.to_string().contains("no split 'holdout'"), "{err}");
}

#[test]
fn shards_partition_the_graphs() {
    for n in [0usize, 1, 5, 7, 64, 101] {
        for size in 1..=6 {
            let ranges: Vec<_> = (0..size).map(|r| shard_range(n, r, size)).collect();
            assert_eq!(ranges.first().unwrap().start, 0);
            assert_eq!(ranges.last().unwrap().end, n);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let lens: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            assert!(
                lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
                "{lens:?}"
            );
            let mut all: Vec<usize> = (0..size).flat_map(|r| shard_strided(n, r, size)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }
    assert_eq!(shard_strided(10, 1, 3), vec![1, 4, 7]);
    assert_eq!(shard_range(10, 0, 3), 0..4);
    assert_eq!(shard_range(10, 2, 3), 7..10);

    let dir = scratch("shards");
    let (out, parts) = molecules_dataset(&dir);
    let ds = Dataset::open(&out).unwrap();
    let val = ds.split("valset").unwrap();
    for size in [1, 2, 3] {
        let mut got = Vec::new();
        for rank in 0..size {
            // Each rank opens the dataset itself, as MPI ranks do.
            let mine = Dataset::open(&out).unwrap();
            got.extend(
                mine.split("valset")
                    .unwrap()
                    .read_shard(rank, size)
                    .unwrap()
                    .frames(),
            );
        }
        assert_eq!(got, parts[1], "{size} ranks");
    }
    assert!(val.shard(3, 3).is_err());
}

#[test]
fn failing_ingest_leaves_nothing_behind() {
    let dir = scratch("atomic");
    let out = dir.join("broken.bp");
    let good = committed("molecules.xyz");
    let bad = dir.join("bad.xyz");
    let text = std::fs::read_to_string(&good).unwrap();
    // A NaN force deep inside the file, after many good frames.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len() - 3;
    let cols: Vec<&str> = lines[n].split_whitespace().collect();
    lines[n] = format!(
        "{} {} {} {} nan {} {} {}",
        cols[0], cols[1], cols[2], cols[3], cols[5], cols[6], cols[7]
    );
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let inputs = vec![
        (good.clone(), SplitSpec::Train),
        (bad.clone(), SplitSpec::Val),
    ];
    let err = ingest(&inputs, &out, "broken", &IngestOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:{}: ", bad.display(), n + 1)),
        "{err}"
    );
    assert!(!out.exists(), "no dataset after a failed ingest");
    assert!(
        !dir.join("broken.bp.tmp").exists(),
        "no temporary left after a failed ingest"
    );

    // A frame lacking a property the others have (schema version 2): kept, masked in that frame.
    let partial = dir.join("partial.xyz");
    let mut m = read_extxyz(&good, &ParseOptions::default()).unwrap();
    m.truncate(10);
    m[7].scalars.remove("gap");
    write_extxyz(&partial, &m).unwrap();
    let masked = dir.join("masked.bp");
    ingest(
        &[(partial.clone(), SplitSpec::Train)],
        &masked,
        "p",
        &IngestOptions::default(),
    )
    .unwrap();
    let ds = Dataset::open(&masked).unwrap();
    assert!(ds.meta().has("gap") && ds.meta().is_partial("gap"));
    assert_eq!(ds.meta().partial, vec!["gap".to_string()]);
    let back = ds.split("trainset").unwrap().read_graphs(0..10).unwrap();
    for (i, f) in back.iter().enumerate() {
        assert_eq!(f.scalars.get("gap"), m[i].scalars.get("gap"), "frame {i}");
    }
    // A per-atom property of different widths in two frames: named by file and line; nothing written.
    let mut w = m.clone();
    w[7].scalars.insert("gap".into(), 1.0);
    let p = w[7].atom_props.get_mut("charge").unwrap();
    p.values = p.values.iter().flat_map(|&x| [x, x]).collect();
    p.width = 2;
    let widths = dir.join("widths.xyz");
    write_extxyz(&widths, &w).unwrap();
    let line = 1 + m[..7].iter().map(|f| f.n_atoms() + 2).sum::<usize>();
    let err = ingest(
        &[(widths.clone(), SplitSpec::Train)],
        &out,
        "p",
        &IngestOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:{line}: ", widths.display())) && msg.contains("'charge'"),
        "{msg}"
    );
    assert!(!out.exists() && !dir.join("broken.bp.tmp").exists());
    // ... unless asked to drop what only some frames carry.
    let opts = IngestOptions {
        drop_partial: true,
        ..Default::default()
    };
    let s = ingest(&[(partial, SplitSpec::Train)], &out, "p", &opts).unwrap();
    assert_eq!(s.dropped, vec!["gap".to_string()]);
    assert!(!Dataset::open(&out).unwrap().meta().has("gap"));

    // An existing dataset is kept unless overwrite is asked for.
    let err = ingest(
        &[(good.clone(), SplitSpec::Train)],
        &out,
        "again",
        &IngestOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(Dataset::open(&out).unwrap().meta().name, "p");
    let opts = IngestOptions {
        overwrite: true,
        ..Default::default()
    };
    ingest(&[(good, SplitSpec::Train)], &out, "again", &opts).unwrap();
    assert_eq!(Dataset::open(&out).unwrap().meta().name, "again");
    // A failing overwrite keeps the old dataset.
    assert!(ingest(&[(bad, SplitSpec::Train)], &out, "third", &opts).is_err());
    assert_eq!(Dataset::open(&out).unwrap().meta().name, "again");
    assert!(!dir.join("broken.bp.tmp").exists());
}

#[test]
fn random_split_fractions_are_checked() {
    let dir = scratch("fractions");
    let opts = IngestOptions {
        fractions: [0.8, 0.3, 0.1],
        ..Default::default()
    };
    let err = ingest(
        &[(committed("metals.xyz"), SplitSpec::Random)],
        &dir.join("x.bp"),
        "x",
        &opts,
    )
    .unwrap_err();
    assert!(err.to_string().contains("add up to 1"), "{err}");
    assert_eq!("valset".parse::<SplitSpec>().unwrap(), SplitSpec::Val);
    assert!("holdout".parse::<SplitSpec>().is_err());
}

#[test]
fn reader_errors_name_file_and_variable() {
    let dir = scratch("reader-errors");
    let err = Dataset::open(dir.join("missing.bp")).err().unwrap();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.bp"),
        "{err}"
    );

    // An extxyz file is not a BP file.
    let err = Dataset::open(committed("metals.xyz")).err().unwrap();
    assert!(err.to_string().contains("metals.xyz"), "{err}");

    // A BP file that is not a dataset.
    let p = dir.join("other.bp");
    let mut w = Writer::create(&p).unwrap();
    w.put("x", &[2, 3], &[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    w.attr_str("title", "something else").unwrap();
    w.attr_array("ids", &[3i64, 4, 5]).unwrap();
    w.attr_strs("names", &["a".to_string(), "bc".to_string()])
        .unwrap();
    w.close().unwrap();
    let err = Dataset::open(&p).err().unwrap();
    assert!(
        err.to_string().contains("not a hydragnn-rs dataset"),
        "{err}"
    );

    // The raw reader: selections, types, attributes.
    let r = Reader::open(&p).unwrap();
    assert_eq!(r.shape("x").unwrap(), Some(vec![2, 3]));
    assert_eq!(r.shape("y").unwrap(), None);
    assert_eq!(
        r.read::<f64>("x", &[1, 1], &[1, 2]).unwrap(),
        vec![5.0, 6.0]
    );
    assert_eq!(
        r.read::<f64>("x", &[0, 2], &[2, 1]).unwrap(),
        vec![3.0, 6.0]
    );
    assert_eq!(
        r.read_all::<f64>("x").unwrap(),
        (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    );
    assert_eq!(
        r.attr_str("title").unwrap().as_deref(),
        Some("something else")
    );
    assert_eq!(r.attr::<i64>("ids").unwrap(), Some(vec![3, 4, 5]));
    assert_eq!(
        r.attr_strs("names").unwrap(),
        Some(vec!["a".to_string(), "bc".to_string()])
    );
    assert_eq!(r.attr::<i64>("absent").unwrap(), None);
    let e = r
        .read::<i32>("x", &[0, 0], &[1, 1])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other.bp") && e.contains("'x' holds double, read as int32"),
        "{e}"
    );
    let e = r
        .read::<f64>("x", &[1, 2], &[1, 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds shape"), "{e}");
    let e = r.read::<f64>("y", &[0], &[1]).unwrap_err().to_string();
    assert!(e.contains("variable 'y' is missing"), "{e}");
    let e = r.attr::<f64>("ids").unwrap_err().to_string();
    assert!(e.contains("attribute 'ids' holds int64"), "{e}");
}

#[test]
fn dataset_survives_a_rename_and_many_readers() {
    // The BP directory holds no absolute path: a moved dataset opens and reads the same.
    let dir = scratch("moved");
    let (out, parts) = molecules_dataset(&dir);
    let moved = dir.join("elsewhere.bp");
    std::fs::rename(&out, &moved).unwrap();
    let readers: Vec<Dataset> = (0..4).map(|_| Dataset::open(&moved).unwrap()).collect();
    for (i, ds) in readers.iter().enumerate() {
        let test = ds.split("testset").unwrap();
        assert_eq!(
            test.read_graphs(i..i + 10).unwrap(),
            parts[2][i..i + 10].to_vec()
        );
    }
    // A dataset can move to another thread.
    let ds = readers.into_iter().next().unwrap();
    let n = std::thread::spawn(move || ds.split("trainset").unwrap().n_graphs())
        .join()
        .unwrap();
    assert_eq!(n, 200);
}

/// A schema version 1 dataset (written by hand as version 1 wrote it: no masks) reads as one
/// whose graphs carry every label; a version this build does not know is refused.
#[test]
fn version_1_datasets_read_as_all_present_and_unknown_versions_are_refused() {
    let dir = scratch("v1");
    for (version, path) in [(1i32, dir.join("v1.bp")), (3, dir.join("v3.bp"))] {
        let mut w = Writer::create(&path).unwrap();
        w.attr_str("schema", "hydragnn-rs.dataset").unwrap();
        w.attr("schema_version", version).unwrap();
        w.attr_str("dataset_name", "old").unwrap();
        w.attr_strs("splits", &["trainset".to_string()]).unwrap();
        w.attr("trainset/n_graphs", 2i64).unwrap();
        w.attr("trainset/n_atoms_total", 3i64).unwrap();
        w.attr_strs("labels", &["energy".to_string(), "stress".to_string()])
            .unwrap();
        w.put("trainset/n_atoms", &[2], &[1i64, 2]).unwrap();
        w.put("trainset/atom_offset", &[2], &[0i64, 1]).unwrap();
        w.put("trainset/numbers", &[3], &[29i32, 29, 28]).unwrap();
        w.put("trainset/positions", &[3, 3], &[0.0f64; 9]).unwrap();
        let cell: Vec<f64> = [[3.0, 0., 0., 0., 3., 0., 0., 0., 3.]; 2].concat();
        w.put("trainset/cell", &[2, 9], &cell).unwrap();
        w.put("trainset/pbc", &[2, 3], &[1u8; 6]).unwrap();
        w.put("trainset/energy", &[2], &[-1.0f64, -2.0]).unwrap();
        let stress: Vec<f64> = (0..18).map(|i| i as f64).collect();
        w.put("trainset/stress", &[2, 9], &stress).unwrap();
        w.close().unwrap();
        if version == 3 {
            let err = Dataset::open(&path).err().expect("version 3 refused");
            assert!(err.to_string().contains("schema version 3"), "{err}");
            continue;
        }
        let ds = Dataset::open(&path).unwrap();
        assert_eq!(ds.meta().schema_version, 1);
        assert!(ds.meta().partial.is_empty());
        let frames = ds.split("trainset").unwrap().read_graphs(0..2).unwrap();
        assert_eq!(frames[0].energy, Some(-1.0));
        assert_eq!(frames[1].energy, Some(-2.0));
        assert_eq!(frames[1].stress.unwrap()[0], 9.0);
        assert!(frames.iter().all(|f| f.stress.is_some()));
    }
}
