//! The `.npz` archives `np.savez` (stored) and `np.savez_compressed` (deflated) write, and the `.npy` arrays inside:
//! enough of the format to read a HydraGNN state dict without torch.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// True when `head` (the first bytes of a file, 512 are plenty) starts an `.npz` archive: a zip
/// whose first entry is an `.npy` array (a torch checkpoint is a zip too, of `data.pkl` ...).
pub fn is_npz(head: &[u8]) -> bool {
    if !head.starts_with(b"PK\x03\x04") || head.len() < 30 {
        return false;
    }
    let n = u16::from_le_bytes([head[26], head[27]]) as usize;
    head.get(30..30 + n)
        .is_some_and(|name| name.ends_with(b".npy"))
}

/// Reads an `.npz` archive written by `np.savez` or `np.savez_compressed` of float64, float32,
/// int64 or int32 arrays in C order, as CPU tensors of those kinds.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_npz(&bytes).map_err(|m| Error::InvalidInput(format!("'{}': {m}", path.display())))
}

pub(super) fn parse_npz(b: &[u8]) -> std::result::Result<BTreeMap<String, Tensor>, String> {
    let u16_at = |p: usize| {
        b.get(p..p + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
            .ok_or("truncated archive")
    };
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while b.get(pos..pos + 4) == Some(b"PK\x03\x04") {
        let method = u16_at(pos + 8)?;
        let (name_len, extra_len) = (u16_at(pos + 26)?, u16_at(pos + 28)?);
        let name = String::from_utf8_lossy(
            b.get(pos + 30..pos + 30 + name_len)
                .ok_or("truncated archive")?,
        )
        .to_string();
        let start = pos + 30 + name_len + extra_len;
        let data = b.get(start..).ok_or("truncated archive")?;
        let (t, len) = match method {
            0 => parse_npy(data),
            8 => inflate(data).and_then(|(npy, used)| Ok((parse_npy(&npy)?.0, used))),
            m => Err(format!(
                "zip compression method {m} is not supported (np.savez stores, np.savez_compressed deflates)"
            )),
        }
        .map_err(|e| format!("array '{name}': {e}"))?;
        out.insert(name.strip_suffix(".npy").unwrap_or(&name).to_string(), t);
        // The next entry (after an optional data descriptor), or the central directory.
        pos = start + len;
        match (pos..b.len().saturating_sub(4))
            .find(|&p| &b[p..p + 4] == b"PK\x03\x04" || &b[p..p + 4] == b"PK\x01\x02")
        {
            Some(p) => pos = p,
            None => break,
        }
    }
    if out.is_empty() {
        return Err("not an .npz archive".into());
    }
    Ok(out)
}

/// The raw deflate stream at the start of `b` (an entry of `np.savez_compressed`), inflated:
/// the bytes and the number of compressed bytes it took.
fn inflate(b: &[u8]) -> std::result::Result<(Vec<u8>, usize), String> {
    let mut d = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(4 * b.len() + 1024);
    loop {
        let before = d.total_in() as usize;
        let status = d
            .decompress_vec(&b[before..], &mut out, flate2::FlushDecompress::None)
            .map_err(|e| format!("corrupt deflate data: {e}"))?;
        match status {
            flate2::Status::StreamEnd => return Ok((out, d.total_in() as usize)),
            _ if out.len() == out.capacity() => out.reserve(out.capacity()),
            _ if d.total_in() as usize == before => return Err("truncated deflate data".into()),
            _ => {}
        }
    }
}

/// One `.npy` array at the start of `b`: the tensor and the number of bytes it took.
fn parse_npy(b: &[u8]) -> std::result::Result<(Tensor, usize), String> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err("not an .npy array".into());
    }
    let (hlen, hstart) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(b.get(8..12).ok_or("truncated")?.try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(b.get(hstart..hstart + hlen).ok_or("truncated header")?)
        .map_err(|_| "bad header")?;
    let field = |key: &str| {
        header
            .split(&format!("'{key}':"))
            .nth(1)
            .map(str::trim)
            .ok_or(format!("no '{key}' in header"))
    };
    let descr = field("descr")?
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_txt = field("shape")?;
    let inner = shape_txt
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape: Vec<i64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("bad shape '{shape_txt}'"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (kind, size) = match descr {
        "<f8" => (Kind::Double, 8),
        "<f4" => (Kind::Float, 4),
        "<i8" => (Kind::Int64, 8),
        "<i4" => (Kind::Int, 4),
        "|b1" => (Kind::Bool, 1),
        d => {
            return Err(format!(
                "dtype '{d}' is not supported (little-endian f8, f4, i8, i4 and bool are)"
            ))
        }
    };
    let n: i64 = shape.iter().product();
    let start = hstart + hlen;
    let data = b
        .get(start..start + n as usize * size)
        .ok_or("truncated data")?;
    let t = Tensor::f_from_data_size(data, &shape, kind).map_err(|e| e.to_string())?;
    Ok((t, start + data.len()))
}
