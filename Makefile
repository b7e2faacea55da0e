# Everything runs from a virtual environment in .venv/; a fresh clone needs Python 3.11+, Java 17, Maven and Rust (cargo, for s3s-fs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RISKCTL := $(VENV)/bin/riskctl
KAFKA_LIB := deploy/kafka/target/lib
TOOLS := .tools
ARGS ?=

.PHONY: help venv kafka-fetch promtool-fetch s3-fetch browser-fetch demo check test test-unit test-integration bench broker kafka topics worker schemas clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[devkit,test,rocksdb]'
	touch $@

venv: $(VENV)/.installed  ## create .venv and install the project with its demo, test and rocksdb extras

$(KAFKA_LIB)/.fetched: deploy/kafka/pom.xml
	mvn -B -q -f deploy/kafka/pom.xml dependency:copy-dependencies
	touch $@

kafka-fetch: $(KAFKA_LIB)/.fetched  ## fetch Apache Kafka (KRaft) jars from Maven Central

# promtool (optional: the deploy tests run it when present) from Debian's prometheus package, unpacked
# without installing anything system-wide.
# promtool and the Prometheus server from Debian's package, unpacked without installing it.
$(TOOLS)/prometheus:
	rm -rf $(TOOLS)/deb && mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && apt-get download -q prometheus
	dpkg -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/deb/root
	cp $(TOOLS)/deb/root/usr/bin/promtool $(TOOLS)/promtool
	cp $(TOOLS)/deb/root/usr/bin/prometheus $@ && rm -rf $(TOOLS)/deb
	$@ --version | head -1

$(TOOLS)/promtool: $(TOOLS)/prometheus

promtool-fetch: $(TOOLS)/promtool $(TOOLS)/prometheus  ## fetch promtool and the Prometheus server (Debian package): the deploy tests check rules and alerts, the monitoring test runs them

# s3s-fs (Apache-2.0, the s3s project's S3 server over a directory), built from crates.io: the
# archive's object-storage tests run against it. 0.14.1 builds with rustc 1.95 (0.17 needs newer).
S3S_FS := $(TOOLS)/s3s/bin/s3s-fs
$(S3S_FS):
	cargo install s3s-fs@0.14.1 --features binary --locked --root $(TOOLS)/s3s
	$@ --version

s3-fetch: $(S3S_FS)  ## build the s3s-fs S3 server (cargo, about 2 minutes) for the archive's object-storage tests

# Headless Chromium and its WebDriver from Debian's packages: the console's browser tests (tests/browser)
# drive them with selenium. Installed system-wide with apt-get (as root, else through sudo); skipped
# when both are already there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-fetch:  ## install Debian's chromium and chromium-driver for the console's browser tests (skipped when installed)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "$$(chromium --version 2>/dev/null | head -1); $$(chromedriver --version | head -1)"; \
	else \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; \
	fi

demo: venv  ## run the whole pipeline on the embedded broker with simulated traffic (ARGS="--duration 30 --json")
	$(RISKCTL) demo $(ARGS)

check: venv  ## static checks: lint (ruff, whole repository), types (mypy, library packages), import layering (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: venv kafka-fetch s3-fetch browser-fetch check  ## static checks, then every test: unit, then integration on both brokers (embedded Tansu and Apache Kafka)
	PROMTOOL=$(abspath $(wildcard $(TOOLS)/promtool)) PROMETHEUS=$(abspath $(wildcard $(TOOLS)/prometheus)) S3S_FS=$(abspath $(S3S_FS)) $(PY) -m pytest tests $(ARGS)

test-unit: venv  ## unit tests only (no broker)
	PROMTOOL=$(abspath $(wildcard $(TOOLS)/promtool)) $(PY) -m pytest tests/unit $(ARGS)

test-integration: venv kafka-fetch s3-fetch  ## integration tests only (real brokers, real worker processes, an S3 server)
	S3S_FS=$(abspath $(S3S_FS)) $(PY) -m pytest tests/integration $(ARGS)

bench: venv kafka-fetch  ## benchmark: raw-client ceiling vs naive Faust vs the pipeline (writes bench/results/latest.json)
	$(PY) -m bench $(ARGS)

broker: venv  ## run the embedded Tansu broker in the foreground
	$(RISKCTL) broker $(ARGS)

kafka: venv kafka-fetch  ## run Apache Kafka 4.x (KRaft) on loopback in the foreground
	$(RISKCTL) kafka $(ARGS)

topics: venv  ## create the pipeline's topics on KAFKA_BOOTSTRAP_SERVERS
	$(RISKCTL) topics create

worker: venv  ## run one worker against KAFKA_BOOTSTRAP_SERVERS
	$(RISKCTL) worker $(ARGS)

schemas: venv  ## export JSON Schema files to schemas/json
	$(RISKCTL) schemas export

clean:  ## remove the virtual environment, fetched jars and local state
	rm -rf $(VENV) $(TOOLS) deploy/kafka/target var .pytest_cache
