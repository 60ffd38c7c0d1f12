//! One writer per output folder: `DIR/.roli.lock`.
//!
//! Two roli processes writing the same run folder would interleave checkpoints and results that
//! each believe are their own. So every command that writes an output folder (`run`, `probe`,
//! `finetune`, `tune`, `eval`, `demo`, `pretrain`) first takes its lock: an exclusive `flock(2)`
//! on `DIR/.roli.lock`, held for the command's life, with the holder written inside (pid, host,
//! start time, command line) so that a refused second command can say who holds the folder.
//!
//! The kernel drops a `flock` when its holder dies, SIGKILL included, so a free lock whose file
//! still names a process is stale: if that process is gone from this host, the lock is taken
//! over with a warning, and the temporary files its atomic writes left behind are removed. A
//! lock naming another host is never taken over (its process cannot be checked from here). The
//! file is removed when the command ends, normally or with an error.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside an output folder.
pub const LOCK_FILE: &str = ".roli.lock";

/// Who holds a folder (the lock file's content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Unix time (seconds) the lock was taken.
    pub started: u64,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`), so a recycled pid
    /// is not mistaken for the holder.
    #[serde(default)]
    pub pid_start: Option<u64>,
    pub command: String,
}

impl Holder {
    /// This process, running `command`.
    pub fn me(command: &str) -> Self {
        let pid = std::process::id();
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Holder { pid, host: hostname(), started, pid_start: process_start(pid), command: command.to_string() }
    }

    /// Whether the holder is a live process on this host (a recycled pid does not count).
    fn alive_here(&self) -> bool {
        self.host == hostname()
            && pid_alive(self.pid)
            && match (self.pid_start, process_start(self.pid)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// "pid 1234 on host, since 2026-12-02 01:30:00 UTC: roli run …".
    fn describe(&self) -> String {
        format!("pid {} on {}, since {}: {}", self.pid, self.host, utc(self.started), self.command)
    }
}

/// The held lock of a folder; dropping it releases the folder.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    file: File,
    /// The folder, when this lock created it: removed again on release if nothing was written.
    created: Option<PathBuf>,
    /// The stale holder this lock replaced, if any.
    pub took_over: Option<Holder>,
}

impl OutputLock {
    /// Takes `dir`'s lock (creating `dir`) for this process running `command`; refuses, naming
    /// the holder, while another process holds it.
    pub fn acquire(dir: &Path, command: &str) -> anyhow::Result<OutputLock> {
        let created = (!dir.exists()).then(|| dir.to_path_buf());
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        // A holder releasing the folder removes the file between our open and our flock; the
        // flock is then on a deleted file, so open again.
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            if !try_flock(&file).with_context(|| format!("locking {}", path.display()))? {
                return Err(busy(dir, &path, read_holder(&mut file)));
            }
            if !same_file(&file, &path) {
                continue;
            }
            let previous = read_holder(&mut file);
            let took_over = match previous {
                Some(h) if h.pid == std::process::id() && h.host == hostname() => None,
                Some(h) if h.host != hostname() || h.alive_here() => return Err(busy(dir, &path, Some(h))),
                Some(h) => {
                    tracing::warn!(
                        "{}: taking over the stale lock of {} (that process is no longer running)",
                        path.display(),
                        h.describe()
                    );
                    remove_temporaries(dir, h.pid);
                    Some(h)
                }
                None => None,
            };
            write_holder(&mut file, &Holder::me(command)).with_context(|| format!("writing {}", path.display()))?;
            return Ok(OutputLock { path, file, created, took_over });
        }
        bail!(
            "{}: could not take the lock (it keeps changing); is another roli starting in the same folder?",
            path.display()
        )
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutputLock {
    /// Removes the file while still holding the flock (a waiting process then re-opens it), then
    /// closing the file releases the flock. A folder the lock created and nothing else filled (a
    /// command that failed on its input) goes too (`remove_dir` refuses a non-empty folder).
    fn drop(&mut self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = &self.created {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The command line of this process, for the lock file.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Takes `dir`'s lock for this process's command line.
pub fn lock_output(dir: &Path) -> anyhow::Result<OutputLock> {
    OutputLock::acquire(dir, &command_line())
}

fn busy(dir: &Path, path: &Path, holder: Option<Holder>) -> anyhow::Error {
    let who = holder.map(|h| h.describe()).unwrap_or_else(|| "a process that has not written its name yet".into());
    anyhow::anyhow!(
        "{} is in use by another roli ({who}); wait for it to finish or use another output folder (if that process is gone, delete {})",
        dir.display(),
        path.display()
    )
}

/// An exclusive, non-blocking flock: Ok(false) when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a valid, open file descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether `file` is still the file at `path` (not removed or replaced since it was opened).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The holder in the file; None when empty or unreadable (a holder killed while writing it).
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_holder(file: &mut File, h: &Holder) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(serde_json::to_string_pretty(h)?.as_bytes())?;
    file.sync_all()
}

/// Removes the temporary files that `pid`'s atomic writes left in `dir` and its sub-folders.
fn remove_temporaries(dir: &Path, pid: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_temporaries(&p, pid);
        } else if roli_io::temp_owner(&e.file_name().to_string_lossy()) == Some(pid) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether a process `pid` exists on this host (kill with signal 0 checks without signalling).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (days to civil date: Howard Hinnant's algorithm).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pid of a process that has exited.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn a_second_holder_is_refused_by_name_and_the_lock_goes_with_its_holder() {
        let d = tempfile::tempdir().unwrap();
        let lock = OutputLock::acquire(d.path(), "roli run a.toml").unwrap();
        let written: Holder = serde_json::from_str(&std::fs::read_to_string(lock.path()).unwrap()).unwrap();
        assert_eq!((written.pid, written.command.as_str()), (std::process::id(), "roli run a.toml"));
        // A second open file of the same path conflicts with the first, even in one process.
        let e = OutputLock::acquire(d.path(), "roli eval").unwrap_err().to_string();
        let pid = std::process::id();
        assert!(e.contains("is in use by another roli") && e.contains(&format!("pid {pid} on ")), "{e}");
        assert!(e.contains("roli run a.toml") && e.contains(LOCK_FILE), "{e}");
        drop(lock);
        assert!(!d.path().join(LOCK_FILE).exists(), "released on drop");
        // A folder the lock created is removed with it when nothing was written into it.
        let (empty, filled) = (d.path().join("new"), d.path().join("used"));
        drop(OutputLock::acquire(&empty, "x").unwrap());
        assert!(!empty.exists());
        let l = OutputLock::acquire(&filled, "x").unwrap();
        std::fs::write(filled.join("results.json"), b"{}").unwrap();
        drop(l);
        assert!(filled.join("results.json").exists());
        let again = OutputLock::acquire(d.path(), "roli eval").unwrap();
        assert!(again.took_over.is_none());
    }

    #[test]
    fn a_stale_lock_is_taken_over_with_its_temporaries_removed() {
        let d = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let stale = Holder { pid: dead, pid_start: None, ..Holder::me("roli run killed.toml") };
        std::fs::write(d.path().join(LOCK_FILE), serde_json::to_string(&stale).unwrap()).unwrap();
        let sub = d.path().join("probe");
        std::fs::create_dir_all(&sub).unwrap();
        let (theirs, mine) = (sub.join(format!(".last.safetensors.{dead}.tmp")), sub.join("last.safetensors"));
        std::fs::write(&theirs, b"half").unwrap();
        std::fs::write(&mine, b"whole").unwrap();
        let lock = OutputLock::acquire(d.path(), "roli run again.toml").unwrap();
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(dead));
        assert!(!theirs.exists() && mine.exists());
        // Garbage (a holder killed while writing the file) is stale too.
        drop(lock);
        std::fs::write(d.path().join(LOCK_FILE), b"{\"pid\": 1").unwrap();
        assert!(OutputLock::acquire(d.path(), "x").is_ok());
    }

    #[test]
    fn a_live_or_foreign_holder_is_never_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let foreign = Holder { host: "elsewhere".into(), pid: dead_pid(), ..Holder::me("roli demo") };
        std::fs::write(d.path().join(LOCK_FILE), serde_json::to_string(&foreign).unwrap()).unwrap();
        let e = OutputLock::acquire(d.path(), "x").unwrap_err().to_string();
        assert!(e.contains("on elsewhere") && e.contains("roli demo"), "{e}");
        // A live process on this host that holds no flock (a file system without flock).
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let live = Holder { pid: child.id(), pid_start: process_start(child.id()), ..Holder::me("roli run") };
        std::fs::write(d.path().join(LOCK_FILE), serde_json::to_string(&live).unwrap()).unwrap();
        let e = OutputLock::acquire(d.path(), "x").unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", child.id())), "{e}");
        // The same pid with another start time is a recycled pid: stale.
        let recycled = Holder { pid_start: live.pid_start.map(|s| s + 1), ..live };
        std::fs::write(d.path().join(LOCK_FILE), serde_json::to_string(&recycled).unwrap()).unwrap();
        assert!(OutputLock::acquire(d.path(), "x").unwrap().took_over.is_some());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_175_845), "2026-12-02 01:44:05 UTC");
    }
}
