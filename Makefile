# bdrc-restore: every target does its own set-up (venv, Python deps, Debian packages).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
DEB_PACKAGES := rsync zip unzip p7zip-full shellcheck
NODE_CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help setup debs test lint demo bench synth lambda-asset lock clean

help:
	@echo "make demo   - set up, then run the whole pipeline end to end on a local moto server"
	@echo "make test   - set up, then ruff + shellcheck + the whole pytest suite"
	@echo "make lint   - ruff, shellcheck, cfn-lint on synthesized templates"
	@echo "make synth  - cdk synth for env=dev and env=prod (offline)"
	@echo "make bench  - benchmarks (bench/), table on stdout, JSON under bench/results/"
	@echo "make lock   - re-resolve requirements/*.lock from pyproject.toml's exact pins (uv)"

setup: debs $(STAMP) lambda-asset

# Debian packages the tests and the sync script need; installed only when missing.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv holds exactly the lock file's versions; the project itself is installed on top, without dependencies.
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q -r requirements/dev.lock
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

# dev.lock: everything make test, demo, bench and synth need; finisher.lock: the finisher alone (its container).
lock:
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile -q pyproject.toml --all-extras --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements/dev.lock
	$(VENV)/bin/uv pip compile -q pyproject.toml --python-version 3.11 -c requirements/dev.lock \
	  --custom-compile-command "make lock" -o requirements/finisher.lock

# The Lambda's deployment asset: handler + the shared contract (Powertools comes from the managed layer).
lambda-asset: $(STAMP)
	$(PY) -m infra.cdk.lambda_asset build/lambda/notify_restore

test: setup
	$(VENV)/bin/ruff check .
	shellcheck bin/*.sh
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	shellcheck bin/*.sh

demo: setup
	$(PY) -m harness

bench: setup
	$(PY) -m bench.run

synth: setup
	@command -v npm >/dev/null || { echo "make synth needs Node.js >= 20 with npm (docs/deploy.md)"; exit 1; }
	@test -x $(NODE_CDK) || npm ci --no-audit --no-fund --silent
	$(NODE_CDK) synth -c env=dev -o cdk.out/dev --quiet
	$(NODE_CDK) synth -c env=prod -o cdk.out/prod --quiet
	$(VENV)/bin/cfn-lint --non-zero-exit-code error cdk.out/dev/*.template.json cdk.out/prod/*.template.json

clean:
	rm -rf build cdk.out .pytest_cache
