//! The campaign driver: N deterministic cases of one parser, each under `catch_unwind`, with a
//! watchdog thread against hangs and a report line (cases, accepted/rejected, wall time,
//! slowest case). Environment knobs, so a failure reproduces and long runs need no code change:
//! `ROLI_FUZZ_CASES` (default 10,000), `ROLI_FUZZ_SEED` (default 0x5eed), `ROLI_FUZZ_CASE=i`
//! (run only case i, e.g. the one a failure names; its input is saved before it runs, since
//! a stack overflow or a refused allocation aborts the process).
use crate::alloc::set_current;
use crate::mutate::Mutator;
use crate::rng::Rng;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

/// A single case running longer than this aborts the run (a hang), naming the case.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);
/// A single case slower than this is a failure (a parser that is quadratic or worse).
pub const SLOW_CASE: Duration = Duration::from_secs(5);

/// Wall-time bound of a campaign per 10,000 cases.
pub const WALL_PER_10K: Duration = Duration::from_secs(60);

/// One parser's campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    name: &'static str,
    cases: u64,
    seed: u64,
    only: Option<u64>,
}

/// What a campaign saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    /// Cases run (seeds included).
    pub cases: u64,
    /// Cases the parser accepted / rejected with an error.
    pub accepted: u64,
    pub rejected: u64,
    pub wall: Duration,
    pub slowest: Duration,
    /// Panics and slow cases, each with its reproducing index, saved input file and hex prefix.
    pub failures: Vec<String>,
}

impl Outcome {
    /// The one-line summary the fuzz tests print.
    pub fn summary(&self) -> String {
        format!(
            "fuzz {:<14} {:>6} cases ({} accepted, {} rejected), {} failures, wall {:.2} s, slowest case {:.1} ms",
            self.name,
            self.cases,
            self.accepted,
            self.rejected,
            self.failures.len(),
            self.wall.as_secs_f64(),
            self.slowest.as_secs_f64() * 1e3
        )
    }
    /// Panics with every failure if there was any (the assertion of a fuzz test), or if the
    /// campaign took longer than [`WALL_PER_10K`] per 10,000 cases (a loose bound: the suite's
    /// budget is 120 s for all parsers together, and these take seconds).
    pub fn assert_clean(&self) {
        println!("{}", self.summary());
        assert!(self.failures.is_empty(), "{}\n{}", self.summary(), self.failures.join("\n"));
        let budget = WALL_PER_10K.mul_f64((self.cases as f64 / 10_000.0).max(1.0));
        assert!(self.wall <= budget, "{}: slower than {budget:?}", self.summary());
    }
}

