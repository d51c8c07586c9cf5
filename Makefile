# Sésame: the two commands that matter are `make run` and `make test`; everything else is what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(shell find proto -name '*.proto')
STAMP_VENV := $(VENV)/.installed
STAMP_GEN := gen/.generated
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BUF := .tools/node_modules/.bin/buf
NODE_TOOLS := tools/package.json tools/package-lock.json
STAMP_NODE := .tools/.installed

.PHONY: help run test system-deps python-deps server-deps sms-deps node-deps monitoring-deps dashboard-preview proto lint typecheck archlint bench wheel clean

help:
	@echo "make run    start Sésame on 127.0.0.1:50051 with embedded defaults (Redis child, SoftHSM token under var/)"
	@echo "make test   install what is missing, then lint, type-check and run every test"
	@echo "make bench  run the load generator against a real server (not part of make test)"

## Machine packages: installed only when missing, so a prepared machine does no network work. Each target
## asks only for what its own step needs: building the wheel (the Docker build stage) needs no SoftHSM,
## Redis or npm.
APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq

python-deps:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "installing: python3-venv"; $(APT_INSTALL) python3-venv; }

server-deps:
	@missing=""; \
	command -v softhsm2-util >/dev/null || missing="$$missing softhsm2"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_INSTALL) $$missing; fi

## Kannel (bearerbox, smsbox) and its fake SMSC (kannel-extras) run only in the tests: `make run` uses the
## console gateway. The tests start a private Kannel on free ports, whatever the package's own service does.
sms-deps:
	@missing=""; \
	{ [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ]; } || missing="$$missing kannel"; \
	[ -x /usr/lib/kannel/test/fakesmsc ] || missing="$$missing kannel-extras"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_INSTALL) $$missing; fi

node-deps:
	@command -v npm >/dev/null || { echo "installing: npm"; $(APT_INSTALL) npm; }

## Prometheus (promtool, and a server the tests start on a private port and directory) checks deploy/. The
## package enables and may start its own service on install: disabled and stopped here, nothing stays behind.
monitoring-deps:
	@{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || { \
	echo "installing: prometheus"; $(APT_INSTALL) --no-install-recommends prometheus; \
	if command -v systemctl >/dev/null; then $(SUDO) systemctl disable --now --quiet prometheus 2>/dev/null || true; fi; \
	if [ -e /etc/init.d/prometheus ]; then $(SUDO) update-rc.d prometheus disable >/dev/null 2>&1 || true; $(SUDO) /etc/init.d/prometheus stop >/dev/null 2>&1 || true; fi; }

system-deps: python-deps server-deps sms-deps node-deps monitoring-deps

$(STAMP_VENV): pyproject.toml | python-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

## Generated stubs: gen/ is never committed; the .proto files are the only source.
$(STAMP_GEN): $(PROTOS) $(STAMP_VENV)
	rm -rf gen && mkdir -p gen
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -I proto --python_out=gen --mypy_out=gen --grpc_python_out=gen --mypy_grpc_out=gen $(PROTOS)
	touch $@

proto: $(STAMP_GEN)

## Node tools (buf; @grpc/grpc-js, @grpc/proto-loader and protobufjs for the interop client), pinned in the
## committed tools/package-lock.json and installed into .tools/ (gitignored). `npm ci` installs exactly the lock,
## without running install scripts; the stamp makes a prepared machine do no network work.
$(STAMP_NODE): $(NODE_TOOLS) | node-deps
	mkdir -p .tools && cp $(NODE_TOOLS) .tools/
	cd .tools && npm ci --silent --no-audit --no-fund --ignore-scripts
	touch $@

run: $(STAMP_GEN) server-deps
	$(BIN)/sesame serve

lint: $(STAMP_GEN) $(STAMP_NODE)
	$(BUF) lint
	$(BIN)/ruff check server hsm clients tests bench
	$(BIN)/ruff format --check server hsm clients tests bench

typecheck: $(STAMP_GEN)
	$(BIN)/mypy

archlint: $(STAMP_GEN)
	$(BIN)/lint-imports

test: server-deps sms-deps monitoring-deps lint typecheck archlint $(STAMP_NODE)
	$(BIN)/pytest

wheel: $(STAMP_GEN)
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

## docs/dashboard-preview.png: the dashboard's panels drawn from a live Prometheus (no Grafana can be installed
## here: tools/dashboard_preview.py says why). matplotlib is installed into the venv for this target only.
dashboard-preview: $(STAMP_GEN) monitoring-deps
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q 'matplotlib>=3.6'
	$(BIN)/python -m tools.dashboard_preview docs/dashboard-preview.png

bench: $(STAMP_GEN)
	$(BIN)/python -m bench.load $(BENCH_ARGS)

clean:
	rm -rf gen .venv .tools .mypy_cache .ruff_cache .pytest_cache dist build
