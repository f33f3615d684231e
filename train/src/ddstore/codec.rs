//! One graph as a self-contained little-endian byte record (the DDStore's unit of transfer):
//! index, atoms (numbers, species), edges (src, dst, vectors), labels and named properties.
//! Decoding checks every length against the record, so a torn record is an error, never a panic.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::graphs::Graph;

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_f64s(b: &mut Vec<u8>, v: &[f64]) {
    put_u64(b, v.len() as u64);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
}
fn put_i64s(b: &mut Vec<u8>, v: &[i64]) {
    put_u64(b, v.len() as u64);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
}
fn put_opt(b: &mut Vec<u8>, v: Option<&[f64]>) {
    match v {
        Some(v) => {
            b.push(1);
            put_f64s(b, v);
        }
        None => b.push(0),
    }
}

/// Appends the record of `g` to `buf`.
pub fn encode(g: &Graph, buf: &mut Vec<u8>) {
    put_u64(buf, g.index as u64);
    let numbers: Vec<i64> = g.numbers.iter().map(|&z| i64::from(z)).collect();
    put_i64s(buf, &numbers);
    put_i64s(buf, &g.species);
    put_i64s(buf, &g.src);
    put_i64s(buf, &g.dst);
    put_f64s(buf, &g.edge_vec);
    put_opt(buf, g.energy.as_ref().map(std::slice::from_ref));
    put_opt(buf, g.forces.as_deref());
    put_opt(buf, g.stress.as_ref().map(|s| &s[..]));
    put_opt(buf, g.volume.as_ref().map(std::slice::from_ref));
    put_u64(buf, g.props.len() as u64);
    for (k, v) in &g.props {
        put_u64(buf, k.len() as u64);
        buf.extend_from_slice(k.as_bytes());
        put_f64s(buf, v);
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(Error::Invalid(format!(
                "ddstore: truncated graph record ({} bytes, needed {} more at byte {})",
                self.b.len(),
                n,
                self.at
            )));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()? as usize;
        if n > self.b.len() {
            return Err(Error::Invalid(format!(
                "ddstore: corrupt graph record (length {n} in a record of {} bytes)",
                self.b.len()
            )));
        }
        Ok(n)
    }
    fn f64s(&mut self) -> Result<Vec<f64>> {
        let n = self.len()?;
        let s = self.take(n * 8)?;
        Ok(s.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
    fn i64s(&mut self) -> Result<Vec<i64>> {
        let n = self.len()?;
        let s = self.take(n * 8)?;
        Ok(s.chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
    fn opt(&mut self) -> Result<Option<Vec<f64>>> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => Ok(Some(self.f64s()?)),
        }
    }
}

fn scalar(v: Option<Vec<f64>>) -> Result<Option<f64>> {
    v.map(|v| {
        v.first()
            .copied()
            .ok_or_else(|| Error::Invalid("ddstore: corrupt graph record (empty scalar)".into()))
    })
    .transpose()
}

/// Reads one record written by [`encode`].
pub fn decode(b: &[u8]) -> Result<Graph> {
    let mut c = Cursor { b, at: 0 };
    let index = c.u64()? as usize;
    let numbers = c.i64s()?.into_iter().map(|z| z as i32).collect();
    let species = c.i64s()?;
    let src = c.i64s()?;
    let dst = c.i64s()?;
    let edge_vec = c.f64s()?;
    let energy = scalar(c.opt()?)?;
    let forces = c.opt()?;
    let stress = match c.opt()? {
        Some(s) => Some(<[f64; 9]>::try_from(s.as_slice()).map_err(|_| {
            Error::Invalid("ddstore: corrupt graph record (stress is not 3x3)".into())
        })?),
        None => None,
    };
    let volume = scalar(c.opt()?)?;
    let n = c.len()?;
    let mut props = BTreeMap::new();
    for _ in 0..n {
        let k = c.len()?;
        let k = String::from_utf8(c.take(k)?.to_vec())
            .map_err(|_| Error::Invalid("ddstore: corrupt graph record (property name)".into()))?;
        props.insert(k, c.f64s()?);
    }
    if c.at != b.len() {
        return Err(Error::Invalid(format!(
            "ddstore: graph record has {} trailing bytes",
            b.len() - c.at
        )));
    }
    let reverse = mlip::model::graphs::reverse_edges(&src, &dst, &edge_vec);
    Ok(Graph {
        index,
        numbers,
        species,
        src,
        dst,
        edge_vec,
        reverse,
        energy,
        forces,
        stress,
        volume,
        props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        let mut props = BTreeMap::new();
        props.insert("charges".to_string(), vec![0.1, -0.1]);
        Graph {
            index: 7,
            numbers: vec![29, 8],
            species: vec![1, 0],
            src: vec![0, 1],
            dst: vec![1, 0],
            edge_vec: vec![1.0, 2.0, 3.0, -1.0, -2.0, -3.0],
            energy: Some(-3.25),
            forces: Some(vec![0.5; 6]),
            stress: Some([0.125; 9]),
            volume: None,
            props,
            reverse: Some(vec![1, 0]),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let g = graph();
        let mut b = Vec::new();
        encode(&g, &mut b);
        let h = decode(&b).unwrap();
        assert_eq!(format!("{g:?}"), format!("{h:?}"));
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut b = Vec::new();
        encode(&graph(), &mut b);
        for cut in [0, 5, b.len() / 2, b.len() - 1] {
            let e = decode(&b[..cut]).unwrap_err().to_string();
            assert!(e.contains("ddstore"), "{e}");
        }
        b.push(0);
        assert!(decode(&b).unwrap_err().to_string().contains("trailing"));
    }
}
