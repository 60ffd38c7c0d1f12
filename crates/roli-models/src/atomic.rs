//! The crate's one way of writing files: every file goes to a temporary name next to its
//! target first and is renamed into place only once all files of the set are written, so a
//! crash never leaves a half-written file under a final name. (`roli_data::cache::write_atomic`
//! is the data crate's counterpart; the crates do not depend on each other.)

use std::path::{Path, PathBuf};

use crate::error::CheckpointError;

/// Writes a file's content to the (temporary) path it is given.
pub(crate) type Writer<'a> = Box<dyn FnOnce(&Path) -> Result<(), CheckpointError> + 'a>;

/// `<path>.tmp<pid>`: the temporary name `path` is written under.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes every `(target, writer)` to its temporary name, then renames them into place in
/// order. On error the temporaries not yet renamed are removed.
pub(crate) fn write_atomic(files: Vec<(&Path, Writer<'_>)>) -> Result<(), CheckpointError> {
    let temps: Vec<PathBuf> = files.iter().map(|(target, _)| temp_path(target)).collect();
    let targets: Vec<&Path> = files.iter().map(|(target, _)| *target).collect();
    let result = (|| {
        for ((_, write), tmp) in files.into_iter().zip(&temps) {
            write(tmp)?;
        }
        for (tmp, target) in temps.iter().zip(&targets) {
            std::fs::rename(tmp, target)
                .map_err(|source| CheckpointError::Io { file: target.to_path_buf(), source })?;
        }
        Ok(())
    })();
    if result.is_err() {
        for tmp in &temps {
            let _ = std::fs::remove_file(tmp);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &'static [u8]) -> Writer<'static> {
        Box::new(move |p: &Path| std::fs::write(p, b).map_err(|source| CheckpointError::Io { file: p.into(), source }))
    }

    #[test]
    fn writes_all_or_leaves_targets_alone() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.json"), d.path().join("b.safetensors"));
        write_atomic(vec![(&a, bytes(b"one")), (&b, bytes(b"two"))]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert_eq!(std::fs::read(&b).unwrap(), b"two");
        let failing: Writer = Box::new(|p: &Path| {
            std::fs::write(p, b"partial").unwrap();
            Err(CheckpointError::Sidecar { file: p.into(), reason: "boom".into() })
        });
        assert!(write_atomic(vec![(&a, bytes(b"new")), (&b, failing)]).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"one", "a target was replaced although the set failed");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "temporary files left behind: {names:?}");
    }
}
