# The two commands of the README: `make demo` (the main job) and `make test`.
# Both use DATABASE_URL when it answers, else a throwaway local cluster.

CARGO ?= cargo

.PHONY: test lint demo build bench-build doc ci

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
	scripts/with-postgres.sh target/release/examples/demo

ci: lint test bench-build doc
