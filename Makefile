# cxlake: `make demo` runs every job kind end to end on bundled data and the built-in Salesforce emulator; `make test` runs every check.
CARGO ?= cargo
CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release/cxlake
FAILPOINTS_BIN := $(CARGO_TARGET_DIR)/release/cxlake-failpoints
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: build failpoints demo test test-engines lint unit integration bench venv clients test-clients clean

build:
	$(CARGO) build --release --locked

## failpoints: cxlake with the named fault points compiled in (src/faults.rs), for the crash tests
## only: the same release profile, only this crate compiled again; `cxlake` itself has no points
failpoints:
	$(CARGO) build --release --locked --features failpoints --bin cxlake-failpoints

$(PY): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $(PY)

venv: $(PY)

## clients: the third-party Salesforce clients the conformance tests run (jsforce 3, from npm)
CLIENTS := tests/clients/node_modules/.package-lock.json
$(CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	cd tests/clients && npm ci --no-audit --no-fund
	touch $(CLIENTS)

clients: $(CLIENTS)

## test-clients: the Salesforce CLI (sf, on the Node 22 it needs, both from npm: a slow install, so
## not part of `make test`) logs in to the emulator, queries, exports and upserts in bulk
SF_CLI := tests/clients/sf/node_modules/.package-lock.json
$(SF_CLI): tests/clients/sf/package.json tests/clients/sf/package-lock.json
	cd tests/clients/sf && npm ci --no-audit --no-fund
	touch $(SF_CLI)

test-clients: build $(PY) $(SF_CLI)
	CXLAKE_BIN=$(BIN) $(PY) -m pytest tests/clients/sf -q

## demo: both Connect jobs on the bundled reports, their hourly/daily roll-ups, then (against the
## built-in Salesforce emulator) a Salesforce export into the lake and the push-back of interval
## metrics into the CTI adapter's objects; then query the lake with DuckDB and show `cxlake status`.
## The venv (about a minute of pip on a fresh clone) is installed while cargo compiles. Logs are for
## people here, also when piped (`make demo | tee demo.log`): human log lines and no EMF metric lines
## (a container keeps the defaults: JSON logs and EMF off a terminal).
demo: export CXLAKE_LOG_FORMAT = human
demo: export CXLAKE_EMF = 0
demo:
	$(MAKE) --no-print-directory -j2 build venv
	rm -rf lake
	$(BIN) validate jobs/demo/*.toml
	$(BIN) run jobs/demo/connect-queue.toml jobs/demo/connect-agent.toml
	$(BIN) run jobs/demo/rollup-queue.toml jobs/demo/rollup-agent.toml
	$(PY) scripts/with_emulator.py $(BIN) -- $(BIN) run jobs/demo/salesforce-export.toml \
		-- $(BIN) run jobs/demo/pushback-queue.toml jobs/demo/pushback-agent.toml
	$(PY) scripts/demo_query.py lake
	$(BIN) status jobs/demo/*.toml

## test: format, lint, unit tests (every workspace crate), job-file validation, integration tests
## (DuckDB, pyarrow, moto, and third-party Salesforce clients against the emulator: simple-salesforce, jsforce)
test: lint unit build failpoints $(PY) $(CLIENTS)
	$(BIN) validate jobs/*/*.toml bench/jobs/*.toml
	CXLAKE_BIN=$(BIN) CXLAKE_FAILPOINTS_BIN=$(FAILPOINTS_BIN) $(PY) -m pytest tests/integration -q -m "not engines"

## test-engines: the demo lake read by other engines (PySpark through Hive's ParquetHiveSerDe,
## with a local Derby metastore; needs a Java 17+ runtime), compared with DuckDB
test-engines: build $(PY)
	@command -v java >/dev/null || { echo "test-engines needs a Java runtime (e.g. apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	CXLAKE_BIN=$(BIN) $(PY) -m pytest tests/integration -q -m engines

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --locked --features failpoints --bin cxlake-failpoints -- -D warnings

unit:
	$(CARGO) test --release --locked --workspace

## bench: generate seeded data and compare cxlake (dist profile: thin LTO) with pyarrow, DuckDB and polars;
## push-back against one call per record; a one-year backfill from moto S3 serial, concurrent and sharded;
## one Salesforce object of 10M records exported incrementally (peak RSS, seconds per million)
DIST_BIN := $(CARGO_TARGET_DIR)/dist/cxlake
bench: $(PY)
	$(CARGO) build --profile dist --locked
	$(PY) bench/run.py --cxlake $(DIST_BIN) --work bench-data
	$(PY) bench/pushback.py --cxlake $(DIST_BIN) --work bench-data
	$(PY) bench/backfill_s3.py --cxlake $(DIST_BIN) --work bench-data
	$(PY) bench/salesforce_scale.py --cxlake $(DIST_BIN) --work bench-data

clean:
	rm -rf lake bench-data bench-out
