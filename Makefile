# The two commands of the README: `make demo` (the main job) and `make test`.
# Both use DATABASE_URL when it answers, else a throwaway local cluster.
# Every target honours CARGO_TARGET_DIR (binaries are looked up under it).

CARGO ?= cargo
PYTHON ?= python3
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RELEASE_BIN := $(TARGET_DIR)/release/reproq
# maturin builds the wheel; installed from PyPI into a local venv when missing.
BUILD_VENV ?= .venv-build
MATURIN ?= $(BUILD_VENV)/bin/maturin

.PHONY: test lint demo build bench-build doc ci wheel wheel-test man completions

build:
	$(CARGO) build --release

test:
	scripts/with-postgres.sh $(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench-build:
	$(CARGO) bench --no-run

doc:
	$(CARGO) doc --no-deps

demo:
	$(CARGO) build --release --bin reproq --example demo
	REPROQ_BIN=$(RELEASE_BIN) scripts/with-postgres.sh $(TARGET_DIR)/release/examples/demo

$(MATURIN):
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install --quiet 'maturin>=1.5,<2.0'

# A binary-only wheel (manylinux tag) in dist/: `pip install dist/reproq_worker_rs-*.whl`.
wheel: $(MATURIN)
	$(MATURIN) build --release --out dist

# Builds the wheel, installs it into a fresh venv and runs `reproq --version` from it.
wheel-test: wheel
	REPROQ_WHEEL_DIR=$(CURDIR)/dist $(CARGO) test --test it packaging::wheel -- --ignored --nocapture

# Man pages (reproq.1, reproq-<subcommand>.1) in dist/man/.
man:
	$(CARGO) build --release --bin reproq
	$(RELEASE_BIN) man dist/man

# Shell completions in dist/completions/.
completions:
	$(CARGO) build --release --bin reproq
	mkdir -p dist/completions
	$(RELEASE_BIN) completions bash > dist/completions/reproq.bash
	$(RELEASE_BIN) completions zsh > dist/completions/_reproq
	$(RELEASE_BIN) completions fish > dist/completions/reproq.fish

ci: lint test bench-build doc
