# Quick start: `make demo`, then `make test`. Both install what they need first.
SHELL := bash
CARGO ?= cargo
LANGUAGES := rust go js python

.PHONY: demo test guests brokers kafka lint fmt setup clean docs bench bench-tenants bench-reload bench-handler bench-deploy bench-rebalance browser registry

## Install the tools the build needs (the wasm32-wasip2 target; a C toolchain for librdkafka).
setup:
	@bash scripts/setup.sh

## Build the example handlers of every language (Wasm components). Each build script installs its
## toolchain into ~/.cache/ackbar/toolchains when missing.
guests: setup
	@for lang in $(LANGUAGES); do \
		if [ -f guest-examples/$$lang/build.sh ]; then bash guest-examples/$$lang/build.sh || exit 1; fi; \
	done

## Run the demo on the embedded broker: no Kafka install needed.
demo: setup
	@echo "make demo: building the Rust example handler and the ackbar binary. The first build compiles"
	@echo "wasmtime and librdkafka (about 10 minutes on 2 cores); later builds take seconds."
	@# The example handler builds beside the host: the host build leaves a core idle at times.
	@bash guest-examples/rust/build.sh --quiet & guest=$$!; \
	  $(CARGO) build --locked -p ackbar --bin ackbar; host=$$?; \
	  wait $$guest && exit $$host
	$(CARGO) run --quiet --locked -p ackbar -- demo

## Formatting and lints, warnings are errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## The test brokers, cached outside the repository: Apache Kafka 4.4 (from Maven Central) and tansu.
brokers:
	@bash scripts/install-brokers.sh

## Headless Chromium and ChromeDriver from the distribution's packages, for the console's tests.
browser:
	@bash scripts/install-browser.sh >/dev/null

## The OCI registry (Distribution v2) from the distribution's package, for the tests that push and
## pull Wasm components.
registry:
	@bash scripts/install-registry.sh >/dev/null

## Start Apache Kafka on 127.0.0.1:9092 (or PORT=...) to try Ackbar against it by hand.
kafka:
	bash scripts/kafka.sh $(PORT)

## Every test: unit, integration (embedded broker, Apache Kafka, tansu), CLI. Tests mostly wait on the broker, so
## they run more threads than the machine has cores.
test:
	@# Side by side: building the guests and installing the brokers is mostly downloading.
	@$(MAKE) --no-print-directory -j3 --output-sync=target guests brokers browser registry lint
	cd guest-examples/rust && $(CARGO) test --quiet --locked --workspace
	cd sdk/rust && $(CARGO) test --quiet --locked --target-dir ../../guest-examples/rust/target
	bash guest-examples/go/test.sh
	bash guest-examples/python/test.sh
	bash guest-examples/js/test.sh
	$(CARGO) test --locked -- --test-threads 8

## End-to-end throughput on Apache Kafka: raw rdkafka, native, every language's Wasm handler,
## FastStream; prints the table and the ratios (BENCH_MESSAGES, BENCH_BROKER, BENCH_CASES).
## Release build (the first one compiles wasmtime and librdkafka optimised: ≈ 10 minutes).
bench: guests brokers
	$(CARGO) bench --locked -p ackbar-benches --bench e2e

## Tenant isolation: a well-behaved tenant alone vs beside each hostile guest (release build).
bench-tenants: guests brokers
	$(CARGO) bench --locked -p ackbar-benches --bench tenants

## Fleet deploys: three members, Rust and 40 MB Python components (release build).
bench-deploy: guests brokers
	$(CARGO) bench --locked -p ackbar-benches --bench deploy

## Hot-reload benchmark. Reuses the test build: dependencies (wasmtime, librdkafka) are
## optimised there already (opt-level 2), so no separate release build of wasmtime is needed.
bench-reload: guests
	$(CARGO) bench --locked -p ackbar-benches --bench reload --profile dev

## A member joining a busy group, classic against KIP-848's consumer protocol on Apache Kafka:
## time until every partition is consumed again, pauses, messages handled twice (test build,
## like bench-reload: the broker's protocol, not the CPU, is what it measures).
bench-rebalance: guests brokers
	$(CARGO) bench --locked -p ackbar-benches --bench rebalance --profile dev

## Micro-benchmarks: policy, offset tracker, handle call (Wasm vs native), instantiation.
bench-handler: guests
	$(CARGO) bench --locked -p ackbar-benches --bench handler --profile dev

## The book (docs/) as HTML in target/book, with mdBook (installed by cargo into the cache once).
MDBOOK_VERSION := 0.5.4
MDBOOK := $(or $(ACKBAR_CACHE),$(HOME)/.cache/ackbar)/tools/mdbook-$(MDBOOK_VERSION)/bin/mdbook
docs: $(MDBOOK)
	$(MDBOOK) build docs
	@echo "the book: target/book/index.html"

$(MDBOOK):
	$(CARGO) install --locked --quiet mdbook --version $(MDBOOK_VERSION) --root $(dir $(@D))

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf guest-examples/*/target
