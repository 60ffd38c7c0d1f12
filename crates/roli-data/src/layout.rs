//! Which dataset format a folder holds, decided from its real files and never from names alone:
//! a `test` *directory* of class folders is an ImageFolder split, a `test` *file* starting with
//! pickle protocol bytes is a CIFAR-100 python batch. Each format has one probe that reads at
//! most a few header bytes ([`candidates`]); a folder that passes two probes is an error naming
//! both and how to choose (`--format`, `data.format`), never a guess.
use crate::error::{DataError, Result};
use std::io::Read;
use std::path::Path;

/// A folder layout roli reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-…`).
    Idx,
    /// Official CIFAR-10, binary (`*_batch*.bin`) or python (`data_batch_N`, `test_batch`).
    Cifar10,
    /// Official CIFAR-100, binary (`train.bin`, `test.bin`) or python (`train`, `test`).
    Cifar100,
    /// torchvision ImageFolder: `train/<class>/*`, `test/<class>/*`, optional `val/<class>/*`.
    Imagefolder,
    /// The reference repo's `train.json`/`val.json`/`test.json` + an image folder.
    JsonSplits,
}

impl Format {
    pub const ALL: [Format; 5] =
        [Format::Idx, Format::Cifar10, Format::Cifar100, Format::Imagefolder, Format::JsonSplits];

    /// The spelling of `--format` and `data.format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "idx",
            Format::Cifar10 => "cifar10",
            Format::Cifar100 => "cifar100",
            Format::Imagefolder => "imagefolder",
            Format::JsonSplits => "json-splits",
        }
    }

    /// What a folder of this format must contain (for "not a … folder" errors).
    pub fn needs(self) -> &'static str {
        match self {
            Format::Idx => "train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz] with the IDX magic 00000803",
            Format::Cifar10 => {
                "test_batch.bin / data_batch_N.bin (multiples of 3073 bytes) or the pickled test_batch / data_batch_N"
            }
            Format::Cifar100 => "test.bin / train.bin (multiples of 3074 bytes) or the pickled test / train files",
            Format::Imagefolder => "train/<class>/*.png (and test/<class>/…, optional val/<class>/…) directories",
            Format::JsonSplits => "train.json (a JSON object of image path → label) next to the images",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            DataError::Invalid(format!(
                "unknown data format '{s}': use one of {}",
                Format::ALL.map(|f| f.name()).join(", ")
            ))
        })
    }
}

/// A format a folder passed the probe of, and the file that proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub format: Format,
    pub evidence: String,
}

/// What the probes saw: the formats that matched, and files named like a format's but failing its
/// probe (reported when nothing matched, so "test is a directory" explains itself).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probe {
    pub matched: Vec<Candidate>,
    pub rejected: Vec<String>,
}

