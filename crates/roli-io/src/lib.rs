//! The one atomic file write of roli. Every crate writes its files through it, so a kill at any
//! moment leaves either the old file or the new one, never half of one: the bytes go to a
//! temporary file in the same folder (same file system, so the rename is atomic), are flushed to
//! disk, and the temporary file is renamed over the target. A failed write removes its temporary
//! file. This crate has no dependencies, so the libraries that must not import each other can
//! all use it. The writer is also where the kill and disk-full tests hook in ([`failpoint`]).
pub mod failpoint;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` for this process (`.<name>.<pid>.tmp`).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = parent(path);
    let name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// The pid in a temporary file's name (`.<name>.<pid>.tmp`), if `file_name` is one. A killed
/// writer leaves its temporary file behind; the next writer of the folder removes it.
pub fn temp_owner(file_name: &str) -> Option<u32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = stem.rsplit_once('.')?;
    pid.parse().ok()
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically, creating the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(
        path,
        |tmp| {
            let mut f = std::fs::File::create(tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        },
        |e| e,
    )
}

/// Atomic write for writers that take a path (e.g. libtorch's safetensors writer): `write`
/// fills the temporary file, which is then flushed and renamed over `path`; `io_error` turns
/// this function's own I/O errors into the writer's error type.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    io_error: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    std::fs::create_dir_all(parent(path)).map_err(&io_error)?;
    let tmp = temp_path(path);
    let name = path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default();
    let res = write(&tmp).and_then(|()| {
        let finish = || -> io::Result<()> {
            std::fs::File::open(&tmp)?.sync_all()?;
            failpoint::fail_write(&name)?;
            failpoint::kill_point("write", &name);
            std::fs::rename(&tmp, path)?;
            failpoint::kill_point("renamed", &name);
            Ok(())
        };
        finish().map_err(&io_error)
    });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the target remains");
    }

    #[test]
    fn temporary_names_carry_their_writer() {
        let t = temp_path(Path::new("/x/state.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(std::process::id()));
        assert_eq!(temp_owner(".last.safetensors.12.tmp"), Some(12));
        assert_eq!(temp_owner("state.json"), None);
        assert_eq!(temp_owner(".a.b.tmp"), None);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.bin");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(
            &p,
            |tmp| -> io::Result<()> {
                std::fs::write(tmp, b"half")?;
                Err(io::Error::other("killed"))
            },
            |e| e,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "killed");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(!temp_path(&p).exists());
    }
}
