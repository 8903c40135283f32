# bdrc-restore: every target does its own set-up (venv, Python deps, Debian packages).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEB_PACKAGES := rsync zip unzip shellcheck
NODE_CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help setup debs test lint demo bench synth lambda-asset clean

help:
	@echo "make demo   - set up, then run the whole pipeline end to end on a local moto server"
	@echo "make test   - set up, then ruff + shellcheck + the whole pytest suite"
	@echo "make lint   - ruff, shellcheck, cfn-lint on synthesized templates"
	@echo "make synth  - cdk synth for env=dev and env=prod (offline)"
	@echo "make bench  - benchmarks (bench/), table on stdout, JSON under bench/results/"

setup: debs $(STAMP) lambda-asset

# Debian packages the tests and the sync script need; installed only when missing.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

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
	$(VENV)/bin/finisher demo

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
