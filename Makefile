# bdrc-restore: every target does its own set-up (venv, Python deps, Debian packages).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
DEB_PACKAGES := rsync zip unzip p7zip-full shellcheck postgresql tmux iproute2 nftables rclone
NODE_CDK := node_modules/.bin/cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export AWS_EC2_METADATA_DISABLED := true

# The finisher's image (make image; make test builds it and runs tests/container against it). Our own dockerd when
# none answers on DOCKER_HOST (bin/dev-dockerd.sh: its data root outside the clone, so layers and the base survive).
IMAGE ?= bdrc-finisher:dev
LOCAL_BASE_IMAGE := bdrc-restore/debian:bookworm-minbase
# a site with a registry: BASE_IMAGE=python:3.11-slim-bookworm (then no debootstrap)
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
APP_UID ?= 1000
APP_GID ?= 1000
CONTAINER_DEB_PACKAGES := docker.io debootstrap
export DOCKER_HOST ?= unix:///run/bdrc-restore-docker/docker.sock
# the host's pip index settings go into the build (file:// indexes are not reachable from it)
PIP_INDEX_URL ?= $(shell $(PY_BOOT) -m pip config get global.index-url 2>/dev/null)
PIP_EXTRA_INDEX_URL ?= $(filter http://% https://%,$(shell $(PY_BOOT) -m pip config get global.extra-index-url 2>/dev/null))
PIP_TRUSTED_HOST ?= $(shell $(PY_BOOT) -m pip config get global.trusted-host 2>/dev/null)
# PEM files of extra CA certificates (a TLS-inspecting proxy) trusted inside the build and by the image;
# default: the host's own additions to its CA bundle
EXTRA_CA_CERTS ?= $(wildcard /usr/local/share/ca-certificates/*.crt)
IMAGE_BUILD_ARGS = --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg APP_UID=$(APP_UID) --build-arg APP_GID=$(APP_GID) \
  $(if $(strip $(PIP_INDEX_URL)),--build-arg PIP_INDEX_URL="$(strip $(PIP_INDEX_URL))") \
  $(if $(strip $(PIP_EXTRA_INDEX_URL)),--build-arg PIP_EXTRA_INDEX_URL="$(strip $(PIP_EXTRA_INDEX_URL))") \
  $(if $(strip $(PIP_TRUSTED_HOST)),--build-arg PIP_TRUSTED_HOST="$(strip $(PIP_TRUSTED_HOST))") \
  $(if $(strip $(EXTRA_CA_CERTS)),--build-arg EXTRA_CA_CERTS="$$(cat $(EXTRA_CA_CERTS))")
# one shell line: the base made when missing, then the image (the legacy builder: Debian's dockerd has no buildx)
BUILD_IMAGE = { [ "$(BASE_IMAGE)" != "$(LOCAL_BASE_IMAGE)" ] || bin/base-image.sh $(LOCAL_BASE_IMAGE) bookworm; } \
  && DOCKER_BUILDKIT=0 docker build -q --network host -f onprem/finisher/Dockerfile $(IMAGE_BUILD_ARGS) -t $(IMAGE) . \
  && docker image inspect --format '$(IMAGE): {{.Size}} bytes' $(IMAGE)

.PHONY: help setup bytecode debs container-debs image test lint demo bench synth lambda-asset lock clean

help:
	@echo "make demo   - set up, then run the whole pipeline end to end on a local moto server"
	@echo "make test   - set up, then ruff + shellcheck + the image + the whole pytest suite (tests/container too)"
	@echo "make image  - build the finisher's container image (IMAGE=$(IMAGE), BASE_IMAGE, APP_UID, APP_GID)"
	@echo "make lint   - ruff, shellcheck, cfn-lint on synthesized templates"
	@echo "make synth  - cdk synth for env=dev and env=prod (offline)"
	@echo "make bench  - benchmarks (bench/), table on stdout, JSON under bench/results/"
	@echo "make lock   - re-resolve requirements/*.lock from pyproject.toml's exact pins (uv)"

setup: debs $(STAMP) lambda-asset bytecode

# Every Python process (each finisher a test starts, the demo's, the bench's) reads compiled bytecode: where
# PYTHONDONTWRITEBYTECODE is set (this machine's environment, the image) nothing is cached at run time, and a
# finisher compiled boto3, SQLAlchemy and pydantic from source at each start (its import 2.2 s -> 0.9 s). The
# venv is compiled once when installed ($(STAMP)), our own sources here (only what changed since the last time).
OWN_SOURCES := contract config onprem lambdas harness infra bench tests requirements
bytecode: $(STAMP)
	@$(PY) -m compileall -q -j 0 $(OWN_SOURCES) >/dev/null || { echo "compileall failed on our sources"; exit 1; }

# Debian packages the tests and the sync script need; installed only when missing.
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv holds exactly the lock file's versions; the project itself is installed on top, without dependencies.
# uv installs them (parallel downloads, its cache: ~1 min less than pip from a clean clone), with pip's settings of
# this host carried over (requirements/uv_pip_install.py); uv comes from PATH, else pip installs it into the venv;
# pip installs the lock itself when there is no uv or uv fails.
UV ?= $(shell command -v uv 2>/dev/null)
UV_PIP_INSTALL = $(PY_BOOT) requirements/uv_pip_install.py
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	uv="$(UV)"; [ -n "$$uv" ] || [ ! -x $(VENV)/bin/uv ] || uv=$(VENV)/bin/uv; \
	[ -n "$$uv" ] || { $(PIP) install -q uv==$(UV_VERSION) && uv=$(VENV)/bin/uv; } || echo "no uv: pip installs"; \
	if [ -n "$$uv" ] && $(UV_PIP_INSTALL) "$$uv" $(PY) -q -r requirements/dev.lock \
	    && $(UV_PIP_INSTALL) "$$uv" $(PY) -q --no-deps -e .; then :; \
	else \
	  [ -z "$$uv" ] || echo "uv did not install the lock: pip installs it"; \
	  $(PIP) install -q -r requirements/dev.lock && $(PIP) install -q --no-deps -e .; \
	fi
	$(PY) -m compileall -q -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') >/dev/null \
	  || echo "compileall: some installed files do not compile (they are not imported)"
	touch $(STAMP)

# dev.lock: everything make test, demo, bench and synth need; finisher.lock: the finisher alone with its PostgreSQL
# ledger extra (its container, which may run on one of several hosts sharing a server ledger).
lock:
	test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile -q pyproject.toml --all-extras --python-version 3.11 \
	  --custom-compile-command "make lock" -o requirements/dev.lock
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra postgres --python-version 3.11 -c requirements/dev.lock \
	  --custom-compile-command "make lock" -o requirements/finisher.lock

# The Lambda's deployment asset: handler + the shared contract (Powertools comes from the managed layer).
lambda-asset: $(STAMP)
	$(PY) -m infra.cdk.lambda_asset build/lambda/notify_restore

# docker and debootstrap, for the image and its tests; installed only when missing
container-debs:
	@$(MAKE) --no-print-directory debs DEB_PACKAGES="$(CONTAINER_DEB_PACKAGES)"

# the daemon started here (when none answers) is stopped afterwards by its PID, whatever the build's outcome
image: container-debs
	bin/dev-dockerd.sh start || exit 1; trap 'bin/dev-dockerd.sh stop' EXIT; $(BUILD_IMAGE)

test: setup container-debs
	$(VENV)/bin/ruff check .
	shellcheck bin/*.sh
	bin/dev-dockerd.sh start || exit 1; trap 'bin/dev-dockerd.sh stop' EXIT; \
	  $(BUILD_IMAGE) && BDRC_FINISHER_IMAGE=$(IMAGE) $(PY) -m pytest -q

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
