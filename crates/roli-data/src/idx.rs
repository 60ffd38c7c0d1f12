//! The IDX format of MNIST and Fashion-MNIST (`*-idx3-ubyte` images, `*-idx1-ubyte` labels),
//! raw or gzip-compressed. Header: two zero bytes, a type byte (0x08 = u8), the number of
//! dimensions, then one big-endian u32 per dimension, then the data.
use crate::error::{DataError, Result};
use std::io::Read;
use std::path::Path;

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

const FIX: &str =
    "the file is damaged or not IDX; delete it and re-run `roli data fetch`, or replace it with the original";

/// Reads an IDX file; `.gz` files (or files starting with the gzip magic) are decompressed.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_idx(raw).map_err(|what| DataError::corrupt(path, what, FIX))
}

/// Largest decompressed IDX file accepted (MNIST's largest is 47 MB): a gzip bomb is an
/// error, not an out-of-memory.
pub const MAX_IDX_BYTES: u64 = 1 << 31;

/// Decodes the bytes of an IDX file, gunzipping them first if they start with the gzip magic
/// (the in-memory half of [`read_idx`], which the fuzz tests call directly).
pub fn decode_idx(raw: Vec<u8>) -> std::result::Result<IdxArray, String> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx(&raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip stream is broken ({e})"))?;
    if out.len() as u64 > MAX_IDX_BYTES {
        return Err(format!("gzip stream inflates to more than {MAX_IDX_BYTES} bytes"));
    }
    parse_idx(&out)
}

/// Parses IDX bytes; the error says exactly what is wrong.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("only {} bytes, shorter than the 4-byte IDX magic", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad IDX magic {:02x}{:02x}{:02x}{:02x} (must start with 0000)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!("IDX element type 0x{:02x} is not unsigned byte (0x08)", bytes[2]));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 || ndim > 4 {
        return Err(format!("IDX claims {ndim} dimensions; expected 1 (labels) or 3 (images)"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!("truncated header: {} bytes, need {header}", bytes.len()));
    }
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    // Checked: four u32 dimensions can overflow usize and wrap to a "valid" length.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header))
        .ok_or_else(|| format!("header dimensions {dims:?} overflow the addressable size"))?;
    if bytes.len() != expected {
        let kind = if bytes.len() < expected { "truncated" } else { "has trailing bytes" };
        return Err(format!("{kind}: header says {dims:?} = {expected} bytes, file has {}", bytes.len()));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Encodes a u8 array as IDX (used by tests and to write fixtures in the official format).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&(*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_gzip() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let enc = encode_idx(&[2, 3, 4], &data);
        let a = parse_idx(&enc).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x-idx3-ubyte.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &enc).unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&p).unwrap(), a);
    }

    #[test]
    fn truncated_file_is_a_named_error() {
        let enc = encode_idx(&[10, 28, 28], &vec![0u8; 10 * 28 * 28]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t10k-images-idx3-ubyte");
        std::fs::write(&p, &enc[..enc.len() - 100]).unwrap();
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(
            msg.contains("t10k-images-idx3-ubyte") && msg.contains("truncated") && msg.contains("roli data fetch"),
            "{msg}"
        );
    }

    #[test]
    fn dimensions_overflowing_usize_are_an_error() {
        // Regression (fuzzing): 65536⁴ = 2⁶⁴ wrapped to 0, so this 20-byte header with no data
        // was accepted as a [65536; 4] array (and panicked with overflow checks on).
        let mut b = vec![0, 0, 8, 4];
        for _ in 0..4 {
            b.extend(65_536u32.to_be_bytes());
        }
        assert!(parse_idx(&b).unwrap_err().contains("overflow"));
    }

    #[test]
    fn a_header_claiming_1e12_elements_is_an_error_before_any_allocation() {
        let b = encode_idx(&[1_000_000, 1_000_000], &[1, 2, 3]);
        let t = std::time::Instant::now();
        assert!(parse_idx(&b).unwrap_err().contains("truncated"));
        assert!(decode_idx(b).unwrap_err().contains("truncated"));
        assert!(t.elapsed().as_secs() < 1);
    }

    #[test]
    fn broken_gzip_is_a_named_error_and_the_cap_fits_mnist() {
        const { assert!(MAX_IDX_BYTES >= 47_040_016, "MNIST train images must fit under the gzip cap") };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[0, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
        let mut broken = gz.finish().unwrap();
        broken.truncate(broken.len() - 4);
        assert!(decode_idx(broken).unwrap_err().contains("gzip"));
    }

    #[test]
    fn wrong_magic_and_type() {
        assert!(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 0]).unwrap_err().contains("magic"));
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0]).unwrap_err().contains("element type"));
        assert!(parse_idx(&[0, 0, 8]).unwrap_err().contains("shorter"));
    }
}
