//! Integration tests of roli-models, in one binary (one libtorch link). Golden data comes from
//! `tests/golden/gen.py`, run with the project's `.venv/bin/python` into `CARGO_TARGET_TMPDIR`.

mod common;

mod attention;
mod checkpoints;
mod full;
mod lenet;
mod own;
mod parity;
mod peft;
mod prompt;
mod script;
