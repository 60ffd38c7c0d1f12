//! The zip container of `torch.save` files: the central directory (with zip64), stored entries only.

use std::collections::HashMap;

pub(super) struct Zip<'a> {
    pub(super) data: &'a [u8],
    pub(super) entries: HashMap<String, Entry>,
}

/// Where a zip entry's bytes lie and how they are stored.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    start: usize,
    end: usize,
    /// Compression method (0 = stored).
    method: u16,
}

// Offsets come from the file (zip64 fields are u64), so `o + n` is checked, not wrapped.
pub(super) fn u16le(b: &[u8], o: usize) -> Option<u16> {
    b.get(o..o.checked_add(2)?).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
pub(super) fn u32le(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
pub(super) fn u64le(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o.checked_add(8)?).map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

impl<'a> Zip<'a> {
    /// Parses the central directory; only stored (uncompressed) entries are readable.
    pub(super) fn parse(data: &'a [u8]) -> Result<Self, String> {
        let (n, cd) = central_directory(data)?;
        let mut entries = HashMap::new();
        let mut o = cd as usize;
        for _ in 0..n {
            let (name, entry, next) = directory_entry(data, o)?;
            entries.insert(name, entry);
            o = next;
        }
        Ok(Zip { data, entries })
    }

    /// The bytes of a stored entry; None if absent, Err if compressed (torch.save never
    /// compresses, so that means another kind of zip).
    pub(super) fn get(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        match self.entries.get(name) {
            None => Ok(None),
            Some(&Entry { start, end, method: 0 }) => Ok(Some(&self.data[start..end])),
            Some(&Entry { method: m, .. }) => {
                Err(format!("entry {name} is compressed (method {m}); torch.save writes stored entries"))
            }
        }
    }
}

/// Finds the central directory: `(entry count, byte offset)`, from the end-of-central-directory
/// record or, when that holds placeholders, the zip64 end record.
pub(super) fn central_directory(data: &[u8]) -> Result<(u64, u64), String> {
    let min = data.len().saturating_sub(22 + 65_535);
    let eocd = (min..=data.len().saturating_sub(22))
        .rev()
        .find(|&i| u32le(data, i) == Some(0x0605_4b50))
        .ok_or("zip end-of-central-directory record not found (file truncated?)")?;
    let n = u16le(data, eocd + 10).ok_or("short EOCD")? as u64;
    let cd = u32le(data, eocd + 16).ok_or("short EOCD")? as u64;
    if n != 0xFFFF && cd != 0xFFFF_FFFF {
        return Ok((n, cd));
    }
    let loc = eocd.checked_sub(20).filter(|&l| u32le(data, l) == Some(0x0706_4b50)).ok_or("zip64 locator missing")?;
    let z = u64le(data, loc + 8).ok_or("short zip64 locator")? as usize;
    if u32le(data, z) != Some(0x0606_4b50) {
        return Err("zip64 end record missing".into());
    }
    Ok((u64le(data, z + 32).ok_or("short zip64 record")?, u64le(data, z + 48).ok_or("short zip64 record")?))
}

/// Parses the central-directory entry at byte `o`: its name, where its data lies, and the
/// offset of the next entry.
pub(super) fn directory_entry(data: &[u8], o: usize) -> Result<(String, Entry, usize), String> {
    if u32le(data, o) != Some(0x0201_4b50) {
        return Err(format!("bad central directory entry at byte {o}"));
    }
    let method = u16le(data, o + 10).ok_or("short entry")?;
    let mut csize = u32le(data, o + 20).ok_or("short entry")? as u64;
    let mut usize_ = u32le(data, o + 24).ok_or("short entry")? as u64;
    let nlen = u16le(data, o + 28).ok_or("short entry")? as usize;
    let elen = u16le(data, o + 30).ok_or("short entry")? as usize;
    let clen = u16le(data, o + 32).ok_or("short entry")? as usize;
    let mut local = u32le(data, o + 42).ok_or("short entry")? as u64;
    let name = String::from_utf8_lossy(data.get(o + 46..o + 46 + nlen).ok_or("short entry name")?).into_owned();
    let extra = data.get(o + 46 + nlen..o + 46 + nlen + elen).ok_or("short extra field")?;
    apply_zip64_extra(extra, [&mut usize_, &mut csize, &mut local])?;
    let start = local_data_start(data, local as usize, &name)?;
    // Checked: a zip64 size of 2⁶⁴−1 wrapped `end` below `start`, and `get` then panicked.
    let end = usize::try_from(csize).ok().and_then(|c| start.checked_add(c)).unwrap_or(usize::MAX);
    if end > data.len() {
        return Err(format!("entry {name} extends past the end of the file (truncated?)"));
    }
    Ok((name, Entry { start, end, method }, o + 46 + nlen + elen + clen))
}

/// zip64 extra field: present values replace the 0xFFFFFFFF placeholders of
/// `[uncompressed size, compressed size, local header offset]`, in that order.
pub(super) fn apply_zip64_extra(extra: &[u8], mut slots: [&mut u64; 3]) -> Result<(), String> {
    let mut e = 0;
    while e + 4 <= extra.len() {
        let id = u16le(extra, e).unwrap_or(0);
        let sz = u16le(extra, e + 2).unwrap_or(0) as usize;
        if id == 1 {
            let mut f = e + 4;
            for slot in slots.iter_mut() {
                if **slot == 0xFFFF_FFFF {
                    **slot = u64le(extra, f).ok_or("short zip64 extra")?;
                    f += 8;
                }
            }
        }
        e += 4 + sz;
    }
    Ok(())
}

/// Byte offset where the data of the entry whose local header is at `l` starts.
pub(super) fn local_data_start(data: &[u8], l: usize, name: &str) -> Result<usize, String> {
    if u32le(data, l) != Some(0x0403_4b50) {
        return Err(format!("bad local header for {name}"));
    }
    Ok(l + 30
        + u16le(data, l + 26).ok_or("short local header")? as usize
        + u16le(data, l + 28).ok_or("short local header")? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip64_size_of_2_pow_64_minus_1_is_an_error_not_a_wrapped_range() {
        // Regression: `start + csize` wrapped to `start - 1`, the range check passed, and
        // reading the entry panicked (slice index starts after its end).
        let mut b = 0x0201_4b50u32.to_le_bytes().to_vec(); // central directory entry
        b.resize(46, 0);
        b[20..28].copy_from_slice(&[0xff; 8]); // compressed + uncompressed size: see zip64
        b[28..30].copy_from_slice(&1u16.to_le_bytes()); // name length
        b[30..32].copy_from_slice(&20u16.to_le_bytes()); // extra length
        b[42..46].copy_from_slice(&67u32.to_le_bytes()); // local header offset
        b.push(b'a');
        b.extend(1u16.to_le_bytes());
        b.extend(16u16.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        b.extend(0x0403_4b50u32.to_le_bytes()); // local header at 67, data at 97
        b.resize(97, 0);
        let e = directory_entry(&b, 0).err().expect("refused");
        assert!(e.contains("extends past the end"), "{e}");
    }

    #[test]
    fn offsets_near_usize_max_read_as_absent() {
        assert_eq!(u32le(&[1, 2, 3, 4], usize::MAX - 1), None);
        assert_eq!(u64le(&[0; 8], usize::MAX), None);
    }
}
