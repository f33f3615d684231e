//! Atomic structures: positions, atomic numbers, a cell (orthorhombic or triclinic, rows are the
//! lattice vectors, Å) and periodicity per direction. Validation happens here, once.

use crate::error::{invalid, Result};

/// A structure as the engine sees it. Positions are Cartesian Å; `cell[k]` is the k-th lattice
/// vector. Along a non-periodic direction the cell vector is ignored (it may be zero).
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    /// Cartesian positions, one `[x, y, z]` per atom.
    pub positions: Vec<[f64; 3]>,
    /// Atomic numbers, one per atom.
    pub numbers: Vec<i32>,
    /// Lattice vectors as rows.
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
}

impl Structure {
    /// A structure with a cell; checks shapes, finiteness and (for periodic directions) the cell.
    pub fn new(
        positions: Vec<[f64; 3]>,
        numbers: Vec<i32>,
        cell: [[f64; 3]; 3],
        pbc: [bool; 3],
    ) -> Result<Self> {
        let s = Structure {
            positions,
            numbers,
            cell,
            pbc,
        };
        s.validate()?;
        Ok(s)
    }

    /// A molecule in vacuum: no periodicity, zero cell.
    pub fn molecule(positions: Vec<[f64; 3]>, numbers: Vec<i32>) -> Result<Self> {
        Self::new(positions, numbers, [[0.0; 3]; 3], [false; 3])
    }

    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True when there are no atoms.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Checks: equal lengths, finite positions and cell, atomic numbers in 1..=118, and a
    /// non-degenerate cell when any direction is periodic.
    pub fn validate(&self) -> Result<()> {
        if self.positions.len() != self.numbers.len() {
            return invalid(format!(
                "{} positions but {} atomic numbers",
                self.positions.len(),
                self.numbers.len()
            ));
        }
        for (i, p) in self.positions.iter().enumerate() {
            if !p.iter().all(|x| x.is_finite()) {
                return invalid(format!("position of atom {i} is not finite: {p:?}"));
            }
        }
        for (i, &z) in self.numbers.iter().enumerate() {
            if !(1..=118).contains(&z) {
                return invalid(format!("atom {i} has atomic number {z}, outside 1..=118"));
            }
        }
        if !self.cell.iter().flatten().all(|x| x.is_finite()) {
            return invalid(format!("cell is not finite: {:?}", self.cell));
        }
        if self.pbc.iter().any(|&p| p) {
            let v = self.volume().abs();
            let scale = self
                .cell
                .iter()
                .map(|r| norm(*r))
                .fold(0.0, f64::max)
                .max(1e-300);
            // Each periodic vector must be non-zero; when all three are periodic the volume must be too.
            for k in 0..3 {
                if self.pbc[k] && norm(self.cell[k]) < 1e-8 {
                    return invalid(format!(
                        "cell vector {k} is zero along a periodic direction"
                    ));
                }
            }
            if self.pbc.iter().all(|&p| p) && v < 1e-10 * scale.powi(3) {
                return invalid(format!("cell has zero volume ({v:e} Å^3): {:?}", self.cell));
            }
            if self.pbc.iter().filter(|&&p| p).count() == 2 {
                let (a, b) = match self.pbc {
                    [true, true, false] => (0, 1),
                    [true, false, true] => (0, 2),
                    _ => (1, 2),
                };
                if norm(cross(self.cell[a], self.cell[b])) < 1e-10 * scale * scale {
                    return invalid("the two periodic cell vectors are parallel (zero-area cell)");
                }
            }
        }
        Ok(())
    }

    /// Signed cell volume (Å^3), `a · (b × c)`.
    pub fn volume(&self) -> f64 {
        dot(self.cell[0], cross(self.cell[1], self.cell[2]))
    }

    /// Repeats the structure `reps[k]` times along lattice vector k (periodic directions only).
    pub fn supercell(&self, reps: [usize; 3]) -> Structure {
        let mut positions = Vec::new();
        let mut numbers = Vec::new();
        for a in 0..reps[0] {
            for b in 0..reps[1] {
                for c in 0..reps[2] {
                    let t = add(
                        add(scale(self.cell[0], a as f64), scale(self.cell[1], b as f64)),
                        scale(self.cell[2], c as f64),
                    );
                    for (p, &z) in self.positions.iter().zip(&self.numbers) {
                        positions.push(add(*p, t));
                        numbers.push(z);
                    }
                }
            }
        }
        let mut cell = self.cell;
        for k in 0..3 {
            cell[k] = scale(cell[k], reps[k] as f64);
        }
        Structure {
            positions,
            numbers,
            cell,
            pbc: self.pbc,
        }
    }
}

/// Dot product.
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
/// Cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
/// Euclidean norm.
pub fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}
/// Sum of two vectors.
pub fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
/// Difference of two vectors.
pub fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
/// A vector times a scalar.
pub fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
