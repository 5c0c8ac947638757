# Every target installs what it needs: a fresh Debian/Ubuntu machine, as root, needs nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
PROXIES ?= 3
HOST    ?=
# Debian packages the lab, the tests and the benchmarks use: command -> package.
APT_NEEDS := debootstrap:debootstrap systemd-nspawn:systemd-container nft:nftables \
             ip:iproute2 ssh:openssh-client curl:curl rsync:rsync wrk:wrk node:nodejs npm:npm

.PHONY: help deps venv check test test-lab lab-up lab-down lab-status demo docs deploy canary drift \
        bench report clean

help:  ## Print this list of targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps:  ## Install the Debian packages the lab and tests need (only those missing)
	@missing=""; for pair in $(APT_NEEDS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed  ## Create .venv from the lock file (requirements.lock)

$(VENV)/.installed: requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

check: venv  ## Linters and the fast unit tests (no lab, under a minute)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q -m "not lab"

test: deps venv  ## The whole suite: unit tests, then the lab tests on real hosts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lab-up: deps venv  ## Boot the lab (PROXIES=3): containers, backend, fake AWS
	$(PY) -m lab up --proxies $(PROXIES)

lab-down: venv  ## Remove everything the lab created
	$(PY) -m lab down

lab-status: venv  ## Show the lab's hosts and whether SSH answers
	$(PY) -m lab status

demo: lab-up  ## The main job on the lab, end to end
	$(PY) -m lab demo

clean: lab-down  ## Remove the lab and the venv
	rm -rf $(VENV) .pytest_cache .ruff_cache
