//! Extended XYZ: files written by ASE 3.29 parse to exactly what ASE reads back, ASE reads our
//! writer's files exactly, and every malformed input is an error naming file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hydragnn_train::data::{
    parse_extxyz, read_extxyz, write_extxyz, AtomProp, DataError, Frame, ParseOptions,
};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("hydragnn-data-tests-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn python(script: &str, args: &[&Path]) {
    let py = Path::new(env!("HYDRAGNN_VENV")).join("bin").join("python");
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads an extxyz file with ASE and dumps what ASE sees as JSON, every float as its repr string
/// (parsed here with Rust's correctly rounded parser, so the comparison can be exact). Per-atom
/// arrays are keyed by their column name (ASE reads the `charge` column into results `charges`).
const ASE_DUMP: &str = r#"
import sys, json, numpy as np, ase.io
def s(x): return [s(v) for v in x] if isinstance(x, (list, tuple, np.ndarray)) else repr(float(x))
out = []
for a in ase.io.read(sys.argv[1], ':'):
    r = dict(a.calc.results) if a.calc is not None else {}
    atom = {k: [s(v) for v in np.asarray(x, float).reshape(len(a), -1)] for k, x in a.arrays.items() if k not in ('numbers', 'positions')}
    if 'charges' in r: atom['charge'] = [s([v]) for v in r['charges']]
    scal = {k: s(v) for k, v in a.info.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))}
    out.append(dict(numbers=[int(z) for z in a.numbers], positions=s(a.positions), cell=s(a.cell.array),
                    pbc=[bool(p) for p in a.pbc], energy=s(r['energy']) if 'energy' in r else None,
                    forces=s(r['forces']) if 'forces' in r else None,
                    stress=s(np.asarray(a.get_stress(voigt=False)).reshape(9)) if 'stress' in r else None,
                    scalars=scal, atom=atom))
json.dump(out, open(sys.argv[2], 'w'))
"#;

fn f(v: &serde_json::Value) -> f64 {
    v.as_str().expect("float as repr string").parse().unwrap()
}
fn fs(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}
fn v3(v: &serde_json::Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let x = fs(r);
            [x[0], x[1], x[2]]
        })
        .collect()
}

