# Every target installs what it needs: a fresh Debian/Ubuntu machine, as root, needs nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
CHECKOV_VENV := .venv-checkov
CI_LOCAL     := tools/gitlab-ci-local/node_modules/.bin/gitlab-ci-local
PY      := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
PROXIES ?= 3
# Lab sizes `make bench` measures the deploy on (bench/deploy_cost.py).
BENCH_PROXIES ?= 1,10,50
HOST    ?=
# Debian packages the lab, the tests and the benchmarks use: command -> package.
APT_NEEDS := debootstrap:debootstrap systemd-nspawn:systemd-container nft:nftables \
             ip:iproute2 ssh:openssh-client curl:curl rsync:rsync wrk:wrk node:nodejs npm:npm \
             apt-cacher-ng:apt-cacher-ng nginx:nginx

.PHONY: help deps venv check test lab-up lab-down lab-status demo docs deploy canary fleet verify \
        drift drift-repair checkov bench report clean

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
	$(VENV)/bin/pytest -q -m "not lab and not slow"

test: deps venv $(CHECKOV_VENV)/.installed $(CI_LOCAL)  ## The whole suite: unit tests, then the lab tests on real hosts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

lab-up: deps venv  ## Boot the lab (PROXIES=3): containers, backend, fake AWS
	$(PY) -m lab up --proxies $(PROXIES)

lab-down: venv  ## Remove everything the lab created
	$(PY) -m lab down

lab-status: venv  ## Show the lab's hosts and whether SSH answers
	$(PY) -m lab status

demo: lab-up  ## The main job on the lab, end to end
	$(PY) -m lab demo

docs: venv  ## Regenerate docs/settings.md and the README sections built from docs/
	$(PY) -m tools.docs

bench: lab-up  ## Benchmarks on the lab: print tables, write bench/results/*.json
	$(PY) -m bench.reliability
	$(PY) -m bench.overhead
	$(PY) -m bench.deploy_cost --proxies $(BENCH_PROXIES)
	$(PY) -m bench.inventory_build

report: venv  ## Reliability report from the proxies' logs (over SSH via the inventory), report.png
	$(PY) -m report --from-hosts --png report.png

clean: lab-down  ## Remove the lab and the venv
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- Rollout, verification and drift (tools/rollout/; the GitLab CI jobs call these) ---------
# HOST= picks the canary (default: the first proxy of the inventory), BATCH= the batch size after
# it (default $$ROLLOUT_BATCH_SIZE, else 1), or BATCHES= the batch sizes as counts or percentages
# of all the hosts, the last one repeating (e.g. BATCHES=1,25%,100%; default $$ROLLOUT_BATCHES;
# not together with BATCH=), MAX_FAIL= the percentage of a batch that may fail before the rollout
# stops (0-100, default $$ROLLOUT_MAX_FAIL_PERCENT, else 0: the first failure stops it),
# INVENTORY= another inventory (default inventories/aws.py), SHARD=I/N only the proxies of shard I
# of N, by EC2 instance id (fleet, verify, drift, drift-repair; default $$CI_NODE_INDEX/
# $$CI_NODE_TOTAL, which GitLab's `parallel:` sets, else every proxy; a drift report becomes
# drift-report-shard-I-of-N.txt, and drift-join joins them).
BATCH     ?=
BATCHES   ?=
MAX_FAIL  ?=
INVENTORY ?=
SHARD     ?=

# These values reach shell command lines (and CI passes CANARY_HOST into HOST), so make checks
# them before any recipe or $$(shell) runs, on their raw text ($$(value): a value such as
# '$$(shell ...)' is never expanded): only the characters listed, one word, no leading "-".
# rollout.py then checks what they mean (ranges, shard numbers, host names).
_comma  := ,
_digits := 0 1 2 3 4 5 6 7 8 9
_alnum  := $(_digits) a b c d e f g h i j k l m n o p q r s t u v w x y z \
           A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
