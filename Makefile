# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian tools the tests drive, as command:package pairs; installed when missing.
DEBIAN_TOOLS ?= radclient:freeradius-utils redis-server:redis-server redis-cli:redis-tools pg_basebackup:postgresql-client promtool:prometheus yq:yq docker-compose:docker-compose systemd-analyze:systemd kamailio:kamailio kamailio:kamailio-radius-modules freeradius:freeradius sipp:sip-tester chromium:chromium pdftoppm:poppler-utils

.PHONY: run test lint typecheck unit bench venv debian-tools clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/gateway run --demo --api

debian-tools:
	@scripts/ensure-debian-tools $(DEBIAN_TOOLS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests
	$(BIN)/ruff format --check gateway tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: $(STAMP) debian-tools lint typecheck
	$(BIN)/pytest -q --ignore=tests/bench

bench: $(STAMP)
	$(BIN)/pytest tests/bench -q -s -p no:randomly

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