/// The frames ASE reads from `xyz`, as [`Frame`]s.
fn ase_frames(xyz: &Path, dir: &Path) -> Vec<Frame> {
    let json = dir.join("ase.json");
    python(ASE_DUMP, &[xyz, &json]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let cell = v3(&o["cell"]);
            let pbc: Vec<bool> = o["pbc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect();
            Frame {
                numbers: o["numbers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|z| z.as_i64().unwrap() as i32)
                    .collect(),
                positions: v3(&o["positions"]),
                cell: [cell[0], cell[1], cell[2]],
                pbc: [pbc[0], pbc[1], pbc[2]],
                energy: (!o["energy"].is_null()).then(|| f(&o["energy"])),
                forces: (!o["forces"].is_null()).then(|| v3(&o["forces"])),
                stress: (!o["stress"].is_null()).then(|| fs(&o["stress"]).try_into().unwrap()),
                scalars: o["scalars"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, x)| (k.clone(), f(x)))
                    .collect(),
                atom_props: o["atom"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, rows)| {
                        let rows: Vec<Vec<f64>> = rows.as_array().unwrap().iter().map(fs).collect();
                        (
                            k.clone(),
                            AtomProp {
                                width: rows[0].len(),
                                values: rows.concat(),
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn ase_written_files_parse_exactly_as_ase_reads_them() {
    let dir = scratch("ase-roundtrip");
    let xyz = dir.join("ase.xyz");
    python(
        r#"
import sys, numpy as np, ase.io
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator as SP
rng = np.random.default_rng(7)
frames = []
a = bulk('Cu', 'fcc', a=3.6, cubic=True).repeat((2, 1, 1)); a.rattle(0.05, seed=1)
a.set_cell(a.cell.array @ (np.eye(3) + 0.01 * rng.normal(size=(3, 3))), scale_atoms=True)
a.calc = EMT(); e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
a.calc = SP(a, energy=e, forces=f, stress=s)
a.set_tags(np.arange(len(a))); a.arrays['dip'] = rng.normal(size=(len(a), 3))
a.info.update(step=3, temperature=300.5, note='a b "c"', ok=False, vec=np.array([1.5, 2.5]))
frames.append(a)
m = molecule('CH3CH2OH')
m.calc = SP(m, energy=-1234.5678901234, forces=rng.normal(size=(len(m), 3)), charges=rng.normal(size=len(m)))
m.info['gap'] = 7.25
frames.append(m)
b = bulk('Al', 'fcc', a=4.05)
b.calc = SP(b, energy=-3.7, forces=np.zeros((1, 3)), stress=np.array([1e-3, 2e-3, 3e-3, 4e-4, 5e-4, 6e-4]))
frames.append(b)
w = molecule('H2O'); w.set_cell([[10, 0, 0], [0, 11, 0], [0, 0, 12]]); w.set_pbc([True, False, True])
w.calc = SP(w, energy=1e-20, forces=1e-12 * rng.normal(size=(3, 3)))
frames.append(w)
ase.io.write(sys.argv[1], frames, format='extxyz')
"#,
        &[&xyz],
    );
    let ours = read_extxyz(
        &xyz,
        &ParseOptions {
            require_energy: true,
            require_forces: true,
            ..Default::default()
        },
    )
    .unwrap();
    let theirs = ase_frames(&xyz, &dir);
    assert_eq!(ours.len(), 4);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "frame {i}");
    }
    // What ASE actually wrote, spelled out.
    assert_eq!(
        ours[0].scalars,
        BTreeMap::from([
            ("step".to_string(), 3.0),
            ("temperature".to_string(), 300.5)
        ])
    );
    assert_eq!(
        ours[0].atom_props["tags"].values,
        (0..8).map(f64::from).collect::<Vec<_>>()
    );
    assert_eq!(ours[0].atom_props["dip"].width, 3);
    assert!(ours[0].stress.is_some() && ours[0].pbc == [true; 3]);
    assert_eq!(ours[1].scalars["gap"], 7.25);
    assert_eq!(ours[1].atom_props["charge"].width, 1);
    assert_eq!((ours[1].pbc, ours[1].cell), ([false; 3], [[0.0; 3]; 3]));
    assert_eq!(ours[1].numbers, vec![6, 6, 8, 1, 1, 1, 1, 1, 1]);
    let st = ours[2].stress.unwrap(); // a 6-component Voigt stress, written by ASE as 9
    assert_eq!(
        [st[0], st[4], st[8], st[5], st[2], st[1]],
        [1e-3, 2e-3, 3e-3, 4e-4, 5e-4, 6e-4]
    );
    assert_eq!(ours[3].pbc, [true, false, true]);
}

#[test]
fn committed_slices_parse_as_ase_reads_them() {
    let dir = scratch("slices");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    for name in ["metals.xyz", "molecules.xyz"] {
        let ours = read_extxyz(data.join(name), &ParseOptions::default()).unwrap();
        let theirs = ase_frames(&data.join(name), &dir);
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn ase_reads_our_writer_exactly() {
    let dir = scratch("writer");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let mut frames = read_extxyz(data.join("molecules.xyz"), &ParseOptions::default()).unwrap();
    frames.truncate(20);
    frames.extend(
        read_extxyz(data.join("metals.xyz"), &ParseOptions::default())
            .unwrap()
            .into_iter()
            .take(5)
            .map(|mut f| {
                // Values that need every digit.
                f.energy = f.energy.map(|e| e / 3.0);
                f.positions[0][0] = 1.0 / 7.0;
                f.scalars.insert("gap".into(), 0.1 + 0.2);
                f.atom_props.insert(
                    "charge".into(),
                    AtomProp {
                        width: 1,
                        values: (0..f.n_atoms()).map(|i| i as f64 / 3.0).collect(),
                    },
                );
                f
            }),
    );
    let ours = dir.join("ours.xyz");
    write_extxyz(&ours, &frames).unwrap();
    assert_eq!(
        read_extxyz(&ours, &ParseOptions::default()).unwrap(),
        frames
    );
    assert_eq!(ase_frames(&ours, &dir), frames);
}

const GOOD: &str = "\
2
Lattice=\"4.0 0.0 0.0 0.0 4.0 0.0 0.0 0.0 4.0\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-7.5 gap=1.25 pbc=\"T T T\"
Cu 0.0 0.0 0.0 0.1 0.2 0.3
Cu 2.0 2.0 0.0 -0.1 -0.2 -0.3
1
Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc=\"F F F\"
H 0.0 0.0 0.0 0.0 0.0 0.0
";

fn strict() -> ParseOptions {
    ParseOptions {
        require_energy: true,
        require_forces: true,
        ..Default::default()
    }
}

/// Parses `text` as the file `bad.xyz`, expects a parse error at `line` mentioning `what`.
fn expect_error(text: &str, line: usize, what: &str) {
    let dir = scratch(&format!("bad-{line}-{}", what.replace([' ', '\''], "_")));
    let path = dir.join("bad.xyz");
    std::fs::write(&path, text).unwrap();
    let err = read_extxyz(&path, &strict()).unwrap_err();
    let msg = err.to_string();
    match &err {
        DataError::Parse {
            path: p, line: l, ..
        } => {
            assert_eq!((p.as_path(), *l), (path.as_path(), line), "{msg}");
        }
        e => panic!("expected a parse error, got {e:?}"),
    }
    assert!(
        msg.starts_with(&format!("{}:{line}: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains(what), "'{msg}' does not mention '{what}'");
}

#[test]
fn good_text_parses() {
    let frames = parse_extxyz(GOOD, "good.xyz", &strict()).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].forces.as_ref().unwrap()[1], [-0.1, -0.2, -0.3]);
    assert_eq!(frames[0].scalars["gap"], 1.25);
    assert_eq!(frames[1].energy, Some(-1.0));
}

#[test]
fn missing_forces_names_file_and_line() {
    let text = GOOD
        .replace(":forces:R:3 energy=-1.0", " energy=-1.0")
        .replace("H 0.0 0.0 0.0 0.0 0.0 0.0", "H 0.0 0.0 0.0");
    expect_error(&text, 6, "missing forces");
    // Without the requirement the frame parses, with no forces.
    let frames = parse_extxyz(&text, "x.xyz", &ParseOptions::default()).unwrap();
    assert!(frames[1].forces.is_none());
}

#[test]
fn missing_energy_names_file_and_line() {
    expect_error(&GOOD.replace(" energy=-7.5", ""), 2, "missing energy");
}

#[test]
fn wrong_column_count_names_file_and_line() {
    expect_error(
        &GOOD.replace("Cu 2.0 2.0 0.0 -0.1 -0.2 -0.3", "Cu 2.0 2.0 0.0 -0.1 -0.2"),
        4,
        "wrong column count",
    );
    expect_error(
        &GOOD.replace("H 0.0 0.0 0.0 0.0 0.0 0.0", "H 0.0 0.0 0.0 0.0 0.0 0.0 9.9"),
        7,
        "expected 7 columns",
    );
}

#[test]
fn nan_and_inf_name_file_and_line() {
    expect_error(
        &GOOD.replace(
            "Cu 2.0 2.0 0.0 -0.1 -0.2 -0.3",
            "Cu 2.0 2.0 0.0 -0.1 nan -0.3",
        ),
        4,
        "non-finite value 'nan' in column 'forces'",
    );
    expect_error(
        &GOOD.replace("Cu 0.0 0.0 0.0 0.1", "Cu 0.0 inf 0.0 0.1"),
        3,
        "column 'pos'",
    );
    expect_error(
        &GOOD.replace("energy=-1.0", "energy=nan"),
        6,
        "non-finite value NaN in 'energy'",
    );
    expect_error(&GOOD.replace("gap=1.25", "gap=NaN"), 2, "'gap'");
    expect_error(
        &GOOD.replace("Cu 0.0 0.0 0.0 0.1", "Cu 0.0 zero 0.0 0.1"),
        3,
        "cannot parse 'zero'",
    );
}

#[test]
fn unknown_element_names_file_and_line() {
    expect_error(&GOOD.replace("H 0.0", "Xx 0.0"), 7, "unknown element 'Xx'");
    expect_error(&GOOD.replace("Cu 2.0", "cu 2.0"), 4, "unknown element 'cu'");
}

#[test]
fn bad_atom_count_names_file_and_line() {
    // Declares 3 atoms, has 2, then the next frame's count line is read as an atom line.
    expect_error(&GOOD.replacen("2\n", "3\n", 1), 5, "bad atom count");
    // Declares 1 atom, has 2: the second atom line is read as the next count.
    expect_error(&GOOD.replacen("2\n", "1\n", 1), 4, "bad atom count 'Cu");
    // Declares 2 atoms, the file ends after 1.
    expect_error(
        &GOOD.replacen("1\nProp", "2\nProp", 1),
        7,
        "the file ends after 1",
    );
    expect_error(&GOOD.replacen("2\n", "two\n", 1), 1, "bad atom count 'two'");
    expect_error(&GOOD.replacen("2\n", "0\n", 1), 1, "bad atom count 0");
}

#[test]
fn bad_header_names_file_and_line() {
    expect_error(
        &GOOD.replace("Lattice=\"4.0 0.0 0.0 ", "Lattice=\"4.0 0.0 "),
        2,
        "Lattice has 8 numbers",
    );
    expect_error(
        &GOOD.replace(
            "species:S:1:pos:R:3:forces:R:3 energy=-7.5",
            "species:S:1:pos:R:3:forces:R energy=-7.5",
        ),
        2,
        "name:type:columns",
    );
    expect_error(
        &GOOD.replace("energy=-1.0", "energy=\"-1.0"),
        6,
        "unterminated",
    );
    expect_error(
        &GOOD.replace("energy=-7.5", "energy=-7.5 stress=\"1 2 3 4\""),
        2,
        "expected 9 or 6",
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let p = scratch("missing").join("nope.xyz");
    let err = read_extxyz(&p, &strict()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("nope.xyz"), "{err}");
}
