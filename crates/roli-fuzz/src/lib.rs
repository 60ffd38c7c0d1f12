//! Test support for fuzzing roli's parsers on stable Rust, in the ordinary test suite.
//!
//! Why hand-written and not `proptest`/`arbitrary`: the parsers read byte formats with length
//! fields, so the useful inputs are *mutations of real files* (bit flips, truncations, splices,
//! length fields overwritten with huge values), which a few dozen lines do deterministically and
//! fast (≥ 10,000 cases per parser in seconds); property-testing strategies generate structured
//! values, not damaged files, and would add compile time. Long coverage-guided runs use
//! libFuzzer through `cargo fuzz` (`fuzz/`, nightly), on the same entry points.
//!
//! * [`Rng`]: a tiny seeded generator, so every case reproduces from (parser, seed, index).
//! * [`Mutator`]: the mutation engine (see [`mutate`]).
//! * [`CapAlloc`]: a `#[global_allocator]` for fuzz test binaries that refuses (and reports) any
//!   single allocation above a cap — the "no allocation driven by an untrusted size" check.
//! * [`json`]: structural mutations of JSON files (a value replaced by an extreme one, a key
//!   dropped or added), which reach the checks behind the syntax that byte mutations rarely pass.
//! * [`Campaign`]: runs N cases of one parser, each under `catch_unwind`, with a watchdog against
//!   hangs, and reports cases, wall time and every failure with its reproducing input.
mod alloc;
mod campaign;
pub mod json;
pub mod mutate;
mod rng;

pub use alloc::{CapAlloc, CAP_BYTES};
pub use campaign::{Campaign, Outcome};
pub use mutate::Mutator;
pub use rng::Rng;