/// The first `n` bytes of a regular file (fewer if it is shorter); `None` for anything else.
fn head(path: &Path, n: usize) -> Option<Vec<u8>> {
    if !path.is_file() {
        return None;
    }
    let mut buf = Vec::with_capacity(n);
    std::fs::File::open(path).ok()?.take(n as u64).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The first `n` bytes of an IDX file's content, decompressing a gzip stream on the fly.
fn idx_head(path: &Path) -> Option<Vec<u8>> {
    let raw = head(path, 2)?;
    if raw == [0x1f, 0x8b] {
        let f = std::fs::File::open(path).ok()?;
        let mut buf = Vec::new();
        flate2::read::GzDecoder::new(f).take(4).read_to_end(&mut buf).ok()?;
        return Some(buf);
    }
    head(path, 4)
}

/// Whether bytes open a pickle: PROTO 2–5, or protocol 0/1's MARK / EMPTY_DICT.
pub fn is_pickle_start(b: &[u8]) -> bool {
    matches!(b, [0x80, 2..=5, ..] | [b'(' | b'}', ..])
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// Names under `dir` that exist but are not regular files, or are files failing `ok`.
fn note_wrong(dir: &Path, name: &str, why: &str, rejected: &mut Vec<String>) {
    if dir.join(name).exists() {
        rejected.push(format!("{name} {why}"));
    }
}

fn probe_idx(dir: &Path, p: &mut Probe) {
    for stem in ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte"] {
        for name in [stem.to_string(), format!("{stem}.gz")] {
            match idx_head(&dir.join(&name)) {
                Some(h) if h == [0, 0, 8, 3] => {
                    p.matched.push(Candidate { format: Format::Idx, evidence: format!("{name} has the IDX magic") });
                    return;
                }
                Some(_) => p.rejected.push(format!("{name} lacks the IDX magic 00000803")),
                None => note_wrong(dir, &name, "is not a regular file", &mut p.rejected),
            }
        }
    }
}

fn probe_cifar(dir: &Path, p: &mut Probe) {
    let kinds =
        [(Format::Cifar10, ["test_batch", "data_batch_1"], 3073u64), (Format::Cifar100, ["test", "train"], 3074u64)];
    for (format, names, record) in kinds {
        let found = names.iter().find_map(|n| {
            let bin = format!("{n}.bin");
            match file_len(&dir.join(&bin)) {
                Some(len) if len > 0 && len % record == 0 => {
                    return Some(format!("{bin} holds {} records of {record} bytes", len / record));
                }
                Some(len) => p.rejected.push(format!("{bin} has {len} bytes, not a multiple of {record}")),
                None => note_wrong(dir, &bin, "is not a regular file", &mut p.rejected),
            }
            match head(&dir.join(n), 2) {
                Some(h) if is_pickle_start(&h) => Some(format!("{n} is a pickle")),
                Some(_) => {
                    p.rejected.push(format!("{n} is a file but not a pickle"));
                    None
                }
                None => None,
            }
        });
        if let Some(evidence) = found {
            p.matched.push(Candidate { format, evidence });
        }
    }
}

fn probe_image_folder(dir: &Path, p: &mut Probe) {
    for split in ["train", "test", "val"] {
        let d = dir.join(split);
        if !d.is_dir() {
            continue;
        }
        let mut classes: Vec<String> = std::fs::read_dir(&d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if classes.is_empty() {
            p.rejected.push(format!("{split}/ is a directory without class sub-folders"));
            continue;
        }
        classes.sort();
        let shown = classes.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        let more = if classes.len() > 3 { ", …" } else { "" };
        p.matched.push(Candidate {
            format: Format::Imagefolder,
            evidence: format!("{split}/ holds class folders ({shown}{more})"),
        });
        return;
    }
}

fn probe_json(dir: &Path, p: &mut Probe) {
    for name in ["train.json", "test.json"] {
        let Some(h) = head(&dir.join(name), 64) else {
            note_wrong(dir, name, "is not a regular file", &mut p.rejected);
            continue;
        };
        if h.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            p.matched.push(Candidate { format: Format::JsonSplits, evidence: format!("{name} is a JSON object") });
            return;
        }
        p.rejected.push(format!("{name} does not start with a JSON object"));
    }
}

/// Runs every format's probe on `dir`.
pub fn probe(dir: &Path) -> Probe {
    let mut p = Probe::default();
    probe_idx(dir, &mut p);
    probe_cifar(dir, &mut p);
    probe_image_folder(dir, &mut p);
    probe_json(dir, &mut p);
    p
}

/// The format of `dir`: the one probe that matched, or `forced` if its probe matched. No match,
/// two matches without `forced`, or a `forced` format whose probe failed are errors that say
/// what was seen and how to fix it.
pub fn detect(dir: &Path, forced: Option<Format>) -> Result<Format> {
    let p = probe(dir);
    let seen = || {
        if p.rejected.is_empty() {
            String::new()
        } else {
            format!(" (seen: {})", p.rejected.join("; "))
        }
    };
    if let Some(f) = forced {
        return match p.matched.iter().find(|c| c.format == f) {
            Some(_) => Ok(f),
            None => Err(DataError::Layout {
                path: dir.to_path_buf(),
                detail: format!("is not in {f} format{}; --format {f} needs {}", seen(), f.needs()),
            }),
        };
    }
    match p.matched.as_slice() {
        [one] => Ok(one.format),
        [] => Err(DataError::Layout {
            path: dir.to_path_buf(),
            detail: format!(
                "is no dataset folder roli knows{}; expected an IDX, CIFAR-10/100 (binary or python), ImageFolder (train/<class>/*.png, test/<class>/…) or JSON-splits folder",
                seen()
            ),
        }),
        [a, b, ..] => Err(DataError::Layout {
            path: dir.to_path_buf(),
            detail: format!(
                "is ambiguous: it looks like {} ({}) and like {} ({}); choose with --format {} or --format {} (config: data.format)",
                a.format, a.evidence, b.format, b.evidence, a.format, b.format
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(4, 4, image::Luma([7])).save(p).unwrap();
    }

    fn formats(dir: &Path) -> Vec<Format> {
        probe(dir).matched.iter().map(|c| c.format).collect()
    }

    #[test]
    fn image_folder_with_test_dir_is_not_cifar100() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("train/cat/1.png"));
        png(&d.path().join("test/cat/2.png"));
        assert_eq!(detect(d.path(), None).unwrap(), Format::Imagefolder);
        png(&d.path().join("val/cat/3.png"));
        assert_eq!(detect(d.path(), None).unwrap(), Format::Imagefolder);
        // A test-only folder is an ImageFolder too.
        let t = tempfile::tempdir().unwrap();
        png(&t.path().join("test/a/1.png"));
        assert_eq!(formats(t.path()), vec![Format::Imagefolder]);
    }

    #[test]
    fn cifar100_python_is_recognised_by_pickle_bytes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("test"), [0x80, 2, b'}', b'q']).unwrap();
        std::fs::write(d.path().join("meta"), [0x80, 2]).unwrap();
        assert_eq!(detect(d.path(), None).unwrap(), Format::Cifar100);
        // The same name holding text is rejected, and said so.
        std::fs::write(d.path().join("test"), "hello").unwrap();
        let e = detect(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("test is a file but not a pickle") && e.contains("ImageFolder"), "{e}");
    }

    #[test]
    fn cifar_binary_needs_whole_records() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("test_batch.bin"), vec![0u8; 2 * 3073]).unwrap();
        assert_eq!(detect(d.path(), None).unwrap(), Format::Cifar10);
        std::fs::write(d.path().join("test_batch.bin"), vec![0u8; 3074]).unwrap();
        let e = detect(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("3074 bytes, not a multiple of 3073"), "{e}");
        let c = tempfile::tempdir().unwrap();
        std::fs::write(c.path().join("test.bin"), vec![0u8; 3074]).unwrap();
        assert_eq!(detect(c.path(), None).unwrap(), Format::Cifar100);
    }

    #[test]
    fn idx_needs_the_magic_plain_or_gzipped() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("t10k-images-idx3-ubyte"), crate::idx::encode_idx(&[1, 2, 2], &[0; 4])).unwrap();
        assert_eq!(detect(d.path(), None).unwrap(), Format::Idx);
        std::fs::write(d.path().join("t10k-images-idx3-ubyte"), b"not idx").unwrap();
        assert!(detect(d.path(), None).unwrap_err().to_string().contains("lacks the IDX magic"));
        let g = tempfile::tempdir().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &crate::idx::encode_idx(&[1, 2, 2], &[0; 4])).unwrap();
        std::fs::write(g.path().join("train-images-idx3-ubyte.gz"), enc.finish().unwrap()).unwrap();
        assert_eq!(detect(g.path(), None).unwrap(), Format::Idx);
    }

    #[test]
    fn ambiguous_folders_name_both_candidates_and_the_choice() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("train/cat/1.png"));
        std::fs::write(d.path().join("train.json"), r#"{"train/cat/1.png": 0}"#).unwrap();
        let e = detect(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("ambiguous")
                && e.contains("imagefolder (train/ holds class folders (cat))")
                && e.contains("json-splits (train.json is a JSON object)")
                && e.contains("--format imagefolder or --format json-splits")
                && e.contains("data.format"),
            "{e}"
        );
        assert_eq!(detect(d.path(), Some(Format::JsonSplits)).unwrap(), Format::JsonSplits);
        assert_eq!(detect(d.path(), Some(Format::Imagefolder)).unwrap(), Format::Imagefolder);
        let e = detect(d.path(), Some(Format::Cifar10)).unwrap_err().to_string();
        assert!(e.contains("is not in cifar10 format") && e.contains("--format cifar10 needs"), "{e}");
    }

    #[test]
    fn empty_split_dirs_and_unknown_folders_explain_themselves() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("test")).unwrap();
        let e = detect(d.path(), None).unwrap_err().to_string();
        assert!(e.contains("test/ is a directory without class sub-folders"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn format_names_roundtrip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            let toml_name: String = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert_eq!(toml_name, f.name());
        }
        assert!("folder".parse::<Format>().unwrap_err().to_string().contains("imagefolder"));
    }

    #[test]
    fn pickle_starts() {
        assert!(is_pickle_start(&[0x80, 2]) && is_pickle_start(b"(dp0") && is_pickle_start(b"}q"));
        assert!(!is_pickle_start(&[0x80, 9]) && !is_pickle_start(b"PK") && !is_pickle_start(&[]));
    }
}