fn env_u64(key: &str) -> Option<u64> {
    let v = std::env::var(key).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

thread_local! {
    /// The last panic message of this thread while it runs a case (the hook stores it here).
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that records panics inside cases instead of printing them.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

impl Campaign {
    /// A campaign named after the parser, sized by the environment (see the module note).
    pub fn new(name: &'static str) -> Self {
        Campaign {
            name,
            cases: env_u64("ROLI_FUZZ_CASES").unwrap_or(10_000),
            seed: env_u64("ROLI_FUZZ_SEED").unwrap_or(0x5eed),
            only: env_u64("ROLI_FUZZ_CASE"),
        }
    }

    /// Runs the seeds unchanged (each must be accepted: a seed the parser rejects would make the
    /// campaign test only the error path), then the mutated cases.
    pub fn run<T, E: std::fmt::Display>(&self, m: &Mutator, parse: impl Fn(&[u8]) -> Result<T, E>) -> Outcome {
        self.run_with(m.seeds(), |rng| m.case(rng), parse)
    }

    /// [`Campaign::run`] with any case generator (e.g. one mixing byte-level and structural
    /// mutations, [`crate::json`]).
    pub fn run_with<T, E: std::fmt::Display>(
        &self,
        seeds: &[Vec<u8>],
        case: impl Fn(&mut Rng) -> Vec<u8>,
        parse: impl Fn(&[u8]) -> Result<T, E>,
    ) -> Outcome {
        install_hook();
        let mut out = Outcome {
            name: self.name,
            cases: 0,
            accepted: 0,
            rejected: 0,
            wall: Duration::ZERO,
            slowest: Duration::ZERO,
            failures: vec![],
        };
        if self.only.is_none() {
            for (i, s) in seeds.iter().enumerate() {
                if let Err(e) = parse(s) {
                    out.failures.push(format!("{}: seed {i} is rejected: {e}", self.name));
                }
            }
        }
        let watch = Watchdog::start(self.name);
        let start = Instant::now();
        let indices: Box<dyn Iterator<Item = u64>> = match self.only {
            Some(i) => Box::new(std::iter::once(i)),
            None => Box::new(0..self.cases),
        };
        for i in indices {
            let input = case(&mut Rng::for_case(self.seed, self.name, i));
            if self.only.is_some() {
                // A single case is being reproduced: save it first, since it may abort the process.
                println!("{}", self.failure(i, &input, "reproducing"));
            }
            watch.enter(i);
            let t = Instant::now();
            IN_CASE.with(|c| c.set(true));
            set_current(Some((self.name, i)));
            let r = catch_unwind(AssertUnwindSafe(|| parse(&input).is_ok()));
            set_current(None);
            IN_CASE.with(|c| c.set(false));
            let dt = t.elapsed();
            watch.leave();
            out.cases += 1;
            out.slowest = out.slowest.max(dt);
            match r {
                Ok(true) => out.accepted += 1,
                Ok(false) => out.rejected += 1,
                Err(_) => {
                    let msg = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
                    out.failures.push(self.failure(i, &input, &format!("panic: {msg}")));
                }
            }
            if dt > SLOW_CASE {
                out.failures.push(self.failure(i, &input, &format!("slow: {:.1} s", dt.as_secs_f64())));
            }
        }
        out.wall = start.elapsed();
        out
    }

    /// Saves the input under the temp dir and describes how to reproduce the case.
    fn failure(&self, index: u64, input: &[u8], what: &str) -> String {
        let dir = std::env::temp_dir().join("roli-fuzz");
        let file = dir.join(format!("{}-{index}.bin", self.name));
        let saved = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, input)).is_ok();
        let hex: String = input.iter().take(32).map(|b| format!("{b:02x}")).collect();
        format!(
            "{} case {index} (seed {:#x}; ROLI_FUZZ_CASE={index}): {what}; {} bytes starting {hex}{}",
            self.name,
            self.seed,
            input.len(),
            if saved { format!("; input saved to {}", file.display()) } else { String::new() }
        )
    }
}

/// A thread that aborts the process if one case runs past [`HANG_LIMIT`] (a hang cannot be
/// caught like a panic), after printing the case that hangs.
struct Watchdog {
    started_ms: Arc<AtomicU64>,
    index: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    epoch: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    const IDLE: u64 = u64::MAX;

    fn start(name: &'static str) -> Self {
        let (started_ms, index, done) =
            (Arc::new(AtomicU64::new(Self::IDLE)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let epoch = Instant::now();
        let (s, i, d) = (started_ms.clone(), index.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let began = s.load(Ordering::Relaxed);
                if began != Self::IDLE && epoch.elapsed().as_millis() as u64 > began + HANG_LIMIT.as_millis() as u64 {
                    eprintln!(
                        "roli-fuzz: {name} case {} runs for more than {} s (a hang); reproduce with ROLI_FUZZ_CASE={}",
                        i.load(Ordering::Relaxed),
                        HANG_LIMIT.as_secs(),
                        i.load(Ordering::Relaxed)
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog { started_ms, index, done, epoch, handle: Some(handle) }
    }
    fn enter(&self, i: u64) {
        self.index.store(i, Ordering::Relaxed);
        self.started_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn leave(&self) {
        self.started_ms.store(Self::IDLE, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_caught_and_reported_with_the_case() {
        let m = Mutator::new(vec![b"abc".to_vec()], &[]);
        let c = Campaign { name: "unit", cases: 200, seed: 1, only: None };
        let out = c.run(&m, |b| if b.len() == 3 { Ok(()) } else { Err("len") });
        assert_eq!(out.cases, 200);
        assert!(out.failures.is_empty() && out.accepted > 0 && out.rejected > 0, "{out:?}");
        let bad = c.run(&m, |b: &[u8]| -> Result<(), String> {
            if b.first() == Some(&b'a') {
                Ok(())
            } else {
                panic!("boom {}", b.len())
            }
        });
        assert!(!bad.failures.is_empty());
        assert!(
            bad.failures[0].contains("panic: boom") && bad.failures[0].contains("ROLI_FUZZ_CASE="),
            "{:?}",
            bad.failures
        );
    }
}