# $$(call _without,TEXT,CHARS): TEXT with every one of CHARS removed
_without = $(if $(2),$(call _without,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,$(words $(2)),$(2))),$(1))
# $$(call _check,NAME,CHARS,WHAT): stop with an error when variable NAME has anything else
_check = $(if $(or $(findstring $$,$(value $(1))),$(filter-out 0 1,$(words $(value $(1)))),$(filter -%,$(value $(1))),$(strip $(call _without,$(value $(1)),$(2)))),$(error $(1)='$(value $(1))' refused: must be $(3)))
$(call _check,HOST,$(_alnum) . _ -,a host name (letters$(_comma) digits$(_comma) . _ -))
$(call _check,BATCH,$(_digits) %,a count or a percentage$(_comma) e.g. 2 or 25%)
$(call _check,BATCHES,$(_digits) % $(_comma),counts or percentages separated by commas$(_comma) e.g. 1$(_comma)25%$(_comma)100%)
$(call _check,MAX_FAIL,$(_digits),a percentage from 0 to 100 (digits only))
$(call _check,SHARD,$(_digits) /,I/N$(_comma) e.g. 2/4)
$(call _check,INVENTORY,$(_alnum) . _ - /,a file path (letters$(_comma) digits$(_comma) . _ - /))
$(call _check,PROXIES,$(_digits),a number of lab proxies)

ROLLOUT   := $(PY) -m tools.rollout $(if $(INVENTORY),--inventory $(INVENTORY)) \
             $(if $(SHARD),--shard $(SHARD))
BATCHING   = $(if $(BATCH),--batch-size $(BATCH)) $(if $(BATCHES),--batches $(BATCHES)) \
             $(if $(MAX_FAIL),--max-fail-percent $(MAX_FAIL))

deploy: venv  ## Deploy every proxy: canary HOST= first, then BATCH=/BATCHES=, health-gated
	$(ROLLOUT) deploy $(if $(HOST),--canary $(HOST)) $(BATCHING)

canary: venv  ## Deploy one proxy (HOST=name, default the first), then check its health
	$(ROLLOUT) canary $(if $(HOST),--canary $(HOST))

fleet: venv  ## Deploy the proxies but the canary HOST=; stop at the first failure (or MAX_FAIL=%)
	$(ROLLOUT) fleet $(if $(HOST),--canary $(HOST)) $(BATCHING)

verify: venv  ## Check every proxy's /healthz and /readyz (a request through to the backend)
	$(ROLLOUT) verify

drift: venv  ## Dry run on every proxy; writes drift-report.txt, fails (exit 3) on drift
	$(ROLLOUT) drift --report drift-report.txt

drift-repair: venv  ## Re-deploy only the drifted proxies (health-gated), then check again
	$(ROLLOUT) repair --report drift-report.txt $(BATCHING)

# --- Traffic shift (tools/shift/; the GitLab job `shift` calls it) ------------------------------
# TO= the new proxy group (its ProxyGroup tag), STEPS= its shares in percent (default 5,25,50,100),
# INTERVAL= seconds judged per step (default 120), ROLLBACK=true: its weight back to 0 at once.
# The rule: SHIFT_RULE_ARN or SHIFT_LOAD_BALANCER (the lab's `env` sets it). Writes shift-report.*
TO       ?=
STEPS    ?=
INTERVAL ?=
ROLLBACK ?=
$(call _check,TO,$(_alnum),a proxy group (letters and digits$(_comma) e.g. b))
$(call _check,STEPS,$(_digits) % $(_comma),percentages separated by commas$(_comma) e.g. 5$(_comma)25$(_comma)50$(_comma)100)
$(call _check,INTERVAL,$(_digits) .,seconds (digits$(_comma) e.g. 120))
$(call _check,ROLLBACK,t r u e f a l s,true or false)
.PHONY: shift
shift: venv  ## Move the traffic to proxy group TO= step by step; a bad step rolls back by itself
	$(PY) -m tools.shift $(if $(TO),--to $(TO)) $(if $(STEPS),--steps $(STEPS)) \
	  $(if $(INTERVAL),--interval $(INTERVAL)) $(if $(filter true 1,$(ROLLBACK)),--rollback)

# tools/rollout/ is standard library only: the CI job that joins the shards' reports needs no venv
.PHONY: drift-join
drift-join:  ## Join the shards' drift-report-shard-*.json into drift-report.txt and .json
	python3 -m tools.rollout join-drift --report drift-report.txt

checkov: $(CHECKOV_VENV)/.installed  ## Security policy check of terraform/ (checkov, offline)
	$(CHECKOV_VENV)/bin/checkov -d terraform/ --skip-download --compact --quiet

# gitlab-ci-local runs the pipeline's jobs on the lab (tests/test_pipeline_lab.py); locked by npm
$(CI_LOCAL): tools/gitlab-ci-local/package-lock.json
	npm ci --prefix tools/gitlab-ci-local --no-audit --no-fund --loglevel=error
	touch $@

# checkov pins an old boto3: it gets a venv of its own
$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-checkov.lock
	touch $@
