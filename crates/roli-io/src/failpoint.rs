//! Test hooks that make a process die or a write fail at a chosen, named moment, so the kill and
//! disk-full tests are deterministic instead of racing a timer.
//!
//! Two environment variables, each read once per process (an unset variable costs one atomic load
//! per site afterwards):
//!
//! * `ROLI_KILL_AT=SITE[:DETAIL][:N]`: the N-th time (default 1) this process passes SITE (with
//!   DETAIL, when given), it sends itself SIGKILL: no destructors, no flush, exactly what `kill -9`
//!   or the OOM killer does (`abort` would run a signal handler and may dump core). The sites:
//!   - `write:FILE`: an atomic write of a file named FILE has filled and flushed its temporary
//!     file and not yet renamed it over the target (`write` alone: any file);
//!   - `renamed:FILE`: right after the rename (e.g. `renamed:state.json`: after the state file);
//!   - `batch`: after a training batch's optimiser step (and its checkpoint, when one is due);
//!   - `aa-stage`: after an evaluation stage (e.g. AutoAttack's APGD-CE) and its saved state.
//! * `ROLI_FAIL_WRITE=[FILE:]N`: the N-th atomic write (of a file named FILE) fails after filling
//!   its temporary file, with ENOSPC ("No space left on device"), as a full disk would.
//!
//! Counts are per process: a resumed run starts counting again (and the tests resume without the
//! variable).
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable that names the kill point.
pub const KILL_ENV: &str = "ROLI_KILL_AT";
/// The variable that names the failing write.
pub const FAIL_WRITE_ENV: &str = "ROLI_FAIL_WRITE";

/// Linux's ENOSPC.
const ENOSPC: i32 = 28;

/// A parsed point: the site, an optional detail (a file name), and which hit triggers it.
#[derive(Debug)]
struct Point {
    site: String,
    detail: Option<String>,
    nth: u64,
    hits: AtomicU64,
}

impl PartialEq for Point {
    fn eq(&self, o: &Self) -> bool {
        (&self.site, &self.detail, self.nth) == (&o.site, &o.detail, o.nth)
    }
}

impl Point {
    /// `SITE[:DETAIL][:N]`; a last part that is a number is N (≥ 1).
    fn parse(spec: &str) -> Option<Point> {
        let spec = spec.trim();
        if spec.is_empty() {
            return None;
        }
        let (rest, nth) = match spec.rsplit_once(':') {
            Some((rest, n)) if n.parse::<u64>().is_ok() => (rest, n.parse::<u64>().ok()?.max(1)),
            _ => (spec, 1),
        };
        let (site, detail) = match rest.split_once(':') {
            Some((s, d)) => (s.to_string(), Some(d.to_string())),
            None => (rest.to_string(), None),
        };
        Some(Point { site, detail, nth, hits: AtomicU64::new(0) })
    }

    /// Counts a pass through (site, detail) if it matches; true on the N-th matching pass.
    fn hit(&self, site: &str, detail: &str) -> bool {
        if self.site != site || self.detail.as_deref().is_some_and(|d| d != detail) {
            return false;
        }
        self.hits.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
    }
}

fn from_env(var: &str) -> Option<Point> {
    std::env::var(var).ok().and_then(|s| Point::parse(&s))
}

/// `ROLI_KILL_AT`: SIGKILLs this process on its N-th pass through `site` (with `detail`).
pub fn kill_point(site: &str, detail: &str) {
    static KILL: OnceLock<Option<Point>> = OnceLock::new();
    if let Some(p) = KILL.get_or_init(|| from_env(KILL_ENV)) {
        if p.hit(site, detail) {
            eprintln!("{KILL_ENV}: SIGKILL at {site} {detail} (pass {})", p.nth);
            sigkill_self();
        }
    }
}

/// `ROLI_FAIL_WRITE`: an ENOSPC error for the N-th atomic write (of a file named `file`).
pub fn fail_write(file: &str) -> io::Result<()> {
    static FAIL: OnceLock<Option<Point>> = OnceLock::new();
    let point = FAIL.get_or_init(|| {
        // `[FILE:]N` is a kill-style point at the implicit site `write`.
        std::env::var(FAIL_WRITE_ENV).ok().and_then(|s| Point::parse(&format!("write:{s}")))
    });
    match point {
        Some(p) if p.hit("write", file) => Err(io::Error::from_raw_os_error(ENOSPC)),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn sigkill_self() -> ! {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    // SAFETY: kill(2) on our own pid with a valid signal number; it does not return.
    unsafe {
        kill(std::process::id() as i32, SIGKILL);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[cfg(not(unix))]
fn sigkill_self() -> ! {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(site: &str, detail: Option<&str>, nth: u64) -> Point {
        Point { site: site.into(), detail: detail.map(String::from), nth, hits: AtomicU64::new(0) }
    }

    #[test]
    fn specs_parse_into_site_detail_and_count() {
        assert_eq!(Point::parse("batch:7"), Some(p("batch", None, 7)));
        assert_eq!(Point::parse("batch"), Some(p("batch", None, 1)));
        assert_eq!(Point::parse("write:last.safetensors:2"), Some(p("write", Some("last.safetensors"), 2)));
        assert_eq!(Point::parse("renamed:state.json"), Some(p("renamed", Some("state.json"), 1)));
        assert_eq!(Point::parse("write:0"), Some(p("write", None, 1)), "N counts from 1");
        assert_eq!(Point::parse("  "), None);
    }

    #[test]
    fn only_the_nth_matching_pass_triggers() {
        let pt = Point::parse("write:state.json:2").unwrap();
        assert!(!pt.hit("write", "last.safetensors"));
        assert!(!pt.hit("renamed", "state.json"));
        assert!(!pt.hit("write", "state.json"));
        assert!(pt.hit("write", "state.json"));
        assert!(!pt.hit("write", "state.json"), "once");
        let any = Point::parse("write:3").unwrap();
        assert!(!any.hit("write", "a") && !any.hit("write", "b") && any.hit("write", "c"));
    }

    #[test]
    fn unset_variables_do_nothing() {
        // The test process never sets them: passing a site is free and harmless.
        kill_point("batch", "");
        assert!(fail_write("state.json").is_ok());
        let e = io::Error::from_raw_os_error(ENOSPC).to_string();
        assert!(e.starts_with("No space left on device"), "{e}");
    }
}
