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

.PHONY: help run test lock sms-docs system-deps python-deps server-deps sms-deps node-deps trace-deps monitoring-deps interop-deps dashboard-preview proto lint typecheck archlint bench wheel clean test-fresh image

help:
	@echo "make run    start Sésame on 127.0.0.1:50051 with embedded defaults (Redis child, SoftHSM token under var/)"
	@echo "make test   install what is missing, then lint, type-check and run every test"
	@echo "make image  build the image (or, with no Docker engine, its root filesystem) and start it"
	@echo "make bench  measure the echo floor and Sésame on this machine; JSON and PNG under docs/benchmarks/"
	@echo "make lock   re-resolve the Python dependencies to their newest allowed versions, with hashes"

## Machine packages: installed only when missing, so a prepared machine does no network work. Each target
## asks only for what its own step needs: building the wheel (the Docker build stage) needs no SoftHSM,
## Redis or npm. tools/apt-install.sh installs without recommended packages and leaves no system service
## running or enabled (the tests and `make run` start their own Redis and Kannel): docs/decisions/0017.
APT_INSTALL = tools/apt-install.sh

python-deps:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(APT_INSTALL) python3-venv

## fonts-dejavu-core: the evidence PDF's font (DejaVu Sans, any Latin, Greek or Cyrillic name; decision 0042);
## fonts-droid-fallback: its Chinese and Japanese letters.
server-deps:
	@missing=""; \
	command -v softhsm2-util >/dev/null || missing="$$missing softhsm2"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || missing="$$missing fonts-droid-fallback"; \
	if [ -n "$$missing" ]; then $(APT_INSTALL) $$missing; fi

## Kannel (bearerbox, smsbox) and its fake SMSC (kannel-extras) run only in the tests: `make run` uses the
## console gateway. The tests start a private Kannel on free ports, whatever the package's own service does.
sms-deps:
	@missing=""; \
	{ [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ]; } || missing="$$missing kannel"; \
	[ -x /usr/lib/kannel/test/fakesmsc ] || missing="$$missing kannel-extras"; \
	if [ -n "$$missing" ]; then $(APT_INSTALL) $$missing; fi

node-deps:
	@command -v npm >/dev/null || $(APT_INSTALL) npm

## strace kills a key ceremony at one chosen write of SoftHSM's, in the tests only
## (tests/e2e/test_rotation_killed_halfway.py, decision 0126).
trace-deps:
	@command -v strace >/dev/null || $(APT_INSTALL) strace

