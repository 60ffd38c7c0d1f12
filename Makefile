# README's two commands:  `make demo` (main job)  and  `make test` (whole test suite).
# Both set up what they need first (idempotent): .venv with PyTorch 2.11.0, then the release build.
SHELL := /bin/bash
ROOT := $(CURDIR)
export VIRTUAL_ENV := $(ROOT)/.venv
export PATH := $(ROOT)/.venv/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
unexport LIBTORCH LD_LIBRARY_PATH
CARGO ?= cargo
ROLI := $(ROOT)/target/release/roli
DEMO_ARGS ?=

.PHONY: setup build test lint fuzz demo data clean-data

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --workspace --bins

## The whole test suite: formatting, clippy (warnings are errors), then unit + integration
## tests of every crate on the optimised build.
test: build lint
	$(ROLI) data fetch all
	$(CARGO) test --release --workspace

## The parser fuzz tests alone (also part of `test`), one line per parser: docs/fuzzing.md.
fuzz: setup
	$(CARGO) test --release -p roli-data -p roli-models -p roli --test fuzz -- --nocapture

## rustfmt and clippy, as CI runs them.
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## The main job on the embedded default (see README).
demo: build
	$(ROLI) data fetch all
	$(ROLI) demo $(DEMO_ARGS)

data: build
	$(ROLI) data fetch all