## Prometheus (promtool, and a server the tests start on a private port and directory) checks deploy/; its
## package's own service is neither started nor left enabled (tools/apt-install.sh).
monitoring-deps:
	@{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || $(APT_INSTALL) prometheus

## The Go and Java interop clients (tests/interop/test_compiled_clients.py): protoc with Go's two plugins and
## grpc-java's, the Go sources of grpc-go, google.golang.org/protobuf and genproto built in GOPATH mode, and the
## jars of grpc-java and what it needs, all from Debian's packages (nothing downloaded by a build tool: the Go
## module proxy and Maven Central are not registries this project relies on). The Java client's TLS is OpenSSL
## through netty-tcnative: Debian's Netty 4.1.48 ships without its JDK ALPN classes (decision 0081).
## grpc-go accepts github.com/golang/protobuf 1.3 or 1.5, and apt picks 1.3, whose table unmarshaller panics on
## protoc-gen-go's APIv2 messages: 1.5 (a wrapper of APIv2, the one with wrappers.go) is asked for by name.
GO_SRC = /usr/share/gocode/src
JAVA_LIB = /usr/share/java
interop-deps:
	@missing=""; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v protoc-gen-go >/dev/null || missing="$$missing protoc-gen-go"; \
	command -v protoc-gen-go-grpc >/dev/null || missing="$$missing protoc-gen-go-grpc"; \
	[ -d $(GO_SRC)/google.golang.org/grpc/health/grpc_health_v1 ] || missing="$$missing golang-google-grpc-dev"; \
	[ -d $(GO_SRC)/google.golang.org/protobuf/runtime/protoimpl ] || missing="$$missing golang-google-protobuf-dev"; \
	[ -d $(GO_SRC)/google.golang.org/genproto/googleapis/rpc/errdetails ] || missing="$$missing golang-google-genproto-dev"; \
	[ -f $(GO_SRC)/github.com/golang/protobuf/proto/wrappers.go ] || missing="$$missing golang-github-golang-protobuf-1-5-dev"; \
	{ command -v javac >/dev/null && command -v java >/dev/null; } || missing="$$missing default-jdk-headless"; \
	command -v grpc_java_plugin >/dev/null || missing="$$missing protobuf-compiler-grpc-java-plugin"; \
	[ -f $(JAVA_LIB)/grpc-netty.jar ] || missing="$$missing libgrpc-java"; \
	[ -f $(JAVA_LIB)/protobuf.jar ] || missing="$$missing libprotobuf-java"; \
	[ -f $(JAVA_LIB)/netty-codec-http2.jar ] || missing="$$missing libnetty-java"; \
	[ -f $(JAVA_LIB)/guava.jar ] || missing="$$missing libguava-java"; \
	[ -f $(JAVA_LIB)/perfmark-api.jar ] || missing="$$missing libperfmark-java"; \
	[ -f $(JAVA_LIB)/gson.jar ] || missing="$$missing libgoogle-gson-java"; \
	[ -f $(JAVA_LIB)/geronimo-annotation-1.3-spec.jar ] || missing="$$missing libgeronimo-annotation-1.3-spec-java"; \
	[ -f $(JAVA_LIB)/netty-tcnative.jar ] || missing="$$missing libnetty-tcnative-java"; \
	ls /usr/lib/*/jni/libnetty-tcnative.so >/dev/null 2>&1 || missing="$$missing libnetty-tcnative-jni"; \
	if [ -n "$$missing" ]; then $(APT_INSTALL) $$missing; fi

system-deps: python-deps server-deps sms-deps node-deps trace-deps monitoring-deps interop-deps

## Python packages: exactly the locked versions, each checked against its hashes (requirements-dev.lock holds
## the runtime lock's pins plus the dev tools), then the project itself, editable, without resolving anything.
$(STAMP_VENV): pyproject.toml requirements-dev.lock | python-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

## `make lock`: the one command of an upgrade. Re-resolves pyproject.toml's ranges to the newest versions,
## with the hash of every file, for every Python from 3.11 on (a universal resolution keeps the markers:
## Debian 12's 3.11.2 needs async-timeout, which 3.11.3 and later do not); the dev lock is constrained by the
## runtime lock so both hold the same versions. uv runs from its own venv under .tools/, in neither lock.
LOCK_VENV := .tools/lock
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock"
lock: | python-deps
	[ -x $(LOCK_VENV)/bin/uv ] || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q uv==0.13.8; }
	$(UV_COMPILE) --output-file requirements.lock pyproject.toml
	$(UV_COMPILE) --extra dev --constraint requirements.lock --output-file requirements-dev.lock pyproject.toml

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

test: server-deps sms-deps trace-deps monitoring-deps interop-deps lint typecheck archlint $(STAMP_NODE)
	$(BIN)/pytest

## docs/sms.md: every SMS template as sent with the longest values, its encoding and parts (a test fails
## when the committed file differs from what this writes).
sms-docs: $(STAMP_VENV)
	$(BIN)/python -m sesame.server.sms_docs > docs/sms.md

wheel: $(STAMP_GEN)
	$(BIN)/python -m build --wheel --no-isolation --outdir dist .

## docs/dashboard-preview.png: the dashboard's panels drawn from a live Prometheus (no Grafana can be installed
## here: tools/dashboard_preview.py says why). matplotlib is installed into the venv for this target only.
dashboard-preview: $(STAMP_GEN) monitoring-deps
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q 'matplotlib==3.11.2'
	$(BIN)/python -m tools.dashboard_preview docs/dashboard-preview.png

## `make bench BENCH_ARGS="--duration 20 --concurrency 32"`: options in `python -m bench.load --help`.
## The fresh-machine promise in a minimal Debian 12 root filesystem (mmdebstrap): slow (a Debian base, every
## package, the whole suite), so never part of `make test` or CI; see docs/operations.md, "A fresh machine".
test-fresh:
	@command -v mmdebstrap >/dev/null || tools/apt-install.sh mmdebstrap
	tools/fresh-debian-check.sh

## The image, built and started (tools/image-check.sh): with Docker where an engine answers; otherwise (here)
## its runtime root filesystem from Debian's packages (mmdebstrap), the Dockerfile's own install script run
## in it, then `sesame serve` as the image's user on a read-only root until `sesame health` reads SERVING;
## prints the size. Minutes (a Debian base, the runtime lock): never part of `make test`; see
## docs/operations.md, "The image".
image: $(STAMP_GEN)
	@command -v mmdebstrap >/dev/null || tools/apt-install.sh mmdebstrap
	rm -rf dist
	$(MAKE) wheel
	tools/image-check.sh

bench: $(STAMP_GEN) server-deps
	$(BIN)/python -m bench.load $(BENCH_ARGS)

clean:
	rm -rf gen .venv .tools .mypy_cache .ruff_cache .pytest_cache dist build
